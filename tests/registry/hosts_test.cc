#include "registry/hosts.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>

#include "core/fs.h"

namespace strata::registry {
namespace {

class HostsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/strata-hosts-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { ASSERT_TRUE(fs::RemoveAll(dir_).ok()); }

  void WriteHosts(const std::string& subdir, const std::string& text) {
    ASSERT_TRUE(fs::MakeDirs(dir_ + "/" + subdir).ok());
    ASSERT_TRUE(fs::WriteFileAtomic(dir_ + "/" + subdir + "/hosts.toml", text).ok());
  }

  std::string dir_;
};

TEST_F(HostsTest, DockerHubDefaultsToRegistryOne) {
  auto e = ResolveEndpoints("docker.io", "");
  ASSERT_TRUE(e.ok());
  ASSERT_EQ(e->size(), 1u);
  EXPECT_EQ((*e)[0].BaseUrl(), "https://registry-1.docker.io/v2");
  EXPECT_EQ((*e)[0].capabilities, kCapabilityPull | kCapabilityResolve | kCapabilityPush);
}

TEST_F(HostsTest, LoopbackRegistriesDefaultToPlainHttp) {
  for (const char* host : {"localhost:5000", "127.0.0.1:5000", "[::1]:5000", "localhost"}) {
    auto e = ResolveEndpoints(host, dir_);
    ASSERT_TRUE(e.ok());
    EXPECT_EQ((*e)[0].scheme, "http") << host;
    EXPECT_TRUE((*e)[0].skip_verify) << host;
  }
  auto e = ResolveEndpoints("registry.example.com", dir_);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ((*e)[0].BaseUrl(), "https://registry.example.com/v2");
}

TEST_F(HostsTest, MirrorsComeFirstInFileOrderThenTheServer) {
  WriteHosts("docker.io", R"(
server = "https://registry-1.docker.io"

[host."https://zz-mirror.example.com"]
  capabilities = ["pull", "resolve"]

[host."https://aa-mirror.example.com/base"]
  capabilities = ["pull"]
  skip_verify = true
  ca = "ca.crt"
  client = [["client.cert", "/abs/client.key"], "single.pem"]
  [host."https://aa-mirror.example.com/base".header]
    x-one = "1"
    x-many = ["a", "b"]
)");
  auto e = ResolveEndpoints("docker.io", dir_);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  ASSERT_EQ(e->size(), 3u);
  EXPECT_EQ((*e)[0].BaseUrl(), "https://zz-mirror.example.com/v2");
  EXPECT_EQ((*e)[0].capabilities, kCapabilityPull | kCapabilityResolve);
  const RegistryEndpoint& m = (*e)[1];
  EXPECT_EQ(m.BaseUrl(), "https://aa-mirror.example.com/base/v2");
  EXPECT_EQ(m.capabilities, kCapabilityPull);
  EXPECT_TRUE(m.skip_verify);
  ASSERT_EQ(m.ca_files.size(), 1u);
  EXPECT_EQ(m.ca_files[0], dir_ + "/docker.io/ca.crt");
  ASSERT_EQ(m.client_certs.size(), 2u);
  EXPECT_EQ(m.client_certs[0].first, dir_ + "/docker.io/client.cert");
  EXPECT_EQ(m.client_certs[0].second, "/abs/client.key");
  EXPECT_EQ(m.client_certs[1].second, "");
  EXPECT_EQ(m.headers.at("x-one"), std::vector<std::string>{"1"});
  EXPECT_EQ(m.headers.at("x-many"), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ((*e)[2].BaseUrl(), "https://registry-1.docker.io/v2");
}

TEST_F(HostsTest, PortsBecomeUnderscoresInDirectoryNames) {
  WriteHosts("localhost_5000_", R"(
[host."http://127.0.0.1:6000"]
  override_path = true
)");
  auto e = ResolveEndpoints("localhost:5000", dir_);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  ASSERT_EQ(e->size(), 2u);
  EXPECT_EQ((*e)[0].BaseUrl(), "http://127.0.0.1:6000");  // override_path: no /v2
  EXPECT_EQ((*e)[1].BaseUrl(), "http://localhost:5000/v2");
}

TEST_F(HostsTest, DefaultDirectoryAppliesToUnlistedHosts) {
  WriteHosts("_default", "[host.\"https://proxy.internal\"]\n");
  auto e = ResolveEndpoints("quay.io", dir_);
  ASSERT_TRUE(e.ok());
  ASSERT_EQ(e->size(), 2u);
  EXPECT_EQ((*e)[0].host, "proxy.internal");
  EXPECT_EQ((*e)[1].host, "quay.io");
}

TEST_F(HostsTest, DockerStyleCertificateFilesWithoutHostsToml) {
  ASSERT_TRUE(fs::MakeDirs(dir_ + "/reg.example.com").ok());
  for (const char* f : {"ca.crt", "client.cert", "client.key", "lonely.cert"}) {
    ASSERT_TRUE(fs::WriteFileAtomic(dir_ + "/reg.example.com/" + f, "x").ok());
  }
  auto e = ResolveEndpoints("reg.example.com", dir_);
  ASSERT_TRUE(e.ok());
  ASSERT_EQ(e->size(), 1u);
  EXPECT_EQ((*e)[0].ca_files, std::vector<std::string>{dir_ + "/reg.example.com/ca.crt"});
  ASSERT_EQ((*e)[0].client_certs.size(), 1u);  // lonely.cert has no key
  EXPECT_EQ((*e)[0].client_certs[0].second, dir_ + "/reg.example.com/client.key");
}

TEST_F(HostsTest, MalformedFilesAreInvalidArgumentNamingTheFile) {
  const char* bad[] = {
      "server = [",                                                // syntax
      "[host.\"https://m\"]\ncapabilities = [\"fly\"]\n",          // unknown capability
      "[host.\"https://m\"]\nca = 3\n",                            // wrong type
      "[host.\"https://m\"]\nclient = [[\"a\", \"b\", \"c\"]]\n",  // triple
      "[host.\"ftp://m\"]\n",                                      // scheme
      "host = 1\n",                                                // host not a table
  };
  for (const char* text : bad) {
    auto e = ParseHostsToml("example.com", dir_, text);
    ASSERT_FALSE(e.ok()) << text;
    EXPECT_TRUE(e.status().IsInvalidArgument()) << text;
    EXPECT_NE(e.status().message().find(dir_ + "/hosts.toml"), std::string::npos) << text;
  }
}

TEST_F(HostsTest, LoopbackDetection) {
  EXPECT_TRUE(IsLoopbackHost("localhost"));
  EXPECT_TRUE(IsLoopbackHost("127.0.0.1:5000"));
  EXPECT_TRUE(IsLoopbackHost("127.1.2.3"));
  EXPECT_TRUE(IsLoopbackHost("[::1]:5000"));
  EXPECT_FALSE(IsLoopbackHost("127.example.com"));
  EXPECT_FALSE(IsLoopbackHost("localhost.example.com"));
  EXPECT_FALSE(IsLoopbackHost("10.0.0.1:5000"));
}

}  // namespace
}  // namespace strata::registry
