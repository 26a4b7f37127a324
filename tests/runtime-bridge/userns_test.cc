// User namespaces and remapped root filesystems, with real overlay and idmapped
// mounts (the tests run as root).
#include "runtime-bridge/userns.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <fstream>

#include "core/fs.h"
#include "core/mount.h"

namespace strata::runtime {
namespace {

TEST(IdMap, ParsesAndFormats) {
  auto m = ParseIdMap("0:100000:65536");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(*m, (IdMap{0, 100000, 65536}));
  EXPECT_EQ(FormatIdMap(*m), "0:100000:65536");
  EXPECT_FALSE(ParseIdMap("0:100000").ok());
  EXPECT_FALSE(ParseIdMap("0:100000:0").ok());
  EXPECT_FALSE(ParseIdMap("a:1:2").ok());
  EXPECT_FALSE(ParseIdMap("0:4294967295:2").ok());
  EXPECT_FALSE(ParseIdMap("0:1:2:3").ok());
  EXPECT_FALSE(ParseIdMap("-1:1:2").ok());
}

TEST(UsernsRequest, HostAutoOrExplicit) {
  EXPECT_EQ(ParseUsernsRequest("")->mode, UsernsRequest::Mode::kHost);
  EXPECT_EQ(ParseUsernsRequest("host")->mode, UsernsRequest::Mode::kHost);
  EXPECT_EQ(ParseUsernsRequest("auto")->mode, UsernsRequest::Mode::kAuto);
  auto e = ParseUsernsRequest("0:200000:1000");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->mode, UsernsRequest::Mode::kExplicit);
  EXPECT_EQ(e->map.host_id, 200000u);
  EXPECT_EQ(ParseUsernsRequest("private").status().code(), Code::kInvalidArgument);
}

TEST(RemapMethod, NamesRoundTrip) {
  for (auto m : {RemapMethod::kIdmapped, RemapMethod::kMetacopyChown, RemapMethod::kChown}) {
    EXPECT_EQ(*ParseRemapMethod(RemapMethodName(m)), m);
  }
  EXPECT_FALSE(ParseRemapMethod("copy").ok());
}

// An overlay snapshot as the snapshotter lays it out: two lower layers, an empty upper.
class RemapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/strata-userns-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    for (const char* d : {"/lower1", "/lower2/etc", "/upper", "/work", "/merged", "/scratch"}) {
      ASSERT_TRUE(fs::MakeDirs(dir_ + d, 0755).ok());
    }
    Write("/lower1/root-file", "owned by root\n", 0, 0, 0644);
    Write("/lower1/user-file", "owned by 1000\n", 1000, 1000, 0644);
    Write("/lower1/outside", "owned by 70000\n", 70000, 70000, 0644);
    Write("/lower1/big", std::string(1 << 20, 'b'), 0, 0, 0644);
    Write("/lower2/etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0, 0, 0644);
    Write("/lower2/setuid", "#!/bin/sh\n", 0, 0, 04755);
    mount_.type = "overlay";
    mount_.source = "overlay";
    mount_.options = {"index=off", "workdir=" + dir_ + "/work", "upperdir=" + dir_ + "/upper",
                      "lowerdir=" + dir_ + "/lower2:" + dir_ + "/lower1"};
    options_.uids = IdMap{0, 100000, 65536};
    options_.gids = IdMap{0, 100000, 65536};
    options_.scratch_dir = dir_ + "/scratch";
  }
  void TearDown() override {
    (void)Unmount(dir_ + "/merged", true);
    (void)fs::RemoveAll(dir_);
  }
  void Write(const std::string& path, const std::string& text, uid_t uid, gid_t gid, mode_t mode) {
    std::ofstream(dir_ + path) << text;
    ASSERT_EQ(::lchown((dir_ + path).c_str(), uid, gid), 0);
    ASSERT_EQ(::chmod((dir_ + path).c_str(), mode), 0);
  }
  struct stat Stat(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(::lstat((dir_ + path).c_str(), &st), 0) << path;
    return st;
  }
  void ExpectRemappedView() {
    EXPECT_EQ(Stat("/merged/root-file").st_uid, 100000u);
    EXPECT_EQ(Stat("/merged/root-file").st_gid, 100000u);
    EXPECT_EQ(Stat("/merged/user-file").st_uid, 101000u);
    EXPECT_EQ(Stat("/merged/etc/passwd").st_uid, 100000u);
    EXPECT_EQ(Stat("/merged").st_uid, 100000u) << "the container's / belongs to its root";
    EXPECT_EQ(Stat("/merged/setuid").st_mode & 07777, 04755u) << "set-user-ID bit kept";
    auto text = fs::ReadFile(dir_ + "/merged/user-file");
    ASSERT_TRUE(text.ok());
    EXPECT_EQ(*text, "owned by 1000\n");
  }
  std::string dir_;
  Mount mount_;
  RemapOptions options_;
};

TEST_F(RemapTest, IdmappedLayersShowShiftedOwnersWithoutChangingAFile) {
  options_.force = RemapMethod::kIdmapped;
  auto method = MountRemapped({mount_}, dir_ + "/merged", options_);
  ASSERT_TRUE(method.ok()) << method.status().ToString();
  EXPECT_EQ(*method, RemapMethod::kIdmapped);
  ExpectRemappedView();
  // Outside the mapping: the overflow id.
  EXPECT_EQ(Stat("/merged/outside").st_uid, 65534u);
  // Nothing on disk changed and nothing was copied up.
  EXPECT_EQ(Stat("/lower1/root-file").st_uid, 0u);
  EXPECT_EQ(Stat("/lower1/user-file").st_uid, 1000u);
  auto upper = fs::ListDir(dir_ + "/upper");
  ASSERT_TRUE(upper.ok());
  EXPECT_TRUE(upper->empty());
  // The layer clones are detached once the overlay holds them.
  auto scratch = fs::ListDir(dir_ + "/scratch");
  ASSERT_TRUE(scratch.ok());
  EXPECT_TRUE(scratch->empty());
}

TEST_F(RemapTest, MetacopyChownCopiesUpOnlyMetadata) {
  options_.force = RemapMethod::kMetacopyChown;
  auto method = MountRemapped({mount_}, dir_ + "/merged", options_);
  ASSERT_TRUE(method.ok()) << method.status().ToString();
  ExpectRemappedView();
  EXPECT_EQ(Stat("/merged/outside").st_uid, 70000u) << "ids outside the mapping are left alone";
  EXPECT_EQ(Stat("/lower1/root-file").st_uid, 0u);
  // The upper holds metadata-only copies: no data blocks, a metacopy xattr.
  struct stat up = Stat("/upper/user-file");
  EXPECT_EQ(up.st_uid, 101000u);
  struct stat big = Stat("/upper/big");
  EXPECT_EQ(big.st_size, 1 << 20);
  EXPECT_LE(big.st_blocks, 8) << "1 MiB of data was copied up";
  EXPECT_GE(
      ::lgetxattr((dir_ + "/upper/user-file").c_str(), "trusted.overlay.metacopy", nullptr, 0), 0);
}

TEST_F(RemapTest, PlainChownCopiesUpData) {
  options_.force = RemapMethod::kChown;
  auto method = MountRemapped({mount_}, dir_ + "/merged", options_);
  ASSERT_TRUE(method.ok()) << method.status().ToString();
  ExpectRemappedView();
  auto copied = fs::ReadFile(dir_ + "/upper/user-file");
  ASSERT_TRUE(copied.ok());
  EXPECT_EQ(*copied, "owned by 1000\n");
  EXPECT_GE(Stat("/upper/big").st_blocks, 2048) << "plain chown copies the data up";
}

TEST_F(RemapTest, BestMethodHereIsIdmapped) {
  auto method = MountRemapped({mount_}, dir_ + "/merged", options_);
  ASSERT_TRUE(method.ok()) << method.status().ToString();
  EXPECT_EQ(*method, RemapMethod::kIdmapped);
}

TEST_F(RemapTest, FailureLeavesNothingMounted) {
  mount_.options.back() = "lowerdir=" + dir_ + "/missing";
  auto method = MountRemapped({mount_}, dir_ + "/merged", options_);
  EXPECT_FALSE(method.ok());
  EXPECT_FALSE(IsMountPoint(dir_ + "/merged"));
  auto scratch = fs::ListDir(dir_ + "/scratch");
  ASSERT_TRUE(scratch.ok());
  EXPECT_TRUE(scratch->empty());
}

TEST_F(RemapTest, MoreThanOneMountIsRefused) {
  EXPECT_EQ(MountRemapped({mount_, mount_}, dir_ + "/merged", options_).status().code(),
            Code::kInvalidArgument);
}

TEST(ShiftOwnership, CountsChangedEntriesAndKeepsSetIdBits) {
  char tmpl[] = "/tmp/strata-shift-XXXXXX";
  std::string dir = ::mkdtemp(tmpl);
  std::ofstream(dir + "/a") << "a";
  std::ofstream(dir + "/b") << "b";
  ASSERT_EQ(::chown((dir + "/b").c_str(), 5, 6), 0);
  ASSERT_EQ(::chmod((dir + "/b").c_str(), 06755), 0);
  ASSERT_EQ(::symlink("a", (dir + "/link").c_str()), 0);
  auto n = ShiftOwnership(dir, IdMap{0, 300000, 65536}, IdMap{0, 400000, 65536});
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 4u);  // dir, a, b, link
  struct stat st;
  ASSERT_EQ(::lstat((dir + "/b").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 300005u);
  EXPECT_EQ(st.st_gid, 400006u);
  EXPECT_EQ(st.st_mode & 07777, 06755u);
  ASSERT_EQ(::lstat((dir + "/link").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 300000u);
  (void)fs::RemoveAll(dir);
}

}  // namespace
}  // namespace strata::runtime
