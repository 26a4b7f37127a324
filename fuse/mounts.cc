#include "fuse/mounts.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "core/fs.h"

namespace strata::fuse {
namespace {

constexpr char kFusectlDir[] = "/sys/fs/fuse/connections";
// fs/fuse/control.c; not exported in the uapi headers.
constexpr long kFusectlSuperMagic = 0x65735543;

bool IsDeadConnectionErrno(int err) { return err == ENOTCONN || err == ECONNABORTED; }

bool IsOctal(char c) { return c >= '0' && c <= '7'; }

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string Unescape(std::string_view field) {
  std::string out;
  out.reserve(field.size());
  for (size_t i = 0; i < field.size(); i++) {
    if (field[i] == '\\' && i + 3 < field.size() && IsOctal(field[i + 1]) &&
        IsOctal(field[i + 2]) && IsOctal(field[i + 3])) {
      out += static_cast<char>((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 +
                               (field[i + 3] - '0'));
      i += 3;
    } else {
      out += field[i];
    }
  }
  return out;
}

std::vector<std::string_view> SplitSpaces(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') i++;
    size_t start = i;
    while (i < line.size() && line[i] != ' ') i++;
    if (i > start) fields.push_back(line.substr(start, i - start));
  }
  return fields;
}

bool ParseDevice(std::string_view field, dev_t* device) {
  auto colon = field.find(':');
  if (colon == std::string_view::npos) return false;
  std::string major_text(field.substr(0, colon)), minor_text(field.substr(colon + 1));
  char* end = nullptr;
  unsigned long major_number = std::strtoul(major_text.c_str(), &end, 10);
  if (major_text.empty() || *end != '\0') return false;
  unsigned long minor_number = std::strtoul(minor_text.c_str(), &end, 10);
  if (minor_text.empty() || *end != '\0') return false;
  *device = makedev(major_number, minor_number);
  return true;
}

// An absolute, symlink-free spelling of `path` that does not touch its last component
// when that is a dead mount (realpath(3) would fail on it with ENOTCONN).
Result<std::string> ResolvePath(const std::string& path) {
  char resolved[PATH_MAX];
  if (::realpath(path.c_str(), resolved) != nullptr) return std::string(resolved);
  int err = errno;
  std::string base = fs::BaseName(path);
  if (!IsDeadConnectionErrno(err) || base == "." || base == ".." || base == "/") {
    return Status::FromErrno(err, "resolve " + path);
  }
  std::string parent = fs::DirName(path);
  if (::realpath(parent.c_str(), resolved) == nullptr) {
    return Status::FromErrno(errno, "resolve " + parent);
  }
  std::string out = resolved;
  if (out != "/") out += '/';
  return out + base;
}

bool IsAtOrBelow(const std::string& path, const std::string& dir) {
  if (dir == "/") return true;
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                         path[dir.size()] == '/');
}

Result<std::vector<MountInfoEntry>> ReadMountTable() {
  ASSIGN_OR_RETURN(std::string text, fs::ReadFile("/proc/self/mountinfo"));
  return ParseMountInfo(text);
}

Status WriteAbortFile(const std::string& connection_dir) {
  std::string abort_path = connection_dir + "/abort";
  int fd = ::open(abort_path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Status::Ok();  // the connection is already gone
    return Status::FromErrno(errno, "open " + abort_path);
  }
  ssize_t n = ::write(fd, "1", 1);
  int err = errno;
  ::close(fd);
  if (n != 1) return Status::FromErrno(err, "write " + abort_path);
  return Status::Ok();
}

enum class Probe {
  kAnswers,   // stat succeeded, or failed the ordinary way (ENOENT, EACCES...)
  kDead,      // ENOTCONN / ECONNABORTED: the server is gone
  kNoAnswer,  // still waiting after the timeout
};

// statfs(2)s `path` on a helper thread; a thread stuck on a hung server is left behind
// and ends when the connection is aborted. statfs, unlike stat, is never answered from
// the kernel's caches, so it reaches the server whatever the attribute timeout.
Probe ProbeServer(const std::string& path, std::chrono::milliseconds timeout) {
  struct Outcome {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    int err = 0;
  };
  auto outcome = std::make_shared<Outcome>();
  std::thread([outcome, path] {
    struct statfs st;
    int err = ::statfs(path.c_str(), &st) == 0 ? 0 : errno;
    std::lock_guard<std::mutex> lock(outcome->mu);
    outcome->done = true;
    outcome->err = err;
    outcome->cv.notify_all();
  }).detach();
  std::unique_lock<std::mutex> lock(outcome->mu);
  if (!outcome->cv.wait_for(lock, timeout, [&] { return outcome->done; })) return Probe::kNoAnswer;
  return IsDeadConnectionErrno(outcome->err) ? Probe::kDead : Probe::kAnswers;
}

}  // namespace

std::vector<MountInfoEntry> ParseMountInfo(std::string_view text) {
  std::vector<MountInfoEntry> entries;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::vector<std::string_view> fields = SplitSpaces(text.substr(pos, end - pos));
    pos = end + 1;
    // id parent major:minor root mount-point options [optional...] - type source super-options
    size_t separator = 6;
    while (separator < fields.size() && fields[separator] != "-") separator++;
    if (separator + 2 >= fields.size()) continue;
    MountInfoEntry entry;
    if (!ParseDevice(fields[2], &entry.device)) continue;
    entry.mount_point = Unescape(fields[4]);
    entry.fs_type = Unescape(fields[separator + 1]);
    entry.source = Unescape(fields[separator + 2]);
    entries.push_back(std::move(entry));
  }
  return entries;
}

Result<std::optional<MountInfoEntry>> FindMount(const std::string& mount_point) {
  ASSIGN_OR_RETURN(auto mounts, ReadMountTable());
  std::optional<MountInfoEntry> top;
  for (auto& m : mounts) {
    if (m.mount_point == mount_point) top = std::move(m);
  }
  return top;
}

bool IsFuseType(std::string_view fs_type) {
  return fs_type == "fuse" || fs_type == "fuseblk" || fs_type.starts_with("fuse.");
}

Result<std::vector<MountInfoEntry>> ListFuseMounts(const std::string& dir) {
  ASSIGN_OR_RETURN(std::string resolved, ResolvePath(dir));
  ASSIGN_OR_RETURN(auto mounts, ReadMountTable());
  std::vector<MountInfoEntry> found;
  for (auto& m : mounts) {
    if (IsFuseType(m.fs_type) && IsAtOrBelow(m.mount_point, resolved)) {
      found.push_back(std::move(m));
    }
  }
  return found;
}

Status AbortConnection(dev_t device) {
  if (major(device) != 0) {
    return Status::InvalidArgument("device " + std::to_string(major(device)) + ":" +
                                   std::to_string(minor(device)) + " is not a FUSE connection");
  }
  std::string name = std::to_string(minor(device));
  struct statfs fs_info;
  if (::statfs(kFusectlDir, &fs_info) == 0 && fs_info.f_type == kFusectlSuperMagic) {
    return WriteAbortFile(std::string(kFusectlDir) + "/" + name);
  }
  // fusectl is one superblock however often it is mounted, so a private mount of it
  // sees the same connections.
  char dir[] = "/tmp/strata-fusectl-XXXXXX";
  if (::mkdtemp(dir) == nullptr) return Status::FromErrno(errno, "mkdtemp for fusectl");
  Status st;
  if (::mount("fusectl", dir, "fusectl", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
    st = Status::FromErrno(errno, std::string("mount fusectl on ") + dir);
  } else {
    st = WriteAbortFile(std::string(dir) + "/" + name);
    if (::umount2(dir, MNT_DETACH) != 0) {
      spdlog::warn("fuse: cannot unmount private fusectl at {}: {}", dir, std::strerror(errno));
    }
  }
  ::rmdir(dir);
  return st;
}

Result<bool> RecoverStaleMount(const std::string& path, std::chrono::milliseconds probe_timeout) {
  ASSIGN_OR_RETURN(std::string resolved, ResolvePath(path));
  bool recovered = false;
  // Each pass removes one dead mount; stacked dead mounts take several.
  for (int pass = 0; pass < 16; pass++) {
    ASSIGN_OR_RETURN(auto top, FindMount(resolved));
    Probe probe = ProbeServer(resolved, probe_timeout);
    if (probe == Probe::kAnswers) return recovered;
    if (probe == Probe::kNoAnswer) {
      if (!top || !IsFuseType(top->fs_type)) {
        return Status::Unavailable(resolved + " does not answer and is not a FUSE mount");
      }
      spdlog::warn("fuse: server of {} does not answer; aborting its connection", resolved);
      RETURN_IF_ERROR(AbortConnection(top->device));
    }
    if (::umount2(resolved.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) != 0) {
      if (errno == EINVAL) return recovered;  // dead, but not a mount point here
      return Status::FromErrno(errno, "detach stale mount " + resolved);
    }
    spdlog::info("fuse: detached stale mount {} ({})", resolved, top ? top->fs_type : "?");
    recovered = true;
  }
  return Status::Internal("stale mounts at " + resolved + " keep coming back");
}

}  // namespace strata::fuse
