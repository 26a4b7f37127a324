// Linux mounts in containerd's model: a Mount is (type, source, options) applied at a
// target. Used by tests, the CLI and later the runtime bridge to mount what the
// snapshotter returns.
#pragma once

#include <string>
#include <vector>

#include "core/status.h"

namespace strata {

struct Mount {
  std::string type;
  std::string source;
  std::string target;  // optional sub-path; empty means the mount target itself
  std::vector<std::string> options;
};

// Applies `mounts` in order on `target`. Understands "bind"/"rbind", "ro"/"rw" and the
// usual flag words; everything else goes into the data string. When an overlay's data
// would exceed a page (long lowerdir chains), the common parent of the lower
// directories is factored out: a child process changes into it and mounts with
// relative paths, as containerd does.
Status MountAll(const std::vector<Mount>& mounts, const std::string& target);

// Unmounts `target` (lazily detaching with MNT_DETACH when `detach`). OK when `target`
// is not a mount point.
Status Unmount(const std::string& target, bool detach = false);

// True when `path` is a mount point (its device differs from its parent's, or it is
// listed in /proc/self/mountinfo).
bool IsMountPoint(const std::string& path);

}  // namespace strata
