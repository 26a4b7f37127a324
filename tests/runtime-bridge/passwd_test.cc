#include "runtime-bridge/passwd.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "core/fs.h"

namespace strata::runtime {
namespace {

class ResolveUserTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/strata-passwd-XXXXXX";
    root_ = ::mkdtemp(tmpl);
    ASSERT_TRUE(fs::MakeDirs(root_ + "/etc").ok());
    Write("/etc/passwd",
          "root:x:0:0:root:/root:/bin/sh\n"
          "# a comment\n"
          "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
          "app:x:1000:1000::/home/app:/bin/sh\n"
          "broken line\n");
    Write("/etc/group",
          "root:x:0:\n"
          "daemon:x:1:\n"
          "app:x:1000:\n"
          "audio:x:29:app,other\n"
          "video:x:44:other,app\n"
          "staff:x:50:\n");
  }
  void TearDown() override { (void)fs::RemoveAll(root_); }
  void Write(const std::string& path, const std::string& text) {
    std::ofstream(root_ + path) << text;
  }
  std::string root_;
};

TEST_F(ResolveUserTest, EmptyIsRootWithRootsHome) {
  auto u = ResolveUser(root_, "");
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  EXPECT_EQ(u->uid, 0u);
  EXPECT_EQ(u->gid, 0u);
  EXPECT_EQ(u->home, "/root");
}

TEST_F(ResolveUserTest, NameGivesUidGidHomeAndSupplementaryGroups) {
  auto u = ResolveUser(root_, "app");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->uid, 1000u);
  EXPECT_EQ(u->gid, 1000u);
  EXPECT_EQ(u->home, "/home/app");
  EXPECT_EQ(u->additional_gids, (std::vector<uint32_t>{29, 44}));
}

TEST_F(ResolveUserTest, NumericUidUsesItsEntryOrGidZero) {
  EXPECT_EQ(ResolveUser(root_, "1")->gid, 1u);
  auto unknown = ResolveUser(root_, "4242");
  ASSERT_TRUE(unknown.ok());
  EXPECT_EQ(unknown->uid, 4242u);
  EXPECT_EQ(unknown->gid, 0u);
  EXPECT_EQ(unknown->home, "/");
}

TEST_F(ResolveUserTest, ExplicitGroupByNameOrNumber) {
  EXPECT_EQ(ResolveUser(root_, "app:staff")->gid, 50u);
  EXPECT_EQ(ResolveUser(root_, "app:777")->gid, 777u);
  EXPECT_EQ(ResolveUser(root_, "4242:daemon")->gid, 1u);
}

TEST_F(ResolveUserTest, UnknownNamesAreClearErrors) {
  auto u = ResolveUser(root_, "nosuchuser");
  EXPECT_EQ(u.status().code(), Code::kInvalidArgument);
  EXPECT_NE(u.status().message().find("nosuchuser"), std::string::npos);
  auto g = ResolveUser(root_, "app:nosuchgroup");
  EXPECT_EQ(g.status().code(), Code::kInvalidArgument);
  EXPECT_NE(g.status().message().find("nosuchgroup"), std::string::npos);
  EXPECT_FALSE(ResolveUser(root_, "app:").ok());
  EXPECT_FALSE(ResolveUser(root_, ":0").ok());
}

TEST_F(ResolveUserTest, SymlinkedPasswdCannotEscapeTheRoot) {
  // The image points /etc/passwd at the host's: it must resolve inside the rootfs.
  ASSERT_EQ(::unlink((root_ + "/etc/passwd").c_str()), 0);
  ASSERT_EQ(::symlink("/../../../../etc/shadow-of-host", (root_ + "/etc/passwd").c_str()), 0);
  Write("/etc/shadow-of-host", "evil:x:0:0::/evil:/bin/sh\n");
  auto u = ResolveUser(root_, "evil");
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  EXPECT_EQ(u->home, "/evil");  // the rootfs's file, found through the in-root resolution
  // And an absolute link to a host file that does not exist in the rootfs finds nothing.
  ASSERT_EQ(::unlink((root_ + "/etc/passwd").c_str()), 0);
  ASSERT_EQ(::symlink("/etc/hostname", (root_ + "/etc/passwd").c_str()), 0);
  auto fallback = ResolveUser(root_, "0");
  ASSERT_TRUE(fallback.ok()) << fallback.status().ToString();
  EXPECT_EQ(fallback->home, "/");  // no passwd in the image: defaults
  EXPECT_FALSE(ResolveUser(root_, "root").ok());
}

TEST_F(ResolveUserTest, MissingDatabasesMeanNumericIdsOnly) {
  ASSERT_EQ(::unlink((root_ + "/etc/passwd").c_str()), 0);
  ASSERT_EQ(::unlink((root_ + "/etc/group").c_str()), 0);
  EXPECT_EQ(ResolveUser(root_, "5:6")->gid, 6u);
  EXPECT_FALSE(ResolveUser(root_, "app").ok());
}

TEST_F(ResolveUserTest, HugeDatabaseIsRefused) {
  std::string big(5 << 20, 'x');
  Write("/etc/passwd", big);
  EXPECT_EQ(ResolveUser(root_, "root").status().code(), Code::kFailedPrecondition);
}

}  // namespace
}  // namespace strata::runtime
