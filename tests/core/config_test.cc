// Specification of stratad's configuration file (core/config.h).
#include "core/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

namespace strata {
namespace {

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/strata-config-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/strata.toml";
  }
  void TearDown() override {
    std::string cmd = "rm -rf '" + dir_ + "'";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  }

  Status Load(const std::string& text, DaemonConfig& config) {
    std::ofstream(path_) << text;
    return LoadConfigFile(path_, config);
  }

  std::string dir_;
  std::string path_;
};

TEST_F(ConfigTest, DefaultsAreDocumentedValues) {
  DaemonConfig c;
  EXPECT_EQ(c.root, "/var/lib/strata");
  EXPECT_EQ(c.address, "/run/strata/strata.sock");
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.socket_mode, 0600u);
  EXPECT_EQ(c.socket_group, "");
  EXPECT_TRUE(c.background_cleanup);
}

TEST_F(ConfigTest, ValidFileSetsEveryKey) {
  DaemonConfig c;
  Status s = Load(R"(
# a comment
root = "/srv/strata"
address = "/run/s.sock"
log_level = "debug"
socket_mode = "0660"
socket_group = "docker"
background_cleanup = false
)",
                  c);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(c.root, "/srv/strata");
  EXPECT_EQ(c.address, "/run/s.sock");
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.socket_mode, 0660u);
  EXPECT_EQ(c.socket_group, "docker");
  EXPECT_FALSE(c.background_cleanup);
}

TEST_F(ConfigTest, KeysAbsentFromFileKeepTheirValues) {
  DaemonConfig c;
  c.address = "/from/flags.sock";
  ASSERT_TRUE(Load("root = \"/x\"\n", c).ok());
  EXPECT_EQ(c.root, "/x");
  EXPECT_EQ(c.address, "/from/flags.sock");
  EXPECT_EQ(c.socket_mode, 0600u);
}

TEST_F(ConfigTest, EmptyFileChangesNothing) {
  DaemonConfig c;
  ASSERT_TRUE(Load("", c).ok());
  EXPECT_EQ(c.root, DaemonConfig().root);
}

TEST_F(ConfigTest, UnknownKeyIsInvalidArgumentNamingKeyAndFile) {
  DaemonConfig c;
  Status s = Load("root = \"/x\"\nroot_dir = \"/y\"\n", c);
  ASSERT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_NE(s.message().find("root_dir"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find(path_), std::string::npos) << s.message();
}

TEST_F(ConfigTest, UnknownTableIsInvalidArgumentNamingIt) {
  DaemonConfig c;
  Status s = Load("[plugins]\nx = 1\n", c);
  ASSERT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_NE(s.message().find("plugins"), std::string::npos) << s.message();
}

TEST_F(ConfigTest, WrongTypeIsInvalidArgumentNamingKey) {
  DaemonConfig c;
  Status s = Load("root = 5\n", c);
  ASSERT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_NE(s.message().find("\"root\""), std::string::npos) << s.message();

  s = Load("background_cleanup = \"yes\"\n", c);
  ASSERT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_NE(s.message().find("background_cleanup"), std::string::npos) << s.message();
}

TEST_F(ConfigTest, SocketModeMustBeAString) {
  DaemonConfig c;
  Status s = Load("socket_mode = 660\n", c);
  ASSERT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_NE(s.message().find("socket_mode"), std::string::npos) << s.message();
  EXPECT_EQ(c.socket_mode, 0600u);
}

TEST_F(ConfigTest, BadSocketModeIsInvalidArgumentNamingFile) {
  for (const char* bad : {"0999", "rw-r-----", "", "077777", "-0600"}) {
    DaemonConfig c;
    Status s = Load(std::string("socket_mode = \"") + bad + "\"\n", c);
    ASSERT_TRUE(s.IsInvalidArgument()) << bad << ": " << s.ToString();
    EXPECT_NE(s.message().find(path_), std::string::npos) << s.message();
    EXPECT_EQ(c.socket_mode, 0600u) << "a bad value must not be applied";
  }
}

TEST_F(ConfigTest, SyntaxErrorIsInvalidArgumentNamingFileAndLine) {
  DaemonConfig c;
  Status s = Load("root = \"/x\"\naddress = \n", c);
  ASSERT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_NE(s.message().find(path_ + ":2"), std::string::npos) << s.message();
}

TEST_F(ConfigTest, MissingFileIsAnErrorNamingIt) {
  DaemonConfig c;
  Status s = LoadConfigFile(dir_ + "/missing.toml", c);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("missing.toml"), std::string::npos) << s.message();
}

TEST(ParseOctalModeTest, AcceptsOctalStrings) {
  EXPECT_EQ(*ParseOctalMode("0600"), 0600u);
  EXPECT_EQ(*ParseOctalMode("660"), 0660u);
  EXPECT_EQ(*ParseOctalMode("0"), 0u);
  EXPECT_EQ(*ParseOctalMode("04755"), 04755u);
  EXPECT_EQ(*ParseOctalMode("7777"), 07777u);
}

TEST(ParseOctalModeTest, RejectsMalformedModes) {
  for (const char* bad : {"", "8", "0x1ff", "06 00", "-1", "077777", "abc", "0o600"}) {
    EXPECT_TRUE(ParseOctalMode(bad).status().IsInvalidArgument()) << "\"" << bad << "\"";
  }
}

TEST_F(ConfigTest, TransferSectionsSetRegistryPullAndVerifierKeys) {
  DaemonConfig c;
  Status s = Load(R"(
[registry]
config_path = "/etc/containerd/certs.d"
docker_config = "/root/.docker/config.json"
max_attempts = 7

[transfer]
snapshotter = "mine"
max_concurrent_downloads = 6

[image_verifier]
bin_dir = "/opt/verifiers"
max_verifiers = 3
per_verifier_timeout = "1m30s"
)",
                  c);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(c.registry_config_path, "/etc/containerd/certs.d");
  EXPECT_EQ(c.registry_docker_config, "/root/.docker/config.json");
  EXPECT_EQ(c.registry_max_attempts, 7);
  EXPECT_EQ(c.transfer_snapshotter, "mine");
  EXPECT_EQ(c.transfer_max_concurrent_downloads, 6);
  EXPECT_EQ(c.verifier_bin_dir, "/opt/verifiers");
  EXPECT_EQ(c.verifier_max_verifiers, 3);
  EXPECT_EQ(c.verifier_timeout_ms, 90000);
}

TEST_F(ConfigTest, SectionErrorsNameTheSectionAndKey) {
  DaemonConfig c;
  Status unknown = Load("[transfer]\nspeed = 3\n", c);
  EXPECT_TRUE(unknown.IsInvalidArgument());
  EXPECT_NE(unknown.message().find("transfer.speed"), std::string::npos) << unknown.message();
  Status range = Load("[transfer]\nmax_concurrent_downloads = 0\n", c);
  EXPECT_TRUE(range.IsInvalidArgument());
  EXPECT_NE(range.message().find("transfer.max_concurrent_downloads"), std::string::npos);
  Status duration = Load("[image_verifier]\nper_verifier_timeout = \"soon\"\n", c);
  EXPECT_TRUE(duration.IsInvalidArgument());
  EXPECT_NE(duration.message().find("per_verifier_timeout"), std::string::npos);
}

TEST(DurationTest, ParsesUnitsAndRejectsGarbage) {
  EXPECT_EQ(*ParseDurationMs("500ms"), 500);
  EXPECT_EQ(*ParseDurationMs("10s"), 10000);
  EXPECT_EQ(*ParseDurationMs("2m"), 120000);
  EXPECT_EQ(*ParseDurationMs("1h1s"), 3601000);
  for (const char* bad : {"", "10", "s", "1d", "-1s", "1.5s"}) {
    EXPECT_FALSE(ParseDurationMs(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace strata
