#include "lazy/engine_metrics.h"

namespace strata::lazy {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

prometheus::Counter& Counter(prometheus::Registry& registry, const std::string& name,
                             const std::string& help, const prometheus::Labels& labels = {}) {
  return BuildCounter().Name(name).Help(help).Register(registry).Add(labels);
}

prometheus::Gauge& Gauge(prometheus::Registry& registry, const std::string& name,
                         const std::string& help) {
  return BuildGauge().Name(name).Help(help).Register(registry).Add({});
}

}  // namespace

EngineMetrics::EngineMetrics(prometheus::Registry& registry)
    : in_flight_fetches(Gauge(registry, "strata_lazy_in_flight_fetches",
                              "Registry fetches of the lazy engine running now")),
      memory_hits(Counter(registry, "strata_lazy_cache_hits_total",
                          "Chunk reads served from a cache tier", {{"tier", "memory"}})),
      disk_hits(Counter(registry, "strata_lazy_cache_hits_total",
                        "Chunk reads served from a cache tier", {{"tier", "disk"}})),
      misses(Counter(registry, "strata_lazy_cache_misses_total",
                     "Chunk reads that waited for a registry fetch")),
      deadline_exceeded(Counter(registry, "strata_lazy_read_deadline_exceeded_total",
                                "Reads that gave up after the read deadline")),
      evicted_bytes(Counter(registry, "strata_lazy_evicted_bytes_total",
                            "Bytes evicted from the disk chunk cache")),
      cached_bytes(
          Gauge(registry, "strata_lazy_cached_bytes", "Bytes in the disk chunk cache, all blobs")),
      memory_cache_bytes(
          Gauge(registry, "strata_lazy_memory_cache_bytes", "Bytes in the memory chunk cache")),
      blob_size_bytes(BuildGauge()
                          .Name("strata_lazy_blob_size_bytes")
                          .Help("Size of each open lazy blob")
                          .Register(registry)),
      blob_cached_bytes(BuildGauge()
                            .Name("strata_lazy_blob_cached_bytes")
                            .Help("Bytes of each open lazy blob in the disk cache")
                            .Register(registry)) {
  auto& requests = BuildCounter()
                       .Name("strata_lazy_fetch_requests_total")
                       .Help("Registry fetches started by the lazy engine")
                       .Register(registry);
  auto& errors = BuildCounter()
                     .Name("strata_lazy_fetch_errors_total")
                     .Help("Registry fetches of the lazy engine that failed")
                     .Register(registry);
  auto& bytes = BuildCounter()
                    .Name("strata_lazy_fetched_bytes_total")
                    .Help("Payload bytes the lazy engine fetched from registries")
                    .Register(registry);
  auto& duration = BuildHistogram()
                       .Name("strata_lazy_fetch_duration_seconds")
                       .Help("Latency of the lazy engine's registry fetches")
                       .Register(registry);
  const prometheus::Histogram::BucketBoundaries buckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                           0.5,   1,    2.5,   5,    10,  30};
  for (int p = 0; p < kPriorityCount; p++) {
    prometheus::Labels labels = {{"priority", PriorityName(static_cast<Priority>(p))}};
    fetch_requests_[p] = &requests.Add(labels);
    fetch_errors_[p] = &errors.Add(labels);
    fetched_bytes_[p] = &bytes.Add(labels);
    fetch_duration_[p] = &duration.Add(labels, buckets);
  }
}

double EngineMetrics::TotalFetchRequests() const {
  double sum = 0;
  for (auto* c : fetch_requests_) sum += c->Value();
  return sum;
}

double EngineMetrics::TotalFetchErrors() const {
  double sum = 0;
  for (auto* c : fetch_errors_) sum += c->Value();
  return sum;
}

double EngineMetrics::TotalFetchedBytes() const {
  double sum = 0;
  for (auto* c : fetched_bytes_) sum += c->Value();
  return sum;
}

}  // namespace strata::lazy
