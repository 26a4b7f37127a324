// lazy::EngineContext — what an Engine and its blob readers share (internal). Readers
// hold it by shared_ptr, so a reader that outlives its Engine still finds it; the Engine
// marks every blob closed when it goes.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "lazy/disk_budget.h"
#include "lazy/engine.h"
#include "lazy/engine_metrics.h"
#include "lazy/fetch_scheduler.h"
#include "lazy/memory_cache.h"

namespace strata::lazy {

class RemoteBlob;

struct EngineContext {
  EngineOptions options;
  // The most bytes one fetch asks for: max_request_bytes in whole chunks, and at most a
  // quarter of the disk limit so that a reservation can always be met by evicting.
  uint64_t request_bytes = 0;
  registry::Client* client = nullptr;

  std::shared_ptr<prometheus::Registry> metrics_registry;
  std::unique_ptr<EngineMetrics> metrics;
  std::unique_ptr<MemoryCache> memory;
  std::unique_ptr<DiskBudget> budget;
  std::unique_ptr<FetchScheduler> scheduler;

  // Ids tell blobs apart in the memory cache (a digest reopened after RemoveBlob gets a
  // new id, so stale chunks cannot be found).
  std::atomic<uint64_t> next_blob_id{1};

  // Logical clock of chunk use, for eviction order (0: not used since Open).
  std::atomic<uint64_t> clock{1};
  uint64_t Tick() { return clock.fetch_add(1); }

  std::mutex blobs_mu;
  std::map<std::string, std::shared_ptr<RemoteBlob>> blobs;  // by digest; guarded by blobs_mu

  std::vector<std::shared_ptr<RemoteBlob>> ListBlobs() {
    std::lock_guard<std::mutex> lock(blobs_mu);
    std::vector<std::shared_ptr<RemoteBlob>> out;
    for (auto& [digest, blob] : blobs) out.push_back(blob);
    return out;
  }
};

}  // namespace strata::lazy
