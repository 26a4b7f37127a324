// fuse::Tree — a read-only filesystem as the FUSE adapter (fuse/server.h) serves it.
// Lazy formats (lazy/stargz, lazy/nydus) implement it from their metadata; tests
// implement it in memory. The adapter owns nothing of the tree and adds no state but
// the kernel's lookup counts.
//
// Inode numbers are the tree's: kRootIno is the root, every other number is whatever
// the tree chooses, stable for the life of the tree (hard links share one number).
// Errors are Status codes the adapter turns into errnos:
//   NotFound -> ENOENT, InvalidArgument -> EINVAL, FailedPrecondition -> ENOTDIR
//   (lookup, readdir), EISDIR (read) or EINVAL (readlink of a non-symlink),
//   OutOfRange -> ERANGE (xattr buffer), Unimplemented -> ENODATA for GetXattr (an
//   empty list for ListXattr) / ENOSYS otherwise, everything else (Unavailable,
//   DeadlineExceeded, DataLoss: a fetch that failed or bytes that did not verify)
//   -> EIO. fuse/errno_mapping.h implements this table.
//
// Thread safety: every method may be called from many threads at once. No method may
// throw: the adapter calls them from libfuse's C worker threads.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace strata::fuse {

using Ino = uint64_t;
inline constexpr Ino kRootIno = 1;

struct Attr {
  Ino ino = 0;
  mode_t mode = 0;  // type and permission bits (S_IFREG | 0644, ...)
  uint32_t nlink = 1;
  uid_t uid = 0;
  gid_t gid = 0;
  uint64_t size = 0;        // bytes; a symlink's target length
  uint64_t blocks_512 = 0;  // st_blocks: 512-byte units actually backing the file
  dev_t rdev = 0;           // device numbers of char/block devices (makedev)
  timespec atime{}, mtime{}, ctime{};
};

struct DirEntry {
  std::string name;
  Ino ino = 0;
  mode_t type = 0;  // S_IFMT bits only
  // Position to resume a listing after this entry (ReadDir's `offset`). Strictly
  // increasing within one listing; never 0.
  uint64_t next_offset = 0;
};

struct FsStats {
  uint64_t blocks = 0;  // in units of block_size
  uint64_t files = 0;
  uint32_t block_size = 4096;
  uint32_t name_max = 255;
};

class Tree {
 public:
  virtual ~Tree() = default;

  // The child `name` of directory `parent`.
  virtual Result<Attr> Lookup(Ino parent, std::string_view name) = 0;
  virtual Result<Attr> GetAttr(Ino ino) = 0;
  // Calls `emit` for the entries of directory `dir` after position `offset` (0: from
  // the start; "." and ".." included), in order, until it returns false.
  virtual Status ReadDir(Ino dir, uint64_t offset,
                         const std::function<bool(const DirEntry&)>& emit) = 0;
  virtual Result<std::string> ReadLink(Ino ino) = 0;
  // Reads up to `n` bytes at `offset` of regular file `ino` into `buf`; fewer only at
  // the end of the file. May block on a fetch, within the tree's own deadline.
  virtual Result<size_t> Read(Ino ino, char* buf, size_t n, uint64_t offset) = 0;
  // NotFound (-> ENODATA) when the file has no such attribute.
  virtual Result<std::string> GetXattr(Ino ino, std::string_view name) = 0;
  virtual Result<std::vector<std::string>> ListXattr(Ino ino) = 0;
  virtual FsStats StatFs() = 0;
};

}  // namespace strata::fuse
