// Mount-table helpers and stale-mount recovery: a FUSE server in another process
// (strata-test-fuse-mount) is killed or frozen, and RecoverStaleMount makes its mount
// point usable again.
#include "fuse/mounts.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "core/fs.h"
#include "tests/fuse/test_support.h"

namespace strata::fuse::testing {
namespace {

TEST(ParseMountInfoTest, ReadsDeviceMountPointTypeAndSourceAndDecodesEscapes) {
  std::string text =
      "26 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
      "97 26 0:52 / /var/lib/strata/snapshots/7/fs ro,nosuid - fuse.strata-stargz "
      "sha256:abc ro,user_id=0,group_id=0\n"
      "98 26 0:53 / /tmp/with\\040space\\011tab rw - fuse fuse-src rw\n"
      "garbage line\n"
      "99 26 0:54 / /x rw master:3 propagate_from:2 - fuseblk /dev/loop0 rw\n";
  std::vector<MountInfoEntry> entries = ParseMountInfo(text);
  ASSERT_EQ(entries.size(), 4u);
  EXPECT_EQ(entries[0].device, makedev(254, 0));
  EXPECT_EQ(entries[1].mount_point, "/var/lib/strata/snapshots/7/fs");
  EXPECT_EQ(entries[1].fs_type, "fuse.strata-stargz");
  EXPECT_EQ(entries[1].source, "sha256:abc");
  EXPECT_EQ(entries[1].device, makedev(0, 52));
  EXPECT_EQ(entries[2].mount_point, "/tmp/with space\ttab");
  EXPECT_EQ(entries[3].fs_type, "fuseblk");
  EXPECT_EQ(entries[3].mount_point, "/x");
}

TEST(ParseMountInfoTest, KnowsFuseTypes) {
  EXPECT_TRUE(IsFuseType("fuse"));
  EXPECT_TRUE(IsFuseType("fuseblk"));
  EXPECT_TRUE(IsFuseType("fuse.strata-stargz"));
  EXPECT_FALSE(IsFuseType("fusectl"));
  EXPECT_FALSE(IsFuseType("overlay"));
}

// strata-test-fuse-mount serving at a directory, in its own process.
class HelperServer {
 public:
  explicit HelperServer(const std::string& dir) {
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], STDOUT_FILENO);
      ::execl(STRATA_FUSE_MOUNT_HELPER, STRATA_FUSE_MOUNT_HELPER, dir.c_str(), nullptr);
      ::_exit(127);
    }
    ::close(out[1]);
    pollfd p{out[0], POLLIN, 0};
    char buf[16] = {};
    ready_ = ::poll(&p, 1, 20000) == 1 && ::read(out[0], buf, sizeof buf - 1) > 0 &&
             std::strncmp(buf, "ready", 5) == 0;
    ::close(out[0]);
  }
  ~HelperServer() {
    if (pid_ > 0) Kill(SIGKILL);
  }

  bool ready() const { return ready_; }
  void Stop() { ::kill(pid_, SIGSTOP); }
  // Sends `sig` and, for SIGKILL, reaps the process.
  void Kill(int sig) {
    ::kill(pid_, sig);
    if (sig == SIGKILL) {
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }

 private:
  pid_t pid_ = -1;
  bool ready_ = false;
};

int StatfsErrno(const std::string& path) {
  struct statfs st;
  return ::statfs(path.c_str(), &st) == 0 ? 0 : errno;
}

TEST(RecoverStaleMountTest, DetachesTheMountOfAKilledServer) {
  TempDir temp;
  std::string dir = temp.MakeSubdir("layer");
  HelperServer helper(dir);
  ASSERT_TRUE(helper.ready());
  ASSERT_TRUE(fs::Exists(dir + "/file.txt"));  // attributes now cached in the kernel
  helper.Kill(SIGKILL);

  EXPECT_EQ(StatfsErrno(dir), ENOTCONN);
  Result<std::vector<MountInfoEntry>> stale = ListFuseMounts(temp.path());
  ASSERT_TRUE(stale.ok()) << stale.status().ToString();
  ASSERT_EQ(stale->size(), 1u);
  EXPECT_EQ((*stale)[0].mount_point, dir);
  EXPECT_EQ((*stale)[0].fs_type, "fuse.strata-test");

  Result<bool> recovered = RecoverStaleMount(dir);
  ASSERT_TRUE(recovered.ok()) << recovered.status().ToString();
  EXPECT_TRUE(*recovered);
  EXPECT_FALSE(IsMountPoint(dir));
  EXPECT_EQ(StatfsErrno(dir), 0);
  EXPECT_EQ(ListWithGetdents(dir, 4096).size(), 2u);  // an empty directory again
  recovered = RecoverStaleMount(dir);
  ASSERT_TRUE(recovered.ok());
  EXPECT_FALSE(*recovered);
}

TEST(RecoverStaleMountTest, AbortsAndDetachesTheMountOfAHungServer) {
  TempDir temp;
  std::string dir = temp.MakeSubdir("layer");
  HelperServer helper(dir);
  ASSERT_TRUE(helper.ready());
  helper.Stop();  // alive, holding the connection, answering nothing
  Result<bool> recovered = RecoverStaleMount(dir, std::chrono::milliseconds(300));
  ASSERT_TRUE(recovered.ok()) << recovered.status().ToString();
  EXPECT_TRUE(*recovered);
  EXPECT_FALSE(IsMountPoint(dir));
  EXPECT_EQ(StatfsErrno(dir), 0);
}

TEST(RecoverStaleMountTest, LeavesALiveMountAlone) {
  TempDir temp;
  std::string dir = temp.MakeSubdir("layer");
  MemoryTree tree;
  tree.AddFile(kRootIno, "file.txt", "live\n");
  auto server = Server::Mount(tree, dir, MountOptions());
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  Result<bool> recovered = RecoverStaleMount(dir);
  ASSERT_TRUE(recovered.ok()) << recovered.status().ToString();
  EXPECT_FALSE(*recovered);
  EXPECT_TRUE((*server)->serving());
  EXPECT_TRUE(fs::Exists(dir + "/file.txt"));
  EXPECT_TRUE((*server)->Unmount().ok());
}

TEST(RecoverStaleMountTest, LeavesAPlainDirectoryAlone) {
  TempDir temp;
  Result<bool> recovered = RecoverStaleMount(temp.path());
  ASSERT_TRUE(recovered.ok()) << recovered.status().ToString();
  EXPECT_FALSE(*recovered);
  EXPECT_FALSE(RecoverStaleMount(temp.path() + "/missing").ok());
}

TEST(AbortConnectionTest, EndsALiveConnection) {
  TempDir temp;
  std::string dir = temp.MakeSubdir("layer");
  MemoryTree tree;
  auto server = Server::Mount(tree, dir, MountOptions());
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  ASSERT_TRUE(AbortConnection((*server)->device()).ok());
  EXPECT_EQ(StatfsErrno(dir), ENOTCONN);
  for (int i = 0; i < 500 && (*server)->serving(); i++) ::usleep(10000);
  EXPECT_FALSE((*server)->serving());
  EXPECT_TRUE((*server)->Unmount().ok());  // removes the dead mount
  EXPECT_FALSE(IsMountPoint(dir));
  EXPECT_TRUE(AbortConnection((*server)->device()).ok());  // gone: nothing to do
  EXPECT_TRUE(AbortConnection(makedev(8, 1)).IsInvalidArgument());
}

}  // namespace
}  // namespace strata::fuse::testing
