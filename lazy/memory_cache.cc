#include "lazy/memory_cache.h"

#include <algorithm>

namespace strata::lazy {

MemoryCache::MemoryCache(uint64_t capacity_bytes, uint64_t chunk_size) {
  if (capacity_bytes < chunk_size) return;
  // At most 16 shards, each large enough for a few chunks so that an uneven spread of
  // keys does not leave a shard unable to hold anything.
  uint64_t shard_count = std::clamp<uint64_t>(capacity_bytes / (4 * chunk_size), 1, 16);
  shard_capacity_ = capacity_bytes / shard_count;
  for (uint64_t i = 0; i < shard_count; i++) shards_.push_back(std::make_unique<Shard>());
}

size_t MemoryCache::KeyHash::operator()(const Key& key) const {
  // splitmix64 of the mixed pair: neighbouring chunks land in different shards.
  uint64_t x = key.blob_id * 0x9e3779b97f4a7c15ULL ^ key.chunk;
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return static_cast<size_t>(x);
}

MemoryCache::Shard& MemoryCache::ShardFor(const Key& key) {
  return *shards_[KeyHash()(key) % shards_.size()];
}

void MemoryCache::EraseLocked(Shard& shard, std::list<Entry>::iterator it) {
  shard.bytes -= it->bytes->size();
  size_bytes_ -= it->bytes->size();
  shard.index.erase(it->key);
  shard.lru.erase(it);
}

MemoryCache::Chunk MemoryCache::Lookup(uint64_t blob_id, uint64_t chunk) {
  if (!enabled()) return nullptr;
  Key key{blob_id, chunk};
  Shard& shard = ShardFor(key);
  std::lock_guard<std::mutex> lock(shard.mu);
  auto found = shard.index.find(key);
  if (found == shard.index.end()) return nullptr;
  shard.lru.splice(shard.lru.begin(), shard.lru, found->second);
  return found->second->bytes;
}

void MemoryCache::Insert(uint64_t blob_id, uint64_t chunk, Chunk bytes) {
  if (!enabled() || !bytes || bytes->size() > shard_capacity_) return;
  Key key{blob_id, chunk};
  Shard& shard = ShardFor(key);
  std::lock_guard<std::mutex> lock(shard.mu);
  auto found = shard.index.find(key);
  if (found != shard.index.end()) EraseLocked(shard, found->second);
  while (!shard.lru.empty() && shard.bytes + bytes->size() > shard_capacity_) {
    EraseLocked(shard, std::prev(shard.lru.end()));
  }
  shard.bytes += bytes->size();
  size_bytes_ += bytes->size();
  shard.lru.push_front(Entry{key, std::move(bytes)});
  shard.index.emplace(key, shard.lru.begin());
}

void MemoryCache::Erase(uint64_t blob_id, uint64_t chunk) {
  if (!enabled()) return;
  Key key{blob_id, chunk};
  Shard& shard = ShardFor(key);
  std::lock_guard<std::mutex> lock(shard.mu);
  auto found = shard.index.find(key);
  if (found != shard.index.end()) EraseLocked(shard, found->second);
}

void MemoryCache::EraseBlob(uint64_t blob_id) {
  for (auto& shard : shards_) {
    std::lock_guard<std::mutex> lock(shard->mu);
    for (auto it = shard->lru.begin(); it != shard->lru.end();) {
      auto next = std::next(it);
      if (it->key.blob_id == blob_id) EraseLocked(*shard, it);
      it = next;
    }
  }
}

}  // namespace strata::lazy
