// Shared pieces of the FUSE tests: a temporary directory, a raw directory lister, and
// the fixture that builds the sample tree and mounts it.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "fuse/server.h"
#include "tests/fuse/memory_tree.h"

namespace strata::fuse::testing {

// A fresh directory under /tmp, removed (without crossing mount points) at the end.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // Creates and returns the subdirectory `name`.
  std::string MakeSubdir(const std::string& name) const;

 private:
  std::string path_;
};

struct ListedEntry {
  std::string name;
  ino_t ino = 0;
  unsigned char type = 0;  // DT_*
};

// Lists `dir` with raw getdents64(2) calls into a `buffer_bytes` buffer, as `ls -f`
// does: every entry in directory order, "." and ".." included.
std::vector<ListedEntry> ListWithGetdents(const std::string& dir, size_t buffer_bytes);

// True when something is mounted at exactly `path` (per /proc/self/mountinfo).
bool IsMountPoint(const std::string& path);

// Builds the sample tree (see SetUp for what it holds) and mounts it with Mount().
// TearDown unmounts and checks that the mount is gone from mountinfo.
class MountedTreeTest : public ::testing::Test {
 protected:
  static constexpr size_t kManyEntries = 5000;
  static constexpr size_t kBigFileBytes = 5 * 1024 * 1024 + 123;

  void SetUp() override;
  void TearDown() override;

  // Mounts the tree at mnt() with `options` (fs_name "strata-test", subtype
  // "strata-test" unless set).
  void Mount(MountOptions options = {});
  std::string mnt() const { return mountpoint_; }
  std::string At(const std::string& relative) const { return mountpoint_ + "/" + relative; }

  TempDir temp_;
  std::string mountpoint_;
  MemoryTree tree_;
  std::unique_ptr<Server> server_;

  Ino hello_ = 0, big_ = 0, link_ = 0, hard_a_ = 0, null_dev_ = 0, loop_dev_ = 0, fifo_ = 0,
      whiteout_ = 0, opaque_ = 0, xattrs_ = 0, many_ = 0, sizes_ = 0, unavailable_ = 0, slow_ = 0,
      fast_ = 0, sleepy_ = 0;
  std::string big_content_;
  std::vector<std::pair<std::string, std::string>> sized_files_;  // name, content

  // Coordination of the slow/fast reads (MultithreadedReads test).
  std::mutex order_mu_;
  std::condition_variable order_cv_;
  std::atomic<bool> slow_entered_{false};
  std::atomic<bool> fast_served_{false};
  std::atomic<bool> slow_released_by_fast_{false};
};

}  // namespace strata::fuse::testing
