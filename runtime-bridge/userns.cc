#include "runtime-bridge/userns.h"

#include <fcntl.h>
#include <fts.h>
#include <linux/mount.h>
#include <sched.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <limits>

#include "core/fs.h"

namespace strata::runtime {
namespace {

Status WriteProcFile(const std::string& path, const std::string& data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "open " + path);
  ssize_t n = ::write(fd, data.data(), data.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(data.size())) return Status::FromErrno(err, "write " + path);
  return Status::Ok();
}

bool RefusesIdmap(int err) {
  return err == EINVAL || err == ENOSYS || err == EPERM || err == EOPNOTSUPP;
}

// Splits an overlay's options into its lower directories (in order) and the rest.
struct OverlayParts {
  std::vector<std::string> lowers;
  std::string upper;
  std::vector<std::string> other;  // everything but lowerdir
};

OverlayParts SplitOverlay(const Mount& m) {
  OverlayParts parts;
  for (const auto& o : m.options) {
    if (o.rfind("lowerdir=", 0) == 0) {
      std::string list = o.substr(9);
      size_t start = 0;
      while (start <= list.size()) {
        size_t colon = list.find(':', start);
        if (colon == std::string::npos) colon = list.size();
        if (colon > start) parts.lowers.push_back(list.substr(start, colon - start));
        start = colon + 1;
      }
      continue;
    }
    if (o.rfind("upperdir=", 0) == 0) parts.upper = o.substr(9);
    parts.other.push_back(o);
  }
  return parts;
}

// Owner of the upper directory's root: the mapped root, so that the container's root
// owns "/" as in the image. Keeps the directory's mode.
Status OwnUpperRoot(const std::string& upper, const IdMap& uids, const IdMap& gids) {
  if (upper.empty()) return Status::Ok();
  if (::lchown(upper.c_str(), uids.host_id, gids.host_id) != 0) {
    return Status::FromErrno(errno, "chown " + upper);
  }
  return Status::Ok();
}

// The overlay mount of `parts` with `lowers` as lower directories and `extra` options.
Mount OverlayWith(const Mount& original, const OverlayParts& parts,
                  const std::vector<std::string>& lowers, const std::vector<std::string>& extra) {
  Mount m{original.type, original.source, "", {}};
  std::string lowerdir = "lowerdir=";
  for (size_t i = 0; i < lowers.size(); i++) {
    if (i > 0) lowerdir += ":";
    lowerdir += lowers[i];
  }
  m.options.push_back(lowerdir);
  for (const auto& o : parts.other) m.options.push_back(o);
  for (const auto& o : extra) m.options.push_back(o);
  return m;
}

Status MountIdmapped(const Mount& m, const std::string& target, const RemapOptions& options) {
  ASSIGN_OR_RETURN(UniqueFd userns, NewUserNamespace(options.uids, options.gids));
  if (m.type == "bind" || m.type == "rbind") {
    // A parentless snapshot: its directory itself, idmapped (writes map back to disk ids).
    return IdmapBind(m.source, target, userns.get());
  }
  if (m.type != "overlay") {
    return Status::FailedPrecondition("cannot idmap a mount of type " + m.type);
  }
  OverlayParts parts = SplitOverlay(m);
  if (parts.lowers.empty()) return Status::InvalidArgument("overlay mount without lowerdir");
  RETURN_IF_ERROR(fs::MakeDirs(options.scratch_dir, 0700));
  std::vector<std::string> idmapped;
  auto detach_all = [&] {
    for (const auto& dir : idmapped) {
      (void)Unmount(dir, /*detach=*/true);
      ::rmdir(dir.c_str());
    }
  };
  for (size_t i = 0; i < parts.lowers.size(); i++) {
    std::string dir = options.scratch_dir + "/" + std::to_string(i);
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      detach_all();
      return Status::FromErrno(errno, "mkdir " + dir);
    }
    Status s = IdmapBind(parts.lowers[i], dir, userns.get());
    if (!s.ok()) {
      ::rmdir(dir.c_str());
      detach_all();
      return s;
    }
    idmapped.push_back(dir);
  }
  Status s = OwnUpperRoot(parts.upper, options.uids, options.gids);
  if (s.ok()) s = MountAll({OverlayWith(m, parts, idmapped, {})}, target);
  // The overlay holds its own references to the layers; the clones' mount points can go.
  detach_all();
  return s;
}

Status MountChowned(const Mount& m, const std::string& target, const RemapOptions& options,
                    bool metacopy) {
  Mount chowned = m;
  if (m.type == "overlay") {
    OverlayParts parts = SplitOverlay(m);
    RETURN_IF_ERROR(OwnUpperRoot(parts.upper, options.uids, options.gids));
    if (metacopy) chowned.options.push_back("metacopy=on");
  } else if (metacopy) {
    return Status::FailedPrecondition("metacopy needs an overlay mount, not " + m.type);
  }
  RETURN_IF_ERROR(MountAll({chowned}, target));
  auto shifted = ShiftOwnership(target, options.uids, options.gids);
  if (!shifted.ok()) {
    (void)Unmount(target, /*detach=*/true);
    return shifted.status();
  }
  return Status::Ok();
}

uint32_t ShiftId(uint32_t id, const IdMap& map, bool* inside) {
  if (id >= map.container_id && id - map.container_id < map.size) {
    *inside = true;
    return map.host_id + (id - map.container_id);
  }
  *inside = false;
  return id;
}

// Shifts one entry's owner; returns whether it changed.
Result<bool> ShiftEntry(const char* path, const struct stat& st, const IdMap& uids,
                        const IdMap& gids) {
  bool uid_in = false, gid_in = false;
  uid_t uid = ShiftId(st.st_uid, uids, &uid_in);
  gid_t gid = ShiftId(st.st_gid, gids, &gid_in);
  if (!uid_in && !gid_in) return false;
  if (::lchown(path, uid_in ? uid : static_cast<uid_t>(-1),
               gid_in ? gid : static_cast<gid_t>(-1)) != 0) {
    return Status::FromErrno(errno, std::string("chown ") + path);
  }
  // chown drops set-id bits of non-directories; the image meant them.
  if (!S_ISLNK(st.st_mode) && (st.st_mode & (S_ISUID | S_ISGID)) != 0) {
    if (::chmod(path, st.st_mode & 07777) != 0) {
      return Status::FromErrno(errno, std::string("chmod ") + path);
    }
  }
  return true;
}

}  // namespace

Result<UsernsRequest> ParseUsernsRequest(std::string_view text) {
  UsernsRequest req;
  if (text.empty() || text == "host") return req;
  if (text == "auto") {
    req.mode = UsernsRequest::Mode::kAuto;
    return req;
  }
  auto map = ParseIdMap(text);
  if (!map.ok()) {
    return Status::InvalidArgument("--userns must be host, auto or CONTAINER:HOST:LENGTH: " +
                                   map.status().message());
  }
  req.mode = UsernsRequest::Mode::kExplicit;
  req.map = *map;
  return req;
}

Result<UniqueFd> NewUserNamespace(const IdMap& uids, const IdMap& gids) {
  int go[2];
  if (::pipe2(go, O_CLOEXEC) != 0) return Status::FromErrno(errno, "pipe");
  UniqueFd go_read(go[0]), go_write(go[1]);
  int ready[2];
  if (::pipe2(ready, O_CLOEXEC) != 0) return Status::FromErrno(errno, "pipe");
  UniqueFd ready_read(ready[0]), ready_write(ready[1]);
  pid_t pid = ::fork();
  if (pid < 0) return Status::FromErrno(errno, "fork");
  if (pid == 0) {
    // Only async-signal-safe calls here: the parent may have threads.
    ::close(go[1]);
    ::close(ready[0]);
    char byte = ::unshare(CLONE_NEWUSER) == 0 ? 'y' : 'n';
    (void)!::write(ready[1], &byte, 1);
    (void)!::read(go[0], &byte, 1);
    ::_exit(0);
  }
  ready_write.Reset();
  go_read.Reset();
  auto reap = [&] {
    go_write.Reset();
    int status;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  };
  char byte = 0;
  if (::read(ready_read.get(), &byte, 1) != 1 || byte != 'y') {
    reap();
    return Status::FailedPrecondition(
        "cannot create a user namespace (unshare(CLONE_NEWUSER) failed; "
        "see /proc/sys/user/max_user_namespaces)");
  }
  const std::string proc = "/proc/" + std::to_string(pid);
  Status s = WriteProcFile(proc + "/uid_map", std::to_string(uids.container_id) + " " +
                                                  std::to_string(uids.host_id) + " " +
                                                  std::to_string(uids.size) + "\n");
  if (s.ok()) {
    s = WriteProcFile(proc + "/gid_map", std::to_string(gids.container_id) + " " +
                                             std::to_string(gids.host_id) + " " +
                                             std::to_string(gids.size) + "\n");
  }
  UniqueFd ns;
  if (s.ok()) {
    ns.Reset(::open((proc + "/ns/user").c_str(), O_RDONLY | O_CLOEXEC));
    if (!ns.valid()) s = Status::FromErrno(errno, "open " + proc + "/ns/user");
  }
  reap();
  if (!s.ok()) return s.WithContext("user namespace " + FormatIdMap(uids));
  return ns;
}

Status IdmapBind(const std::string& source, const std::string& target, int userns_fd) {
  int tree = static_cast<int>(
      ::syscall(SYS_open_tree, AT_FDCWD, source.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
  if (tree < 0) {
    int err = errno;
    if (err == ENOSYS)
      return Status::FailedPrecondition("open_tree: kernel too old for idmapped mounts");
    return Status::FromErrno(err, "open_tree " + source);
  }
  UniqueFd tree_fd(tree);
  struct mount_attr attr {};
  attr.attr_set = MOUNT_ATTR_IDMAP;
  attr.userns_fd = static_cast<uint64_t>(userns_fd);
  if (::syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr) != 0) {
    int err = errno;
    if (RefusesIdmap(err)) {
      return Status::FailedPrecondition("idmapped mounts are not supported for " + source + ": " +
                                        std::strerror(err));
    }
    return Status::FromErrno(err, "mount_setattr(MOUNT_ATTR_IDMAP) " + source);
  }
  if (::syscall(SYS_move_mount, tree, "", AT_FDCWD, target.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0) {
    return Status::FromErrno(errno, "move_mount " + source + " to " + target);
  }
  return Status::Ok();
}

std::string_view RemapMethodName(RemapMethod method) {
  switch (method) {
    case RemapMethod::kIdmapped:
      return "idmapped";
    case RemapMethod::kMetacopyChown:
      return "metacopy-chown";
    case RemapMethod::kChown:
      return "chown";
  }
  return "unknown";
}

Result<RemapMethod> ParseRemapMethod(std::string_view name) {
  for (RemapMethod m : {RemapMethod::kIdmapped, RemapMethod::kMetacopyChown, RemapMethod::kChown}) {
    if (RemapMethodName(m) == name) return m;
  }
  return Status::InvalidArgument("unknown rootfs remap method \"" + std::string(name) +
                                 "\" (idmapped, metacopy-chown or chown)");
}

Result<RemapMethod> MountRemapped(const std::vector<Mount>& mounts, const std::string& target,
                                  const RemapOptions& options) {
  if (mounts.size() != 1) {
    return Status::InvalidArgument("expected one rootfs mount, got " +
                                   std::to_string(mounts.size()));
  }
  const Mount& m = mounts[0];
  std::vector<RemapMethod> order;
  if (options.force) {
    order = {*options.force};
  } else {
    order = {RemapMethod::kIdmapped, RemapMethod::kMetacopyChown, RemapMethod::kChown};
  }
  Status last;
  for (RemapMethod method : order) {
    switch (method) {
      case RemapMethod::kIdmapped:
        last = MountIdmapped(m, target, options);
        break;
      case RemapMethod::kMetacopyChown:
        last = MountChowned(m, target, options, /*metacopy=*/true);
        break;
      case RemapMethod::kChown:
        last = MountChowned(m, target, options, /*metacopy=*/false);
        break;
    }
    if (last.ok()) return method;
    if (options.force) break;
    spdlog::warn("rootfs {}: {} unavailable ({}); falling back", target, RemapMethodName(method),
                 last.message());
  }
  return last;
}

Result<uint64_t> ShiftOwnership(const std::string& dir, const IdMap& uids, const IdMap& gids) {
  // Not FTS_XDEV: overlayfs reports the st_dev of the layer a file comes from when its
  // layers sit on different filesystems (a FUSE lazy layer), so files would look like
  // other mounts. A freshly mounted rootfs has no mounts below it.
  char* roots[] = {const_cast<char*>(dir.c_str()), nullptr};
  FTS* walk = ::fts_open(roots, FTS_PHYSICAL | FTS_NOCHDIR, nullptr);
  if (walk == nullptr) return Status::FromErrno(errno, "walk " + dir);
  uint64_t changed = 0;
  Status status;
  while (true) {
    errno = 0;
    FTSENT* e = ::fts_read(walk);
    if (e == nullptr) {
      // The end, or an error: only errno tells them apart.
      if (errno != 0) status = Status::FromErrno(errno, "walk " + dir);
      break;
    }
    if (e->fts_info == FTS_DP) continue;  // directories are handled on the way down
    if (e->fts_info == FTS_NS || e->fts_info == FTS_DNR || e->fts_info == FTS_ERR) {
      status = Status::FromErrno(e->fts_errno != 0 ? e->fts_errno : EACCES,
                                 std::string("walk ") + e->fts_path);
      break;
    }
    auto shifted = ShiftEntry(e->fts_path, *e->fts_statp, uids, gids);
    if (!shifted.ok()) {
      status = shifted.status();
      break;
    }
    changed += *shifted ? 1 : 0;
  }
  ::fts_close(walk);
  if (!status.ok()) return status;
  return changed;
}

}  // namespace strata::runtime
