// Specification of the small filesystem helpers in core/fs.h.
#include "core/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace strata::fs {
namespace {

class FsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/strata-fs-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }

  void TearDown() override {
    for (const auto& m : mounts_) ::umount2(m.c_str(), MNT_DETACH);
    std::string cmd = "rm -rf '" + dir_ + "'";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  }

  std::string Path(const std::string& rel) const { return dir_ + "/" + rel; }

  void Write(const std::string& path, const std::string& data) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0) << path;
    ASSERT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
    ASSERT_EQ(::fsync(fd), 0);  // so that blocks are allocated before UsageOf looks
    ::close(fd);
  }

  std::vector<std::string> List(const std::string& path) {
    std::vector<std::string> names;
    DIR* d = ::opendir(path.c_str());
    if (d == nullptr) return names;
    while (struct dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    ::closedir(d);
    return names;
  }

  mode_t ModeOf(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
    return st.st_mode & 07777;
  }

  std::string dir_;
  std::vector<std::string> mounts_;
};

TEST_F(FsTest, MakeDirsCreatesMissingParents) {
  ASSERT_TRUE(MakeDirs(Path("a/b/c"), 0700).ok());
  EXPECT_TRUE(Exists(Path("a/b/c")));
  EXPECT_EQ(ModeOf(Path("a/b/c")) & 0700, 0700u);
}

TEST_F(FsTest, MakeDirsOnExistingDirectoryIsOk) {
  ASSERT_TRUE(MakeDirs(Path("a"), 0755).ok());
  EXPECT_TRUE(MakeDirs(Path("a"), 0755).ok());
}

TEST_F(FsTest, MakeDirsOverFileIsAlreadyExists) {
  Write(Path("file"), "x");
  EXPECT_TRUE(MakeDirs(Path("file"), 0755).IsAlreadyExists());
}

TEST_F(FsTest, MakeDirSetsExactModeRegardlessOfUmask) {
  mode_t old = ::umask(077);
  Status s = MakeDir(Path("d"), 0755);
  ::umask(old);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(ModeOf(Path("d")), 0755u);
}

TEST_F(FsTest, MakeDirOnExistingPathIsAlreadyExists) {
  ASSERT_TRUE(MakeDir(Path("d"), 0700).ok());
  EXPECT_TRUE(MakeDir(Path("d"), 0700).IsAlreadyExists());
}

TEST_F(FsTest, RemoveAllRemovesNestedTree) {
  ASSERT_TRUE(MakeDirs(Path("t/a/b"), 0755).ok());
  Write(Path("t/a/b/f"), "data");
  Write(Path("t/top"), "data");
  ASSERT_EQ(::symlink("a/b/f", Path("t/link").c_str()), 0);
  ASSERT_EQ(::chmod(Path("t/a").c_str(), 0500), 0);  // read-only dir: root still removes
  Status s = RemoveAll(Path("t"));
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_FALSE(Exists(Path("t")));
}

TEST_F(FsTest, RemoveAllOfMissingPathIsOk) { EXPECT_TRUE(RemoveAll(Path("does-not-exist")).ok()); }

TEST_F(FsTest, RemoveAllDoesNotFollowSymlinkedDirectories) {
  ASSERT_TRUE(MakeDirs(Path("outside"), 0755).ok());
  Write(Path("outside/precious"), "keep me");
  ASSERT_TRUE(MakeDirs(Path("victim"), 0755).ok());
  ASSERT_EQ(::symlink(Path("outside").c_str(), Path("victim/dirlink").c_str()), 0);
  ASSERT_EQ(::symlink(Path("outside/precious").c_str(), Path("victim/filelink").c_str()), 0);

  ASSERT_TRUE(RemoveAll(Path("victim")).ok());

  EXPECT_FALSE(Exists(Path("victim")));
  EXPECT_TRUE(Exists(Path("outside/precious")));
  EXPECT_EQ(*ReadFile(Path("outside/precious")), "keep me");
}

TEST_F(FsTest, RemoveAllOfSymlinkRemovesOnlyTheLink) {
  ASSERT_TRUE(MakeDirs(Path("target"), 0755).ok());
  Write(Path("target/f"), "x");
  ASSERT_EQ(::symlink(Path("target").c_str(), Path("link").c_str()), 0);
  ASSERT_TRUE(RemoveAll(Path("link")).ok());
  EXPECT_FALSE(Exists(Path("link")));
  EXPECT_TRUE(Exists(Path("target/f")));
}

TEST_F(FsTest, RemoveAllRefusesToCrossMountPoints) {
  ASSERT_TRUE(MakeDirs(Path("t/mnt"), 0755).ok());
  ASSERT_EQ(::mount("tmpfs", Path("t/mnt").c_str(), "tmpfs", 0, "size=1m"), 0)
      << std::strerror(errno);
  mounts_.push_back(Path("t/mnt"));
  Write(Path("t/mnt/inside"), "x");

  EXPECT_FALSE(RemoveAll(Path("t")).ok());
  EXPECT_TRUE(Exists(Path("t/mnt/inside")));
}

TEST_F(FsTest, UsageOfCountsHardlinkedFileOnce) {
  ASSERT_TRUE(MakeDirs(Path("u"), 0755).ok());
  Write(Path("u/big"), std::string(256 * 1024, 'x'));
  auto before = UsageOf(Path("u"));
  ASSERT_TRUE(before.ok()) << before.status().ToString();

  ASSERT_EQ(::link(Path("u/big").c_str(), Path("u/link1").c_str()), 0);
  ASSERT_EQ(::link(Path("u/big").c_str(), Path("u/link2").c_str()), 0);
  auto after = UsageOf(Path("u"));
  ASSERT_TRUE(after.ok());

  EXPECT_EQ(after->inodes, before->inodes);
  EXPECT_EQ(after->size_bytes, before->size_bytes);
  EXPECT_EQ(after->inodes, 2);  // the directory and the one file
  EXPECT_GE(after->size_bytes, 256 * 1024);
}

TEST_F(FsTest, UsageOfCountsRootAndEveryInode) {
  ASSERT_TRUE(MakeDirs(Path("u/sub"), 0755).ok());
  Write(Path("u/a"), "a");
  Write(Path("u/sub/b"), "b");
  ASSERT_EQ(::symlink("a", Path("u/s").c_str()), 0);
  auto usage = UsageOf(Path("u"));
  ASSERT_TRUE(usage.ok());
  EXPECT_EQ(usage->inodes, 5);  // u, sub, a, b, s
}

TEST_F(FsTest, UsageOfEmptyDirectoryIsOneInode) {
  ASSERT_TRUE(MakeDirs(Path("empty"), 0755).ok());
  auto usage = UsageOf(Path("empty"));
  ASSERT_TRUE(usage.ok());
  EXPECT_EQ(usage->inodes, 1);
}

TEST_F(FsTest, UsageOfDoesNotDescendIntoMountPoints) {
  ASSERT_TRUE(MakeDirs(Path("u/mnt"), 0755).ok());
  auto before = UsageOf(Path("u"));
  ASSERT_TRUE(before.ok());
  ASSERT_EQ(::mount("tmpfs", Path("u/mnt").c_str(), "tmpfs", 0, "size=4m"), 0);
  mounts_.push_back(Path("u/mnt"));
  Write(Path("u/mnt/a"), std::string(1 << 20, 'a'));
  Write(Path("u/mnt/b"), "b");
  auto after = UsageOf(Path("u"));
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->inodes, before->inodes);  // the mount point itself, nothing below
  EXPECT_LT(after->size_bytes, 1 << 20);
}

TEST_F(FsTest, UsageOfMissingPathIsNotFound) {
  EXPECT_TRUE(UsageOf(Path("missing")).status().IsNotFound());
}

TEST_F(FsTest, WriteFileAtomicCreatesFileWithContentAndMode) {
  ASSERT_TRUE(WriteFileAtomic(Path("f"), "hello", 0640).ok());
  EXPECT_EQ(*ReadFile(Path("f")), "hello");
  EXPECT_EQ(ModeOf(Path("f")), 0640u);
}

TEST_F(FsTest, WriteFileAtomicReplacesWithoutDisturbingOpenReaders) {
  ASSERT_TRUE(WriteFileAtomic(Path("f"), "old").ok());
  int fd = ::open(Path("f").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);

  ASSERT_TRUE(WriteFileAtomic(Path("f"), "new content").ok());

  char buf[16] = {};
  ASSERT_EQ(::pread(fd, buf, sizeof buf, 0), 3);
  EXPECT_EQ(std::string(buf, 3), "old");  // the reader kept the old inode
  ::close(fd);
  EXPECT_EQ(*ReadFile(Path("f")), "new content");
}

TEST_F(FsTest, WriteFileAtomicLeavesNoTemporaryFiles) {
  ASSERT_TRUE(MakeDirs(Path("d"), 0755).ok());
  ASSERT_TRUE(WriteFileAtomic(Path("d/f"), "1").ok());
  ASSERT_TRUE(WriteFileAtomic(Path("d/f"), "2").ok());
  EXPECT_EQ(List(Path("d")), std::vector<std::string>{"f"});
}

TEST_F(FsTest, WriteFileAtomicIntoMissingDirectoryFails) {
  Status s = WriteFileAtomic(Path("missing/f"), "x");
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();
  EXPECT_FALSE(Exists(Path("missing")));
}

TEST_F(FsTest, WriteFileAtomicWritesEmptyAndBinaryData) {
  ASSERT_TRUE(WriteFileAtomic(Path("empty"), "").ok());
  EXPECT_EQ(*ReadFile(Path("empty")), "");
  std::string binary("a\0b\xff", 4);
  ASSERT_TRUE(WriteFileAtomic(Path("bin"), binary).ok());
  EXPECT_EQ(*ReadFile(Path("bin")), binary);
}

TEST_F(FsTest, ReadFileOfMissingFileIsNotFound) {
  EXPECT_TRUE(ReadFile(Path("missing")).status().IsNotFound());
}

TEST_F(FsTest, SyncDirOfMissingDirectoryIsNotFound) {
  EXPECT_TRUE(SyncDir(Path("missing")).IsNotFound());
  EXPECT_TRUE(SyncDir(dir_).ok());
}

TEST_F(FsTest, ExistsDoesNotFollowSymlinks) {
  ASSERT_EQ(::symlink(Path("nowhere").c_str(), Path("dangling").c_str()), 0);
  EXPECT_TRUE(Exists(Path("dangling")));
  EXPECT_FALSE(Exists(Path("nowhere")));
}

TEST(PathNamesTest, BaseNameIsTheLastComponent) {
  EXPECT_EQ(BaseName("/a/b/c"), "c");
  EXPECT_EQ(BaseName("/a/b/c/"), "c");
  EXPECT_EQ(BaseName("c"), "c");
}

TEST(PathNamesTest, DirNameDropsTheLastComponent) {
  EXPECT_EQ(DirName("/a/b/c"), "/a/b");
  EXPECT_EQ(DirName("/a/b/c/"), "/a/b");
  EXPECT_EQ(DirName("/a"), "/");
  EXPECT_EQ(DirName("a"), ".");
  EXPECT_EQ(DirName("a/b"), "a");
}

// Creates `depth` nested directories "d/d/d/..." under `root` (deeper than PATH_MAX
// allows to name in one path), each holding one small file.
void MakeDeepTree(const std::string& root, int depth) {
  int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(fd, 0);
  for (int i = 0; i < depth; i++) {
    ASSERT_EQ(::mkdirat(fd, "d", 0755), 0);
    int file = ::openat(fd, "f", O_WRONLY | O_CREAT, 0644);
    ASSERT_GE(file, 0);
    ASSERT_EQ(::write(file, "x", 1), 1);
    ::close(file);
    int child = ::openat(fd, "d", O_RDONLY | O_DIRECTORY);
    ::close(fd);
    ASSERT_GE(child, 0);
    fd = child;
  }
  ::close(fd);
}

// A container can build a tree of any depth in its layer; walking it must need neither
// one file descriptor nor one stack frame per level.
TEST_F(FsTest, DeepTreesAreMeasuredAndRemovedWithFewFileDescriptors) {
  const std::string root = dir_ + "/deep";
  ASSERT_TRUE(MakeDirs(root).ok());
  constexpr int kDepth = 3000;  // "d/" x 3000 is longer than PATH_MAX
  ASSERT_NO_FATAL_FAILURE(MakeDeepTree(root, kDepth));
  struct rlimit old_limit;
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old_limit), 0);
  struct rlimit low = old_limit;
  low.rlim_cur = 64;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  auto usage = UsageOf(root);
  Status removed = RemoveAll(root);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &old_limit), 0);
  ASSERT_TRUE(usage.ok()) << usage.status().ToString();
  EXPECT_EQ(usage->inodes, 1 + 2 * kDepth);
  EXPECT_TRUE(removed.ok()) << removed.ToString();
  EXPECT_FALSE(Exists(root));
}

}  // namespace
}  // namespace strata::fs
