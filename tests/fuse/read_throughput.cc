// fuse_read_throughput [SIZE_MIB]: sequential read throughput of one in-memory file
// (default 256 MiB) served through fuse::Server, read with 1 MiB read(2) calls, beside
// the same bytes read from tmpfs. Needs root and /dev/fuse. A measurement, not a test:
// it prints a table and checks only that the bytes are right.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "fuse/server.h"
#include "tests/fuse/memory_tree.h"

namespace {

using strata::fuse::testing::MemoryTree;
using strata::fuse::testing::PatternBytes;

constexpr size_t kReadBytes = 1 << 20;

// Reads `path` front to back; returns MB/s (0 when the bytes differ or a read fails).
double ReadThroughput(const std::string& path, const std::string& expected, int extra_flags) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | extra_flags);
  if (fd < 0) {
    std::perror(path.c_str());
    return 0;
  }
  void* buf = nullptr;
  if (::posix_memalign(&buf, 4096, kReadBytes) != 0) return 0;
  auto start = std::chrono::steady_clock::now();
  size_t total = 0;
  bool same = true;
  for (;;) {
    ssize_t n = ::read(fd, buf, kReadBytes);
    if (n < 0) {
      std::perror("read");
      same = false;
      break;
    }
    if (n == 0) break;
    same = same && std::memcmp(buf, expected.data() + total, n) == 0;
    total += n;
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ::close(fd);
  std::free(buf);
  if (!same || total != expected.size()) {
    std::fprintf(stderr, "%s: content differs\n", path.c_str());
    return 0;
  }
  return static_cast<double>(total) / 1e6 / seconds;
}

}  // namespace

int main(int argc, char** argv) {
  size_t size_mib = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 256;
  std::string content = PatternBytes(size_mib << 20, 7);

  char dir_template[] = "/tmp/strata-fuse-bench-XXXXXX";
  if (::mkdtemp(dir_template) == nullptr) return 1;
  std::string dir = dir_template;
  MemoryTree tree;
  tree.AddFile(strata::fuse::kRootIno, "file.bin", content);
  auto server = strata::fuse::Server::Mount(tree, dir, strata::fuse::MountOptions());
  if (!server.ok()) {
    std::fprintf(stderr, "mount: %s\n", server.status().ToString().c_str());
    return 1;
  }
  std::string fuse_file = dir + "/file.bin";
  double fuse_cold = ReadThroughput(fuse_file, content, 0);
  double fuse_cached = ReadThroughput(fuse_file, content, 0);
  double fuse_direct = ReadThroughput(fuse_file, content, O_DIRECT);
  (void)(*server)->Unmount();
  ::rmdir(dir.c_str());

  std::string tmpfs_file = "/dev/shm/strata-fuse-bench.bin";
  int fd = ::open(tmpfs_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 ||
      ::write(fd, content.data(), content.size()) != static_cast<ssize_t>(content.size())) {
    std::perror(tmpfs_file.c_str());
    return 1;
  }
  ::close(fd);
  double tmpfs = ReadThroughput(tmpfs_file, content, 0);
  ::unlink(tmpfs_file.c_str());

  std::printf("sequential read of %zu MiB, 1 MiB read(2) calls\n", size_mib);
  std::printf("%-44s %10s\n", "path", "MB/s");
  std::printf("%-44s %10.0f\n", "FUSE, first read (served by the tree)", fuse_cold);
  std::printf("%-44s %10.0f\n", "FUSE, second read (kernel page cache)", fuse_cached);
  std::printf("%-44s %10.0f\n", "FUSE, O_DIRECT (every byte from the tree)", fuse_direct);
  std::printf("%-44s %10.0f\n", "tmpfs (/dev/shm), same bytes", tmpfs);
  return fuse_cold > 0 && fuse_cached > 0 && fuse_direct > 0 && tmpfs > 0 ? 0 : 1;
}
