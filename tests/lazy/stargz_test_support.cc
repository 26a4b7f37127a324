#include "tests/lazy/stargz_test_support.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <map>
#include <memory>

#include "core/digest.h"
#include "core/quote.h"
#include "transfer/byte_source.h"
#include "transfer/tar_reader.h"

namespace strata::lazy::stargz::testing {

StringBlobReader::StringBlobReader(std::string data)
    : data_(std::move(data)), digest_(Sha256Digest(data_)) {}

Result<size_t> StringBlobReader::ReadAt(char* buf, size_t n, uint64_t offset) {
  reads_++;
  std::lock_guard lock(mu_);
  if (!fail_.ok()) return fail_;
  if (offset >= data_.size()) return size_t{0};
  n = std::min<uint64_t>(n, data_.size() - offset);
  std::copy_n(data_.data() + offset, n, buf);
  for (const std::set<uint64_t>* bad : {&corrupt_healing_, &corrupt_forever_}) {
    for (auto it = bad->lower_bound(offset); it != bad->end() && *it < offset + n; ++it) {
      buf[*it - offset] = static_cast<char>(buf[*it - offset] ^ 0xff);
    }
  }
  return n;
}

void StringBlobReader::Prefetch(const std::vector<registry::ByteRange>& ranges) {
  std::lock_guard lock(mu_);
  prefetches_.insert(prefetches_.end(), ranges.begin(), ranges.end());
}

void StringBlobReader::Invalidate(uint64_t offset, uint64_t n) {
  std::lock_guard lock(mu_);
  invalidations_.push_back({offset, n});
  corrupt_healing_.erase(corrupt_healing_.lower_bound(offset),
                         corrupt_healing_.lower_bound(offset + n));
}

void StringBlobReader::Corrupt(uint64_t offset, bool heals) {
  std::lock_guard lock(mu_);
  (heals ? corrupt_healing_ : corrupt_forever_).insert(offset);
}

void StringBlobReader::FailReads(Status status) {
  std::lock_guard lock(mu_);
  fail_ = std::move(status);
}

std::vector<registry::ByteRange> StringBlobReader::invalidations() const {
  std::lock_guard lock(mu_);
  return invalidations_;
}

std::vector<registry::ByteRange> StringBlobReader::prefetches() const {
  std::lock_guard lock(mu_);
  return prefetches_;
}

Result<fuse::Attr> LookupPath(fuse::Tree& tree, std::string_view path) {
  ASSIGN_OR_RETURN(fuse::Attr attr, tree.GetAttr(fuse::kRootIno));
  size_t pos = 0;
  while (pos < path.size()) {
    size_t slash = path.find('/', pos);
    if (slash == std::string_view::npos) slash = path.size();
    ASSIGN_OR_RETURN(attr, tree.Lookup(attr.ino, path.substr(pos, slash - pos)));
    pos = slash + 1;
  }
  return attr;
}

Result<std::string> ReadWhole(fuse::Tree& tree, fuse::Ino ino, size_t piece) {
  std::string out;
  std::string buf(piece, '\0');
  for (;;) {
    ASSIGN_OR_RETURN(size_t got, tree.Read(ino, buf.data(), buf.size(), out.size()));
    if (got == 0) return out;
    out.append(buf.data(), got);
  }
}

namespace {

std::string Clean(std::string_view path) {
  std::string out;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t slash = path.find('/', pos);
    if (slash == std::string_view::npos) slash = path.size();
    std::string_view c = path.substr(pos, slash - pos);
    pos = slash + 1;
    if (c.empty() || c == ".") continue;
    if (!out.empty()) out += '/';
    out += c;
  }
  return out;
}

std::string Parent(const std::string& p) {
  size_t slash = p.rfind('/');
  return slash == std::string::npos ? "" : p.substr(0, slash);
}

std::string Base(const std::string& p) {
  size_t slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

std::string Join(const std::string& dir, const std::string& name) {
  return dir.empty() ? name : dir + "/" + name;
}

struct Expected {
  transfer::TarEntry entry;
  std::string content;
  std::string hardlink_to;  // cleaned target path for hard links
  bool whiteout = false;
};

}  // namespace

std::vector<std::string> CompareTreeWithTar(fuse::Tree& tree, const std::string& layer_tar,
                                            size_t read_piece_bytes) {
  std::vector<std::string> diffs;
  std::map<std::string, Expected> expected;
  std::set<std::string> opaque_dirs;
  std::set<std::string> whiteouts;

  auto source = transfer::NewStringSource(layer_tar);
  transfer::TarReader reader(*source);
  for (;;) {
    Result<bool> more = reader.Next();
    if (!more.ok()) return {"reading the tar: " + more.status().ToString()};
    if (!*more) break;
    const transfer::TarEntry& e = reader.entry();
    std::string path = Clean(e.path);
    if (path == "stargz.index.json" || path == ".prefetch.landmark" ||
        path == ".no.prefetch.landmark") {
      continue;
    }
    std::string base = Base(path);
    if (base == ".wh..wh..opq") {
      opaque_dirs.insert(Parent(path));
      continue;
    }
    if (base.rfind(".wh..wh.", 0) == 0) continue;
    if (base.rfind(".wh.", 0) == 0) {
      whiteouts.insert(Join(Parent(path), base.substr(4)));
      continue;
    }
    Expected x;
    x.entry = e;
    if (e.type == transfer::TarEntryType::kHardlink) x.hardlink_to = Clean(e.link_target);
    if (e.type == transfer::TarEntryType::kRegular) {
      std::string buf(65536, '\0');
      for (;;) {
        Result<size_t> got = reader.Read(buf.data(), buf.size());
        if (!got.ok()) return {"reading the tar: " + got.status().ToString()};
        if (*got == 0) break;
        x.content.append(buf.data(), *got);
      }
    }
    expected[path] = std::move(x);
  }
  for (const std::string& w : whiteouts) {
    if (expected.count(w)) continue;
    Expected x;
    x.whiteout = true;
    expected[w] = x;
  }
  // Parents the tar does not list are directories all the same.
  std::set<std::string> implied;
  for (const auto& [path, x] : expected) {
    for (std::string p = Parent(path); !p.empty() && !expected.count(p); p = Parent(p)) {
      implied.insert(p);
    }
  }
  std::map<std::string, int> names_of;  // hard link target -> names
  for (const auto& [path, x] : expected) {
    if (!x.hardlink_to.empty()) names_of[x.hardlink_to]++;
  }

  for (const auto& [path, x] : expected) {
    auto diff = [&, p = path](const std::string& what) { diffs.push_back(Quote(p) + ": " + what); };
    Result<fuse::Attr> got = LookupPath(tree, path);
    if (!got.ok()) {
      diff("lookup: " + got.status().ToString());
      continue;
    }
    const fuse::Attr& a = *got;
    if (x.whiteout) {
      if (!S_ISCHR(a.mode) || a.rdev != 0) diff("not a 0:0 whiteout");
      continue;
    }
    if (!x.hardlink_to.empty()) {
      Result<fuse::Attr> target = LookupPath(tree, x.hardlink_to);
      if (!target.ok() || target->ino != a.ino) diff("hard link is not the inode of its target");
      continue;
    }
    const transfer::TarEntry& e = x.entry;
    mode_t type = 0;
    switch (e.type) {
      case transfer::TarEntryType::kRegular:
        type = S_IFREG;
        break;
      case transfer::TarEntryType::kDirectory:
        type = S_IFDIR;
        break;
      case transfer::TarEntryType::kSymlink:
        type = S_IFLNK;
        break;
      case transfer::TarEntryType::kCharDevice:
        type = S_IFCHR;
        break;
      case transfer::TarEntryType::kBlockDevice:
        type = S_IFBLK;
        break;
      case transfer::TarEntryType::kFifo:
        type = S_IFIFO;
        break;
      default:
        diff("unexpected tar entry type");
        continue;
    }
    if ((a.mode & S_IFMT) != type) diff("type " + std::to_string(a.mode & S_IFMT));
    if ((a.mode & 07777) != (e.mode & 07777)) {
      diff("mode " + std::to_string(a.mode & 07777) + " != " + std::to_string(e.mode & 07777));
    }
    if (a.uid != static_cast<uid_t>(e.uid) || a.gid != static_cast<gid_t>(e.gid)) {
      diff("owner " + std::to_string(a.uid) + ":" + std::to_string(a.gid));
    }
    int64_t mtime_diff = static_cast<int64_t>(a.mtime.tv_sec) - e.mtime.seconds;
    if (e.mtime.nanos == 0 ? mtime_diff != 0 : (mtime_diff < 0 || mtime_diff > 1)) {
      diff("mtime " + std::to_string(a.mtime.tv_sec) + " != " + std::to_string(e.mtime.seconds));
    }
    if (type == S_IFREG) {
      if (a.size != x.content.size()) diff("size " + std::to_string(a.size));
      if (a.blocks_512 != (x.content.size() + 511) / 512) diff("st_blocks");
      Result<std::string> content = ReadWhole(tree, a.ino, read_piece_bytes);
      if (!content.ok()) {
        diff("read: " + content.status().ToString());
      } else if (*content != x.content) {
        diff("content differs");
      }
      uint32_t nlink = 1 + (names_of.count(path) ? names_of[path] : 0);
      if (a.nlink != nlink)
        diff("nlink " + std::to_string(a.nlink) + " != " + std::to_string(nlink));
    }
    if (type == S_IFLNK) {
      Result<std::string> target = tree.ReadLink(a.ino);
      if (!target.ok() || *target != e.link_target) diff("symlink target");
      if (a.size != e.link_target.size()) diff("symlink size");
    }
    if ((type == S_IFCHR || type == S_IFBLK) && a.rdev != makedev(e.dev_major, e.dev_minor)) {
      diff("device numbers");
    }
    std::map<std::string, std::string> want;
    for (const auto& [name, value] : e.xattrs) {
      if (name.rfind("trusted.overlay.", 0) != 0 && name.rfind("user.overlay.", 0) != 0) {
        want[name] = value;
      }
    }
    if (type == S_IFDIR && opaque_dirs.count(path)) want["trusted.overlay.opaque"] = "y";
    Result<std::vector<std::string>> names = tree.ListXattr(a.ino);
    std::map<std::string, std::string> have;
    if (names.ok()) {
      for (const std::string& name : *names) {
        Result<std::string> value = tree.GetXattr(a.ino, name);
        have[name] = value.ok() ? *value : "<" + value.status().ToString() + ">";
      }
    }
    if (have != want)
      diff("xattrs differ (" + std::to_string(have.size()) + " vs " + std::to_string(want.size()) +
           ")");
  }
  if (!opaque_dirs.empty() && opaque_dirs.count("")) {
    Result<std::string> v = tree.GetXattr(fuse::kRootIno, "trusted.overlay.opaque");
    if (!v.ok() || *v != "y") diffs.push_back("root is not opaque");
  }

  // Nothing more in the tree than what the tar makes.
  std::vector<std::pair<fuse::Ino, std::string>> todo = {{fuse::kRootIno, ""}};
  size_t seen = 0;
  while (!todo.empty()) {
    auto [dir, dir_path] = todo.back();
    todo.pop_back();
    Status s = tree.ReadDir(dir, 0, [&](const fuse::DirEntry& d) {
      if (d.name == "." || d.name == "..") return true;
      std::string path = Join(dir_path, d.name);
      seen++;
      if (!expected.count(path) && !implied.count(path)) {
        diffs.push_back(Quote(path) + ": in the tree but not in the tar");
      }
      if (d.type == S_IFDIR) todo.emplace_back(d.ino, path);
      return true;
    });
    if (!s.ok()) diffs.push_back("readdir " + Quote(dir_path) + ": " + s.ToString());
  }
  const size_t want_names = expected.size() - expected.count("") + implied.size();
  if (seen != want_names) {
    diffs.push_back("tree has " + std::to_string(seen) + " names, tar makes " +
                    std::to_string(want_names));
  }
  return diffs;
}

}  // namespace strata::lazy::stargz::testing
