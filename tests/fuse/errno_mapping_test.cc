#include "fuse/errno_mapping.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace strata::fuse {
namespace {

TEST(ErrnoMappingTest, FollowsTheTableInTreeH) {
  EXPECT_EQ(ErrnoFor(Status::NotFound("x"), Call::kNode), ENOENT);
  EXPECT_EQ(ErrnoFor(Status::NotFound("x"), Call::kXattr), ENODATA);
  EXPECT_EQ(ErrnoFor(Status::InvalidArgument("x"), Call::kNode), EINVAL);
  EXPECT_EQ(ErrnoFor(Status::FailedPrecondition("x"), Call::kNode), ENOTDIR);
  EXPECT_EQ(ErrnoFor(Status::FailedPrecondition("x"), Call::kFileData), EISDIR);
  EXPECT_EQ(ErrnoFor(Status::FailedPrecondition("x"), Call::kReadLink), EINVAL);
  EXPECT_EQ(ErrnoFor(Status(Code::kOutOfRange, "x"), Call::kXattr), ERANGE);
  EXPECT_EQ(ErrnoFor(Status::Unimplemented("x"), Call::kXattr), ENODATA);
  EXPECT_EQ(ErrnoFor(Status::Unimplemented("x"), Call::kNode), ENOSYS);
}

TEST(ErrnoMappingTest, FetchFailuresAndEverythingElseAreEio) {
  for (Code code : {Code::kUnavailable, Code::kDeadlineExceeded, Code::kDataLoss, Code::kInternal,
                    Code::kUnknown, Code::kPermissionDenied, Code::kCancelled}) {
    EXPECT_EQ(ErrnoFor(Status(code, "x"), Call::kFileData), EIO) << static_cast<int>(code);
  }
}

}  // namespace
}  // namespace strata::fuse
