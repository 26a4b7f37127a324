#include "lazy/metrics_endpoint.h"

#include <prometheus/exposer.h>
#include <prometheus/registry.h>

#include <exception>

namespace strata::lazy {

Result<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(
    const std::string& address, std::shared_ptr<prometheus::Registry> registry) {
  if (!registry) return Status::InvalidArgument("metrics endpoint: no registry");
  std::unique_ptr<MetricsEndpoint> endpoint(new MetricsEndpoint());
  try {
    // One server thread: a scrape every few seconds needs no more.
    endpoint->exposer_ = std::make_unique<prometheus::Exposer>(address, 1);
  } catch (const std::exception& e) {
    return Status::Unavailable("metrics endpoint on " + address + ": " + e.what());
  }
  std::vector<int> ports = endpoint->exposer_->GetListeningPorts();
  if (ports.empty()) return Status::Unavailable("metrics endpoint on " + address + ": no port");
  endpoint->port_ = ports.front();
  endpoint->registry_ = std::move(registry);
  endpoint->exposer_->RegisterCollectable(endpoint->registry_);
  return endpoint;
}

MetricsEndpoint::~MetricsEndpoint() = default;

}  // namespace strata::lazy
