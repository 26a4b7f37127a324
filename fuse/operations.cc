#include "fuse/operations.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

#include "fuse/errno_mapping.h"

namespace strata::fuse {
namespace {

// Inode numbers are never reused within a tree's life, so one generation serves all.
constexpr uint64_t kGeneration = 1;

MountState& StateOf(fuse_req_t req) { return *static_cast<MountState*>(fuse_req_userdata(req)); }

// Reports the time from a request's arrival to its reply to the mount's observer.
class OpTimer {
 public:
  OpTimer(const MountState& mount, std::string_view op)
      : observer_(mount.options.observer), op_(op) {
    if (observer_) start_ = std::chrono::steady_clock::now();
  }
  ~OpTimer() {
    if (observer_) observer_(op_, std::chrono::steady_clock::now() - start_);
  }
  OpTimer(const OpTimer&) = delete;
  OpTimer& operator=(const OpTimer&) = delete;

 private:
  const OpObserver& observer_;
  std::string_view op_;
  std::chrono::steady_clock::time_point start_;
};

struct stat ToStat(const Attr& attr) {
  struct stat st {};
  st.st_ino = attr.ino;
  st.st_mode = attr.mode;
  st.st_nlink = attr.nlink;
  st.st_uid = attr.uid;
  st.st_gid = attr.gid;
  st.st_rdev = attr.rdev;
  st.st_size = static_cast<off_t>(attr.size);
  st.st_blocks = static_cast<blkcnt_t>(attr.blocks_512);
  st.st_atim = attr.atime;
  st.st_mtim = attr.mtime;
  st.st_ctim = attr.ctime;
  return st;
}

fuse_entry_param ToEntry(const MountState& mount, const Attr& attr) {
  fuse_entry_param entry{};
  entry.ino = attr.ino;
  entry.generation = kGeneration;
  entry.attr = ToStat(attr);
  entry.attr_timeout = mount.options.attr_timeout.count();
  entry.entry_timeout = mount.options.entry_timeout.count();
  return entry;
}

void ReplyError(fuse_req_t req, const MountState& mount, std::string_view op, fuse_ino_t ino,
                const Status& status, Call call) {
  int err = ErrnoFor(status, call);
  if (err == EIO) {
    spdlog::warn("fuse {}: {} of inode {} failed: {}", mount.mountpoint, op, ino,
                 status.ToString());
  }
  fuse_reply_err(req, err);
}

// Hands `attr` to the kernel as a new reference (one lookup count).
void ReplyEntry(fuse_req_t req, MountState& mount, const Attr& attr) {
  fuse_entry_param entry = ToEntry(mount, attr);
  // Counted before the reply so that a FORGET racing with it never finds nothing.
  mount.lookups.Add(entry.ino);
  if (fuse_reply_entry(req, &entry) != 0) {
    mount.lookups.Forget(entry.ino, 1);  // the kernel never got it (request interrupted)
  }
}

bool IsDotOrDotDot(std::string_view name) { return name == "." || name == ".."; }

// readdir and readdirplus: fills at most `size` bytes with the entries after `offset`.
void ListDirectory(fuse_req_t req, MountState& mount, fuse_ino_t ino, size_t size, off_t offset,
                   bool plus) {
  auto buf = std::make_unique_for_overwrite<char[]>(size);
  size_t used = 0;
  std::vector<Ino> referenced;  // readdirplus entries the kernel will hold
  Status status =
      mount.tree.ReadDir(ino, static_cast<uint64_t>(offset), [&](const DirEntry& dirent) {
        char* at = buf.get() + used;
        size_t room = size - used;
        auto next = static_cast<off_t>(dirent.next_offset);
        if (!plus) {
          struct stat st {};
          st.st_ino = dirent.ino;
          st.st_mode = dirent.type;
          size_t needed = fuse_add_direntry(req, at, room, dirent.name.c_str(), &st, next);
          if (needed > room) return false;
          used += needed;
          return true;
        }
        // Measure first (nothing is written into a zero-sized buffer), so that no
        // attributes are fetched for an entry that does not fit.
        fuse_entry_param entry{};
        size_t needed = fuse_add_direntry_plus(req, at, 0, dirent.name.c_str(), &entry, next);
        if (needed > room) return false;
        Result<Attr> attr = IsDotOrDotDot(dirent.name) ? Result<Attr>(Status::NotFound(""))
                                                       : mount.tree.GetAttr(dirent.ino);
        if (attr.ok()) {
          entry = ToEntry(mount, *attr);
        } else {
          // No attributes (ino 0): the kernel takes no reference and looks the name
          // up when it needs it. Always so for "." and "..".
          entry.attr.st_ino = dirent.ino;
          entry.attr.st_mode = dirent.type;
        }
        fuse_add_direntry_plus(req, at, room, dirent.name.c_str(), &entry, next);
        if (entry.ino != 0) {
          mount.lookups.Add(entry.ino);
          referenced.push_back(entry.ino);
        }
        used += needed;
        return true;
      });
  // An error after some entries: send those; the next request resumes after them and
  // meets the error again.
  if (!status.ok() && used == 0) {
    ReplyError(req, mount, plus ? "readdirplus" : "readdir", ino, status, Call::kNode);
    return;
  }
  if (fuse_reply_buf(req, buf.get(), used) != 0) {
    for (Ino referenced_ino : referenced) mount.lookups.Forget(referenced_ino, 1);
  }
}

void RefuseWrite(fuse_req_t req, std::string_view op) {
  OpTimer timer(StateOf(req), op);
  fuse_reply_err(req, EROFS);
}

// ---- connection ------------------------------------------------------------------

void Init(void* userdata, fuse_conn_info* conn) {
  auto& mount = *static_cast<MountState*>(userdata);
  auto want = [conn](unsigned cap) {
    if (conn->capable & cap) conn->want |= cap;
  };
  auto drop = [conn](unsigned cap) { conn->want &= ~cap; };

  switch (mount.options.readdirplus) {
    case ReaddirPlus::kAuto:
      want(FUSE_CAP_READDIRPLUS);
      want(FUSE_CAP_READDIRPLUS_AUTO);
      break;
    case ReaddirPlus::kAlways:
      want(FUSE_CAP_READDIRPLUS);
      drop(FUSE_CAP_READDIRPLUS_AUTO);
      break;
    case ReaddirPlus::kNever:
      drop(FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO);
      break;
  }
  // Nothing in a tree ever changes: keep cached pages whatever attributes say, and
  // cache symlink targets.
  drop(FUSE_CAP_AUTO_INVAL_DATA);
  want(FUSE_CAP_EXPLICIT_INVAL_DATA);
  want(FUSE_CAP_CACHE_SYMLINKS);
  want(FUSE_CAP_ASYNC_READ);
  want(FUSE_CAP_PARALLEL_DIROPS);
  // Must equal the max_read mount option (libfuse checks).
  conn->max_read = mount.options.max_read_bytes;
  if (mount.options.max_background > 0) {
    conn->max_background = mount.options.max_background;
    conn->congestion_threshold = mount.options.max_background * 3 / 4;
  }
  conn->time_gran = 1;

  std::lock_guard<std::mutex> lock(mount.init_mu);
  mount.initialized = true;
  mount.init_cv.notify_all();
}

// ---- names and attributes -----------------------------------------------------------

void Lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  MountState& mount = StateOf(req);
  OpTimer timer(mount, "lookup");
  Result<Attr> attr = mount.tree.Lookup(parent, name);
  if (attr.ok()) {
    ReplyEntry(req, mount, *attr);
    return;
  }
  if (attr.status().IsNotFound() && mount.options.negative_timeout.count() > 0) {
    fuse_entry_param negative{};  // ino 0: the kernel caches the name's absence
    negative.entry_timeout = mount.options.negative_timeout.count();
    fuse_reply_entry(req, &negative);
    return;
  }
  ReplyError(req, mount, "lookup", parent, attr.status(), Call::kNode);
}

void Forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  MountState& mount = StateOf(req);
  OpTimer timer(mount, "forget");
  if (!mount.lookups.Forget(ino, nlookup) && !mount.adopted) {
    spdlog::warn("fuse {}: kernel forgot inode {} more often than it was looked up",
                 mount.mountpoint, ino);
  }
  fuse_reply_none(req);
}

void ForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  MountState& mount = StateOf(req);
  OpTimer timer(mount, "forget_multi");
  for (size_t i = 0; i < count; i++) {
    if (!mount.lookups.Forget(forgets[i].ino, forgets[i].nlookup) && !mount.adopted) {
      spdlog::warn("fuse {}: kernel forgot inode {} more often than it was looked up",
                   mount.mountpoint, forgets[i].ino);
    }
  }
  fuse_reply_none(req);
}

void GetAttr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* /*fi*/) {
  MountState& mount = StateOf(req);
  OpTimer timer(mount, "getattr");
  Result<Attr> attr = mount.tree.GetAttr(ino);
  if (!attr.ok()) {
    ReplyError(req, mount, "getattr", ino, attr.status(), Call::kNode);
    return;
  }
  struct stat st = ToStat(*attr);
  fuse_reply_attr(req, &st, mount.options.attr_timeout.count());
}

void ReadLink(fuse_req_t req, fuse_ino_t ino) {
  MountState& mount = StateOf(req);
  OpTimer timer(mount, "readlink");
  Result<std::string> target = mount.tree.ReadLink(ino);
  if (!target.ok()) {
    ReplyError(req, mount, "readlink", ino, target.status(), Call::kReadLink);
    return;
  }
  fuse_reply_readlink(req, target->c_str());
}

// Only reached without default_permissions (the kernel checks mode bits itself
// otherwise). Approximates the kernel's check; supplementary groups are not consulted.
void Access(fuse_req_t req, fuse_ino_t ino, int mask) {
  MountState& mount = StateOf(req);
  OpTimer timer(mount, "access");
  Result<Attr> attr = mount.tree.GetAttr(ino);
  if (!attr.ok()) {
    ReplyError(req, mount, "access", ino, attr.status(), Call::kNode);
    return;
  }
  if (mask & W_OK) {
    fuse_reply_err(req, EROFS);
    return;
  }
  const fuse_ctx* caller = fuse_req_ctx(req);
  mode_t mode = attr->mode;
  bool allowed;
  if (caller->uid == 0) {
    // root reads anything, and executes what anyone may execute (or any directory).
    allowed = !(mask & X_OK) || S_ISDIR(mode) || (mode & 0111) != 0;
  } else {
    mode_t granted = caller->uid == attr->uid   ? (mode >> 6) & 7
                     : caller->gid == attr->gid ? (mode >> 3) & 7
                                                : mode & 7;
    allowed = (static_cast<mode_t>(mask) & granted) == static_cast<mode_t>(mask);
  }
  fuse_reply_err(req, allowed ? 0 : EACCES);
}

void StatFs(fuse_req_t req, fuse_ino_t /*ino*/) {
  MountState& mount = StateOf(req);
  OpTimer timer(mount, "statfs");
  FsStats stats = mount.tree.StatFs();
  struct statvfs out {};
  out.f_bsize = stats.block_size;
  out.f_frsize = stats.block_size;
  out.f_blocks = stats.blocks;
  out.f_files = stats.files;
  out.f_namemax = stats.name_max;
  fuse_reply_statfs(req, &out);
}

// ---- files -------------------------------------------------------------------------

void Open(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* fi) {
  MountState& mount = StateOf(req);
  OpTimer timer(mount, "open");
  if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
    fuse_reply_err(req, EROFS);
    return;
  }
  fi->keep_cache = 1;  // pages read through an earlier open are still right
  fi->noflush = 1;     // nothing to flush on close
  fuse_reply_open(req, fi);
}

void Read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info* /*fi*/) {
  MountState& mount = StateOf(req);
  OpTimer timer(mount, "read");
  auto buf = std::make_unique_for_overwrite<char[]>(size);
  Result<size_t> n = mount.tree.Read(ino, buf.get(), size, static_cast<uint64_t>(offset));
  if (!n.ok()) {
    ReplyError(req, mount, "read", ino, n.status(), Call::kFileData);
    return;
  }
  fuse_reply_buf(req, buf.get(), *n);
}

void Release(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* /*fi*/) {
  OpTimer timer(StateOf(req), "release");
  fuse_reply_err(req, 0);
}

// ---- directories ---------------------------------------------------------------------

void OpenDir(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* fi) {
  OpTimer timer(StateOf(req), "opendir");
  fi->cache_readdir = 1;  // the kernel may keep listings; they never change
  fi->keep_cache = 1;
  fuse_reply_open(req, fi);
}

void ReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info* /*fi*/) {
  MountState& mount = StateOf(req);
  OpTimer timer(mount, "readdir");
  ListDirectory(req, mount, ino, size, offset, /*plus=*/false);
}

void ReadDirPlus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset,
                 fuse_file_info* /*fi*/) {
  MountState& mount = StateOf(req);
  OpTimer timer(mount, "readdirplus");
  ListDirectory(req, mount, ino, size, offset, /*plus=*/true);
}

void ReleaseDir(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* /*fi*/) {
  OpTimer timer(StateOf(req), "releasedir");
  fuse_reply_err(req, 0);
}

// ---- extended attributes -------------------------------------------------------------

// Both xattr calls answer a zero `size` with the size needed, and a too small one
// with ERANGE (getxattr(2)'s size-probing protocol).
void ReplyXattrValue(fuse_req_t req, const std::string& value, size_t size) {
  if (size == 0) {
    fuse_reply_xattr(req, value.size());
  } else if (value.size() > size) {
    fuse_reply_err(req, ERANGE);
  } else {
    fuse_reply_buf(req, value.data(), value.size());
  }
}

void GetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  MountState& mount = StateOf(req);
  OpTimer timer(mount, "getxattr");
  Result<std::string> value = mount.tree.GetXattr(ino, name);
  if (!value.ok()) {
    ReplyError(req, mount, "getxattr", ino, value.status(), Call::kXattr);
    return;
  }
  ReplyXattrValue(req, *value, size);
}

void ListXattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  MountState& mount = StateOf(req);
  OpTimer timer(mount, "listxattr");
  Result<std::vector<std::string>> names = mount.tree.ListXattr(ino);
  if (!names.ok() && names.status().code() != Code::kUnimplemented) {
    ReplyError(req, mount, "listxattr", ino, names.status(), Call::kXattr);
    return;
  }
  std::string list;  // each name NUL-terminated; empty when the tree has no xattrs
  if (names.ok()) {
    for (const std::string& name : *names) {
      list += name;
      list += '\0';
    }
  }
  ReplyXattrValue(req, list, size);
}

// ---- everything that would change the tree: EROFS --------------------------------------

void SetAttr(fuse_req_t req, fuse_ino_t, struct stat*, int, fuse_file_info*) {
  RefuseWrite(req, "setattr");
}
void MkNod(fuse_req_t req, fuse_ino_t, const char*, mode_t, dev_t) { RefuseWrite(req, "mknod"); }
void MkDir(fuse_req_t req, fuse_ino_t, const char*, mode_t) { RefuseWrite(req, "mkdir"); }
void Unlink(fuse_req_t req, fuse_ino_t, const char*) { RefuseWrite(req, "unlink"); }
void RmDir(fuse_req_t req, fuse_ino_t, const char*) { RefuseWrite(req, "rmdir"); }
void SymLink(fuse_req_t req, const char*, fuse_ino_t, const char*) { RefuseWrite(req, "symlink"); }
void Rename(fuse_req_t req, fuse_ino_t, const char*, fuse_ino_t, const char*, unsigned) {
  RefuseWrite(req, "rename");
}
void Link(fuse_req_t req, fuse_ino_t, fuse_ino_t, const char*) { RefuseWrite(req, "link"); }
void Write(fuse_req_t req, fuse_ino_t, const char*, size_t, off_t, fuse_file_info*) {
  RefuseWrite(req, "write");
}
void Create(fuse_req_t req, fuse_ino_t, const char*, mode_t, fuse_file_info*) {
  RefuseWrite(req, "create");
}
void SetXattr(fuse_req_t req, fuse_ino_t, const char*, const char*, size_t, int) {
  RefuseWrite(req, "setxattr");
}
void RemoveXattr(fuse_req_t req, fuse_ino_t, const char*) { RefuseWrite(req, "removexattr"); }
void Fallocate(fuse_req_t req, fuse_ino_t, int, off_t, off_t, fuse_file_info*) {
  RefuseWrite(req, "fallocate");
}
void CopyFileRange(fuse_req_t req, fuse_ino_t, off_t, fuse_file_info*, fuse_ino_t, off_t,
                   fuse_file_info*, size_t, int) {
  RefuseWrite(req, "copy_file_range");
}

fuse_lowlevel_ops MakeOperations() {
  fuse_lowlevel_ops ops{};
  ops.init = Init;
  ops.lookup = Lookup;
  ops.forget = Forget;
  ops.forget_multi = ForgetMulti;
  ops.getattr = GetAttr;
  ops.readlink = ReadLink;
  ops.access = Access;
  ops.statfs = StatFs;
  ops.open = Open;
  ops.read = Read;
  ops.release = Release;
  ops.opendir = OpenDir;
  ops.readdir = ReadDir;
  ops.readdirplus = ReadDirPlus;
  ops.releasedir = ReleaseDir;
  ops.getxattr = GetXattr;
  ops.listxattr = ListXattr;
  ops.setattr = SetAttr;
  ops.mknod = MkNod;
  ops.mkdir = MkDir;
  ops.unlink = Unlink;
  ops.rmdir = RmDir;
  ops.symlink = SymLink;
  ops.rename = Rename;
  ops.link = Link;
  ops.write = Write;
  ops.create = Create;
  ops.setxattr = SetXattr;
  ops.removexattr = RemoveXattr;
  ops.fallocate = Fallocate;
  ops.copy_file_range = CopyFileRange;
  return ops;
}

}  // namespace

const fuse_lowlevel_ops& Operations() {
  static const fuse_lowlevel_ops kOperations = MakeOperations();
  return kOperations;
}

}  // namespace strata::fuse
