// RootDir: a directory tree that hostile archive paths are applied beneath. Every path
// is resolved inside the root without following any symlink, so nothing an archive
// says can reach a file outside it.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"
#include "core/unique_fd.h"

namespace strata::transfer {

using ::strata::UniqueFd;

// Cleans an archive member's path lexically, as containerd does before applying it:
// drops empty and "." components and a trailing '/', folds "a/../b" into "b". Returns
// the components joined by '/', "" for the root itself.
// InvalidArgument for an empty path, an absolute path, and a ".." that would climb
// above the root ("../x", "a/../../x"): those are refused, not clamped to the root.
Result<std::string> CleanArchivePath(std::string_view path);

// The parent part ("" at top level) and the final component of a cleaned, non-empty path.
std::pair<std::string, std::string> SplitPath(const std::string& clean_path);

// "/proc/self/fd/<dir_fd>/<name>": names `name` in the directory open as `dir_fd` for
// the calls that exist only with a path (lsetxattr, llistxattr, ...). The kernel
// resolves the fd link to that very directory; the final component is not followed by
// the l* calls.
std::string FdPath(int dir_fd, const std::string& name);

// Thread-compatible (one thread at a time).
class RootDir {
 public:
  // Opens the existing directory `path` as the root. NotFound or FailedPrecondition
  // when it is missing or not a directory.
  static Result<RootDir> Open(const std::string& path);

  RootDir(RootDir&&) = default;
  RootDir& operator=(RootDir&&) = default;

  int fd() const { return root_.get(); }
  const std::string& path() const { return path_; }

  // Returns a descriptor of the directory at `clean_path` (as CleanArchivePath returns
  // it; "" is the root), found without following any symlink and without leaving the
  // root. The descriptor stays owned by the RootDir and valid until the next call of
  // OpenDir or Invalidate.
  //
  // Missing directories are created (mode 0755, owned by the caller) when
  // `create_missing`, and appended to `created` (may be null) parents first.
  // Otherwise, and on any other obstacle, fails:
  //   NotFound when a component does not exist (and !create_missing);
  //   PermissionDenied "... goes through symlink X" when a component is a symlink;
  //   FailedPrecondition "... X is not a directory" when a component is something else.
  Result<int> OpenDir(const std::string& clean_path, bool create_missing,
                      std::vector<std::string>* created);

  // Like OpenDir without creating anything, but the caller owns the result.
  Result<UniqueFd> OpenDirOwned(const std::string& clean_path);

  // Must be called before replacing or removing whatever is at `clean_path`: drops a
  // cached descriptor of it or of a directory below it.
  void Invalidate(const std::string& clean_path);

 private:
  RootDir(UniqueFd root, std::string path) : root_(std::move(root)), path_(std::move(path)) {}
  Result<UniqueFd> Resolve(const std::string& clean_path, bool create_missing,
                           std::vector<std::string>* created);
  Result<UniqueFd> Walk(const std::string& clean_path, bool create_missing,
                        std::vector<std::string>* created);

  UniqueFd root_;
  std::string path_;
  // The last directory opened: entries of one directory usually come one after another.
  UniqueFd cached_;
  std::string cached_path_;
};

}  // namespace strata::transfer
