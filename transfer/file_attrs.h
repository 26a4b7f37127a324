// Ownership, mode, extended attributes and times of one file, read and applied in the
// order that keeps each of them: owner first (chown clears setuid/setgid bits and
// security.capability), then mode, then xattrs with security.capability last, then
// times (nothing after it touches mtime).
#pragma once

#include <sys/stat.h>
#include <time.h>

#include <map>
#include <string>
#include <string_view>

#include "core/status.h"

namespace strata::transfer {

// The file an attribute call acts on: an open descriptor (regular files and
// directories), or `name` in the directory open as `dir_fd` for what is never opened
// (symlinks, devices, fifos); a name is never followed if it is a symlink.
struct FileRef {
  int fd = -1;
  int dir_fd = -1;
  std::string name;
};

struct FileAttrs {
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t mode = 0;  // permission bits with setuid, setgid, sticky (07777)
  std::map<std::string, std::string> xattrs;
  struct timespec atime = {0, UTIME_OMIT};
  struct timespec mtime = {0, UTIME_OMIT};
};

// What kind of file ApplyAttrs is given: symlinks take no mode, and only regular files
// and directories may carry user.* xattrs.
enum class FileKind { kRegularOrDirectory, kSymlink, kOther };

// overlayfs's own xattrs (trusted.overlay.*, user.overlay.*). A layer does not get to
// set them: opacity comes from ".wh..wh..opq", and redirect or metacopy xattrs from an
// archive could point overlayfs at other files of the lower layers.
bool IsOverlayXattr(std::string_view name);

// Applies owner, mode (not for symlinks), xattrs (overlay ones skipped; ENOTSUP from
// the filesystem and EPERM for user.* on special files ignored, as containerd does)
// and, when `set_times`, times. Errors say which step failed.
Status ApplyAttrs(const FileRef& file, FileKind kind, const FileAttrs& attrs, bool set_times);

// Reads owner, mode, xattrs (without overlay ones) and times of a file.
Result<FileAttrs> ReadAttrs(const FileRef& file);

}  // namespace strata::transfer
