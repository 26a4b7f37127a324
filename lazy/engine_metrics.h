// lazy::EngineMetrics — the lazy engine's Prometheus metrics, registered in one
// prometheus::Registry. Names (all prefixed strata_lazy_):
//
//   fetch_requests_total{priority}     fetches started (one ranged or multi-range request)
//   fetch_errors_total{priority}       fetches the registry client gave up on
//   fetched_bytes_total{priority}      payload bytes received
//   fetch_duration_seconds{priority}   histogram of fetch latency
//   in_flight_fetches                  fetches running now
//   cache_hits_total{tier}             chunk reads served by tier "memory" or "disk"
//   cache_misses_total                 chunk reads that waited for a fetch
//   read_deadline_exceeded_total       reads that gave up after read_deadline
//   evicted_bytes_total                bytes evicted from the disk cache
//   cached_bytes                       bytes in the disk cache, all blobs
//   memory_cache_bytes                 bytes in the memory cache
//   blob_size_bytes{digest}            size of each open blob
//   blob_cached_bytes{digest}          its bytes in the disk cache (prefetch progress:
//                                      blob_cached_bytes / blob_size_bytes)
//
// priority is "on_demand", "prefetch" or "background". prometheus-cpp metrics are
// thread-safe.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "lazy/fetch_scheduler.h"

namespace strata::lazy {

struct EngineMetrics {
  explicit EngineMetrics(prometheus::Registry& registry);

  prometheus::Counter& fetch_requests(Priority p) { return *fetch_requests_[Index(p)]; }
  prometheus::Counter& fetch_errors(Priority p) { return *fetch_errors_[Index(p)]; }
  prometheus::Counter& fetched_bytes(Priority p) { return *fetched_bytes_[Index(p)]; }
  prometheus::Histogram& fetch_duration(Priority p) { return *fetch_duration_[Index(p)]; }

  // Sums over the priorities (for EngineStats).
  double TotalFetchRequests() const;
  double TotalFetchErrors() const;
  double TotalFetchedBytes() const;

  prometheus::Gauge& in_flight_fetches;
  prometheus::Counter& memory_hits;
  prometheus::Counter& disk_hits;
  prometheus::Counter& misses;
  prometheus::Counter& deadline_exceeded;
  prometheus::Counter& evicted_bytes;
  prometheus::Gauge& cached_bytes;
  prometheus::Gauge& memory_cache_bytes;
  prometheus::Family<prometheus::Gauge>& blob_size_bytes;
  prometheus::Family<prometheus::Gauge>& blob_cached_bytes;

 private:
  static int Index(Priority p) { return static_cast<int>(p); }
  prometheus::Counter* fetch_requests_[kPriorityCount];
  prometheus::Counter* fetch_errors_[kPriorityCount];
  prometheus::Counter* fetched_bytes_[kPriorityCount];
  prometheus::Histogram* fetch_duration_[kPriorityCount];
};

}  // namespace strata::lazy
