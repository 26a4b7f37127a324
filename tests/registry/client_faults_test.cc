// registry::Client against docker-registry behind strata-test-fault-proxy: what the
// client does with 5xx, 429 + Retry-After, resets, truncated and stalled bodies,
// registries that ignore Range, storage redirects and corrupt bytes.
#include <gtest/gtest.h>

#include <chrono>
#include <random>

#include "core/digest.h"
#include "registry/client.h"
#include "tests/support/fault_proxy_process.h"
#include "tests/support/local_registry.h"
#include "tests/support/random_bytes.h"

namespace strata::registry {
namespace {

using strata::testing::FaultProxyProcess;
using strata::testing::LocalRegistry;

std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(rng());
  return out;
}

class ClientFaultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto reg = LocalRegistry::Start();
    ASSERT_TRUE(reg.ok()) << reg.status().ToString();
    registry_ = std::move(*reg);
    auto proxy =
        FaultProxyProcess::Start(STRATA_FAULT_PROXY, registry_->address(), registry_->dir());
    ASSERT_TRUE(proxy.ok()) << proxy.status().ToString();
    proxy_ = std::move(*proxy);
    client_ = MakeClient({});

    // One 1 MiB blob in the registry, pushed directly.
    blob_ = RandomBytes(1 << 20, 7);
    desc_.media_type = "application/octet-stream";
    desc_.digest = Sha256Digest(blob_);
    desc_.size = static_cast<int64_t>(blob_.size());
    auto direct = MakeClient({});
    Reference ref = *ParseReference(registry_->address() + "/faults:x");
    ASSERT_TRUE(direct
                    ->PushBlob(ref, desc_,
                               [this](uint64_t off, char* buf, size_t n) -> Result<size_t> {
                                 size_t take = std::min<size_t>(
                                     n, blob_.size() - std::min<size_t>(off, blob_.size()));
                                 std::copy_n(blob_.data() + off, take, buf);
                                 return take;
                               })
                    .ok());
    ref_ = *ParseReference(proxy_->address() + "/faults:x");
  }

  std::unique_ptr<Client> MakeClient(ClientOptions options) {
    options.docker_config = registry_->dir() + "/none.json";
    if (options.initial_backoff == ClientOptions().initial_backoff) {
      options.initial_backoff = std::chrono::milliseconds(10);
    }
    return std::move(Client::Create(options)).value();
  }

  void Rules(const std::string& rules) {
    Status s = proxy_->SetRules(rules);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  Result<std::string> Fetch(Client& client) {
    std::string got;
    Status s = client.FetchBlob(ref_, desc_, 0, [&](const char* p, size_t n) {
      got.append(p, n);
      return Status::Ok();
    });
    if (!s.ok()) return s;
    return got;
  }

  std::unique_ptr<LocalRegistry> registry_;
  std::unique_ptr<FaultProxyProcess> proxy_;
  std::unique_ptr<Client> client_;
  std::string blob_;
  Descriptor desc_;
  Reference ref_;
};

TEST_F(ClientFaultsTest, ServerErrorsAreRetriedUntilTheBlobArrives) {
  Rules("GET /v2/.*/blobs/.* status=500 times=2\n");
  auto got = Fetch(*client_);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, blob_);
  EXPECT_EQ(client_->stats().retries, 2u);
}

TEST_F(ClientFaultsTest, TooManyRequestsWaitsForRetryAfter) {
  Rules("GET /v2/.*/blobs/.* status=429 retry-after=1 times=1\n");
  ClientOptions options;
  options.initial_backoff = std::chrono::milliseconds(1);  // backoff alone would not wait
  auto client = MakeClient(options);
  auto start = std::chrono::steady_clock::now();
  auto got = Fetch(*client);
  auto waited = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, blob_);
  // A lower bound only: the client slept the second Retry-After asked for.
  EXPECT_GE(waited, std::chrono::milliseconds(950));
}

TEST_F(ClientFaultsTest, ResetConnectionIsRetried) {
  Rules("GET /v2/.*/blobs/.* reset times=1\n");
  auto got = Fetch(*client_);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, blob_);
}

TEST_F(ClientFaultsTest, TruncatedBodyResumesWithARangeRequest) {
  Rules("GET /v2/.*/blobs/.* truncate=300000 times=1\n");
  auto got = Fetch(*client_);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, blob_);
  EXPECT_EQ(client_->stats().resumed_downloads, 1u);
  // Only the missing part travelled again.
  EXPECT_LT(client_->stats().blob_bytes, blob_.size() + 310000);
  EXPECT_NE(proxy_->Log().find("-> 206"), std::string::npos) << proxy_->Log();
}

TEST_F(ClientFaultsTest, StalledBodyTimesOutAndResumes) {
  Rules("GET /v2/.*/blobs/.* stall=forever stall-after=200000 times=1\n");
  ClientOptions options;
  options.stall_timeout = std::chrono::milliseconds(1000);
  auto client = MakeClient(options);
  auto got = Fetch(*client);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, blob_);
  EXPECT_EQ(client->stats().resumed_downloads, 1u);
}

TEST_F(ClientFaultsTest, RegistryThatStaysStalledIsDeadlineExceeded) {
  Rules("GET /v2/.*/blobs/.* stall=forever stall-after=1000\n");
  ClientOptions options;
  options.stall_timeout = std::chrono::milliseconds(1000);
  options.max_attempts = 2;
  auto client = MakeClient(options);
  auto got = Fetch(*client);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), Code::kDeadlineExceeded) << got.status().ToString();
  EXPECT_NE(got.status().message().find("repository faults"), std::string::npos)
      << got.status().message();
}

TEST_F(ClientFaultsTest, PersistentFailureNamesStatusRegistryAndAttempts) {
  Rules("GET /v2/.*/blobs/.* status=503\n");
  ClientOptions options;
  options.max_attempts = 3;
  auto client = MakeClient(options);
  auto got = Fetch(*client);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), Code::kUnavailable);
  const std::string& m = got.status().message();
  EXPECT_NE(m.find("HTTP 503 Service Unavailable"), std::string::npos) << m;
  EXPECT_NE(m.find("registry " + proxy_->address()), std::string::npos) << m;
  EXPECT_NE(m.find("after 3 attempts"), std::string::npos) << m;
}

TEST_F(ClientFaultsTest, CorruptBytesAreDataLoss) {
  Rules("GET /v2/.*/blobs/.* corrupt\n");
  auto got = client_->FetchBlobBytes(ref_, desc_, 4 << 20);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), Code::kDataLoss) << got.status().ToString();
}

TEST_F(ClientFaultsTest, RangeReadsWorkWhenTheRegistryIgnoresRange) {
  Rules("GET /v2/.*/blobs/.* ignore-range\n");
  auto one = client_->ReadRange(ref_, desc_.digest, {5000, 1000});
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  EXPECT_EQ(*one, blob_.substr(5000, 1000));
  std::vector<ByteRange> ranges = {{700000, 10}, {3, 3}, {1048000, 576}};
  auto many = client_->ReadRanges(ref_, desc_.digest, ranges);
  ASSERT_TRUE(many.ok()) << many.status().ToString();
  for (size_t i = 0; i < ranges.size(); i++) {
    EXPECT_EQ((*many)[i], blob_.substr(ranges[i].offset, ranges[i].length)) << i;
  }
  // A second multi-range read goes straight to single ranges for this registry.
  auto again = client_->ReadRanges(ref_, desc_.digest, ranges);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)[2], blob_.substr(1048000, 576));
}

TEST_F(ClientFaultsTest, RedirectToBlobStorageIsFollowed) {
  Rules("GET /v2/.*/blobs/.* redirect\n");
  auto whole = client_->FetchBlobBytes(ref_, desc_, 4 << 20);
  ASSERT_TRUE(whole.ok()) << whole.status().ToString();
  EXPECT_EQ(*whole, blob_);
  auto range = client_->ReadRange(ref_, desc_.digest, {123456, 789});
  ASSERT_TRUE(range.ok()) << range.status().ToString();
  EXPECT_EQ(*range, blob_.substr(123456, 789));
  EXPECT_NE(proxy_->Log().find("backend"), std::string::npos);
}

}  // namespace
}  // namespace strata::registry
