#include "transfer/root_dir.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "core/quote.h"

namespace strata::transfer {

Result<std::string> CleanArchivePath(std::string_view path) {
  if (path.empty()) return Status::InvalidArgument("empty entry name");
  if (path[0] == '/') {
    return Status::InvalidArgument("absolute path " + Quote(path) + " refused");
  }
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    std::string_view part = path.substr(start, slash - start);
    start = slash + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (parts.empty()) {
        return Status::InvalidArgument("path " + Quote(path) + " climbs above the layer root");
      }
      parts.pop_back();
      continue;
    }
    parts.push_back(part);
  }
  std::string clean;
  for (std::string_view part : parts) {
    if (!clean.empty()) clean += '/';
    clean += part;
  }
  return clean;
}

std::pair<std::string, std::string> SplitPath(const std::string& clean_path) {
  size_t slash = clean_path.rfind('/');
  if (slash == std::string::npos) return {"", clean_path};
  return {clean_path.substr(0, slash), clean_path.substr(slash + 1)};
}

std::string FdPath(int dir_fd, const std::string& name) {
  return "/proc/self/fd/" + std::to_string(dir_fd) + "/" + name;
}

Result<RootDir> RootDir::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOTDIR) return Status::FailedPrecondition(path + " is not a directory");
    return Status::FromErrno(errno, "open " + path);
  }
  return RootDir(UniqueFd(fd), path);
}

Result<int> RootDir::OpenDir(const std::string& clean_path, bool create_missing,
                             std::vector<std::string>* created) {
  if (clean_path.empty()) return root_.get();
  if (cached_.valid() && cached_path_ == clean_path) return cached_.get();
  ASSIGN_OR_RETURN(UniqueFd fd, Resolve(clean_path, create_missing, created));
  cached_ = std::move(fd);
  cached_path_ = clean_path;
  return cached_.get();
}

Result<UniqueFd> RootDir::OpenDirOwned(const std::string& clean_path) {
  return Resolve(clean_path, false, nullptr);
}

void RootDir::Invalidate(const std::string& clean_path) {
  if (!cached_.valid()) return;
  if (clean_path.empty() || cached_path_ == clean_path ||
      (cached_path_.size() > clean_path.size() &&
       cached_path_.compare(0, clean_path.size(), clean_path) == 0 &&
       cached_path_[clean_path.size()] == '/')) {
    cached_.Reset();
    cached_path_.clear();
  }
}

Result<UniqueFd> RootDir::Resolve(const std::string& clean_path, bool create_missing,
                                  std::vector<std::string>* created) {
  if (clean_path.empty()) {
    int fd = ::fcntl(root_.get(), F_DUPFD_CLOEXEC, 0);
    if (fd < 0) return Status::FromErrno(errno, "dup " + path_);
    return UniqueFd(fd);
  }
  // Fast path: one openat2 that the kernel keeps beneath the root and off symlinks.
  struct open_how how = {};
  how.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  for (int attempt = 0; attempt < 4; attempt++) {
    long fd = ::syscall(SYS_openat2, root_.get(), clean_path.c_str(), &how, sizeof how);
    if (fd >= 0) return UniqueFd(static_cast<int>(fd));
    if (errno != EAGAIN && errno != EINTR) break;
  }
  // Slow path, component by component: creates what is missing, names what is in the
  // way, and serves kernels without openat2.
  return Walk(clean_path, create_missing, created);
}

Result<UniqueFd> RootDir::Walk(const std::string& clean_path, bool create_missing,
                               std::vector<std::string>* created) {
  struct stat root_st;
  if (::fstat(root_.get(), &root_st) != 0) return Status::FromErrno(errno, "stat " + path_);
  int dup = ::fcntl(root_.get(), F_DUPFD_CLOEXEC, 0);
  if (dup < 0) return Status::FromErrno(errno, "dup " + path_);
  UniqueFd current(dup);
  size_t start = 0;
  while (start < clean_path.size()) {
    size_t slash = clean_path.find('/', start);
    if (slash == std::string::npos) slash = clean_path.size();
    std::string name = clean_path.substr(start, slash - start);
    std::string so_far = clean_path.substr(0, slash);
    start = slash + 1;
    constexpr int kFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    int fd = ::openat(current.get(), name.c_str(), kFlags);
    bool made = false;
    if (fd < 0 && errno == ENOENT && create_missing) {
      if (::mkdirat(current.get(), name.c_str(), 0755) == 0) {
        made = true;
      } else if (errno != EEXIST) {
        return Status::FromErrno(errno, "mkdir " + Quote(so_far) + " in " + path_);
      }
      fd = ::openat(current.get(), name.c_str(), kFlags);
    }
    if (fd < 0) {
      int err = errno;
      struct stat st;
      if ((err == ELOOP || err == ENOTDIR) &&
          ::fstatat(current.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISLNK(st.st_mode)) {
          return Status(Code::kPermissionDenied,
                        "path " + Quote(clean_path) + " goes through symlink " + Quote(so_far));
        }
        return Status::FailedPrecondition("path " + Quote(clean_path) + ": " + Quote(so_far) +
                                          " is not a directory");
      }
      return Status::FromErrno(err, "open " + Quote(so_far) + " in " + path_);
    }
    current = UniqueFd(fd);
    struct stat st;
    if (::fstat(fd, &st) != 0) return Status::FromErrno(errno, "stat " + Quote(so_far));
    if (st.st_dev != root_st.st_dev) {
      return Status::FailedPrecondition("path " + Quote(clean_path) + " crosses mount point " +
                                        Quote(so_far));
    }
    if (made) {
      // mkdir honours the umask; implicit directories are exactly 0755.
      if (::fchmod(fd, 0755) != 0) return Status::FromErrno(errno, "chmod " + Quote(so_far));
      if (created != nullptr) created->push_back(so_far);
    }
  }
  return current;
}

}  // namespace strata::transfer
