#include "core/mount.h"

#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace strata {
namespace {

struct ParsedOptions {
  unsigned long flags = 0;
  bool bind = false;
  bool recursive = false;
  bool readonly = false;
  std::string data;
};

ParsedOptions ParseOptions(const std::vector<std::string>& options) {
  struct FlagWord {
    const char* name;
    unsigned long flag;
    bool clear;
  };
  static const FlagWord kFlags[] = {
      {"ro", MS_RDONLY, false},        {"rw", MS_RDONLY, true},
      {"nosuid", MS_NOSUID, false},    {"suid", MS_NOSUID, true},
      {"nodev", MS_NODEV, false},      {"dev", MS_NODEV, true},
      {"noexec", MS_NOEXEC, false},    {"exec", MS_NOEXEC, true},
      {"noatime", MS_NOATIME, false},  {"relatime", MS_RELATIME, false},
      {"sync", MS_SYNCHRONOUS, false}, {"async", MS_SYNCHRONOUS, true},
  };
  ParsedOptions p;
  for (const auto& o : options) {
    if (o == "bind") {
      p.bind = true;
      continue;
    }
    if (o == "rbind") {
      p.bind = true;
      p.recursive = true;
      continue;
    }
    bool matched = false;
    for (const auto& f : kFlags) {
      if (o == f.name) {
        if (f.clear) {
          p.flags &= ~f.flag;
        } else {
          p.flags |= f.flag;
        }
        matched = true;
        break;
      }
    }
    if (matched) continue;
    if (!p.data.empty()) p.data += ",";
    p.data += o;
  }
  p.readonly = (p.flags & MS_RDONLY) != 0;
  return p;
}

// Longest common directory prefix (ending in '/') of the lowerdir entries.
std::string CommonDirPrefix(const std::vector<std::string>& dirs) {
  if (dirs.empty()) return "";
  std::string prefix = dirs[0];
  for (const auto& d : dirs) {
    size_t i = 0;
    while (i < prefix.size() && i < d.size() && prefix[i] == d[i]) i++;
    prefix.resize(i);
  }
  auto slash = prefix.rfind('/');
  if (slash == std::string::npos) return "";
  prefix.resize(slash + 1);
  return prefix;
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

// Rewrites an overlay data string so that lowerdir/upperdir/workdir are relative to a
// common directory. Returns that directory, or "" when no rewrite helps.
std::string CompactOverlayData(std::string& data) {
  std::vector<std::string> opts = Split(data, ',');
  std::vector<std::string> dirs;
  for (const auto& o : opts) {
    if (o.rfind("lowerdir=", 0) == 0) {
      for (const auto& d : Split(o.substr(9), ':')) dirs.push_back(d);
    } else if (o.rfind("upperdir=", 0) == 0) {
      dirs.push_back(o.substr(9));
    } else if (o.rfind("workdir=", 0) == 0) {
      dirs.push_back(o.substr(8));
    }
  }
  std::string common = CommonDirPrefix(dirs);
  if (common.size() <= 1) return "";
  std::string out;
  for (const auto& o : opts) {
    std::string rewritten = o;
    auto strip = [&](const std::string& d) {
      return d.rfind(common, 0) == 0 ? d.substr(common.size()) : d;
    };
    if (o.rfind("lowerdir=", 0) == 0) {
      rewritten = "lowerdir=";
      bool first = true;
      for (const auto& d : Split(o.substr(9), ':')) {
        if (!first) rewritten += ":";
        rewritten += strip(d);
        first = false;
      }
    } else if (o.rfind("upperdir=", 0) == 0) {
      rewritten = "upperdir=" + strip(o.substr(9));
    } else if (o.rfind("workdir=", 0) == 0) {
      rewritten = "workdir=" + strip(o.substr(8));
    }
    if (!out.empty()) out += ",";
    out += rewritten;
  }
  data = out;
  return common;
}

// Mounts from inside `dir` in a child process, so relative paths in `data` resolve
// there without changing this (multithreaded) process's working directory.
Status MountInDir(const std::string& dir, const std::string& source, const std::string& target,
                  const std::string& type, unsigned long flags, const std::string& data) {
  pid_t pid = ::fork();
  if (pid < 0) return Status::FromErrno(errno, "fork for mount");
  if (pid == 0) {
    if (::chdir(dir.c_str()) != 0) ::_exit(errno);
    if (::mount(source.c_str(), target.c_str(), type.c_str(), flags, data.c_str()) != 0) {
      ::_exit(errno);
    }
    ::_exit(0);
  }
  int wstatus = 0;
  while (::waitpid(pid, &wstatus, 0) < 0) {
    if (errno != EINTR) return Status::FromErrno(errno, "waitpid");
  }
  if (!WIFEXITED(wstatus)) return Status::Internal("mount helper process died");
  int err = WEXITSTATUS(wstatus);
  if (err != 0) return Status::FromErrno(err, "mount " + type + " on " + target);
  return Status::Ok();
}

}  // namespace

Status MountAll(const std::vector<Mount>& mounts, const std::string& target) {
  for (const auto& m : mounts) {
    std::string dest = target;
    if (!m.target.empty()) dest += "/" + m.target;
    ParsedOptions p = ParseOptions(m.options);
    if (p.bind) {
      unsigned long flags = MS_BIND | (p.recursive ? MS_REC : 0);
      if (::mount(m.source.c_str(), dest.c_str(), nullptr, flags, nullptr) != 0) {
        return Status::FromErrno(errno, "bind mount " + m.source + " on " + dest);
      }
      if (p.flags != 0) {
        unsigned long remount = MS_BIND | MS_REMOUNT | p.flags;
        if (::mount(nullptr, dest.c_str(), nullptr, remount, nullptr) != 0) {
          Status st = Status::FromErrno(errno, "remount " + dest);
          ::umount2(dest.c_str(), MNT_DETACH);
          return st;
        }
      }
      continue;
    }
    std::string data = p.data;
    long page = ::sysconf(_SC_PAGESIZE);
    if (m.type == "overlay" && static_cast<long>(data.size()) >= page) {
      std::string dir = CompactOverlayData(data);
      if (dir.empty() || static_cast<long>(data.size()) >= page) {
        return Status::InvalidArgument("overlay mount options too long for " + dest);
      }
      RETURN_IF_ERROR(MountInDir(dir, m.source, dest, m.type, p.flags, data));
      continue;
    }
    if (::mount(m.source.c_str(), dest.c_str(), m.type.c_str(), p.flags, data.c_str()) != 0) {
      return Status::FromErrno(errno, "mount " + m.type + " on " + dest);
    }
  }
  return Status::Ok();
}

Status Unmount(const std::string& target, bool detach) {
  if (::umount2(target.c_str(), detach ? MNT_DETACH : 0) != 0) {
    if (errno == EINVAL || errno == ENOENT) return Status::Ok();
    return Status::FromErrno(errno, "umount " + target);
  }
  return Status::Ok();
}

bool IsMountPoint(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, devno, root, mount_point;
    fields >> id >> parent >> devno >> root >> mount_point;
    if (mount_point == path) return true;
  }
  return false;
}

}  // namespace strata
