#include "registry/credentials.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <string>

#include "core/fs.h"

namespace strata::registry {
namespace {

class CredentialsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/strata-creds-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    old_path_ = std::getenv("PATH");
    // Fake credential helpers live in dir_/bin, first on PATH.
    ASSERT_TRUE(fs::MakeDirs(dir_ + "/bin").ok());
    ::setenv("PATH", (dir_ + "/bin:" + old_path_).c_str(), 1);
  }
  void TearDown() override {
    ::setenv("PATH", old_path_.c_str(), 1);
    ASSERT_TRUE(fs::RemoveAll(dir_).ok());
  }

  std::string Config(const std::string& json) {
    std::string path = dir_ + "/config.json";
    EXPECT_TRUE(fs::WriteFileAtomic(path, json).ok());
    return path;
  }

  // A docker-credential-<name> that records its stdin and prints `script`'s output.
  void Helper(const std::string& name, const std::string& body) {
    std::string path = dir_ + "/bin/docker-credential-" + name;
    ASSERT_TRUE(fs::WriteFileAtomic(
                    path, "#!/bin/sh\ncat > " + dir_ + "/" + name + ".stdin\n" + body + "\n")
                    .ok());
    ASSERT_EQ(::chmod(path.c_str(), 0755), 0);
  }

  std::string dir_;
  std::string old_path_;
};

TEST_F(CredentialsTest, MissingConfigMeansNoCredentials) {
  auto c = LookupCredentials("docker.io", dir_ + "/absent.json");
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->has_value());
}

TEST_F(CredentialsTest, AuthFieldIsBase64UserColonPassword) {
  // "alice:s3cr:et" -> the password keeps its colon.
  auto path =
      Config(R"({"auths": {"registry.example.com:5000": {"auth": "YWxpY2U6czNjcjpldA=="}}})");
  auto c = LookupCredentials("registry.example.com:5000", path);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_TRUE(c->has_value());
  EXPECT_EQ((*c)->username, "alice");
  EXPECT_EQ((*c)->secret, "s3cr:et");
}

TEST_F(CredentialsTest, DockerHubMatchesTheIndexUrlKey) {
  auto path = Config(
      R"({"auths": {"https://index.docker.io/v1/": {"username": "bob", "password": "pw"}}})");
  auto c = LookupCredentials("docker.io", path);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c->has_value());
  EXPECT_EQ((*c)->username, "bob");
  auto other = LookupCredentials("quay.io", path);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->has_value());
}

TEST_F(CredentialsTest, KeysWithSchemeAndPathMatchTheHost) {
  auto path =
      Config(R"({"auths": {"https://reg.example.com/some/path": {"identitytoken": "tok"}}})");
  auto c = LookupCredentials("reg.example.com", path);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c->has_value());
  EXPECT_TRUE((*c)->identity_token);
  EXPECT_EQ((*c)->secret, "tok");
}

TEST_F(CredentialsTest, CredHelperForTheHostIsRunWithTheServerOnStdin) {
  Helper("fake", R"(echo '{"ServerURL":"x","Username":"carol","Secret":"from-helper"}')");
  auto path = Config(R"({"credHelpers": {"reg.example.com": "fake"},
                         "auths": {"reg.example.com": {"auth": "eDp5"}}})");
  auto c = LookupCredentials("reg.example.com", path);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_TRUE(c->has_value());
  EXPECT_EQ((*c)->username, "carol");
  EXPECT_EQ((*c)->secret, "from-helper");
  EXPECT_EQ(*fs::ReadFile(dir_ + "/fake.stdin"), "reg.example.com");
}

TEST_F(CredentialsTest, CredsStoreServesDockerHubWithTheIndexUrlAndTokens) {
  Helper("store", R"(echo '{"Username":"<token>","Secret":"refresh"}')");
  auto path = Config(R"({"credsStore": "store", "auths": {"https://index.docker.io/v1/": {}}})");
  auto c = LookupCredentials("docker.io", path);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_TRUE(c->has_value());
  EXPECT_TRUE((*c)->identity_token);
  EXPECT_EQ((*c)->secret, "refresh");
  EXPECT_EQ(*fs::ReadFile(dir_ + "/store.stdin"), "https://index.docker.io/v1/");
}

TEST_F(CredentialsTest, HelperNotFoundAnswerMeansNoCredentials) {
  Helper("empty", "echo 'credentials not found in native keychain'; exit 1");
  auto path = Config(R"({"credsStore": "empty"})");
  auto c = LookupCredentials("reg.example.com", path);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_FALSE(c->has_value());
}

TEST_F(CredentialsTest, FailingOrMissingHelperIsUnavailableNamingIt) {
  Helper("broken", "echo 'keychain locked' >&2; exit 2");
  auto c = LookupCredentials("reg.example.com", Config(R"({"credsStore": "broken"})"));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Code::kUnavailable);
  EXPECT_NE(c.status().message().find("docker-credential-broken"), std::string::npos);
  EXPECT_NE(c.status().message().find("keychain locked"), std::string::npos);
  auto missing = LookupCredentials("reg.example.com", Config(R"({"credsStore": "nope"})"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("docker-credential-nope"), std::string::npos);
}

TEST_F(CredentialsTest, MalformedConfigIsInvalidArgumentWithoutSecrets) {
  auto c = LookupCredentials("x.io", Config("{not json"));
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(c.status().IsInvalidArgument());
  auto bad64 = LookupCredentials("x.io", Config(R"({"auths": {"x.io": {"auth": "%%%%"}}})"));
  ASSERT_FALSE(bad64.ok());
  EXPECT_TRUE(bad64.status().IsInvalidArgument());
  // "bm9jb2xvbg==" is "nocolon": the message must not echo the decoded secret.
  auto nocolon =
      LookupCredentials("x.io", Config(R"({"auths": {"x.io": {"auth": "bm9jb2xvbg=="}}})"));
  ASSERT_FALSE(nocolon.ok());
  EXPECT_EQ(nocolon.status().message().find("nocolon"), std::string::npos);
}

TEST_F(CredentialsTest, DefaultConfigPathHonoursDockerConfig) {
  const char* old = std::getenv("DOCKER_CONFIG");
  std::string saved = old ? old : "";
  ::setenv("DOCKER_CONFIG", "/etc/dockercfg", 1);
  EXPECT_EQ(DefaultDockerConfigPath(), "/etc/dockercfg/config.json");
  if (old) {
    ::setenv("DOCKER_CONFIG", saved.c_str(), 1);
  } else {
    ::unsetenv("DOCKER_CONFIG");
  }
}

}  // namespace
}  // namespace strata::registry
