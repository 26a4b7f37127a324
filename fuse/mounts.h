// FUSE mounts seen from outside their server: listing them, ending a connection, and
// recovering the mount points a dead server left behind.
//
// When a FUSE server dies (stratad crashed or was killed), its mounts stay in the
// mount table, but every access to them fails with ENOTCONN ("Transport endpoint is
// not connected"): the directory cannot be listed, removed or mounted over. stratad
// calls RecoverStaleMount on each of its mount points at start-up (ListFuseMounts
// finds them) before mounting there again.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace strata::fuse {

// One line of /proc/self/mountinfo, the fields this module needs.
struct MountInfoEntry {
  std::string mount_point;  // absolute, with mountinfo's octal escapes (\040...) decoded
  std::string fs_type;      // "fuse.strata-stargz", "overlay", ...
  std::string source;       // what MountOptions::fs_name set for strata's mounts
  dev_t device = 0;         // the superblock's device number (st_dev of the mount root)
};

// Parses mountinfo text (proc(5)); malformed lines are skipped.
std::vector<MountInfoEntry> ParseMountInfo(std::string_view text);

// The topmost mount at exactly `mount_point` (absolute, without symlinks), or nullopt
// when nothing is mounted there.
Result<std::optional<MountInfoEntry>> FindMount(const std::string& mount_point);

// True for the types FUSE mounts have: "fuse", "fuseblk" and "fuse.<subtype>".
bool IsFuseType(std::string_view fs_type);

// The FUSE mounts at or below directory `dir` in this process's mount namespace, in
// mount order (a mount before the ones on top of or below it). Works when `dir`
// itself is a dead mount.
Result<std::vector<MountInfoEntry>> ListFuseMounts(const std::string& dir);

// Ends the FUSE connection of the mount whose device is `device` by writing to its
// abort file in fusectl (/sys/fs/fuse/connections/<minor>/abort; when fusectl is not
// mounted there, a private fusectl mount is made for the write and removed). Every
// pending and future request on it fails with ENOTCONN and its server's loop ends.
// OK when the connection no longer exists; InvalidArgument when `device` cannot be a
// FUSE connection (major number not 0).
Status AbortConnection(dev_t device);

// If `path` is a dead FUSE mount, detaches it (umount2 MNT_DETACH) — repeatedly, if
// dead mounts are stacked there — so that the directory can be used again, and
// returns true. Dead means statfs(2) fails with ENOTCONN or ECONNABORTED (statfs
// always reaches the server; stat may be answered from the kernel's attribute cache
// even on a dead mount), or `path` is a FUSE mount whose server does not answer
// within `probe_timeout` (its connection is aborted first, so that nothing hangs on
// it). Returns false and changes nothing when `path` is not a mount point or its
// server answers. The probe runs on a helper thread so that a hung server cannot
// hang the caller. NotFound when `path` does not exist.
Result<bool> RecoverStaleMount(const std::string& path,
                               std::chrono::milliseconds probe_timeout = std::chrono::seconds(2));

}  // namespace strata::fuse
