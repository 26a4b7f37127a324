// registry::Client against Debian's docker-registry on loopback: push, resolve, fetch,
// ranged reads, auth, and the errors users see.
#include "registry/client.h"

#include <gtest/gtest.h>

#include <random>

#include "core/digest.h"
#include "tests/support/local_registry.h"
#include "tests/support/random_bytes.h"

namespace strata::registry {
namespace {

using strata::testing::LocalRegistry;

std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(rng());
  return out;
}

Descriptor BlobDescriptor(const std::string& data,
                          const std::string& media_type = "application/octet-stream") {
  Descriptor d;
  d.media_type = media_type;
  d.digest = Sha256Digest(data);
  d.size = static_cast<int64_t>(data.size());
  return d;
}

BlobReader ReaderOf(const std::string& data) {
  return [&data](uint64_t off, char* buf, size_t n) -> Result<size_t> {
    if (off >= data.size()) return size_t{0};
    size_t take = std::min<size_t>(n, data.size() - off);
    std::copy_n(data.data() + off, take, buf);
    return take;
  };
}

Reference Ref(const std::string& text) {
  auto r = ParseReference(text);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return *r;
}

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto reg = LocalRegistry::Start();
    ASSERT_TRUE(reg.ok()) << reg.status().ToString();
    registry_ = std::move(*reg);
    ClientOptions options;
    options.docker_config = registry_->dir() + "/no-such-config.json";
    options.initial_backoff = std::chrono::milliseconds(10);
    auto c = Client::Create(options);
    ASSERT_TRUE(c.ok());
    client_ = std::move(*c);
  }

  // Pushes a one-layer image under `tag` and returns its manifest descriptor.
  Descriptor PushImage(const std::string& repo_tag, const std::string& layer,
                       std::string* manifest_out = nullptr) {
    Reference ref = Ref(registry_->address() + "/" + repo_tag);
    std::string config =
        R"({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[")" +
        Sha256Digest(layer) + R"("]}})";
    Descriptor cd = BlobDescriptor(config, kMediaTypeOciConfig);
    Descriptor ld = BlobDescriptor(layer, "application/vnd.oci.image.layer.v1.tar");
    EXPECT_TRUE(client_->PushBlob(ref, cd, ReaderOf(config)).ok());
    EXPECT_TRUE(client_->PushBlob(ref, ld, ReaderOf(layer)).ok());
    std::string manifest = std::string(R"({"schemaVersion":2,"mediaType":")") +
                           kMediaTypeOciManifest + R"(","config":)" + DescriptorJson(cd) +
                           R"(,"layers":[)" + DescriptorJson(ld) + "]}";
    auto pushed = client_->PushManifest(ref, kMediaTypeOciManifest, manifest);
    EXPECT_TRUE(pushed.ok()) << pushed.status().ToString();
    if (manifest_out) *manifest_out = manifest;
    return BlobDescriptor(manifest, kMediaTypeOciManifest);
  }

  std::unique_ptr<LocalRegistry> registry_;
  std::unique_ptr<Client> client_;
};

TEST_F(ClientTest, PushedImageResolvesToItsManifestDescriptor) {
  std::string manifest;
  Descriptor pushed = PushImage("app:v1", "layer-bytes", &manifest);
  auto got = client_->Resolve(Ref(registry_->address() + "/app:v1"));
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->digest, pushed.digest);
  EXPECT_EQ(got->size, pushed.size);
  EXPECT_EQ(got->media_type, kMediaTypeOciManifest);

  auto body = client_->FetchManifest(Ref(registry_->address() + "/app:v1"), *got);
  ASSERT_TRUE(body.ok()) << body.status().ToString();
  EXPECT_EQ(*body, manifest);
  auto parsed = ParseManifest(*body);
  ASSERT_TRUE(parsed.ok());
  ASSERT_EQ(parsed->layers.size(), 1u);
  EXPECT_EQ(parsed->layers[0].digest, Sha256Digest("layer-bytes"));
}

TEST_F(ClientTest, ResolveByDigestKeepsTheDigest) {
  Descriptor pushed = PushImage("app:v1", "x");
  auto got = client_->Resolve(Ref(registry_->address() + "/app@" + pushed.digest));
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->digest, pushed.digest);
}

TEST_F(ClientTest, UnknownTagIsNotFoundNamingRegistryAndRepository) {
  PushImage("app:v1", "x");
  auto got = client_->Resolve(Ref(registry_->address() + "/app:nope"));
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), Code::kNotFound) << got.status().ToString();
  EXPECT_NE(got.status().message().find("HTTP 404"), std::string::npos);
  EXPECT_NE(got.status().message().find("repository app"), std::string::npos);
  EXPECT_NE(got.status().message().find(registry_->address()), std::string::npos);
}

TEST_F(ClientTest, WholeBlobStreamsExactBytes) {
  std::string data = RandomBytes(5 << 20, 1);
  Reference ref = Ref(registry_->address() + "/blobs:x");
  Descriptor d = BlobDescriptor(data);
  ASSERT_TRUE(client_->PushBlob(ref, d, ReaderOf(data)).ok());
  std::string got;
  ASSERT_TRUE(client_
                  ->FetchBlob(ref, d, 0,
                              [&](const char* p, size_t n) {
                                got.append(p, n);
                                return Status::Ok();
                              })
                  .ok());
  EXPECT_EQ(got, data);
}

TEST_F(ClientTest, BlobFetchFromAnOffsetReturnsTheTail) {
  std::string data = RandomBytes(300000, 2);
  Reference ref = Ref(registry_->address() + "/blobs:x");
  Descriptor d = BlobDescriptor(data);
  ASSERT_TRUE(client_->PushBlob(ref, d, ReaderOf(data)).ok());
  std::string got;
  ASSERT_TRUE(client_
                  ->FetchBlob(ref, d, 123456,
                              [&](const char* p, size_t n) {
                                got.append(p, n);
                                return Status::Ok();
                              })
                  .ok());
  EXPECT_EQ(got, data.substr(123456));
}

TEST_F(ClientTest, ChunkedUploadStoresTheSameBlob) {
  std::string data = RandomBytes(1 << 20, 3);
  Reference ref = Ref(registry_->address() + "/chunked:x");
  Descriptor d = BlobDescriptor(data);
  PushBlobOptions options;
  options.chunk_size = 256 << 10;
  ASSERT_TRUE(client_->PushBlob(ref, d, ReaderOf(data), options).ok());
  auto got = client_->FetchBlobBytes(ref, d, 4 << 20);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, data);
}

TEST_F(ClientTest, CrossRepositoryMountMakesTheBlobAvailable) {
  std::string data = RandomBytes(100000, 4);
  Descriptor d = BlobDescriptor(data);
  ASSERT_TRUE(client_->PushBlob(Ref(registry_->address() + "/a:x"), d, ReaderOf(data)).ok());
  Reference b = Ref(registry_->address() + "/b:x");
  ASSERT_FALSE(*client_->HasBlob(b, d.digest));
  PushBlobOptions options;
  options.mount_from = "a";
  // A reader that fails proves the bytes were mounted, not uploaded.
  BlobReader refuse = [](uint64_t, char*, size_t) -> Result<size_t> {
    return Status::Internal("must not upload");
  };
  ASSERT_TRUE(client_->PushBlob(b, d, refuse, options).ok());
  EXPECT_TRUE(*client_->HasBlob(b, d.digest));
}

TEST_F(ClientTest, BlobThatDoesNotMatchItsDigestIsDataLoss) {
  std::string data = "real bytes";
  Reference ref = Ref(registry_->address() + "/r:x");
  Descriptor d = BlobDescriptor(data);
  ASSERT_TRUE(client_->PushBlob(ref, d, ReaderOf(data)).ok());
  // Ask for it claiming another digest's content: the registry serves by digest, so
  // fake the mismatch by fetching a manifest descriptor with a wrong size.
  Descriptor wrong = d;
  wrong.size = 3;
  auto got = client_->FetchBlobBytes(ref, wrong, 100);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), Code::kDataLoss) << got.status().ToString();
}

TEST_F(ClientTest, SingleRangeReadsExactBytes) {
  std::string data = RandomBytes(200000, 5);
  Reference ref = Ref(registry_->address() + "/r:x");
  Descriptor d = BlobDescriptor(data);
  ASSERT_TRUE(client_->PushBlob(ref, d, ReaderOf(data)).ok());
  auto got = client_->ReadRange(ref, d.digest, {1000, 5000});
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, data.substr(1000, 5000));
  auto tail = client_->ReadRange(ref, d.digest, {199990, 100});
  ASSERT_TRUE(tail.ok()) << tail.status().ToString();
  EXPECT_EQ(*tail, data.substr(199990));
}

TEST_F(ClientTest, MultiRangeReadReturnsEveryRangeInRequestOrder) {
  std::string data = RandomBytes(500000, 6);
  Reference ref = Ref(registry_->address() + "/r:x");
  Descriptor d = BlobDescriptor(data);
  ASSERT_TRUE(client_->PushBlob(ref, d, ReaderOf(data)).ok());
  std::vector<ByteRange> ranges = {{400000, 10}, {0, 100}, {250000, 4096}, {499000, 1000}};
  uint64_t before = client_->stats().requests;
  auto got = client_->ReadRanges(ref, d.digest, ranges);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_EQ(got->size(), ranges.size());
  for (size_t i = 0; i < ranges.size(); i++) {
    EXPECT_EQ((*got)[i], data.substr(ranges[i].offset, ranges[i].length)) << "range " << i;
  }
  // docker-registry serves multipart/byteranges: one request for all four.
  EXPECT_EQ(client_->stats().requests - before, 1u);
}

TEST_F(ClientTest, PlatformIsSelectedFromAnIndex) {
  Descriptor amd = PushImage("multi:amd64", "amd64-layer");
  Descriptor arm = PushImage("multi:arm64", "arm64-layer");
  amd.platform = Platform{"linux", "amd64", "", ""};
  arm.platform = Platform{"linux", "arm64", "v8", ""};
  std::string index = std::string(R"({"schemaVersion":2,"mediaType":")") + kMediaTypeOciIndex +
                      R"(","manifests":[)" + DescriptorJson(amd) + "," + DescriptorJson(arm) + "]}";
  Reference ref = Ref(registry_->address() + "/multi:latest");
  ASSERT_TRUE(client_->PushManifest(ref, kMediaTypeOciIndex, index).ok());
  auto resolved = client_->Resolve(ref);
  ASSERT_TRUE(resolved.ok()) << resolved.status().ToString();
  EXPECT_EQ(resolved->media_type, kMediaTypeOciIndex);
  auto body = client_->FetchManifest(ref, *resolved);
  ASSERT_TRUE(body.ok());
  auto parsed = ParseIndex(*body);
  ASSERT_TRUE(parsed.ok());
  auto chosen = SelectPlatform(*parsed, *ParsePlatform("linux/arm64"));
  ASSERT_TRUE(chosen.ok());
  EXPECT_EQ(chosen->digest, arm.digest);
  auto missing = SelectPlatform(*parsed, *ParsePlatform("linux/s390x"));
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  EXPECT_NE(missing.status().message().find("linux/arm64/v8"), std::string::npos);
}

TEST(ClientConnectionTest, UnreachableRegistryIsUnavailableAfterRetries) {
  auto port = strata::testing::FreeLoopbackPort();
  ASSERT_TRUE(port.ok());
  ClientOptions options;
  options.docker_config = "/nonexistent/config.json";
  options.max_attempts = 3;
  options.initial_backoff = std::chrono::milliseconds(5);
  auto client = Client::Create(options);
  ASSERT_TRUE(client.ok());
  auto got = (*client)->Resolve(Ref("127.0.0.1:" + std::to_string(*port) + "/x:y"));
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), Code::kUnavailable) << got.status().ToString();
  EXPECT_NE(got.status().message().find("after 3 attempts"), std::string::npos)
      << got.status().message();
  EXPECT_EQ((*client)->stats().requests, 3u);
}

class BasicAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto reg = LocalRegistry::Start({.htpasswd_user = "alice", .htpasswd_password = "s3cret"});
    ASSERT_TRUE(reg.ok()) << reg.status().ToString();
    registry_ = std::move(*reg);
  }
  std::unique_ptr<Client> ClientWith(const std::string& password) {
    ClientOptions options;
    options.initial_backoff = std::chrono::milliseconds(5);
    if (password.empty()) {
      options.docker_config = registry_->dir() + "/none.json";
    } else {
      auto path = strata::testing::WriteDockerConfig(registry_->dir() + "/cfg-" + password,
                                                     registry_->address(), "alice", password);
      EXPECT_TRUE(path.ok());
      options.docker_config = *path;
    }
    auto client = Client::Create(options);
    EXPECT_TRUE(client.ok());
    return std::move(client).value();
  }
  std::unique_ptr<LocalRegistry> registry_;
};

TEST_F(BasicAuthTest, RightPasswordPushesAndPulls) {
  auto client = ClientWith("s3cret");
  Reference ref = Ref(registry_->address() + "/private:x");
  std::string data = "secret layer";
  Descriptor d = BlobDescriptor(data);
  ASSERT_TRUE(client->PushBlob(ref, d, ReaderOf(data)).ok());
  auto got = client->FetchBlobBytes(ref, d, 1024);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, data);
}

TEST_F(BasicAuthTest, WrongPasswordIsUnauthenticatedWithoutLeakingIt) {
  auto client = ClientWith("wrong-pass");
  auto got = client->HasBlob(Ref(registry_->address() + "/private:x"), Sha256Digest("x"));
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), Code::kUnauthenticated) << got.status().ToString();
  EXPECT_EQ(got.status().message().find("wrong-pass"), std::string::npos);
}

TEST_F(BasicAuthTest, NoCredentialsIsUnauthenticated) {
  auto client = ClientWith("");
  auto got = client->Resolve(Ref(registry_->address() + "/private:x"));
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), Code::kUnauthenticated) << got.status().ToString();
}

}  // namespace
}  // namespace strata::registry
