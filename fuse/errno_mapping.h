// How the server answers the kernel when a Tree call fails: the Status -> errno table
// documented in fuse/tree.h. Internal to fuse/ (public for its test).
#pragma once

#include "core/status.h"

namespace strata::fuse {

// Which kind of call failed; it decides the errno of the codes that depend on it.
enum class Call {
  kNode,      // lookup, getattr, readdir, statfs...: FailedPrecondition -> ENOTDIR
  kFileData,  // open, read: FailedPrecondition -> EISDIR
  kReadLink,  // FailedPrecondition -> EINVAL (not a symlink)
  kXattr,     // NotFound and Unimplemented -> ENODATA
};

// The errno for a failed (non-OK) `status`. Classes the table does not name, and the
// failures of fetching (Unavailable, DeadlineExceeded, DataLoss...), become EIO.
int ErrnoFor(const Status& status, Call call);

}  // namespace strata::fuse
