#include "core/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <set>
#include <utility>
#include <vector>

namespace strata::fs {

namespace {

// The process umask, read once from /proc (umask(2) cannot read it without changing
// it, which would race with other threads).
mode_t ProcessUmask() {
  static const mode_t mask = [] {
    auto status = ReadFile("/proc/self/status");
    if (!status.ok()) return static_cast<mode_t>(0777);  // unknown: always chmod
    auto pos = status->find("Umask:");
    if (pos == std::string::npos) return static_cast<mode_t>(0777);
    return static_cast<mode_t>(std::strtoul(status->c_str() + pos + 6, nullptr, 8));
  }();
  return mask;
}

}  // namespace

Status MakeDir(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) != 0) return Status::FromErrno(errno, "mkdir " + path);
  // mkdir honours the umask; set the exact mode asked for when the umask changed it.
  if ((mode & ProcessUmask()) != 0 && ::chmod(path.c_str(), mode) != 0) {
    return Status::FromErrno(errno, "chmod " + path);
  }
  return Status::Ok();
}

Status MakeDirs(const std::string& path, mode_t mode) {
  if (path.empty()) return Status::InvalidArgument("empty directory path");
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return Status::Ok();
    return Status::AlreadyExists(path + " exists and is not a directory");
  }
  std::string parent = DirName(path);
  if (parent != path && parent != "." && parent != "/") RETURN_IF_ERROR(MakeDirs(parent, 0755));
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) {
    return Status::FromErrno(errno, "mkdir " + path);
  }
  return Status::Ok();
}

namespace {

// Removes the contents of the directory open as `dirfd`, then nothing else.
Status RemoveContents(int dirfd, const std::string& display) {
  DIR* dir = ::fdopendir(dirfd);
  if (dir == nullptr) {
    int err = errno;
    ::close(dirfd);
    return Status::FromErrno(err, "opendir " + display);
  }
  struct stat self;
  ::fstat(dirfd, &self);
  std::vector<std::pair<std::string, bool>> entries;
  while (struct dirent* e = ::readdir(dir)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    bool is_dir = e->d_type == DT_DIR;
    if (e->d_type == DT_UNKNOWN) {
      struct stat st;
      if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0)
        is_dir = S_ISDIR(st.st_mode);
    }
    entries.emplace_back(std::move(name), is_dir);
  }
  Status result;
  for (const auto& [name, is_dir] : entries) {
    if (is_dir) {
      int child = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (child < 0) {
        if (errno == ENOENT) continue;
        result = Status::FromErrno(errno, "open " + display + "/" + name);
        continue;
      }
      struct stat st;
      if (::fstat(child, &st) == 0 && st.st_dev != self.st_dev) {
        ::close(child);
        result =
            Status::FailedPrecondition("refusing to cross mount point " + display + "/" + name);
        continue;
      }
      Status s = RemoveContents(child, display + "/" + name);
      if (!s.ok()) {
        result = s;
        continue;
      }
      if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
        result = Status::FromErrno(errno, "rmdir " + display + "/" + name);
      }
    } else if (::unlinkat(dirfd, name.c_str(), 0) != 0 && errno != ENOENT) {
      result = Status::FromErrno(errno, "unlink " + display + "/" + name);
    }
  }
  ::closedir(dir);
  return result;
}

}  // namespace

Status RemoveAll(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return Status::FromErrno(errno, "lstat " + path);
  }
  if (!S_ISDIR(st.st_mode)) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
      return Status::FromErrno(errno, "unlink " + path);
    return Status::Ok();
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Status::Ok();  // removed concurrently: done all the same
    return Status::FromErrno(errno, "open " + path);
  }
  RETURN_IF_ERROR(RemoveContents(fd, path));
  if (::rmdir(path.c_str()) != 0 && errno != ENOENT)
    return Status::FromErrno(errno, "rmdir " + path);
  return Status::Ok();
}

Status SyncDir(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "open " + path);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return Status::FromErrno(err, "fsync " + path);
  return Status::Ok();
}

Status WriteFileAtomic(const std::string& path, const std::string& data, mode_t mode) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return Status::FromErrno(errno, "create " + tmp);
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return Status::FromErrno(err, "write " + tmp);
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return Status::FromErrno(err, "fsync " + tmp);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return Status::FromErrno(err, "rename " + tmp);
  }
  return SyncDir(DirName(path));
}

Result<std::string> ReadFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "open " + path);
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return Status::FromErrno(err, "read " + path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

namespace {

void AddUsage(int dirfd, dev_t dev, std::set<std::pair<dev_t, ino_t>>& seen, DiskUsage& usage) {
  DIR* dir = ::fdopendir(dirfd);
  if (dir == nullptr) {
    ::close(dirfd);
    return;
  }
  while (struct dirent* e = ::readdir(dir)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (seen.insert({st.st_dev, st.st_ino}).second) {
      usage.inodes++;
      usage.size_bytes += static_cast<int64_t>(st.st_blocks) * 512;
    }
    if (S_ISDIR(st.st_mode) && st.st_dev == dev) {
      int child = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (child >= 0) AddUsage(child, dev, seen, usage);
    }
  }
  ::closedir(dir);
}

}  // namespace

Result<DiskUsage> UsageOf(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return Status::FromErrno(errno, "lstat " + path);
  DiskUsage usage;
  std::set<std::pair<dev_t, ino_t>> seen;
  seen.insert({st.st_dev, st.st_ino});
  usage.inodes = 1;
  usage.size_bytes = static_cast<int64_t>(st.st_blocks) * 512;
  if (S_ISDIR(st.st_mode)) {
    int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return Status::FromErrno(errno, "open " + path);
    AddUsage(fd, st.st_dev, seen, usage);
  }
  return usage;
}

std::string BaseName(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  auto pos = p.rfind('/');
  return pos == std::string::npos ? p : p.substr(pos + 1);
}

std::string DirName(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  auto pos = p.rfind('/');
  if (pos == std::string::npos) return ".";
  if (pos == 0) return "/";
  return p.substr(0, pos);
}

}  // namespace strata::fs
