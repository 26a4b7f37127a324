// ChunkCache: the decompressed, verified chunks a tree served last, in memory, bounded
// by bytes and evicted least recently used first.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <future>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "core/status.h"

namespace strata::lazy::stargz {

// Identifies a chunk within one blob: where its member starts, where in the member's
// decompressed stream it starts, and its length.
struct ChunkKey {
  uint64_t blob_offset = 0;
  uint64_t inner_offset = 0;
  uint64_t size = 0;
  auto operator<=>(const ChunkKey&) const = default;
};

// Thread-safe. Concurrent misses on one key run a single loader; the others wait for
// its result (an error is not cached: the next call loads again).
class ChunkCache {
 public:
  using Data = std::shared_ptr<const std::string>;
  using Loader = std::function<Result<Data>()>;

  explicit ChunkCache(size_t capacity_bytes) : capacity_bytes_(capacity_bytes) {}
  ChunkCache(const ChunkCache&) = delete;
  ChunkCache& operator=(const ChunkCache&) = delete;

  // The cached chunk `key`, or what `load` returns (cached when it fits and is OK).
  // `load` runs on the calling thread without the cache's lock held.
  Result<Data> GetOrLoad(const ChunkKey& key, const Loader& load);

  // Bytes of chunk data held now.
  size_t size_bytes() const;

 private:
  using Entry = std::pair<ChunkKey, Data>;
  void InsertLocked(const ChunkKey& key, const Data& data);

  const size_t capacity_bytes_;
  mutable std::mutex mu_;
  std::list<Entry> lru_;  // most recently used first
  std::map<ChunkKey, std::list<Entry>::iterator> index_;
  std::map<ChunkKey, std::shared_future<Result<Data>>> loading_;
  size_t size_bytes_ = 0;
};

}  // namespace strata::lazy::stargz
