// lazy::DiskBudget — keeps the disk chunk cache of all blobs under one byte limit.
//
// Every fetch reserves room for the bytes it is about to cache. When the cached bytes
// plus open reservations would pass the limit, the least recently used chunks of any
// blob are evicted (hole punched, bits cleared) down to 90% of the limit, so eviction
// runs in batches rather than on every fetch. Chunks no reader touched since the engine
// started (left by an earlier run) count as the oldest. A fetch that still finds no
// room (everything left is reserved by other fetches) is served to its readers but not
// cached: the limit is never passed.
//
// Eviction is per chunk, not per blob: a large layer keeps its hot chunks while its cold
// ones go.
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

namespace strata::lazy {

class RemoteBlob;
struct EngineMetrics;

class DiskBudget {
 public:
  using BlobLister = std::function<std::vector<std::shared_ptr<RemoteBlob>>()>;

  // `limit_bytes` 0: unlimited. `list_blobs` returns every blob with a cache.
  DiskBudget(uint64_t limit_bytes, BlobLister list_blobs, EngineMetrics* metrics);
  DiskBudget(const DiskBudget&) = delete;
  DiskBudget& operator=(const DiskBudget&) = delete;

  uint64_t limit_bytes() const { return limit_bytes_; }
  uint64_t used_bytes() const {
    int64_t used = used_bytes_.load();
    return used > 0 ? static_cast<uint64_t>(used) : 0;
  }

  // Accounts bytes that became cached (positive) or stopped being cached (negative).
  void Add(int64_t bytes);

  // Reserves room for `bytes` more, evicting if needed. True: the caller may cache them
  // and then calls Release(bytes) (after Add). False: no room; cache nothing.
  bool Reserve(uint64_t bytes);
  void Release(uint64_t bytes);

  // Evicts down to the limit if over it (the limit may have shrunk since the last run).
  void EnforceLimit();

 private:
  // Evicts least recently used chunks until used + reserved + `incoming` <= `goal`, or
  // nothing is left to evict. Caller holds evict_mu_.
  void EvictLocked(uint64_t goal, uint64_t incoming);

  const uint64_t limit_bytes_;
  const BlobLister list_blobs_;
  EngineMetrics* const metrics_;
  // Signed: an eviction racing with the fetch that cached a chunk may subtract it a
  // moment before the fetch has added it.
  std::atomic<int64_t> used_bytes_{0};
  std::mutex evict_mu_;
  uint64_t reserved_bytes_ = 0;  // guarded by evict_mu_
};

}  // namespace strata::lazy
