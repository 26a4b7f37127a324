// FinishLayer (declared in unpack.h): what UnpackLayer leaves to be settled once the
// parent layers are known.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <optional>
#include <vector>

#include "core/quote.h"
#include "transfer/file_attrs.h"
#include "transfer/root_dir.h"
#include "transfer/unpack.h"

namespace strata::transfer {

namespace {

constexpr size_t kCopyBufferBytes = 1 << 20;

// What a lower layer has at a path.
struct LowerEntry {
  UniqueFd dir;  // its parent directory in that lower
  std::string name;
  struct stat st;
};

// Finds `path` in the lowers, nearest first, the way overlayfs looks it up: the first
// lower with something at `path` has it. A lower where the way to `path` is blocked by
// a non-directory (a file, a symlink, a whiteout) hides the deeper lowers: nullopt.
Result<std::optional<LowerEntry>> FindInLowers(std::vector<RootDir>& lowers,
                                               const std::string& path) {
  auto [parent, name] = SplitPath(path);
  for (RootDir& lower : lowers) {
    auto dir = lower.OpenDirOwned(parent);
    if (!dir.ok()) {
      if (dir.status().IsNotFound()) continue;
      if (dir.status().code() == Code::kPermissionDenied || dir.status().IsFailedPrecondition()) {
        return std::optional<LowerEntry>();
      }
      return dir.status().WithContext("look up " + Quote(path) + " in " + lower.path());
    }
    LowerEntry entry{std::move(*dir), name, {}};
    if (::fstatat(entry.dir.get(), name.c_str(), &entry.st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;
      return Status::FromErrno(errno, "stat " + Quote(path) + " in " + lower.path());
    }
    return std::optional<LowerEntry>(std::move(entry));
  }
  return std::optional<LowerEntry>();
}

Status CopyRange(int src, int dst, off_t begin, off_t end, std::vector<char>& buffer) {
  off_t in = begin;
  off_t out = begin;
  bool kernel_copy = true;
  while (in < end) {
    size_t want = static_cast<size_t>(end - in);
    if (kernel_copy) {
      ssize_t n = ::copy_file_range(src, &in, dst, &out, want, 0);
      if (n > 0) continue;
      if (n == 0) return Status::DataLoss("file shrank while being copied");
      if (errno == EINTR) continue;
      if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) {
        return Status::FromErrno(errno, "copy_file_range");
      }
      kernel_copy = false;  // not between these files: copy through a buffer
    }
    if (buffer.empty()) buffer.resize(kCopyBufferBytes);
    ssize_t n = ::pread(src, buffer.data(), std::min(want, buffer.size()), in);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno(errno, "read");
    if (n == 0) return Status::DataLoss("file shrank while being copied");
    for (ssize_t done = 0; done < n;) {
      ssize_t w = ::pwrite(dst, buffer.data() + done, static_cast<size_t>(n - done), out + done);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return Status::FromErrno(errno, "write");
      done += w;
    }
    in += n;
    out += n;
  }
  return Status::Ok();
}

// Copies the data of `src` to `dst`, keeping holes where the filesystem reports them.
Status CopyData(int src, int dst, off_t size) {
  std::vector<char> buffer;
  off_t pos = 0;
  while (pos < size) {
    off_t data = ::lseek(src, pos, SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;  // only a hole is left
    off_t hole = data < 0 ? size : ::lseek(src, data, SEEK_HOLE);
    if (data < 0) data = pos;  // no SEEK_DATA here: copy everything
    if (hole < 0) hole = size;
    RETURN_IF_ERROR(CopyRange(src, dst, data, std::min(hole, size), buffer));
    pos = hole;
  }
  if (::ftruncate(dst, size) != 0) return Status::FromErrno(errno, "truncate");
  return Status::Ok();
}

// Makes `name` in `dest_dir` a copy of what `from` is: file data, symlink or special
// file, with its attributes.
Status CopyUp(const LowerEntry& from, int dest_dir, const std::string& name) {
  const struct stat& st = from.st;
  FileRef source{-1, from.dir.get(), from.name};
  FileRef dest{-1, dest_dir, name};
  if (S_ISREG(st.st_mode)) {
    int src = ::openat(from.dir.get(), from.name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (src < 0) return Status::FromErrno(errno, "open source");
    UniqueFd src_fd(src);
    int dst = ::openat(dest_dir, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                       0600);
    if (dst < 0) return Status::FromErrno(errno, "create copy");
    UniqueFd dst_fd(dst);
    RETURN_IF_ERROR(CopyData(src, dst, st.st_size));
    ASSIGN_OR_RETURN(FileAttrs attrs, ReadAttrs({src, -1, ""}));
    return ApplyAttrs({dst, -1, ""}, FileKind::kRegularOrDirectory, attrs, true);
  }
  FileKind kind = FileKind::kOther;
  if (S_ISLNK(st.st_mode)) {
    kind = FileKind::kSymlink;
    std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
    ssize_t n = ::readlinkat(from.dir.get(), from.name.c_str(), target.data(), target.size());
    if (n < 0) return Status::FromErrno(errno, "readlink");
    target.resize(static_cast<size_t>(n));
    if (::symlinkat(target.c_str(), dest_dir, name.c_str()) != 0) {
      return Status::FromErrno(errno, "symlink");
    }
  } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) || S_ISFIFO(st.st_mode) ||
             S_ISSOCK(st.st_mode)) {
    if (::mknodat(dest_dir, name.c_str(), (st.st_mode & S_IFMT) | 0600, st.st_rdev) != 0) {
      return Status::FromErrno(errno, "mknod");
    }
  } else {
    return Status::InvalidArgument("hard link target is a directory");
  }
  ASSIGN_OR_RETURN(FileAttrs attrs, ReadAttrs(source));
  return ApplyAttrs(dest, kind, attrs, true);
}

bool IsWhiteout(const struct stat& st) { return S_ISCHR(st.st_mode) && st.st_rdev == 0; }

}  // namespace

Status FinishLayer(const std::string& dest_dir, const std::vector<std::string>& lower_dirs,
                   const UnpackResult& result) {
  ASSIGN_OR_RETURN(RootDir root, RootDir::Open(dest_dir));
  std::vector<RootDir> lowers;
  for (const std::string& lower : lower_dirs) {
    ASSIGN_OR_RETURN(RootDir dir, RootDir::Open(lower));
    lowers.push_back(std::move(dir));
  }

  // Hard links first: making the copies changes their directories, whose times are
  // put back; implicit directories get theirs below.
  std::map<std::string, std::string> copies;  // target -> the path of its copy
  for (const DeferredHardlink& link : result.deferred_hardlinks) {
    auto [parent, name] = SplitPath(link.path);
    std::string what = "hard link " + Quote(link.path) + " to " + Quote(link.target);
    ASSIGN_OR_RETURN(int dir, root.OpenDir(parent, false, nullptr));
    struct stat dir_st;
    if (::fstat(dir, &dir_st) != 0) return Status::FromErrno(errno, "stat parent of " + what);
    if (::unlinkat(dir, name.c_str(), 0) != 0 && errno != ENOENT) {
      return Status::FromErrno(errno, "clear the place of " + what);
    }
    auto copy = copies.find(link.target);
    if (copy != copies.end()) {
      auto [copy_parent, copy_name] = SplitPath(copy->second);
      ASSIGN_OR_RETURN(UniqueFd copy_dir, root.OpenDirOwned(copy_parent));
      if (::linkat(copy_dir.get(), copy_name.c_str(), dir, name.c_str(), 0) != 0) {
        return Status::FromErrno(errno, what);
      }
    } else {
      ASSIGN_OR_RETURN(std::optional<LowerEntry> found, FindInLowers(lowers, link.target));
      if (!found || IsWhiteout(found->st)) {
        return Status::NotFound(what + ": the target is in neither this layer nor its parents");
      }
      Status copied = CopyUp(*found, dir, name);
      if (!copied.ok()) return copied.WithContext(what);
      copies[link.target] = link.path;
    }
    struct timespec times[2] = {dir_st.st_atim, dir_st.st_mtim};
    if (::futimens(dir, times) != 0)
      return Status::FromErrno(errno, "restore times of parent of " + what);
  }

  for (const std::string& path : result.implicit_dirs) {
    ASSIGN_OR_RETURN(std::optional<LowerEntry> found, FindInLowers(lowers, path));
    if (!found || !S_ISDIR(found->st.st_mode)) continue;  // stays 0755 root:root
    int src = ::openat(found->dir.get(), found->name.c_str(),
                       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (src < 0) return Status::FromErrno(errno, "open " + Quote(path) + " in a lower layer");
    UniqueFd src_fd(src);
    ASSIGN_OR_RETURN(FileAttrs attrs, ReadAttrs({src, -1, ""}));
    auto [parent, name] = SplitPath(path);
    ASSIGN_OR_RETURN(int dir, root.OpenDir(parent, false, nullptr));
    int dst = ::openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dst < 0) return Status::FromErrno(errno, "open implicit directory " + Quote(path));
    UniqueFd dst_fd(dst);
    Status applied = ApplyAttrs({dst, -1, ""}, FileKind::kRegularOrDirectory, attrs, true);
    if (!applied.ok()) return applied.WithContext("implicit directory " + Quote(path));
  }
  return Status::Ok();
}

}  // namespace strata::transfer
