// lazy::MemoryCache — an LRU of whole chunks in memory, in front of the disk cache.
//
// Sharded by key (as LevelDB's ShardedLRUCache) so that readers of different chunks
// rarely meet on one lock; each shard evicts its own least recently used chunks to stay
// within its share of the capacity. Values are immutable and shared: a reader keeps a
// chunk it looked up even if the cache drops it meanwhile.
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace strata::lazy {

class MemoryCache {
 public:
  using Chunk = std::shared_ptr<const std::string>;

  // `capacity_bytes` 0 disables the cache (Lookup always misses, Insert does nothing).
  MemoryCache(uint64_t capacity_bytes, uint64_t chunk_size);
  MemoryCache(const MemoryCache&) = delete;
  MemoryCache& operator=(const MemoryCache&) = delete;

  bool enabled() const { return !shards_.empty(); }

  // The chunk, marked most recently used; null when absent.
  Chunk Lookup(uint64_t blob_id, uint64_t chunk);
  // Adds or replaces a chunk, evicting older ones of its shard as needed.
  void Insert(uint64_t blob_id, uint64_t chunk, Chunk bytes);
  void Erase(uint64_t blob_id, uint64_t chunk);
  // Drops every chunk of one blob.
  void EraseBlob(uint64_t blob_id);

  uint64_t size_bytes() const { return size_bytes_.load(); }

 private:
  struct Key {
    uint64_t blob_id;
    uint64_t chunk;
    bool operator==(const Key& other) const {
      return blob_id == other.blob_id && chunk == other.chunk;
    }
  };
  struct KeyHash {
    size_t operator()(const Key& key) const;
  };
  struct Entry {
    Key key;
    Chunk bytes;
  };
  struct Shard {
    std::mutex mu;
    std::list<Entry> lru;  // most recently used first
    std::unordered_map<Key, std::list<Entry>::iterator, KeyHash> index;
    uint64_t bytes = 0;
  };

  Shard& ShardFor(const Key& key);
  void EraseLocked(Shard& shard, std::list<Entry>::iterator it);

  uint64_t shard_capacity_ = 0;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::atomic<uint64_t> size_bytes_{0};
};

}  // namespace strata::lazy
