#include "lazy/disk_budget.h"

#include <algorithm>
#include <map>

#include "lazy/engine_metrics.h"
#include "lazy/remote_blob.h"

namespace strata::lazy {

DiskBudget::DiskBudget(uint64_t limit_bytes, BlobLister list_blobs, EngineMetrics* metrics)
    : limit_bytes_(limit_bytes), list_blobs_(std::move(list_blobs)), metrics_(metrics) {}

void DiskBudget::Add(int64_t bytes) {
  used_bytes_.fetch_add(bytes);
  metrics_->cached_bytes.Set(static_cast<double>(used_bytes()));
}

bool DiskBudget::Reserve(uint64_t bytes) {
  if (limit_bytes_ == 0) return true;
  std::lock_guard<std::mutex> lock(evict_mu_);
  if (used_bytes() + reserved_bytes_ + bytes > limit_bytes_) {
    EvictLocked(limit_bytes_ - limit_bytes_ / 10, bytes);
  }
  if (used_bytes() + reserved_bytes_ + bytes > limit_bytes_) return false;
  reserved_bytes_ += bytes;
  return true;
}

void DiskBudget::Release(uint64_t bytes) {
  if (limit_bytes_ == 0) return;
  std::lock_guard<std::mutex> lock(evict_mu_);
  reserved_bytes_ -= bytes;
}

void DiskBudget::EnforceLimit() {
  if (limit_bytes_ == 0) return;
  std::lock_guard<std::mutex> lock(evict_mu_);
  if (used_bytes() + reserved_bytes_ > limit_bytes_) {
    EvictLocked(limit_bytes_ - limit_bytes_ / 10, 0);
  }
}

void DiskBudget::EvictLocked(uint64_t goal, uint64_t incoming) {
  uint64_t wanted = used_bytes() + reserved_bytes_ + incoming;
  if (wanted <= goal) return;
  const uint64_t excess = wanted - goal;
  std::vector<std::shared_ptr<RemoteBlob>> blobs = list_blobs_();
  std::vector<RemoteBlob::EvictionCandidate> candidates;
  for (size_t i = 0; i < blobs.size(); i++) blobs[i]->AddEvictionCandidates(i, &candidates);
  std::sort(candidates.begin(), candidates.end(),
            [](const auto& a, const auto& b) { return a.last_use < b.last_use; });
  // Picks the oldest chunks worth the excess, then evicts them blob by blob.
  std::map<size_t, std::vector<uint64_t>> victims;
  uint64_t picked = 0;
  for (const auto& c : candidates) {
    if (picked >= excess) break;
    victims[c.blob_index].push_back(c.chunk);
    picked += c.bytes;
  }
  for (auto& [index, chunks] : victims) {
    uint64_t freed = blobs[index]->Evict(chunks);
    metrics_->evicted_bytes.Increment(static_cast<double>(freed));
  }
}

}  // namespace strata::lazy
