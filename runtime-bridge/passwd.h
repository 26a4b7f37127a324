// Resolving a container's USER against the image's own /etc/passwd and /etc/group, as
// Docker and containerd do. The files are read inside the root filesystem: symlinks in
// the image resolve within it (openat2 RESOLVE_IN_ROOT) and can never reach the host's.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace strata::runtime {

struct ResolvedUser {
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<uint32_t> additional_gids;  // groups of /etc/group that list the user
  std::string home = "/";                 // from /etc/passwd, "/" when unknown
};

// Resolves `user` ("", "NAME", "UID", "NAME:GROUP", "UID:GID", ...) within `rootfs`:
//  - empty means root (uid 0, gid 0);
//  - a name must exist in /etc/passwd; a numeric uid need not (gid 0 then);
//  - a group name must exist in /etc/group; a numeric gid need not;
//  - without an explicit group the passwd entry's group is used.
// InvalidArgument naming the user or group when a name is unknown or malformed; a
// missing /etc/passwd is the same as an empty one. Files larger than 4 MiB are refused.
Result<ResolvedUser> ResolveUser(const std::string& rootfs, std::string_view user);

// Reads `path` (absolute, as seen inside the container) from `rootfs` without leaving
// it. NotFound when absent; at most `max_bytes` (larger: FailedPrecondition).
Result<std::string> ReadFileInRoot(const std::string& rootfs, const std::string& path,
                                   size_t max_bytes);

}  // namespace strata::runtime
