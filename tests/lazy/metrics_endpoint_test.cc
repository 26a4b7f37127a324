// lazy::MetricsEndpoint: a prometheus::Registry scraped over HTTP with the registry
// client's HttpClient.
#include "lazy/metrics_endpoint.h"

#include <gtest/gtest.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include "registry/http.h"

namespace strata::lazy {
namespace {

TEST(MetricsEndpointTest, ServesTheRegistryAtMetrics) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto& counter = prometheus::BuildCounter()
                      .Name("strata_lazy_test_total")
                      .Help("a test counter")
                      .Register(*registry)
                      .Add({{"kind", "scrape"}});
  counter.Increment(42);
  auto endpoint = MetricsEndpoint::Start("127.0.0.1:0", registry);
  ASSERT_TRUE(endpoint.ok()) << endpoint.status().ToString();
  ASSERT_GT((*endpoint)->port(), 0);

  registry::HttpClient http("strata-test");
  registry::HttpRequest request;
  request.url = "http://127.0.0.1:" + std::to_string((*endpoint)->port()) + "/metrics";
  request.total_timeout = std::chrono::milliseconds(10000);
  auto response = http.Do(request);
  ASSERT_TRUE(response.ok()) << response.status().ToString();
  EXPECT_EQ(response->status, 200);
  EXPECT_NE(response->body.find("strata_lazy_test_total{kind=\"scrape\"} 42"), std::string::npos)
      << response->body;
}

TEST(MetricsEndpointTest, AddressInUseIsUnavailable) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto first = MetricsEndpoint::Start("127.0.0.1:0", registry);
  ASSERT_TRUE(first.ok());
  auto second = MetricsEndpoint::Start("127.0.0.1:" + std::to_string((*first)->port()), registry);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::kUnavailable);
}

}  // namespace
}  // namespace strata::lazy
