#include "lazy/fuse_metrics.h"

namespace strata::lazy {

FuseMetrics::FuseMetrics(prometheus::Registry& registry) {
  auto& family = prometheus::BuildHistogram()
                     .Name("strata_fuse_operation_duration_seconds")
                     .Help("Time from a FUSE request's arrival to its reply, for lazy layers")
                     .Register(registry);
  // 10 us to ~10 s: cached metadata answers in microseconds, a read that waits for the
  // registry in milliseconds to seconds.
  prometheus::Histogram::BucketBoundaries buckets;
  for (double b = 10e-6; b < 20; b *= 4) buckets.push_back(b);
  for (size_t i = 0; i < kOps.size(); i++) {
    by_op_[i] = &family.Add({{"op", std::string(kOps[i])}}, buckets);
  }
}

void FuseMetrics::Observe(std::string_view op, std::chrono::nanoseconds elapsed) {
  size_t i = 0;
  while (i + 1 < kOps.size() && kOps[i] != op) i++;
  by_op_[i]->Observe(std::chrono::duration<double>(elapsed).count());
}

fuse::OpObserver FuseMetrics::observer() {
  return [this](std::string_view op, std::chrono::nanoseconds elapsed) { Observe(op, elapsed); };
}

}  // namespace strata::lazy
