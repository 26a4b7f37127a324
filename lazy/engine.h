// lazy::Engine — the format-neutral lazy loading engine: hands out one BlobReader per
// remote blob (registry layer), backed by a chunk cache on local disk with a memory
// cache in front, and fetches missing bytes from the registry through a scheduler with
// three priorities.
//
// How a read is served (see docs/lazy.md for the operator's view):
//   1. The blob is cut into chunks of `chunk_size` bytes at aligned offsets; a read
//      touches every chunk it overlaps.
//   2. A chunk is taken from the memory cache (an LRU of recently read chunks), else
//      from the blob's disk cache (`<cache_dir>/<digest hex>/data`, a sparse file with
//      every cached byte at its blob offset, plus a persisted bitmap of the chunks
//      present), else it is fetched.
//   3. Missing chunks next to each other are fetched in one ranged request; separate
//      runs of one read go in one multi-range request where the registry allows it.
//      Concurrent reads of a chunk share one fetch.
//   4. A read that cannot be served within `read_deadline` returns DeadlineExceeded;
//      the fetch itself goes on under the registry client's own deadlines and fills the
//      cache for the next read.
//
// Fetches run on `max_connections` worker threads: reads first, then prefetch (at most
// `prefetch_concurrency` at once), then background fetching of whole blobs (at most
// `background_concurrency`, and none starts while a read is waiting).
//
// Durability: the bitmap never marks a chunk whose bytes are not durable (data is
// fdatasync'ed before its bits are written; bits are cleared durably before bytes are
// removed). A crash can only forget chunks, which are then fetched again; a bitmap that
// is truncated or does not match its checksum counts as empty.
//
// Thread safety: an Engine and every reader it returns are safe for concurrent use.
// Readers may outlive the engine; they then fail with FailedPrecondition.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "core/status.h"
#include "lazy/blob_reader.h"
#include "registry/client.h"

namespace prometheus {
class Registry;
}

namespace strata::lazy {

struct EngineContext;

struct EngineOptions {
  // Root of the chunk cache (created if missing); one folder per blob digest.
  std::string cache_dir;
  // Fetch and cache granularity: a power of two from 4 KiB to 64 MiB. 1 MiB amortises a
  // registry round trip (often 10-50 ms, more behind a redirect to object storage) over
  // enough bytes, keeps a 1 GiB layer's bitmap at 128 bytes, and is the chunk size
  // Nydus uses; it is a multiple of every filesystem block size, so evicted chunks free
  // whole blocks. Changing it discards existing caches at the next Open.
  uint64_t chunk_size = 1 << 20;
  // Worker threads, hence the most registry requests in flight at once.
  size_t max_connections = 8;
  // Of those, at most this many fetch prefetch ranges and this many fetch whole blobs in
  // the background (both at least 1; clamped to max_connections).
  size_t prefetch_concurrency = 4;
  size_t background_concurrency = 2;
  // Largest request the engine merges chunks into (rounded down to whole chunks).
  uint64_t max_request_bytes = 16 << 20;
  // How long ReadAt waits for missing bytes before DeadlineExceeded.
  std::chrono::milliseconds read_deadline{30000};
  // Memory cache of recently read chunks (0 disables it).
  uint64_t memory_cache_bytes = 64 << 20;
  // Disk cache limit over all blobs' cached bytes (0: unlimited; otherwise at least two
  // chunks). When a fetch needs room, the least recently used chunks of any blob are
  // evicted down to 90% of the limit; chunks cached by an earlier run count as oldest.
  // Bitmaps and filesystem overhead are not counted.
  uint64_t disk_cache_limit_bytes = 0;
  // Where metrics go; the engine makes its own registry when null.
  std::shared_ptr<prometheus::Registry> metrics_registry;
};

// A snapshot of the engine's counters (the same numbers its Prometheus metrics show).
struct EngineStats {
  uint64_t fetches = 0;        // fetch operations (one ranged or multi-range request each)
  uint64_t fetch_errors = 0;   // fetches the registry client gave up on
  uint64_t fetched_bytes = 0;  // payload bytes received
  uint64_t memory_hits = 0;    // chunk reads served from memory
  uint64_t disk_hits = 0;      // chunk reads served from the disk cache
  uint64_t misses = 0;         // chunk reads that waited for a fetch
  uint64_t deadline_exceeded = 0;
  uint64_t evicted_bytes = 0;
  uint64_t in_flight_fetches = 0;
  uint64_t cached_bytes = 0;  // on disk, all blobs
  uint64_t memory_bytes = 0;  // in the memory cache
  size_t blobs = 0;           // blobs with a cache (opened or found on disk)
};

class Engine {
 public:
  // Validates `options` (InvalidArgument naming the field), creates cache_dir, loads the
  // caches found there (discarding those with another chunk size or a damaged bitmap)
  // and starts the workers. `client` must outlive the engine.
  static Result<std::unique_ptr<Engine>> Open(EngineOptions options, registry::Client* client);

  // Stops the workers: queued fetches are dropped, running ones are waited for (bounded
  // by the client's request deadlines). Bitmaps are persisted.
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // The reader of blob `digest` (`size` bytes) of `ref`'s repository. Every call for a
  // digest returns the same reader while it is open; a cache left by an earlier run is
  // reused. `ref` is where the first caller's reads are fetched from. InvalidArgument
  // for a malformed digest or a size that differs from the open reader's.
  Result<std::shared_ptr<BlobReader>> OpenBlob(const registry::Reference& ref,
                                               const std::string& digest, uint64_t size);

  // Closes the blob's reader (its reads then fail with FailedPrecondition) and deletes
  // its cache from disk and memory. OK if the engine has no such blob.
  Status RemoveBlob(const std::string& digest);

  EngineStats Stats() const;

  // The registry the engine's metrics are in (options.metrics_registry, or its own).
  std::shared_ptr<prometheus::Registry> metrics_registry() const;

  const EngineOptions& options() const;

 private:
  explicit Engine(std::shared_ptr<EngineContext> context);
  std::shared_ptr<EngineContext> context_;
};

}  // namespace strata::lazy
