#include "fuse/lookup_counts.h"

namespace strata::fuse {

void LookupCounts::Add(Ino ino, uint64_t n) {
  if (n == 0) return;
  Shard& shard = ShardOf(ino);
  std::lock_guard<std::mutex> lock(shard.mu);
  shard.counts[ino] += n;
}

bool LookupCounts::Forget(Ino ino, uint64_t n) {
  Shard& shard = ShardOf(ino);
  std::lock_guard<std::mutex> lock(shard.mu);
  auto it = shard.counts.find(ino);
  if (it == shard.counts.end()) return n == 0;
  if (it->second > n) {
    it->second -= n;
    return true;
  }
  bool balanced = it->second == n;
  shard.counts.erase(it);
  return balanced;
}

uint64_t LookupCounts::Get(Ino ino) const {
  const Shard& shard = ShardOf(ino);
  std::lock_guard<std::mutex> lock(shard.mu);
  auto it = shard.counts.find(ino);
  return it == shard.counts.end() ? 0 : it->second;
}

size_t LookupCounts::Size() const {
  size_t total = 0;
  for (const Shard& shard : shards_) {
    std::lock_guard<std::mutex> lock(shard.mu);
    total += shard.counts.size();
  }
  return total;
}

}  // namespace strata::fuse
