// User namespaces for tasks, and a container root filesystem whose files the container
// sees as its own without any file being chowned.
//
// A task with a user namespace runs its "root" as an unprivileged host id (say 100000).
// The image's files are owned by host root on disk, so the container would see them
// as nobody. Two ways to fix that:
//
//  * idmapped mounts (Linux 5.12+; overlayfs accepts idmapped layers since 5.19): each
//    lower layer is cloned as a detached mount carrying the task's id mapping
//    (mount_setattr(MOUNT_ATTR_IDMAP)), and the overlay is built on those clones. A
//    file owned by 0 on disk then appears as 100000 on the host and as 0 inside the
//    container. Cost: one syscall per layer, whatever the image's size. The overlay
//    mount itself cannot be idmapped (overlayfs refuses it), so the upper directory is
//    not: what the container writes is stored as the host ids (100000), which is what
//    a user-namespaced container's files should be on the host.
//  * a chown of every file through the overlay (the fallback, for kernels or layers
//    that refuse idmapped mounts, e.g. FUSE lazy layers on kernels without FUSE idmap
//    support). With `metacopy=on` overlayfs copies up only the metadata; without it,
//    every file's data is copied into the upper directory. Cost grows with the number
//    of files: seconds to minutes for large images.
//
// MountRemapped picks the first that works (idmapped, then metacopy chown, then plain
// chown) unless one is forced, and reports which one it used.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/idmap.h"
#include "core/mount.h"
#include "core/status.h"
#include "core/unique_fd.h"

namespace strata::runtime {

using ::strata::IdMap;  // core/idmap.h: FormatIdMap, ParseIdMap

// What `--userns` asked for.
struct UsernsRequest {
  enum class Mode { kHost, kAuto, kExplicit };
  Mode mode = Mode::kHost;
  IdMap map;  // kExplicit only: used for both uids and gids
};
// "" and "host": no user namespace; "auto": a free range of 65536 ids chosen by the
// task manager; "C:H:L": that mapping. InvalidArgument otherwise.
Result<UsernsRequest> ParseUsernsRequest(std::string_view text);

// A new user namespace with these single-line mappings, as an open /proc/PID/ns/user
// fd (the helper process that created it has exited). Needs CAP_SETUID/CAP_SETGID.
Result<UniqueFd> NewUserNamespace(const IdMap& uids, const IdMap& gids);

// Clones the mount at `source` (not recursively) as a detached mount idmapped through
// user namespace `userns_fd`, and attaches it at existing directory `target`.
// FailedPrecondition when the filesystem or kernel refuses idmapped mounts (EINVAL,
// ENOSYS, EPERM, EOPNOTSUPP); other errors as errno statuses naming the paths.
Status IdmapBind(const std::string& source, const std::string& target, int userns_fd);

enum class RemapMethod { kIdmapped, kMetacopyChown, kChown };
std::string_view RemapMethodName(RemapMethod method);
// "idmapped", "metacopy-chown", "chown"; InvalidArgument otherwise.
Result<RemapMethod> ParseRemapMethod(std::string_view name);

struct RemapOptions {
  IdMap uids;
  IdMap gids;
  // A directory MountRemapped may use for the layers' idmapped clones while it builds
  // the overlay; they are detached again before it returns.
  std::string scratch_dir;
  // Only this method, or fail; otherwise the first that works, in enum order.
  std::optional<RemapMethod> force;
};

// Mounts `mounts` (what Snapshotter::Prepare returned for an active snapshot: one
// overlay, or one bind of a parentless snapshot) at `target`, remapped for a user
// namespace as described above, and returns the method used. When the method changes
// ownership (the chowns), the snapshot's upper directory carries the change. The root
// of the upper directory is owned by the mapped root either way. On failure nothing
// stays mounted at `target`.
Result<RemapMethod> MountRemapped(const std::vector<Mount>& mounts, const std::string& target,
                                  const RemapOptions& options);

// Changes the owner of every file under `dir` (which must have no mounts below it) from a
// container id to its host id under `uids`/`gids`; ids outside the mapping are left
// alone. Set-user-ID and set-group-ID bits, which chown clears, are restored.
// Returns the number of entries changed.
Result<uint64_t> ShiftOwnership(const std::string& dir, const IdMap& uids, const IdMap& gids);

}  // namespace strata::runtime
