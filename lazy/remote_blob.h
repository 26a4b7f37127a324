// lazy::RemoteBlob — the engine's BlobReader (internal): one remote blob read through
// the memory cache, its ChunkStore on disk, and fetches queued on the engine's
// FetchScheduler.
//
// Missing chunks are fetched by "flights": a flight is one run of adjacent chunks in one
// ranged request, registered per chunk in an in-flight map while it runs. A reader that
// needs a chunk already in flight waits for that flight instead of fetching again, so
// concurrent reads of one chunk cause one fetch. A reader's new flights go into one
// on-demand batch (one multi-range request when they are not adjacent). Prefetch and
// background tasks walk their ranges in pieces of at most request_bytes, skipping chunks
// that are cached or in flight.
//
// After a fetch: bytes are written to the data file, then (under the blob's lock) the
// chunks are marked present and the flight completes, waking its readers; the bitmap is
// persisted after that, off the readers' path.
//
// Lock order: mu_ before the ChunkStore's locks; no lock is held across a fetch.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "lazy/blob_reader.h"
#include "lazy/chunk_store.h"
#include "lazy/fetch_scheduler.h"
#include "registry/client.h"

namespace prometheus {
class Gauge;
}

namespace strata::lazy {

struct EngineContext;

class RemoteBlob final : public BlobReader, public std::enable_shared_from_this<RemoteBlob> {
 public:
  RemoteBlob(std::shared_ptr<EngineContext> context, std::string digest,
             std::unique_ptr<ChunkStore> store);
  ~RemoteBlob() override;

  const std::string& digest() const override { return digest_; }
  uint64_t size() const override { return store_->blob_size(); }
  Result<size_t> ReadAt(char* buf, size_t n, uint64_t offset) override;
  void Prefetch(const std::vector<registry::ByteRange>& ranges) override;
  void FetchRemaining() override;
  void Invalidate(uint64_t offset, uint64_t n) override;
  uint64_t CachedBytes() const override { return store_->CachedBytes(); }

  // --- for the engine ---

  // Sets the repository fetches go to (the first call wins) and opens the blob's
  // metrics. A blob found on disk at startup is not attached until OpenBlob.
  void Attach(const registry::Reference& ref);
  bool attached() const;

  // Stops serving: reads fail with FailedPrecondition, queued fetches are dropped, and
  // readers waiting are woken. With `remove_cache` the disk cache is deleted, otherwise
  // its bitmap is persisted. Returns the bytes the cache held when removed (else 0).
  uint64_t Close(bool remove_cache);

  struct EvictionCandidate {
    uint64_t last_use;
    size_t blob_index;
    uint64_t chunk;
    uint64_t bytes;
  };
  // Appends every cached chunk, tagged with `blob_index`.
  void AddEvictionCandidates(size_t blob_index, std::vector<EvictionCandidate>* out) const;
  // Evicts `chunks` from disk and memory; returns the bytes freed.
  uint64_t Evict(const std::vector<uint64_t>& chunks);

 private:
  struct Flight {
    uint64_t first_chunk = 0;
    uint64_t chunk_count = 0;
    uint64_t offset = 0;  // blob offset of first_chunk
    uint64_t length = 0;
    // Guarded by mu_.
    bool done = false;
    Status status;
    std::shared_ptr<const std::string> bytes;
    int waiters = 0;
  };
  using FlightPtr = std::shared_ptr<Flight>;

  struct Batch {
    Priority priority = Priority::kOnDemand;
    std::vector<FlightPtr> flights;
    // On-demand only: after this, a batch nobody waits for is dropped unfetched.
    std::chrono::steady_clock::time_point deadline;
  };

  // What a prefetch or background task has left: chunk intervals [first, end).
  struct Wanted {
    Priority priority = Priority::kPrefetch;
    std::vector<std::pair<uint64_t, uint64_t>> intervals;
    std::atomic<bool> failed{false};
  };

  // Registers flights for `chunks` (ascending; absent and not in flight): adjacent
  // chunks share a flight of at most request_bytes. Caller holds mu_.
  std::vector<FlightPtr> StartFlightsLocked(const std::vector<uint64_t>& chunks);
  // Cuts flights into batches of at most request_bytes and kMaxRunsPerBatch runs.
  std::vector<Batch> MakeBatches(std::vector<FlightPtr> flights, Priority priority) const;
  void Submit(Batch batch);
  // Fetches a batch, caches it and completes its flights. Returns the fetch status.
  Status RunBatch(const Batch& batch);
  // Completes flights with `status` (and their bytes, when OK) and wakes readers.
  void FinishFlights(const Batch& batch, const Status& status,
                     std::vector<std::string>* bytes = nullptr,
                     const std::vector<bool>* stored = nullptr, uint64_t* added = nullptr);
  void QueueWanted(std::shared_ptr<Wanted> wanted, bool front);
  void RunWanted(const std::shared_ptr<Wanted>& wanted);
  // Copies chunk `chunk` out of a completed flight into the memory cache.
  void RememberChunk(uint64_t chunk, const Flight& flight);
  void UpdateCachedGauge();

  const std::shared_ptr<EngineContext> context_;
  const std::string digest_;
  const std::unique_ptr<ChunkStore> store_;
  const uint64_t id_;
  // Last use of each chunk (EngineContext::Tick); read without locks by eviction.
  std::unique_ptr<std::atomic<uint64_t>[]> last_use_;

  mutable std::mutex mu_;
  std::condition_variable flight_done_;
  bool closed_ = false;                                // guarded by mu_
  bool attached_ = false;                              // guarded by mu_
  registry::Reference ref_;                            // guarded by mu_
  std::unordered_map<uint64_t, FlightPtr> in_flight_;  // by chunk; guarded by mu_
  prometheus::Gauge* size_gauge_ = nullptr;            // guarded by mu_; set by Attach
  prometheus::Gauge* cached_gauge_ = nullptr;          // guarded by mu_; set by Attach
};

}  // namespace strata::lazy
