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

TEST_F(ConfigTest, NumbersAreNotBooleansNorBooleansNumbers) {
  DaemonConfig c;
  Status s = Load("background_cleanup = 0\n", c);
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_TRUE(c.background_cleanup);
  s = Load("[registry]\nmax_attempts = true\n", c);
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_EQ(c.registry_max_attempts, DaemonConfig().registry_max_attempts);
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

TEST_F(ConfigTest, LazyDefaultsAreDocumentedValues) {
  DaemonConfig c;
  EXPECT_TRUE(c.lazy_enabled);
  EXPECT_EQ(c.lazy_cache_dir, "");
  EXPECT_EQ(c.lazy_chunk_size, 1u << 20);
  EXPECT_EQ(c.lazy_max_connections, 8);
  EXPECT_EQ(c.lazy_read_deadline_ms, 30000);
  EXPECT_EQ(c.lazy_memory_cache_bytes, 64u << 20);
  EXPECT_EQ(c.lazy_disk_cache_limit_bytes, 0u);
  EXPECT_TRUE(c.lazy_prefetch);
  EXPECT_TRUE(c.lazy_background_fetch);
  EXPECT_EQ(c.lazy_metrics_address, "");
}

TEST_F(ConfigTest, LazySectionSetsEveryKey) {
  DaemonConfig c;
  Status s = Load(R"(
[lazy]
enabled = false
cache_dir = "/var/cache/strata"
chunk_size = "4MiB"
max_connections = 32
read_deadline = "1m30s"
memory_cache = "512KiB"
disk_cache_limit = "20GiB"
prefetch = false
background_fetch = false
metrics_address = "127.0.0.1:9100"
)",
                  c);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_FALSE(c.lazy_enabled);
  EXPECT_EQ(c.lazy_cache_dir, "/var/cache/strata");
  EXPECT_EQ(c.lazy_chunk_size, 4u << 20);
  EXPECT_EQ(c.lazy_max_connections, 32);
  EXPECT_EQ(c.lazy_read_deadline_ms, 90000);
  EXPECT_EQ(c.lazy_memory_cache_bytes, 512u << 10);
  EXPECT_EQ(c.lazy_disk_cache_limit_bytes, 20ull << 30);
  EXPECT_FALSE(c.lazy_prefetch);
  EXPECT_FALSE(c.lazy_background_fetch);
  EXPECT_EQ(c.lazy_metrics_address, "127.0.0.1:9100");
}

TEST_F(ConfigTest, LazySizesMayBeIntegerBytes) {
  DaemonConfig c;
  Status s = Load("[lazy]\nchunk_size = 65536\nmemory_cache = 0\ndisk_cache_limit = 1000000\n", c);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(c.lazy_chunk_size, 65536u);
  EXPECT_EQ(c.lazy_memory_cache_bytes, 0u);
  EXPECT_EQ(c.lazy_disk_cache_limit_bytes, 1000000u);
}

TEST_F(ConfigTest, LazySizesMayUseDecimalUnits) {
  DaemonConfig c;
  Status s = Load("[lazy]\nmemory_cache = \"100MB\"\ndisk_cache_limit = \"1GB\"\n", c);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(c.lazy_memory_cache_bytes, 100000000u);
  EXPECT_EQ(c.lazy_disk_cache_limit_bytes, 1000000000u);
}

TEST_F(ConfigTest, BadLazyValueIsInvalidArgumentNamingTheKeyAndIsNotApplied) {
  struct Case {
    const char* line;
    const char* key;
  };
  const Case cases[] = {
      {"enabled = \"yes\"", "lazy.enabled"},
      {"enabled = 1", "lazy.enabled"},
      {"cache_dir = 5", "lazy.cache_dir"},
      {"chunk_size = \"1.5MiB\"", "lazy.chunk_size"},
      {"chunk_size = \"big\"", "lazy.chunk_size"},
      {"chunk_size = -1", "lazy.chunk_size"},
      {"chunk_size = true", "lazy.chunk_size"},
      {"chunk_size = 65536.0", "lazy.chunk_size"},
      {"max_connections = 0", "lazy.max_connections"},
      {"max_connections = 257", "lazy.max_connections"},
      {"max_connections = \"8\"", "lazy.max_connections"},
      {"max_connections = true", "lazy.max_connections"},
      {"max_connections = 8.0", "lazy.max_connections"},
      {"read_deadline = \"soon\"", "lazy.read_deadline"},
      {"read_deadline = 30", "lazy.read_deadline"},
      {"memory_cache = \"MiB\"", "lazy.memory_cache"},
      {"memory_cache = \"-64MiB\"", "lazy.memory_cache"},
      {"disk_cache_limit = \"20GiBs\"", "lazy.disk_cache_limit"},
      {"disk_cache_limit = \"\"", "lazy.disk_cache_limit"},
      {"prefetch = \"no\"", "lazy.prefetch"},
      {"background_fetch = \"no\"", "lazy.background_fetch"},
      {"metrics_address = 9100", "lazy.metrics_address"},
  };
  for (const Case& bad : cases) {
    DaemonConfig c;
    Status s = Load(std::string("[lazy]\n") + bad.line + "\n", c);
    ASSERT_TRUE(s.IsInvalidArgument()) << bad.line << ": " << s.ToString();
    EXPECT_NE(s.message().find(bad.key), std::string::npos) << bad.line << ": " << s.message();
    EXPECT_NE(s.message().find(path_), std::string::npos) << bad.line << ": " << s.message();
    DaemonConfig defaults;
    EXPECT_EQ(c.lazy_enabled, defaults.lazy_enabled) << bad.line;
    EXPECT_EQ(c.lazy_cache_dir, defaults.lazy_cache_dir) << bad.line;
    EXPECT_EQ(c.lazy_chunk_size, defaults.lazy_chunk_size) << bad.line;
    EXPECT_EQ(c.lazy_max_connections, defaults.lazy_max_connections) << bad.line;
    EXPECT_EQ(c.lazy_read_deadline_ms, defaults.lazy_read_deadline_ms) << bad.line;
    EXPECT_EQ(c.lazy_memory_cache_bytes, defaults.lazy_memory_cache_bytes) << bad.line;
    EXPECT_EQ(c.lazy_disk_cache_limit_bytes, defaults.lazy_disk_cache_limit_bytes) << bad.line;
    EXPECT_EQ(c.lazy_prefetch, defaults.lazy_prefetch) << bad.line;
    EXPECT_EQ(c.lazy_background_fetch, defaults.lazy_background_fetch) << bad.line;
    EXPECT_EQ(c.lazy_metrics_address, defaults.lazy_metrics_address) << bad.line;
  }
}

TEST_F(ConfigTest, UnknownLazyKeyIsInvalidArgumentNamingIt) {
  DaemonConfig c;
  Status s = Load("[lazy]\nenabled = true\nx = 1\n", c);
  ASSERT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_NE(s.message().find("lazy.x"), std::string::npos) << s.message();
}

TEST_F(ConfigTest, LazyMustBeATable) {
  DaemonConfig c;
  Status s = Load("lazy = true\n", c);
  ASSERT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_NE(s.message().find("lazy"), std::string::npos) << s.message();
}

TEST(ParseByteSizeTest, PlainNumbersAreBytes) {
  EXPECT_EQ(*ParseByteSize("0"), 0u);
  EXPECT_EQ(*ParseByteSize("4096"), 4096u);
  EXPECT_EQ(*ParseByteSize("4096B"), 4096u);
}

TEST(ParseByteSizeTest, BinaryUnitsArePowersOf1024) {
  EXPECT_EQ(*ParseByteSize("512K"), 512u << 10);
  EXPECT_EQ(*ParseByteSize("512KiB"), 512u << 10);
  EXPECT_EQ(*ParseByteSize("64M"), 64u << 20);
  EXPECT_EQ(*ParseByteSize("64MiB"), 64u << 20);
  EXPECT_EQ(*ParseByteSize("2G"), 2ull << 30);
  EXPECT_EQ(*ParseByteSize("2GiB"), 2ull << 30);
  EXPECT_EQ(*ParseByteSize("3T"), 3ull << 40);
  EXPECT_EQ(*ParseByteSize("3TiB"), 3ull << 40);
}

TEST(ParseByteSizeTest, DecimalUnitsArePowersOf1000) {
  EXPECT_EQ(*ParseByteSize("5KB"), 5000u);
  EXPECT_EQ(*ParseByteSize("5MB"), 5000000u);
  EXPECT_EQ(*ParseByteSize("1GB"), 1000000000u);
  EXPECT_EQ(*ParseByteSize("2TB"), 2000000000000u);
}

TEST(ParseByteSizeTest, LargestSizeThatFitsIn64BitsIsAccepted) {
  EXPECT_EQ(*ParseByteSize("17179869183GiB"), ((1ull << 34) - 1) << 30);
}

TEST(ParseByteSizeTest, SizesBeyond64BitsAreInvalidArgument) {
  EXPECT_TRUE(ParseByteSize("17179869184GiB").status().IsInvalidArgument());  // 2^64
  EXPECT_TRUE(ParseByteSize("99999999999999999999").status().IsInvalidArgument());
}

TEST(ParseByteSizeTest, MalformedSizesAreInvalidArgument) {
  for (const char* bad :
       {"", "MiB", "-1", "+1", "1.5GiB", "1e6", "64XiB", "64MiBs", "0x100", "1,000"}) {
    Result<uint64_t> size = ParseByteSize(bad);
    EXPECT_TRUE(size.status().IsInvalidArgument()) << "\"" << bad << "\"";
  }
}

}  // namespace
}  // namespace strata
