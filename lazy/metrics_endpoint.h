// lazy::MetricsEndpoint — serves a prometheus::Registry over HTTP at /metrics in the
// Prometheus text format (prometheus-cpp's pull Exposer, an embedded civetweb server),
// for stratad to expose the lazy engine's metrics (Engine::metrics_registry()).
//
// Thread safety: Start may be called from any thread; the server runs its own threads
// until the endpoint is destroyed.
#pragma once

#include <memory>
#include <string>

#include "core/status.h"

namespace prometheus {
class Exposer;
class Registry;
}  // namespace prometheus

namespace strata::lazy {

class MetricsEndpoint {
 public:
  // Listens on `address` ("127.0.0.1:9100", "[::1]:0", port 0 picks a free port) and
  // serves `registry` at /metrics. Unavailable when the address cannot be bound.
  static Result<std::unique_ptr<MetricsEndpoint>> Start(
      const std::string& address, std::shared_ptr<prometheus::Registry> registry);
  // Stops the server.
  ~MetricsEndpoint();
  MetricsEndpoint(const MetricsEndpoint&) = delete;
  MetricsEndpoint& operator=(const MetricsEndpoint&) = delete;

  // The port bound (useful with port 0).
  int port() const { return port_; }

 private:
  MetricsEndpoint() = default;
  std::shared_ptr<prometheus::Registry> registry_;  // kept alive while served
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
};

}  // namespace strata::lazy
