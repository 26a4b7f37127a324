#include "lazy/stargz/chunk_cache.h"

namespace strata::lazy::stargz {

Result<ChunkCache::Data> ChunkCache::GetOrLoad(const ChunkKey& key, const Loader& load) {
  std::promise<Result<Data>> promise;
  {
    std::unique_lock lock(mu_);
    if (auto it = index_.find(key); it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      return it->second->second;
    }
    if (auto it = loading_.find(key); it != loading_.end()) {
      std::shared_future<Result<Data>> pending = it->second;
      lock.unlock();
      return pending.get();
    }
    loading_.emplace(key, promise.get_future().share());
  }
  // The waiters must get an answer even if the loader throws (it should not).
  Result<Data> result = Status::Internal("chunk loader threw");
  try {
    result = load();
  } catch (const std::bad_alloc&) {
    result = Status(Code::kResourceExhausted, "out of memory loading a chunk");
  } catch (const std::exception& e) {
    result = Status::Internal(std::string("chunk loader threw: ") + e.what());
  }
  {
    std::lock_guard lock(mu_);
    loading_.erase(key);
    if (result.ok()) InsertLocked(key, *result);
  }
  promise.set_value(result);
  return result;
}

void ChunkCache::InsertLocked(const ChunkKey& key, const Data& data) {
  if (data->size() > capacity_bytes_ || index_.count(key)) return;
  while (size_bytes_ + data->size() > capacity_bytes_ && !lru_.empty()) {
    size_bytes_ -= lru_.back().second->size();
    index_.erase(lru_.back().first);
    lru_.pop_back();
  }
  lru_.emplace_front(key, data);
  index_[key] = lru_.begin();
  size_bytes_ += data->size();
}

size_t ChunkCache::size_bytes() const {
  std::lock_guard lock(mu_);
  return size_bytes_;
}

}  // namespace strata::lazy::stargz
