// lazy::FuseMetrics — latency of the FUSE operations served for lazy layers, as a
// Prometheus histogram in the engine's registry:
//
//   strata_fuse_operation_duration_seconds{op}   time from a request's arrival to its
//                                                 reply, by operation ("lookup",
//                                                 "getattr", "read", "readdirplus", ...;
//                                                 "other" for the rest)
//
// observer() is the fuse::OpObserver to put in fuse::MountOptions of every lazy mount.
// Thread-safe; must outlive the mounts it observes.
#pragma once

#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <string_view>

#include "fuse/server.h"

namespace strata::lazy {

class FuseMetrics {
 public:
  explicit FuseMetrics(prometheus::Registry& registry);
  FuseMetrics(const FuseMetrics&) = delete;
  FuseMetrics& operator=(const FuseMetrics&) = delete;

  void Observe(std::string_view op, std::chrono::nanoseconds elapsed);
  fuse::OpObserver observer();

  // The operations with a series of their own ("other" is last).
  static constexpr std::array<std::string_view, 15> kOps = {
      "lookup",  "forget",  "getattr",  "readlink", "access",   "statfs",    "open",  "read",
      "release", "opendir", "readdir", "readdirplus", "getxattr", "listxattr", "other"};

 private:
  std::array<prometheus::Histogram*, kOps.size()> by_op_{};
};

}  // namespace strata::lazy
