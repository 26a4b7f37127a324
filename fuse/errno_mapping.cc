#include "fuse/errno_mapping.h"

#include <cerrno>

namespace strata::fuse {

int ErrnoFor(const Status& status, Call call) {
  switch (status.code()) {
    case Code::kOk:
      return 0;
    case Code::kNotFound:
      return call == Call::kXattr ? ENODATA : ENOENT;
    case Code::kInvalidArgument:
      return EINVAL;
    case Code::kFailedPrecondition:
      switch (call) {
        case Call::kFileData:
          return EISDIR;
        case Call::kReadLink:
          return EINVAL;
        case Call::kNode:
        case Call::kXattr:
          return ENOTDIR;
      }
      return ENOTDIR;
    case Code::kOutOfRange:
      return ERANGE;
    case Code::kUnimplemented:
      return call == Call::kXattr ? ENODATA : ENOSYS;
    default:
      return EIO;
  }
}

}  // namespace strata::fuse
