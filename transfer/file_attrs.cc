#include "transfer/file_attrs.h"

#include <fcntl.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "core/quote.h"
#include "transfer/root_dir.h"

namespace strata::transfer {

namespace {

constexpr std::string_view kCapabilityXattr = "security.capability";

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

Status SetXattr(const FileRef& file, FileKind kind, const std::string& name,
                const std::string& value) {
  int rc = file.fd >= 0 ? ::fsetxattr(file.fd, name.c_str(), value.data(), value.size(), 0)
                        : ::lsetxattr(FdPath(file.dir_fd, file.name).c_str(), name.c_str(),
                                      value.data(), value.size(), 0);
  if (rc == 0) return Status::Ok();
  int err = errno;
  if (err == ENOTSUP) return Status::Ok();
  // The kernel allows user.* only on regular files and directories.
  if (err == EPERM && StartsWith(name, "user.") && kind != FileKind::kRegularOrDirectory) {
    return Status::Ok();
  }
  return Status::FromErrno(err, "setxattr " + Quote(name));
}

// Calls list/get until the buffer is large enough (a value may grow in between).
template <typename Call>
Result<std::string> SizedCall(Call call, const std::string& what) {
  for (int attempt = 0; attempt < 8; attempt++) {
    ssize_t size = call(nullptr, 0);
    if (size < 0 && errno == ENODATA) return Status::NotFound(what + ": no such attribute");
    if (size < 0) return Status::FromErrno(errno, what);
    std::string out(static_cast<size_t>(size), '\0');
    ssize_t got = call(out.data(), out.size());
    if (got >= 0) {
      out.resize(static_cast<size_t>(got));
      return out;
    }
    if (errno != ERANGE) return Status::FromErrno(errno, what);
  }
  return Status::Internal(what + ": size keeps changing");
}

}  // namespace

bool IsOverlayXattr(std::string_view name) {
  return StartsWith(name, "trusted.overlay.") || StartsWith(name, "user.overlay.");
}

Status ApplyAttrs(const FileRef& file, FileKind kind, const FileAttrs& attrs, bool set_times) {
  int rc = file.fd >= 0 ? ::fchown(file.fd, attrs.uid, attrs.gid)
                        : ::fchownat(file.dir_fd, file.name.c_str(), attrs.uid, attrs.gid,
                                     AT_SYMLINK_NOFOLLOW);
  if (rc != 0) {
    return Status::FromErrno(
        errno, "chown to " + std::to_string(attrs.uid) + ":" + std::to_string(attrs.gid));
  }
  if (kind != FileKind::kSymlink) {
    // Only called for a name when it is a device or fifo this unpack just made, so
    // following (fchmodat has no working no-follow flag) cannot leave the tree.
    rc = file.fd >= 0 ? ::fchmod(file.fd, attrs.mode)
                      : ::fchmodat(file.dir_fd, file.name.c_str(), attrs.mode, 0);
    if (rc != 0) return Status::FromErrno(errno, "chmod");
  }
  const std::string* capability = nullptr;
  for (const auto& [name, value] : attrs.xattrs) {
    if (IsOverlayXattr(name)) continue;
    if (name == kCapabilityXattr) {
      capability = &value;
      continue;
    }
    RETURN_IF_ERROR(SetXattr(file, kind, name, value));
  }
  if (capability != nullptr) {
    RETURN_IF_ERROR(SetXattr(file, kind, std::string(kCapabilityXattr), *capability));
  }
  if (set_times) {
    struct timespec times[2] = {attrs.atime, attrs.mtime};
    rc = file.fd >= 0 ? ::futimens(file.fd, times)
                      : ::utimensat(file.dir_fd, file.name.c_str(), times, AT_SYMLINK_NOFOLLOW);
    if (rc != 0) return Status::FromErrno(errno, "set times");
  }
  return Status::Ok();
}

Result<FileAttrs> ReadAttrs(const FileRef& file) {
  struct stat st;
  int rc = file.fd >= 0 ? ::fstat(file.fd, &st)
                        : ::fstatat(file.dir_fd, file.name.c_str(), &st, AT_SYMLINK_NOFOLLOW);
  if (rc != 0) return Status::FromErrno(errno, "stat");
  FileAttrs attrs;
  attrs.uid = st.st_uid;
  attrs.gid = st.st_gid;
  attrs.mode = st.st_mode & 07777;
  attrs.atime = st.st_atim;
  attrs.mtime = st.st_mtim;
  std::string path = file.fd >= 0 ? "" : FdPath(file.dir_fd, file.name);
  ASSIGN_OR_RETURN(std::string names, SizedCall(
                                          [&](char* buf, size_t n) {
                                            return file.fd >= 0
                                                       ? ::flistxattr(file.fd, buf, n)
                                                       : ::llistxattr(path.c_str(), buf, n);
                                          },
                                          "listxattr"));
  size_t start = 0;
  while (start < names.size()) {
    size_t end = names.find('\0', start);
    if (end == std::string::npos) end = names.size();
    std::string name = names.substr(start, end - start);
    start = end + 1;
    if (name.empty() || IsOverlayXattr(name)) continue;
    auto value = SizedCall(
        [&](char* buf, size_t n) {
          return file.fd >= 0 ? ::fgetxattr(file.fd, name.c_str(), buf, n)
                              : ::lgetxattr(path.c_str(), name.c_str(), buf, n);
        },
        "getxattr " + Quote(name));
    if (!value.ok()) {
      if (value.status().IsNotFound()) continue;  // ENODATA: removed meanwhile
      return value.status();
    }
    attrs.xattrs[name] = std::move(*value);
  }
  return attrs;
}

}  // namespace strata::transfer
