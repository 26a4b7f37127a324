// fuse::Server serving the sample MemoryTree through a real FUSE mount: what stat,
// getdents, read, readlink and the xattr calls see, that writes are refused, how tree
// errors surface, concurrency, latency accounting, and unmounting.
#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "core/fs.h"
#include "fuse/mounts.h"
#include "tests/fuse/test_support.h"

namespace strata::fuse::testing {
namespace {

using FuseServerTest = MountedTreeTest;

struct stat StatOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path << ": " << std::strerror(errno);
  return st;
}

struct stat LstatOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path << ": " << std::strerror(errno);
  return st;
}

// errno of a call expected to fail, or 0 when it succeeded.
int ErrnoOf(int result) { return result == -1 ? errno : 0; }

std::string ReadWhole(const std::string& path) {
  Result<std::string> content = fs::ReadFile(path);
  EXPECT_TRUE(content.ok()) << content.status().ToString();
  return content.ok() ? *content : "";
}

std::string PreadExactly(int fd, size_t n, off_t offset) {
  std::string out(n, '\0');
  size_t done = 0;
  while (done < n) {
    ssize_t got = ::pread(fd, out.data() + done, n - done, offset + static_cast<off_t>(done));
    if (got <= 0) {
      ADD_FAILURE() << "pread at " << offset + done << ": "
                    << (got < 0 ? std::strerror(errno) : "EOF");
      break;
    }
    done += got;
  }
  out.resize(done);
  return out;
}

TEST_F(FuseServerTest, RegularFileStatShowsTheTreesAttributes) {
  Mount();
  struct stat st = StatOf(At("hello.txt"));
  EXPECT_EQ(st.st_ino, hello_);
  EXPECT_EQ(st.st_mode, S_IFREG | 0644);
  EXPECT_EQ(st.st_size, 13);
  EXPECT_EQ(st.st_blocks, 24);
  EXPECT_EQ(st.st_nlink, 1u);
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 5678u);
  for (const timespec& t : {st.st_atim, st.st_mtim, st.st_ctim}) {
    EXPECT_EQ(t.tv_sec, kNodeTime.tv_sec);
    EXPECT_EQ(t.tv_nsec, kNodeTime.tv_nsec);
  }
  struct stat root = StatOf(mnt());
  EXPECT_EQ(root.st_ino, kRootIno);
  EXPECT_TRUE(S_ISDIR(root.st_mode));
  EXPECT_EQ(root.st_nlink, 2u + 3u);  // 2, plus one per subdirectory (opaque, many, sizes)
}

TEST_F(FuseServerTest, HardLinksShareOneInodeWithNlinkTwo) {
  Mount();
  struct stat a = StatOf(At("hard-a"));
  struct stat b = StatOf(At("hard-b"));
  EXPECT_EQ(a.st_ino, hard_a_);
  EXPECT_EQ(b.st_ino, hard_a_);
  EXPECT_EQ(a.st_nlink, 2u);
  EXPECT_EQ(b.st_nlink, 2u);
  EXPECT_EQ(ReadWhole(At("hard-b")), "shared content");
  // One kernel inode, looked up under two names.
  EXPECT_EQ(server_->LookupCount(hard_a_), 2u);
}

TEST_F(FuseServerTest, DevicesFifosAndWhiteoutsKeepTheirTypeAndDeviceNumbers) {
  Mount();
  struct stat null_dev = LstatOf(At("null"));
  EXPECT_EQ(null_dev.st_mode, S_IFCHR | 0666);
  EXPECT_EQ(null_dev.st_rdev, makedev(1, 3));
  struct stat loop_dev = LstatOf(At("loop0"));
  EXPECT_EQ(loop_dev.st_mode, S_IFBLK | 0660);
  EXPECT_EQ(loop_dev.st_rdev, makedev(7, 0));
  struct stat fifo = LstatOf(At("fifo"));
  EXPECT_EQ(fifo.st_mode, S_IFIFO | 0644);
  struct stat whiteout = LstatOf(At("whiteout"));
  EXPECT_TRUE(S_ISCHR(whiteout.st_mode));
  EXPECT_EQ(whiteout.st_rdev, makedev(0, 0));
}

TEST_F(FuseServerTest, SymlinksReadBackTheirTargets) {
  Mount();
  struct stat st = LstatOf(At("link"));
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(st.st_size, 9);  // strlen("hello.txt")
  char target[256];
  ssize_t n = ::readlink(At("link").c_str(), target, sizeof target);
  ASSERT_EQ(n, 9);
  EXPECT_EQ(std::string(target, n), "hello.txt");
  n = ::readlink(At("dangling").c_str(), target, sizeof target);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(target, n), "/nonexistent/target");
  // Followed, the link reaches hello.txt.
  EXPECT_EQ(StatOf(At("link")).st_ino, hello_);
  // readlink of something else is EINVAL, as on any filesystem.
  EXPECT_EQ(ErrnoOf(::readlink(At("hello.txt").c_str(), target, sizeof target)), EINVAL);
}

TEST_F(FuseServerTest, MissingNamesFailWithEnoentAlsoFromTheNegativeCache) {
  Mount();
  struct stat st;
  EXPECT_EQ(ErrnoOf(::stat(At("no-such-file").c_str(), &st)), ENOENT);
  EXPECT_EQ(ErrnoOf(::stat(At("no-such-file").c_str(), &st)), ENOENT);
  EXPECT_EQ(ErrnoOf(::stat(At("hello.txt/below").c_str(), &st)), ENOTDIR);
}

TEST_F(FuseServerTest, LookupThatTheTreeCannotServeFailsWithEio) {
  Mount();
  struct stat st;
  EXPECT_EQ(ErrnoOf(::stat(At("broken").c_str(), &st)), EIO);
}

// Checks a listing of many/: complete, no duplicates, "." and ".." once each, and
// the tree's inode numbers and types.
void ExpectCompleteManyListing(const std::vector<ListedEntry>& entries, Ino many_ino,
                               size_t expected_files) {
  std::set<std::string> names;
  size_t dots = 0;
  for (const ListedEntry& e : entries) {
    EXPECT_TRUE(names.insert(e.name).second) << "duplicate entry " << e.name;
    if (e.name == "." || e.name == "..") {
      dots++;
      EXPECT_EQ(e.type, DT_DIR);
      if (e.name == ".") {
        EXPECT_EQ(e.ino, many_ino);
      }
      continue;
    }
    EXPECT_EQ(e.type, DT_REG) << e.name;
    EXPECT_NE(e.ino, 0u) << e.name;
  }
  EXPECT_EQ(dots, 2u);
  EXPECT_EQ(entries.size(), expected_files + 2);
  for (size_t i = 0; i < expected_files; i += 997) {
    char name[16];
    std::snprintf(name, sizeof name, "f%05zu", i);
    EXPECT_TRUE(names.count(name)) << name << " missing";
  }
}

TEST_F(FuseServerTest, PlainReaddirListsABigDirectoryCompletelyWithoutLookups) {
  MountOptions options;
  options.readdirplus = ReaddirPlus::kNever;
  Mount(options);
  std::vector<ListedEntry> entries = ListWithGetdents(At("many"), 4096);
  ExpectCompleteManyListing(entries, many_, kManyEntries);
  // Plain readdir hands out no references: only many/ itself was looked up.
  EXPECT_EQ(server_->InodesKnownToKernel(), 1u);
  // A second listing (served from the kernel's cache or again by us) is the same.
  EXPECT_EQ(ListWithGetdents(At("many"), 32768).size(), entries.size());
}

TEST_F(FuseServerTest, ReaddirplusListsABigDirectoryAndCountsOnlyReturnedEntries) {
  MountOptions options;
  options.readdirplus = ReaddirPlus::kAlways;
  Mount(options);
  std::vector<ListedEntry> entries = ListWithGetdents(At("many"), 4096);
  ExpectCompleteManyListing(entries, many_, kManyEntries);
  // Every file came with its attributes: one reference each. "." and ".." took none.
  for (const ListedEntry& e : entries) {
    if (e.name == "." || e.name == "..") continue;
    ASSERT_EQ(server_->LookupCount(e.ino), 1u) << e.name;
  }
  EXPECT_EQ(server_->LookupCount(many_), 1u);  // its own lookup only
  EXPECT_EQ(server_->LookupCount(kRootIno), 0u);
  EXPECT_EQ(server_->InodesKnownToKernel(), kManyEntries + 1);
  // The kernel kept those entries: stat needs no new lookup.
  struct stat st = StatOf(At("many/f00042"));
  EXPECT_EQ(server_->LookupCount(st.st_ino), 1u);
}

TEST_F(FuseServerTest, FilesOfEverySizeReadBackByteForByte) {
  Mount();
  for (const auto& [name, content] : sized_files_) {
    std::string path = At("sizes/" + name);
    EXPECT_EQ(StatOf(path).st_size, static_cast<off_t>(content.size())) << name;
    std::string read = ReadWhole(path);
    EXPECT_EQ(read.size(), content.size()) << name;
    EXPECT_TRUE(read == content) << name << " differs";
  }
}

TEST_F(FuseServerTest, BigFileReadsMatchAtRandomOffsetsAndIn4MiBPieces) {
  Mount();
  int fd = ::open(At("big.bin").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  const size_t k4MiB = 4 << 20;
  EXPECT_TRUE(PreadExactly(fd, k4MiB, 12345) == big_content_.substr(12345, k4MiB));
  std::mt19937_64 rng(42);
  for (int i = 0; i < 300; i++) {
    off_t offset = static_cast<off_t>(rng() % big_content_.size());
    size_t n = std::min<size_t>(rng() % (300 * 1024ul) + 1, big_content_.size() - offset);
    ASSERT_TRUE(PreadExactly(fd, n, offset) == big_content_.substr(offset, n))
        << n << " bytes at " << offset;
  }
  char byte;
  EXPECT_EQ(::pread(fd, &byte, 1, static_cast<off_t>(big_content_.size())), 0);  // EOF
  ::close(fd);

  // Uncached reads through O_DIRECT go to the tree every time, in large requests.
  fd = ::open(At("big.bin").c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  void* aligned = nullptr;
  ASSERT_EQ(::posix_memalign(&aligned, 4096, k4MiB), 0);
  ssize_t n = ::pread(fd, aligned, k4MiB, 1 << 20);
  EXPECT_EQ(n, static_cast<ssize_t>(k4MiB));
  EXPECT_EQ(std::memcmp(aligned, big_content_.data() + (1 << 20), k4MiB), 0);
  std::free(aligned);
  ::close(fd);
}

TEST_F(FuseServerTest, XattrsFollowTheSizeProbeProtocol) {
  Mount();
  std::string path = At("xattrs.txt");
  // getfattr's way: ask the size with a NULL buffer, then read into that much.
  ssize_t size = ::getxattr(path.c_str(), "user.long", nullptr, 0);
  ASSERT_EQ(size, 300);
  std::string value(size, '\0');
  EXPECT_EQ(::getxattr(path.c_str(), "user.long", value.data(), value.size()), 300);
  EXPECT_EQ(value, std::string(300, 'x'));
  char small[10];
  EXPECT_EQ(ErrnoOf(::getxattr(path.c_str(), "user.long", small, sizeof small)), ERANGE);
  EXPECT_EQ(ErrnoOf(::getxattr(path.c_str(), "user.none", small, sizeof small)), ENODATA);
  EXPECT_EQ(ErrnoOf(::getxattr(At("hello.txt").c_str(), "user.none", nullptr, 0)), ENODATA);

  ssize_t list_size = ::listxattr(path.c_str(), nullptr, 0);
  ASSERT_EQ(list_size, static_cast<ssize_t>(sizeof("user.long") + sizeof("user.short")));
  std::string list(list_size, '\0');
  ASSERT_EQ(::listxattr(path.c_str(), list.data(), list.size()), list_size);
  EXPECT_EQ(list, std::string("user.long\0user.short\0", list_size));
  EXPECT_EQ(ErrnoOf(::listxattr(path.c_str(), small, 3)), ERANGE);
  EXPECT_EQ(::listxattr(At("hello.txt").c_str(), nullptr, 0), 0);

  char opaque[4];
  ASSERT_EQ(::getxattr(At("opaque").c_str(), "trusted.overlay.opaque", opaque, sizeof opaque), 1);
  EXPECT_EQ(opaque[0], 'y');
}

TEST_F(FuseServerTest, EveryWriteFailsWithErofs) {
  Mount();
  std::string file = At("hello.txt");
  EXPECT_EQ(ErrnoOf(::open(file.c_str(), O_WRONLY)), EROFS);
  EXPECT_EQ(ErrnoOf(::open(file.c_str(), O_RDWR)), EROFS);
  EXPECT_EQ(ErrnoOf(::open(file.c_str(), O_RDONLY | O_TRUNC)), EROFS);
  EXPECT_EQ(ErrnoOf(::open(At("new").c_str(), O_WRONLY | O_CREAT, 0644)), EROFS);
  EXPECT_EQ(ErrnoOf(::mkdir(At("newdir").c_str(), 0755)), EROFS);
  EXPECT_EQ(ErrnoOf(::mknod(At("newfifo").c_str(), S_IFIFO | 0644, 0)), EROFS);
  EXPECT_EQ(ErrnoOf(::unlink(file.c_str())), EROFS);
  EXPECT_EQ(ErrnoOf(::rmdir(At("opaque").c_str())), EROFS);
  EXPECT_EQ(ErrnoOf(::rename(file.c_str(), At("renamed").c_str())), EROFS);
  EXPECT_EQ(ErrnoOf(::symlink("x", At("newlink").c_str())), EROFS);
  EXPECT_EQ(ErrnoOf(::link(file.c_str(), At("newhard").c_str())), EROFS);
  EXPECT_EQ(ErrnoOf(::chmod(file.c_str(), 0600)), EROFS);
  EXPECT_EQ(ErrnoOf(::chown(file.c_str(), 1, 1)), EROFS);
  EXPECT_EQ(ErrnoOf(::truncate(file.c_str(), 0)), EROFS);
  EXPECT_EQ(ErrnoOf(::utimensat(AT_FDCWD, file.c_str(), nullptr, 0)), EROFS);
  EXPECT_EQ(ErrnoOf(::setxattr(file.c_str(), "user.x", "1", 1, 0)), EROFS);
  EXPECT_EQ(ErrnoOf(::removexattr(At("xattrs.txt").c_str(), "user.short")), EROFS);
  EXPECT_EQ(ReadWhole(file), "hello, world\n");
  struct statvfs vfs;
  ASSERT_EQ(::statvfs(mnt().c_str(), &vfs), 0);
  EXPECT_TRUE(vfs.f_flag & ST_RDONLY);
}

TEST_F(FuseServerTest, ReadOfAFileTheTreeCannotServeFailsWithEio) {
  Mount();
  int fd = ::open(At("unavailable.bin").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  char buf[100];
  EXPECT_EQ(ErrnoOf(static_cast<int>(::read(fd, buf, sizeof buf))), EIO);
  ::close(fd);
  // Other files are unaffected.
  EXPECT_EQ(ReadWhole(At("hello.txt")), "hello, world\n");
}

TEST_F(FuseServerTest, ReadBlockedInTheTreeDoesNotHoldUpOtherReads) {
  Mount();
  std::atomic<bool> slow_read_ok{false};
  std::thread slow_reader([&] {
    std::string content = ReadWhole(At("slow.bin"));
    slow_read_ok = content.size() == 65536;
  });
  {
    std::unique_lock<std::mutex> lock(order_mu_);
    ASSERT_TRUE(
        order_cv_.wait_for(lock, std::chrono::seconds(20), [&] { return slow_entered_.load(); }));
  }
  // slow.bin's read is now parked in the tree until fast.bin has been served: with a
  // single worker this read would wait for it, and it for this read (10 s, then fail).
  EXPECT_EQ(ReadWhole(At("fast.bin")), PatternBytes(65536, 3));
  slow_reader.join();
  EXPECT_TRUE(slow_read_ok);
  EXPECT_TRUE(slow_released_by_fast_) << "the fast read was not served while the slow one waited";
}

TEST_F(FuseServerTest, ReadThatTakesTwoSecondsInTheTreeCompletes) {
  Mount();
  EXPECT_EQ(ReadWhole(At("sleepy.bin")), PatternBytes(8192, 4));
}

TEST_F(FuseServerTest, StatfsReportsTheTreesNumbers) {
  Mount();
  struct statvfs vfs;
  ASSERT_EQ(::statvfs(mnt().c_str(), &vfs), 0);
  FsStats expected = tree_.StatFs();
  EXPECT_EQ(vfs.f_bsize, expected.block_size);
  EXPECT_EQ(vfs.f_blocks, expected.blocks);
  EXPECT_EQ(vfs.f_files, expected.files);
  EXPECT_EQ(vfs.f_bfree, 0u);
  EXPECT_EQ(vfs.f_namemax, 255u);
}

TEST_F(FuseServerTest, AccessIsAnsweredFromModeBitsWithoutDefaultPermissions) {
  MountOptions options;
  options.default_permissions = false;
  Mount(options);
  EXPECT_EQ(ErrnoOf(::access(At("hello.txt").c_str(), R_OK)), 0);
  EXPECT_EQ(ErrnoOf(::access(At("hello.txt").c_str(), W_OK)), EROFS);
  EXPECT_EQ(ErrnoOf(::access(At("hello.txt").c_str(), X_OK)), EACCES);  // 0644, even for root
  EXPECT_EQ(ErrnoOf(::access(At("opaque").c_str(), X_OK)), 0);
}

TEST_F(FuseServerTest, ObserverSeesEveryOperationWithItsLatency) {
  // Shared with the observer, which may still be called until the server is unmounted
  // (in TearDown, after this body's locals are gone).
  struct Seen {
    std::mutex mu;
    std::map<std::string, int> ops;
    bool negative_latency = false;
  };
  auto seen = std::make_shared<Seen>();
  MountOptions options;
  options.observer = [seen](std::string_view op, std::chrono::nanoseconds elapsed) {
    std::lock_guard<std::mutex> lock(seen->mu);
    seen->ops[std::string(op)]++;
    if (elapsed.count() < 0) seen->negative_latency = true;
  };
  Mount(options);
  EXPECT_EQ(ReadWhole(At("hello.txt")), "hello, world\n");
  ListWithGetdents(At("opaque"), 4096);
  char target[64];
  EXPECT_GT(::readlink(At("link").c_str(), target, sizeof target), 0);
  EXPECT_EQ(::getxattr(At("xattrs.txt").c_str(), "user.short", nullptr, 0), 1);
  // The observer runs after each reply (and release after close() returns): wait for
  // the stragglers.
  const std::vector<std::string> expected = {"lookup",  "open",       "read",     "release",
                                             "opendir", "releasedir", "readlink", "getxattr"};
  auto missing = [&] {
    std::vector<std::string> out;
    std::lock_guard<std::mutex> lock(seen->mu);
    for (const std::string& op : expected) {
      if (!seen->ops.count(op)) out.push_back(op);
    }
    if (!seen->ops.count("readdir") && !seen->ops.count("readdirplus")) out.push_back("readdir");
    return out;
  };
  for (int i = 0; i < 500 && !missing().empty(); i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(missing(), std::vector<std::string>{});
  std::lock_guard<std::mutex> lock(seen->mu);
  EXPECT_FALSE(seen->negative_latency);
}

TEST_F(FuseServerTest, MountinfoShowsFsNameAndSubtype) {
  MountOptions options;
  options.fs_name = "sha256:0123abcd";
  options.subtype = "strata-stargz";
  Mount(options);
  Result<std::optional<MountInfoEntry>> found = FindMount(mnt());
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->fs_type, "fuse.strata-stargz");
  EXPECT_EQ((*found)->source, "sha256:0123abcd");
  EXPECT_EQ((*found)->device, server_->device());
  EXPECT_EQ(StatOf(mnt()).st_dev, server_->device());
  Result<std::vector<MountInfoEntry>> listed = ListFuseMounts(temp_.path());
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].mount_point, mnt());
}

TEST_F(FuseServerTest, MountRejectsBadOptionsAndMissingMountPoints) {
  MountOptions options;
  options.fs_name = "has,comma";
  EXPECT_TRUE(Server::Mount(tree_, mnt(), options).status().IsInvalidArgument());
  options = MountOptions();
  options.subtype = "";
  EXPECT_TRUE(Server::Mount(tree_, mnt(), options).status().IsInvalidArgument());
  EXPECT_TRUE(
      Server::Mount(tree_, temp_.path() + "/missing", MountOptions()).status().IsNotFound());
  EXPECT_FALSE(IsMountPoint(mnt()));
}

TEST_F(FuseServerTest, UnmountIsIdempotentAndLeavesNothingMounted) {
  Mount();
  EXPECT_TRUE(server_->serving());
  EXPECT_TRUE(server_->Unmount().ok());
  EXPECT_FALSE(server_->serving());
  EXPECT_FALSE(IsMountPoint(mnt()));
  EXPECT_TRUE(server_->Unmount().ok());
  // The directory is an ordinary, empty directory again.
  EXPECT_TRUE(ListWithGetdents(mnt(), 4096).size() == 2u);
}

TEST_F(FuseServerTest, DestroyingTheServerUnmounts) {
  Mount();
  server_.reset();
  EXPECT_FALSE(IsMountPoint(mnt()));
}

TEST_F(FuseServerTest, UnmountAfterSomeoneElseUnmountedSucceeds) {
  Mount();
  ASSERT_EQ(::umount2(mnt().c_str(), 0), 0) << std::strerror(errno);
  for (int i = 0; i < 500 && server_->serving(); i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_FALSE(server_->serving());
  EXPECT_TRUE(server_->Unmount().ok());
}

TEST_F(FuseServerTest, BusyMountFailsToUnmountOrIsAbortedAsAsked) {
  Mount();
  int fd = ::open(At("big.bin").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  char buf[4096];
  ASSERT_EQ(::pread(fd, buf, sizeof buf, 0), static_cast<ssize_t>(sizeof buf));

  Status st = server_->Unmount(IfBusy::kFail);
  EXPECT_TRUE(st.IsFailedPrecondition()) << st.ToString();
  EXPECT_TRUE(server_->serving());
  EXPECT_TRUE(IsMountPoint(mnt()));
  EXPECT_EQ(::pread(fd, buf, sizeof buf, 2 << 20), static_cast<ssize_t>(sizeof buf));

  st = server_->Unmount(IfBusy::kAbort);
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_FALSE(server_->serving());
  EXPECT_FALSE(IsMountPoint(mnt()));
  // The open file now fails instead of hanging (pages not cached yet need the server).
  int err = ErrnoOf(static_cast<int>(::pread(fd, buf, sizeof buf, 5 << 20)));
  EXPECT_TRUE(err == ENOTCONN || err == ECONNABORTED) << std::strerror(err);
  ::close(fd);
}

}  // namespace
}  // namespace strata::fuse::testing
