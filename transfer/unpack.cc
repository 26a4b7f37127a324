#include "transfer/unpack.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <set>
#include <thread>

#include "core/fs.h"
#include "core/quote.h"
#include "transfer/file_attrs.h"
#include "transfer/pipe.h"
#include "transfer/root_dir.h"
#include "transfer/tar_reader.h"

namespace strata::transfer {

namespace {

constexpr size_t kWriteBufferBytes = 1 << 20;
constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kWhiteoutMetaPrefix = ".wh..wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

std::string Join(const std::string& parent, const std::string& name) {
  return parent.empty() ? name : parent + "/" + name;
}

// Erases `path` and every key below it ("path/...") from a sorted container.
template <typename Sorted>
void EraseSubtree(Sorted& sorted, const std::string& path) {
  sorted.erase(path);
  std::string below = path + "/";
  auto it = sorted.lower_bound(below);
  while (it != sorted.end()) {
    const std::string& key = [&]() -> const std::string& {
      if constexpr (std::is_same_v<typename Sorted::value_type, std::string>) {
        return *it;
      } else {
        return it->first;
      }
    }();
    if (!StartsWith(key, below)) break;
    it = sorted.erase(it);
  }
}

struct timespec ToTimespec(const tar::Time& t) {
  struct timespec ts;
  ts.tv_sec = static_cast<time_t>(t.seconds);
  ts.tv_nsec = static_cast<long>(t.nanos);
  return ts;
}

// Counts the bytes read from the blob.
class CountingSource : public ByteSource {
 public:
  CountingSource(std::unique_ptr<ByteSource> in, uint64_t* count)
      : in_(std::move(in)), count_(count) {}
  Result<size_t> Read(char* buf, size_t n) override {
    ASSIGN_OR_RETURN(size_t got, in_->Read(buf, n));
    *count_ += got;
    return got;
  }

 private:
  std::unique_ptr<ByteSource> in_;
  uint64_t* count_;
};

// Applies the entries of one tar stream to a directory tree.
class LayerWriter {
 public:
  LayerWriter(RootDir root, const UnpackOptions& options)
      : root_(std::move(root)), options_(options), buffer_(kWriteBufferBytes) {}

  // Reads the archive and applies every entry, then the directory times.
  Status ApplyArchive(ByteSource& tar_stream, UnpackResult* result);

 private:
  Status ApplyEntry(TarReader& reader, const TarEntry& entry);
  Status WriteRegular(TarReader& reader, const TarEntry& entry, int dir, const std::string& name,
                      const std::string& path);
  Status MakeDirectory(const TarEntry& entry, int dir, const std::string& name,
                       const std::string& path);
  Status MakeHardlink(const TarEntry& entry, int dir, const std::string& parent,
                      const std::string& name, const std::string& path);
  Status MakeNode(const TarEntry& entry, int dir, const std::string& name, const std::string& path);
  Status MakeWhiteout(const TarEntry& entry, const std::string& parent, const std::string& name);
  Status MarkOpaque(const std::string& dir_path);
  Status ApplyDirectoryTimes();

  // Opens the parent directory of an entry, creating (and recording) missing ones.
  Result<int> OpenParent(const std::string& parent);
  // Removes whatever is at `name` in `dir` (the entry at `path`) so that an entry can
  // take its place, and forgets what was recorded about it and below it.
  Status Clear(int dir, const std::string& name, const std::string& path);
  // Creates something at `name` with `create` (returns 0 or -1 with errno); when
  // something is already there, clears it and tries once more.
  template <typename Create>
  Status CreateReplacing(int dir, const std::string& name, const std::string& path,
                         const char* what, Create create);
  FileAttrs AttrsOf(const TarEntry& entry) const;

  RootDir root_;
  const UnpackOptions& options_;
  std::vector<char> buffer_;
  std::set<std::string> implicit_dirs_;
  std::map<std::string, FileAttrs> dir_times_;             // explicit directories
  std::map<std::string, std::string> deferred_hardlinks_;  // link -> target
};

Status LayerWriter::ApplyArchive(ByteSource& tar_stream, UnpackResult* result) {
  TarReader reader(tar_stream);
  for (;;) {
    ASSIGN_OR_RETURN(bool more, reader.Next());
    if (!more) break;
    result->entries++;
    const TarEntry& entry = reader.entry();
    Status applied = ApplyEntry(reader, entry);
    if (!applied.ok()) return applied.WithContext("entry " + Quote(entry.path));
  }
  RETURN_IF_ERROR(ApplyDirectoryTimes());
  result->implicit_dirs.assign(implicit_dirs_.begin(), implicit_dirs_.end());
  for (const auto& [path, target] : deferred_hardlinks_) {
    result->deferred_hardlinks.push_back({path, target});
  }
  return Status::Ok();
}

FileAttrs LayerWriter::AttrsOf(const TarEntry& entry) const {
  FileAttrs attrs;
  attrs.uid = static_cast<uint32_t>(entry.uid);
  attrs.gid = static_cast<uint32_t>(entry.gid);
  attrs.mode = entry.mode;
  attrs.xattrs = entry.xattrs;
  attrs.mtime = ToTimespec(entry.mtime);
  attrs.atime = ToTimespec(entry.atime.value_or(entry.mtime));
  return attrs;
}

Status LayerWriter::ApplyEntry(TarReader& reader, const TarEntry& entry) {
  ASSIGN_OR_RETURN(std::string path, CleanArchivePath(entry.path));
  if (path.empty()) return Status::Ok();  // the root itself, as containerd: ignored
  auto [parent, name] = SplitPath(path);

  for (int64_t id : {entry.uid, entry.gid}) {
    if (id < 0 || id >= static_cast<int64_t>(UINT32_MAX)) {
      return Status::InvalidArgument("uid or gid " + std::to_string(id) + " is out of range");
    }
  }
  if (StartsWith(name, kWhiteoutPrefix)) {
    if (name == kOpaqueMarker) return MarkOpaque(parent);
    if (StartsWith(name, kWhiteoutMetaPrefix)) return Status::Ok();
    return MakeWhiteout(entry, parent, name.substr(kWhiteoutPrefix.size()));
  }
  if ((entry.type == TarEntryType::kCharDevice || entry.type == TarEntryType::kBlockDevice) &&
      !options_.allow_devices) {
    return Status(Code::kPermissionDenied, "device entries are not allowed (allow_devices is off)");
  }
  if (entry.type == TarEntryType::kOther) {
    return Status::InvalidArgument("unsupported tar entry type " +
                                   Quote(std::string_view(&entry.typeflag, 1)));
  }
  ASSIGN_OR_RETURN(int dir, OpenParent(parent));
  deferred_hardlinks_.erase(path);
  switch (entry.type) {
    case TarEntryType::kRegular:
      return WriteRegular(reader, entry, dir, name, path);
    case TarEntryType::kDirectory:
      return MakeDirectory(entry, dir, name, path);
    case TarEntryType::kHardlink:
      return MakeHardlink(entry, dir, parent, name, path);
    default:
      return MakeNode(entry, dir, name, path);
  }
}

Result<int> LayerWriter::OpenParent(const std::string& parent) {
  std::vector<std::string> created;
  ASSIGN_OR_RETURN(int dir, root_.OpenDir(parent, true, &created));
  for (const std::string& path : created) {
    implicit_dirs_.insert(path);
    deferred_hardlinks_.erase(path);
  }
  return dir;
}

Status LayerWriter::Clear(int dir, const std::string& name, const std::string& path) {
  root_.Invalidate(path);
  EraseSubtree(implicit_dirs_, path);
  EraseSubtree(dir_times_, path);
  EraseSubtree(deferred_hardlinks_, path);
  if (::unlinkat(dir, name.c_str(), 0) == 0 || errno == ENOENT) return Status::Ok();
  if (errno != EISDIR) return Status::FromErrno(errno, "remove existing " + Quote(path));
  return fs::RemoveAll(FdPath(dir, name));
}

template <typename Create>
Status LayerWriter::CreateReplacing(int dir, const std::string& name, const std::string& path,
                                    const char* what, Create create) {
  if (create() == 0) return Status::Ok();
  if (errno != EEXIST) return Status::FromErrno(errno, what);
  RETURN_IF_ERROR(Clear(dir, name, path));
  if (create() == 0) return Status::Ok();
  return Status::FromErrno(errno, what);
}

Status LayerWriter::WriteRegular(TarReader& reader, const TarEntry& entry, int dir,
                                 const std::string& name, const std::string& path) {
  int fd = -1;
  RETURN_IF_ERROR(CreateReplacing(dir, name, path, "create", [&] {
    fd = ::openat(dir, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    return fd >= 0 ? 0 : -1;
  }));
  UniqueFd file(fd);
  // Fill the buffer with contiguous data and write it in one call; a hole flushes it
  // and moves the write position past the hole.
  int64_t buffer_offset = 0;
  size_t used = 0;
  auto flush = [&]() -> Status {
    size_t done = 0;
    while (done < used) {
      ssize_t n = ::pwrite(fd, buffer_.data() + done, used - done,
                           static_cast<off_t>(buffer_offset + static_cast<int64_t>(done)));
      if (n < 0) {
        if (errno == EINTR) continue;
        return Status::FromErrno(errno, "write");
      }
      done += static_cast<size_t>(n);
    }
    buffer_offset += static_cast<int64_t>(used);
    used = 0;
    return Status::Ok();
  };
  for (;;) {
    ASSIGN_OR_RETURN(TarDataRun run, reader.ReadRun(buffer_.data() + used, buffer_.size() - used));
    if (run.length == 0) break;
    if (run.hole) {
      RETURN_IF_ERROR(flush());
      buffer_offset = run.offset + run.length;
      continue;
    }
    used += static_cast<size_t>(run.length);
    if (used == buffer_.size()) RETURN_IF_ERROR(flush());
  }
  RETURN_IF_ERROR(flush());
  // A sparse file may end in a hole, which no write reached.
  if (entry.sparse && ::ftruncate(fd, entry.size) != 0) {
    return Status::FromErrno(errno, "truncate");
  }
  return ApplyAttrs({fd, -1, ""}, FileKind::kRegularOrDirectory, AttrsOf(entry), true);
}

Status LayerWriter::MakeDirectory(const TarEntry& entry, int dir, const std::string& name,
                                  const std::string& path) {
  if (::mkdirat(dir, name.c_str(), 0700) != 0) {
    if (errno != EEXIST) return Status::FromErrno(errno, "mkdir");
    struct stat st;
    if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return Status::FromErrno(errno, "stat");
    }
    if (!S_ISDIR(st.st_mode)) {
      RETURN_IF_ERROR(Clear(dir, name, path));
      if (::mkdirat(dir, name.c_str(), 0700) != 0) return Status::FromErrno(errno, "mkdir");
    }
    // A directory over a directory keeps its contents and takes the new attributes.
  }
  int fd = ::openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "open directory");
  UniqueFd directory(fd);
  implicit_dirs_.erase(path);
  FileAttrs attrs = AttrsOf(entry);
  RETURN_IF_ERROR(ApplyAttrs({fd, -1, ""}, FileKind::kRegularOrDirectory, attrs, false));
  attrs.xattrs.clear();
  dir_times_[path] = std::move(attrs);
  return Status::Ok();
}

Status LayerWriter::MakeHardlink(const TarEntry& entry, int dir, const std::string& parent,
                                 const std::string& name, const std::string& path) {
  auto target = CleanArchivePath(entry.link_target);
  if (!target.ok()) return target.status().WithContext("hard link target");
  if (target->empty()) return Status::InvalidArgument("hard link to the layer root");
  if (*target == path) return Status::InvalidArgument("hard link to itself");
  auto deferred = deferred_hardlinks_.find(*target);
  if (deferred != deferred_hardlinks_.end()) {
    // Links to a link that is waiting for its target wait for the same target.
    std::string final_target = deferred->second;
    RETURN_IF_ERROR(Clear(dir, name, path));
    deferred_hardlinks_[path] = std::move(final_target);
    return Status::Ok();
  }
  std::pair<std::string, std::string> target_split = SplitPath(*target);
  const std::string& target_parent = target_split.first;
  const std::string& target_name = target_split.second;
  UniqueFd owned;
  int target_dir = dir;
  if (target_parent != parent) {
    auto opened = root_.OpenDirOwned(target_parent);
    if (!opened.ok()) {
      if (!opened.status().IsNotFound()) {
        return opened.status().WithContext("hard link target " + Quote(*target));
      }
      RETURN_IF_ERROR(Clear(dir, name, path));
      deferred_hardlinks_[path] = *target;
      return Status::Ok();
    }
    owned = std::move(*opened);
    target_dir = owned.get();
  }
  // linkat without AT_SYMLINK_FOLLOW links a symlink itself, never what it points to.
  auto link = [&] { return ::linkat(target_dir, target_name.c_str(), dir, name.c_str(), 0); };
  if (link() == 0) return Status::Ok();
  int err = errno;
  if (err == ENOENT) {
    // Not in this layer: a file of a parent layer, copied by FinishLayer.
    RETURN_IF_ERROR(Clear(dir, name, path));
    deferred_hardlinks_[path] = *target;
    return Status::Ok();
  }
  struct stat st;
  if (err == EPERM && ::fstatat(target_dir, target_name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
      S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument("hard link to directory " + Quote(*target));
  }
  if (err != EEXIST) return Status::FromErrno(err, "link to " + Quote(*target));
  RETURN_IF_ERROR(Clear(dir, name, path));
  if (link() == 0) return Status::Ok();
  return Status::FromErrno(errno, "link to " + Quote(*target));
}

Status LayerWriter::MakeNode(const TarEntry& entry, int dir, const std::string& name,
                             const std::string& path) {
  FileKind kind = FileKind::kOther;
  if (entry.type == TarEntryType::kSymlink) {
    kind = FileKind::kSymlink;
    RETURN_IF_ERROR(CreateReplacing(dir, name, path, "symlink", [&] {
      return ::symlinkat(entry.link_target.c_str(), dir, name.c_str());
    }));
  } else {
    mode_t type = S_IFIFO;
    dev_t device = 0;
    if (entry.type == TarEntryType::kCharDevice || entry.type == TarEntryType::kBlockDevice) {
      type = entry.type == TarEntryType::kCharDevice ? S_IFCHR : S_IFBLK;
      device = makedev(entry.dev_major, entry.dev_minor);
    }
    RETURN_IF_ERROR(CreateReplacing(dir, name, path, "mknod", [&] {
      return ::mknodat(dir, name.c_str(), type | 0600, device);
    }));
  }
  return ApplyAttrs({-1, dir, name}, kind, AttrsOf(entry), true);
}

Status LayerWriter::MakeWhiteout(const TarEntry& entry, const std::string& parent,
                                 const std::string& name) {
  if (name.empty() || name == "." || name == "..") {
    return Status::InvalidArgument("whiteout without a valid name");
  }
  ASSIGN_OR_RETURN(int dir, OpenParent(parent));
  std::string path = Join(parent, name);
  deferred_hardlinks_.erase(path);
  RETURN_IF_ERROR(CreateReplacing(dir, name, path, "mknod whiteout", [&] {
    return ::mknodat(dir, name.c_str(), S_IFCHR, makedev(0, 0));
  }));
  // containerd keeps the whiteout's owner from the header.
  if (::fchownat(dir, name.c_str(), static_cast<uid_t>(entry.uid), static_cast<gid_t>(entry.gid),
                 AT_SYMLINK_NOFOLLOW) != 0) {
    return Status::FromErrno(errno, "chown whiteout");
  }
  return Status::Ok();
}

Status LayerWriter::MarkOpaque(const std::string& dir_path) {
  ASSIGN_OR_RETURN(int dir, OpenParent(dir_path));
  const char* xattr = options_.userxattr ? "user.overlay.opaque" : "trusted.overlay.opaque";
  if (::fsetxattr(dir, xattr, "y", 1, 0) != 0) {
    return Status::FromErrno(errno, std::string("set ") + xattr + " on " + Quote(dir_path));
  }
  return Status::Ok();
}

Status LayerWriter::ApplyDirectoryTimes() {
  std::vector<const std::pair<const std::string, FileAttrs>*> dirs;
  for (const auto& entry : dir_times_) dirs.push_back(&entry);
  auto depth = [](const std::string& p) { return std::count(p.begin(), p.end(), '/'); };
  std::stable_sort(dirs.begin(), dirs.end(),
                   [&](auto* a, auto* b) { return depth(a->first) > depth(b->first); });
  for (const auto* entry : dirs) {
    auto [parent, name] = SplitPath(entry->first);
    ASSIGN_OR_RETURN(int dir, root_.OpenDir(parent, false, nullptr));
    struct timespec times[2] = {entry->second.atime, entry->second.mtime};
    if (::utimensat(dir, name.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
      return Status::FromErrno(errno, "set times of directory " + Quote(entry->first));
    }
  }
  return Status::Ok();
}

// Reads `source` to its end: the tar end marker may be followed by padding, and the
// diff id covers the whole stream (and the decompressor checks its trailer at the end).
Status Drain(ByteSource& source) {
  std::vector<char> scratch(64 * 1024);
  for (;;) {
    ASSIGN_OR_RETURN(size_t got, source.Read(scratch.data(), scratch.size()));
    if (got == 0) return Status::Ok();
  }
}

}  // namespace

Result<UnpackResult> UnpackLayer(ByteSource& layer, const std::string& dest_dir,
                                 const UnpackOptions& options) {
  ASSIGN_OR_RETURN(RootDir root, RootDir::Open(dest_dir));
  UnpackResult result;
  uint64_t compressed_bytes = 0;
  auto counted = std::make_unique<CountingSource>(BorrowSource(layer), &compressed_bytes);
  auto decompressed = options.compression ? Decompress(std::move(counted), *options.compression)
                                          : Decompress(std::move(counted));
  if (!decompressed.ok()) return decompressed.status().WithContext("decompress layer");
  HashingSource tar_stream(std::move(*decompressed));
  LayerWriter writer(std::move(root), options);

  Status status;
  if (options.pipeline_bytes == 0) {
    status = writer.ApplyArchive(tar_stream, &result);
    if (status.ok()) status = Drain(tar_stream);
  } else {
    Pipe pipe(options.pipeline_bytes);
    std::thread producer([&] {
      std::vector<char> chunk(kWriteBufferBytes);
      for (;;) {
        auto got = tar_stream.Read(chunk.data(), chunk.size());
        if (!got.ok()) return pipe.CloseWrite(got.status());
        if (*got == 0) return pipe.CloseWrite(Status::Ok());
        if (!pipe.Write(chunk.data(), *got).ok()) return;  // the consumer gave up
      }
    });
    status = writer.ApplyArchive(pipe, &result);
    if (status.ok()) status = Drain(pipe);
    if (!status.ok()) pipe.CloseRead(status);
    producer.join();
  }
  if (!status.ok()) return status;

  result.diff_id = tar_stream.Digest();
  result.uncompressed_bytes = tar_stream.bytes();
  result.compressed_bytes = compressed_bytes;
  if (!options.expected_diff_id.empty() && options.expected_diff_id != result.diff_id) {
    return Status::DataLoss("layer diff id mismatch: expected " + options.expected_diff_id +
                            ", got " + result.diff_id);
  }
  return result;
}

}  // namespace strata::transfer
