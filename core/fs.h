// Small filesystem helpers shared by every module. All return Status; none throws.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace strata::fs {

// Creates `path` and missing parents with `mode`. OK if it already is a directory.
Status MakeDirs(const std::string& path, mode_t mode = 0755);

// Creates exactly one directory; AlreadyExists if something is there.
Status MakeDir(const std::string& path, mode_t mode);

// Removes `path` recursively without following symlinks; OK if it does not exist.
// Mount points below `path` are not crossed (EBUSY is reported as an error).
Status RemoveAll(const std::string& path);

// fsyncs a directory so that entries created or removed in it are durable.
Status SyncDir(const std::string& path);

// Writes `data` to `path` atomically: temp file in the same directory, fsync, rename,
// fsync of the directory.
Status WriteFileAtomic(const std::string& path, const std::string& data, mode_t mode = 0644);

// Writes all of `data` to `fd`, across short writes and EINTR. A socket is written with
// MSG_NOSIGNAL: a peer that went away is an error (EPIPE), not a SIGPIPE. Errors are
// FromErrno statuses naming `what` (ENOSPC/EDQUOT: ResourceExhausted).
Status WriteAll(int fd, std::string_view data, std::string_view what);

// Reads a whole (small) file.
Result<std::string> ReadFile(const std::string& path);

// Calls `fn` with the file's content in successive pieces of at most `chunk_bytes`.
Status ReadFileChunks(const std::string& path, size_t chunk_bytes,
                      const std::function<void(std::string_view)>& fn);

// The names in directory `path`, without "." and "..", in directory order.
Result<std::vector<std::string>> ListDir(const std::string& path);

bool Exists(const std::string& path);
// True only when `path` (not followed if a symlink) does not exist (ENOENT, ENOTDIR);
// false when it exists or cannot be looked at (a dead FUSE mount: ENOTCONN).
bool Missing(const std::string& path);

struct DiskUsage {
  int64_t size_bytes = 0;  // allocated bytes (st_blocks * 512), each inode counted once
  int64_t inodes = 0;      // distinct inodes, the root included
};

// Walks `path` (not crossing mount points) and sums allocated size and inodes the way
// containerd's fs.DiskUsage does.
Result<DiskUsage> UsageOf(const std::string& path);

// Returns the final component of `path`.
std::string BaseName(const std::string& path);
// Returns `path` without its final component ("." for a bare name).
std::string DirName(const std::string& path);

}  // namespace strata::fs
