// The FUSE mount as overlayfs sees it: a lower layer whose opaque directories and
// whiteouts take effect, from which files are copied up on write.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <set>

#include "core/fs.h"
#include "tests/fuse/test_support.h"

namespace strata::fuse::testing {
namespace {

class FuseOverlayTest : public MountedTreeTest {
 protected:
  void TearDown() override {
    if (!merged_.empty() && IsMountPoint(merged_)) {
      EXPECT_EQ(::umount2(merged_.c_str(), 0), 0) << std::strerror(errno);
    }
    MountedTreeTest::TearDown();
  }

  // Mounts overlay at merged_ with lowerdir=<FUSE mount>:<below_>.
  void MountOverlay() {
    below_ = temp_.MakeSubdir("below");
    upper_ = temp_.MakeSubdir("upper");
    std::string work = temp_.MakeSubdir("work");
    merged_ = temp_.MakeSubdir("merged");
    // What the FUSE layer hides or shadows, in the layer below it.
    ASSERT_TRUE(fs::MakeDirs(below_ + "/opaque").ok());
    ASSERT_TRUE(fs::WriteFileAtomic(below_ + "/opaque/hidden.txt", "hidden by opaque\n").ok());
    ASSERT_TRUE(fs::WriteFileAtomic(below_ + "/whiteout", "hidden by whiteout\n").ok());
    ASSERT_TRUE(fs::WriteFileAtomic(below_ + "/below-only.txt", "from below\n").ok());
    ASSERT_TRUE(fs::WriteFileAtomic(below_ + "/hello.txt", "shadowed\n").ok());
    std::string data =
        "lowerdir=" + mnt() + ":" + below_ + ",upperdir=" + upper_ + ",workdir=" + work;
    ASSERT_EQ(::mount("overlay", merged_.c_str(), "overlay", 0, data.c_str()), 0)
        << data << ": " << std::strerror(errno);
  }

  std::string Merged(const std::string& relative) const { return merged_ + "/" + relative; }

  std::string below_, upper_, merged_;
};

std::string ReadOrEmpty(const std::string& path) {
  Result<std::string> content = fs::ReadFile(path);
  EXPECT_TRUE(content.ok()) << path << ": " << content.status().ToString();
  return content.ok() ? *content : "";
}

int ErrnoOfOpen(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  ::close(fd);
  return 0;
}

std::set<std::string> NamesIn(const std::string& dir) {
  std::set<std::string> names;
  for (const ListedEntry& e : ListWithGetdents(dir, 32768)) names.insert(e.name);
  return names;
}

TEST_F(FuseOverlayTest, MergedViewShowsTheFuseLayerOverTheOneBelow) {
  Mount();
  MountOverlay();
  EXPECT_EQ(ReadOrEmpty(Merged("hello.txt")), "hello, world\n");  // FUSE layer on top
  EXPECT_EQ(ReadOrEmpty(Merged("below-only.txt")), "from below\n");
  EXPECT_TRUE(ReadOrEmpty(Merged("big.bin")) == big_content_);
  char target[64];
  ssize_t n = ::readlink(Merged("link").c_str(), target, sizeof target);
  ASSERT_EQ(n, 9);
  EXPECT_EQ(std::string(target, n), "hello.txt");
  EXPECT_EQ(NamesIn(Merged("many")).size(), kManyEntries + 2);
}

TEST_F(FuseOverlayTest, OpaqueDirectoryAndWhiteoutFromTheFuseLayerTakeEffect) {
  Mount();
  MountOverlay();
  EXPECT_EQ(NamesIn(Merged("opaque")), (std::set<std::string>{".", "..", "inside.txt"}));
  struct stat st;
  EXPECT_EQ(::stat(Merged("opaque/hidden.txt").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(::lstat(Merged("whiteout").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(NamesIn(merged_).count("whiteout"), 0u);
}

TEST_F(FuseOverlayTest, WritesCopyUpFromTheFuseLayer) {
  Mount();
  MountOverlay();
  int fd = ::open(Merged("hello.txt").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ASSERT_EQ(::write(fd, "more\n", 5), 5);
  ::close(fd);
  EXPECT_EQ(ReadOrEmpty(Merged("hello.txt")), "hello, world\nmore\n");
  EXPECT_EQ(ReadOrEmpty(upper_ + "/hello.txt"), "hello, world\nmore\n");
  EXPECT_EQ(ReadOrEmpty(At("hello.txt")), "hello, world\n");  // the layer is untouched

  // Copy-up of a big file reads all of it through FUSE.
  fd = ::open(Merged("big.bin").c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ASSERT_EQ(::pwrite(fd, "EDIT", 4, 1 << 20), 4);
  ::close(fd);
  std::string expected = big_content_;
  expected.replace(1 << 20, 4, "EDIT");
  EXPECT_TRUE(ReadOrEmpty(Merged("big.bin")) == expected);
  EXPECT_TRUE(ReadOrEmpty(At("big.bin")) == big_content_);

  // Attributes come along on copy-up.
  struct stat st;
  ASSERT_EQ(::stat((upper_ + "/hello.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 5678u);
}

// libfuse mounts nosuid,nodev; containers see the layer through overlayfs, whose own
// mount flags are the ones that count.
TEST_F(FuseOverlayTest, SetuidProgramsInTheLayerWorkThroughTheOverlay) {
  Result<std::string> id_program = fs::ReadFile("/usr/bin/id");
  ASSERT_TRUE(id_program.ok()) << id_program.status().ToString();
  tree_.AddFile(kRootIno, "setuid-id", *id_program, 04755);
  Mount();
  MountOverlay();
  ASSERT_EQ(::chmod(temp_.path().c_str(), 0755), 0);  // let the unprivileged child in
  int out[2];
  ASSERT_EQ(::pipe(out), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], STDOUT_FILENO);
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(126);
    std::string program = Merged("setuid-id");
    ::execl(program.c_str(), "id", "-u", nullptr);
    ::_exit(127);
  }
  ::close(out[1]);
  char buf[32] = {};
  ssize_t n = ::read(out[0], buf, sizeof buf - 1);
  ::close(out[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(std::string(buf, n > 0 ? n : 0), "0\n");  // effective uid: the file's owner
}

TEST_F(FuseOverlayTest, DeviceNodesInTheLayerOpenThroughTheOverlay) {
  Mount();
  MountOverlay();
  int fd = ::open(Merged("null").c_str(), O_WRONLY | O_CLOEXEC);  // char 1:3, /dev/null
  ASSERT_GE(fd, 0) << std::strerror(errno);
  EXPECT_EQ(::write(fd, "abc", 3), 3);
  ::close(fd);
  EXPECT_EQ(ErrnoOfOpen(At("null")), EACCES);  // the FUSE mount itself is nodev
}

TEST_F(FuseOverlayTest, UnmountWhileAnOverlayUsesItKeepsServingTheOverlay) {
  MountOptions options;
  options.unmount_grace = std::chrono::milliseconds(200);
  Mount(options);
  MountOverlay();
  // overlayfs holds its own clone of the lower mount: the unmount goes through, but
  // the connection lives on and is still served.
  Status st = server_->Unmount(IfBusy::kFail);
  EXPECT_TRUE(st.IsFailedPrecondition()) << st.ToString();
  EXPECT_FALSE(IsMountPoint(mnt()));
  EXPECT_TRUE(server_->serving());
  EXPECT_TRUE(ReadOrEmpty(Merged("big.bin")) == big_content_);
  // Once the overlay is gone, the connection ends and the server stops by itself.
  ASSERT_EQ(::umount2(merged_.c_str(), 0), 0) << std::strerror(errno);
  for (int i = 0; i < 500 && server_->serving(); i++) ::usleep(10000);
  EXPECT_FALSE(server_->serving());
  st = server_->Unmount(IfBusy::kFail);
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_FALSE(IsMountPoint(merged_));
}

TEST_F(FuseOverlayTest, AbortingUnmountWhileAnOverlayUsesItFailsTheOverlaysReads) {
  MountOptions options;
  options.unmount_grace = std::chrono::milliseconds(200);
  Mount(options);
  MountOverlay();
  EXPECT_EQ(ReadOrEmpty(Merged("hello.txt")), "hello, world\n");
  Status st = server_->Unmount(IfBusy::kAbort);
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_FALSE(server_->serving());
  // Nothing hangs: what the overlay still needs from the layer fails.
  int fd = ::open(Merged("big.bin").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    char buf[4096];
    EXPECT_EQ(::pread(fd, buf, sizeof buf, 3 << 20), -1);
    ::close(fd);
  } else {
    EXPECT_TRUE(errno == ENOTCONN || errno == ECONNABORTED) << std::strerror(errno);
  }
}

}  // namespace
}  // namespace strata::fuse::testing
