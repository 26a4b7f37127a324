#include "tests/fuse/test_support.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "core/fs.h"
#include "fuse/mounts.h"

namespace strata::fuse::testing {
namespace {

// A hook body that serves `content` like MemoryTree's own Read.
size_t CopyRange(const std::string& content, char* buf, size_t n, uint64_t offset) {
  if (offset >= content.size()) return 0;
  size_t count = std::min<uint64_t>(n, content.size() - offset);
  std::memcpy(buf, content.data() + offset, count);
  return count;
}

}  // namespace

TempDir::TempDir() {
  char tmpl[] = "/tmp/strata-fuse-test-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) std::abort();
  path_ = tmpl;
}

TempDir::~TempDir() {
  Status st = fs::RemoveAll(path_);
  if (!st.ok()) ADD_FAILURE() << "removing " << path_ << ": " << st.ToString();
}

std::string TempDir::MakeSubdir(const std::string& name) const {
  std::string dir = path_ + "/" + name;
  Status st = fs::MakeDirs(dir);
  if (!st.ok()) ADD_FAILURE() << st.ToString();
  return dir;
}

std::vector<ListedEntry> ListWithGetdents(const std::string& dir, size_t buffer_bytes) {
  std::vector<ListedEntry> entries;
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    ADD_FAILURE() << "open " << dir << ": " << std::strerror(errno);
    return entries;
  }
  std::vector<char> buf(buffer_bytes);
  for (;;) {
    long n = ::syscall(SYS_getdents64, fd, buf.data(), buf.size());
    if (n < 0) {
      ADD_FAILURE() << "getdents64 " << dir << ": " << std::strerror(errno);
      break;
    }
    if (n == 0) break;
    for (long pos = 0; pos < n;) {
      // struct linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, char name[].
      const char* record = buf.data() + pos;
      uint64_t ino;
      uint16_t reclen;
      std::memcpy(&ino, record, sizeof ino);
      std::memcpy(&reclen, record + 16, sizeof reclen);
      ListedEntry entry;
      entry.ino = ino;
      entry.type = static_cast<unsigned char>(record[18]);
      entry.name = record + 19;
      entries.push_back(std::move(entry));
      pos += reclen;
    }
  }
  ::close(fd);
  return entries;
}

bool IsMountPoint(const std::string& path) {
  Result<std::optional<MountInfoEntry>> found = FindMount(path);
  return found.ok() && found->has_value();
}

void MountedTreeTest::SetUp() {
  mountpoint_ = temp_.MakeSubdir("mnt");
  MemoryTree& t = tree_;

  hello_ = t.AddFile(kRootIno, "hello.txt", "hello, world\n");
  t.MutableAttr(hello_).uid = 1234;
  t.MutableAttr(hello_).gid = 5678;
  t.MutableAttr(hello_).blocks_512 = 24;  // not what the size implies: must pass through

  big_content_ = PatternBytes(kBigFileBytes, 1);
  big_ = t.AddFile(kRootIno, "big.bin", big_content_);

  link_ = t.AddSymlink(kRootIno, "link", "hello.txt");
  t.AddSymlink(kRootIno, "dangling", "/nonexistent/target");

  hard_a_ = t.AddFile(kRootIno, "hard-a", "shared content");
  t.AddHardLink(kRootIno, "hard-b", hard_a_);

  null_dev_ = t.AddSpecial(kRootIno, "null", S_IFCHR, makedev(1, 3), 0666);
  loop_dev_ = t.AddSpecial(kRootIno, "loop0", S_IFBLK, makedev(7, 0), 0660);
  fifo_ = t.AddSpecial(kRootIno, "fifo", S_IFIFO, 0, 0644);
  // overlayfs' whiteout: a 0:0 character device.
  whiteout_ = t.AddSpecial(kRootIno, "whiteout", S_IFCHR, makedev(0, 0), 0);

  opaque_ = t.AddDir(kRootIno, "opaque");
  t.SetXattr(opaque_, "trusted.overlay.opaque", "y");
  t.AddFile(opaque_, "inside.txt", "inside the opaque directory\n");

  xattrs_ = t.AddFile(kRootIno, "xattrs.txt", "has attributes\n");
  t.SetXattr(xattrs_, "user.short", "v");
  t.SetXattr(xattrs_, "user.long", std::string(300, 'x'));

  many_ = t.AddDir(kRootIno, "many");
  for (size_t i = 0; i < kManyEntries; i++) {
    char name[16];
    std::snprintf(name, sizeof name, "f%05zu", i);
    t.AddFile(many_, name, "");
  }

  sizes_ = t.AddDir(kRootIno, "sizes");
  for (size_t size :
       {0ul, 1ul, 4095ul, 4096ul, 4097ul, 65536ul, 131073ul, 1048576ul + 1, 3 * 1048576ul + 5}) {
    std::string name = "size-" + std::to_string(size);
    std::string content = PatternBytes(size, static_cast<uint32_t>(size));
    t.AddFile(sizes_, name, content);
    sized_files_.emplace_back(name, std::move(content));
  }

  unavailable_ = t.AddFile(kRootIno, "unavailable.bin", std::string(100, 'u'));
  t.SetReadHook(unavailable_, [](char*, size_t, uint64_t) -> Result<size_t> {
    return Status::Unavailable("registry unreachable (test)");
  });
  t.FailLookup(kRootIno, "broken", Status::Unavailable("metadata unreachable (test)"));

  // slow.bin blocks in the tree until fast.bin has been served (at most 10 s).
  auto slow_content = std::make_shared<std::string>(PatternBytes(65536, 2));
  slow_ = t.AddFile(kRootIno, "slow.bin", *slow_content);
  t.SetReadHook(slow_, [this, slow_content](char* buf, size_t n, uint64_t offset) {
    std::unique_lock<std::mutex> lock(order_mu_);
    slow_entered_ = true;
    order_cv_.notify_all();
    if (order_cv_.wait_for(lock, std::chrono::seconds(10), [&] { return fast_served_.load(); })) {
      slow_released_by_fast_ = true;
    }
    return Result<size_t>(CopyRange(*slow_content, buf, n, offset));
  });
  auto fast_content = std::make_shared<std::string>(PatternBytes(65536, 3));
  fast_ = t.AddFile(kRootIno, "fast.bin", *fast_content);
  t.SetReadHook(fast_, [this, fast_content](char* buf, size_t n, uint64_t offset) {
    size_t count = CopyRange(*fast_content, buf, n, offset);
    std::lock_guard<std::mutex> lock(order_mu_);
    fast_served_ = true;
    order_cv_.notify_all();
    return Result<size_t>(count);
  });

  // sleepy.bin takes 2 s in the tree for every read.
  auto sleepy_content = std::make_shared<std::string>(PatternBytes(8192, 4));
  sleepy_ = t.AddFile(kRootIno, "sleepy.bin", *sleepy_content);
  t.SetReadHook(sleepy_, [sleepy_content](char* buf, size_t n, uint64_t offset) {
    std::this_thread::sleep_for(std::chrono::seconds(2));
    return Result<size_t>(CopyRange(*sleepy_content, buf, n, offset));
  });
}

void MountedTreeTest::Mount(MountOptions options) {
  if (options.fs_name == MountOptions().fs_name) options.fs_name = "strata-test";
  if (options.subtype == MountOptions().subtype) options.subtype = "strata-test";
  Result<std::unique_ptr<Server>> server = Server::Mount(tree_, mountpoint_, options);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  server_ = std::move(server).value();
}

void MountedTreeTest::TearDown() {
  if (server_) {
    Status st = server_->Unmount();
    EXPECT_TRUE(st.ok()) << st.ToString();
    server_.reset();
  }
  EXPECT_FALSE(IsMountPoint(mountpoint_)) << mountpoint_ << " still mounted";
}

}  // namespace strata::fuse::testing
