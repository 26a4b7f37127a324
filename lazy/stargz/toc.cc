#include "lazy/stargz/toc.h"

#include <simdjson.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <array>
#include <limits>
#include <memory_resource>
#include <optional>
#include <unordered_map>

#include "core/digest.h"
#include "core/quote.h"
#include "transfer/byte_source.h"
#include "transfer/decompress.h"
#include "transfer/file_attrs.h"
#include "transfer/tar_format.h"
#include "transfer/tar_reader.h"

namespace strata::lazy::stargz {

namespace {

constexpr size_t kMaxNameBytes = 4096;
constexpr size_t kMaxComponentBytes = 255;
constexpr size_t kMaxXattrNameBytes = 255;
constexpr size_t kMaxXattrValueBytes = size_t{64} * 1024;
constexpr uint64_t kMaxFileBytes = uint64_t{1} << 62;
constexpr size_t kNoHardlink = SIZE_MAX;
constexpr int kMaxJsonDepth = 8;
// Bytes past the end of TOC JSON that the parser may read (DecompressToc leaves them).
constexpr size_t kJsonPadding = simdjson::SIMDJSON_PADDING;

// "a/b/c" for "./a//b/c/", "" for the root; refuses absolute names and "..". The result
// is a piece of `name` when the components kept stand one slash apart there (as in the
// names TOC writers write, "./a/b" and "a/b/"), else it is built in `*buffer`.
Result<std::string_view> CleanName(std::string_view name, std::string* buffer) {
  if (name.empty()) return Status::InvalidArgument("empty name");
  if (name.size() > kMaxNameBytes) return Status::InvalidArgument("name over 4096 bytes");
  if (name.find('\0') != std::string_view::npos) {
    return Status::InvalidArgument("name holds a NUL byte");
  }
  if (name.front() == '/') return Status::InvalidArgument("absolute name");
  size_t begin = std::string_view::npos;  // of the first component kept
  size_t end = 0;                         // of the last component kept so far
  bool in_name = true;                    // the result is name[begin, end)
  size_t pos = 0;
  while (pos <= name.size()) {
    size_t slash = name.find('/', pos);
    if (slash == std::string_view::npos) slash = name.size();
    const size_t start = pos;
    std::string_view component = name.substr(start, slash - start);
    pos = slash + 1;
    if (component.empty() || component == ".") continue;
    if (component == "..") return Status::InvalidArgument("name with a \"..\" component");
    if (component.size() > kMaxComponentBytes) {
      return Status::InvalidArgument("name component over 255 bytes");
    }
    if (begin == std::string_view::npos) {
      begin = start;
    } else if (in_name && start != end + 1) {
      in_name = false;
      buffer->assign(name.substr(begin, end - begin));
    }
    if (!in_name) {
      *buffer += '/';
      *buffer += component;
    }
    end = slash;
  }
  if (begin == std::string_view::npos) return std::string_view();
  return in_name ? name.substr(begin, end - begin) : std::string_view(*buffer);
}

std::string_view ParentOf(std::string_view path) {
  size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? std::string_view() : path.substr(0, slash);
}

std::string_view BaseOf(std::string_view path) {
  size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

// Days since 1970-01-01 of a proleptic Gregorian date.
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

// RFC 3339 ("2006-01-02T15:04:05Z", optional fraction, "Z" or "+hh:mm"), as Go's
// time.RFC3339 and RFC3339Nano write it.
bool ParseRfc3339(std::string_view s, timespec* out) {
  auto digits = [&](size_t at, size_t n, int* value) {
    if (at + n > s.size()) return false;
    int v = 0;
    for (size_t i = at; i < at + n; i++) {
      if (s[i] < '0' || s[i] > '9') return false;
      v = v * 10 + (s[i] - '0');
    }
    *value = v;
    return true;
  };
  int year, month, day, hour, minute, second;
  if (!digits(0, 4, &year) || s.size() < 20 || s[4] != '-' || !digits(5, 2, &month) ||
      s[7] != '-' || !digits(8, 2, &day) || (s[10] != 'T' && s[10] != 't') ||
      !digits(11, 2, &hour) || s[13] != ':' || !digits(14, 2, &minute) || s[16] != ':' ||
      !digits(17, 2, &second)) {
    return false;
  }
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) {
    return false;
  }
  size_t pos = 19;
  long nanos = 0;
  if (pos < s.size() && s[pos] == '.') {
    pos++;
    size_t start = pos;
    long scale = 100000000;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      nanos += (s[pos] - '0') * scale;
      scale /= 10;
      pos++;
    }
    if (pos == start) return false;
  }
  int64_t offset_s = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    pos++;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    int oh, om;
    if (!digits(pos + 1, 2, &oh) || pos + 3 >= s.size() || s[pos + 3] != ':' ||
        !digits(pos + 4, 2, &om)) {
      return false;
    }
    offset_s = int64_t{oh * 3600 + om * 60} * (s[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return false;
  }
  if (pos != s.size()) return false;
  int64_t days = DaysFromCivil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
  out->tv_sec =
      static_cast<time_t>(days * 86400 + int64_t{hour * 3600 + minute * 60 + second} - offset_s);
  out->tv_nsec = nanos;
  return true;
}

// The keys of a TOC entry that the index reads; others are ignored.
enum class Key : uint8_t {
  kName,
  kType,
  kSize,
  kModtime,
  kLinkName,
  kMode,
  kUid,
  kGid,
  kDevMajor,
  kDevMinor,
  kXattrs,
  kDigest,
  kOffset,
  kChunkOffset,
  kChunkSize,
  kChunkDigest,
  kInnerOffset,
  kEndOffset,
  kChunkType,
};
constexpr std::array<std::string_view, 19> kKeyNames = {
    "name",      "type",        "size",        "modtime",   "linkName", "mode",   "uid",
    "gid",       "devMajor",    "devMinor",    "xattrs",    "digest",   "offset", "chunkOffset",
    "chunkSize", "chunkDigest", "innerOffset", "endOffset", "chunkType"};
static_assert(kKeyNames.size() == static_cast<size_t>(Key::kChunkType) + 1);

std::optional<Key> KeyOf(std::string_view name) {
  for (size_t i = 0; i < kKeyNames.size(); i++) {
    if (kKeyNames[i] == name) return static_cast<Key>(i);
  }
  return std::nullopt;
}

std::string KeyName(Key key) { return std::string(kKeyNames[static_cast<size_t>(key)]); }

// Typed access to one TOC entry's fields; errors name the entry. Of a key given twice
// the last value counts, as with Go's encoding/json. Holds views into the document.
class EntryFields {
 public:
  EntryFields(simdjson::dom::object entry, size_t index) : index_(index) {
    for (simdjson::dom::key_value_pair field : entry) {
      std::optional<Key> key = KeyOf(field.key);
      if (!key) continue;
      values_[static_cast<size_t>(*key)] = field.value;
      present_ |= 1u << static_cast<unsigned>(*key);
    }
  }

  Status Error(const std::string& what) const {
    const simdjson::dom::element* name = Find(Key::kName);
    std::string_view text;
    if (name != nullptr && name->is_string()) text = name->get_string().value_unsafe();
    return Status::InvalidArgument("TOC entry " + std::to_string(index_) +
                                   (text.empty() ? "" : " " + Quote(text)) + ": " + what);
  }

  // A non-negative integer field (0 when absent or null), at most `max`.
  Result<uint64_t> Unsigned(Key key, uint64_t max = std::numeric_limits<int64_t>::max()) const {
    const simdjson::dom::element* value = Find(key);
    if (value == nullptr || value->is_null()) return uint64_t{0};
    uint64_t v;
    switch (value->type()) {
      case simdjson::dom::element_type::INT64: {
        int64_t signed_value = value->get_int64().value_unsafe();
        if (signed_value < 0) {
          return Error(KeyName(key) + " " + std::to_string(signed_value) + " is negative");
        }
        v = static_cast<uint64_t>(signed_value);
        break;
      }
      case simdjson::dom::element_type::UINT64:
        v = value->get_uint64().value_unsafe();
        break;
      default:
        return Error(KeyName(key) + " is not an integer");
    }
    if (v > max) return Error(KeyName(key) + " " + std::to_string(v) + " is out of range");
    return v;
  }

  // A string field ("" when absent or null).
  Result<std::string_view> String(Key key) const {
    const simdjson::dom::element* value = Find(key);
    if (value == nullptr || value->is_null()) return std::string_view();
    if (!value->is_string()) return Error(KeyName(key) + " is not a string");
    return value->get_string().value_unsafe();
  }

  // The value of `key`, or nullptr when the entry does not have it.
  const simdjson::dom::element* Find(Key key) const {
    const unsigned bit = 1u << static_cast<unsigned>(key);
    return present_ & bit ? &values_[static_cast<size_t>(key)] : nullptr;
  }

  size_t index() const { return index_; }

 private:
  std::array<simdjson::dom::element, kKeyNames.size()> values_;
  uint32_t present_ = 0;  // bit k: values_[k] holds key k
  static_assert(kKeyNames.size() <= 32);
  size_t index_;
};

// Builds a Toc from entries in TOC order.
class TocBuilder {
 public:
  // `entries`: how many the TOC lists, to size the index.
  TocBuilder(BlobFormat format, uint64_t payload_end, const TocLimits& limits, size_t entries)
      : limits_(limits) {
    toc_.format = format;
    toc_.payload_end = payload_end;
    toc_.inodes.reserve(entries + 1);
    names_.reserve(entries);
    TocInode root;
    root.mode = S_IFDIR | 0755;
    root.parent = fuse::kRootIno;
    toc_.inodes.push_back(std::move(root));
  }

  // Adds one entry of the TOC's "entries". The builder keeps views into the document
  // holding `entry` until Finish.
  Status Add(simdjson::dom::element entry, size_t index) {
    simdjson::dom::object object;
    if (entry.get_object().get(object) != simdjson::SUCCESS) {
      return Status::InvalidArgument("TOC entry " + std::to_string(index) + " is not an object");
    }
    EntryFields f(object, index);
    ASSIGN_OR_RETURN(std::string_view type, f.String(Key::kType));
    if (type == "chunk") return AddChunkEntry(f);
    RETURN_IF_ERROR(FinishRegular());

    ASSIGN_OR_RETURN(std::string_view raw_name, f.String(Key::kName));
    Result<std::string_view> cleaned = CleanName(raw_name, &name_buffer_);
    if (!cleaned.ok()) return f.Error(cleaned.status().message());
    const std::string_view name = Stable(*cleaned);
    if (type == "hardlink") return AddHardlink(f, name);

    mode_t format;
    if (type == "dir") {
      format = S_IFDIR;
    } else if (type == "reg") {
      format = S_IFREG;
    } else if (type == "symlink") {
      format = S_IFLNK;
    } else if (type == "char") {
      format = S_IFCHR;
    } else if (type == "block") {
      format = S_IFBLK;
    } else if (type == "fifo") {
      format = S_IFIFO;
    } else {
      return f.Error("unknown type " + Quote(type));
    }

    TocInode attrs;
    RETURN_IF_ERROR(ReadAttrs(f, format, &attrs));
    if (name.empty()) {
      if (format != S_IFDIR) return f.Error("the root is not a directory");
      if (root_listed_) return f.Error("duplicate entry for the root directory");
      root_listed_ = true;
      ApplyDirAttrs(std::move(attrs), &toc_.inodes[0]);
      return Status::Ok();
    }
    // Looked up and claimed at once (an error drops the whole builder).
    auto [slot, inserted] = names_.try_emplace(name);
    Name& claimed = slot->second;  // stays valid as names_ grows, unlike `slot`
    if (!inserted) {
      if (format == S_IFDIR && !claimed.listed && claimed.ino != 0) {
        // A directory created for the entries under it before its own entry came.
        claimed.listed = true;
        ApplyDirAttrs(std::move(attrs), &toc_.inodes[claimed.ino - 1]);
        return Status::Ok();
      }
      return f.Error("duplicate entry");
    }
    Result<fuse::Ino> parent = EnsureDir(ParentOf(name));
    if (!parent.ok()) return f.Error(parent.status().message());
    if (format == S_IFDIR) attrs.parent = *parent;
    fuse::Ino ino = NewInode(std::move(attrs));
    if (!ino) return f.Error("more than " + std::to_string(limits_.max_entries) + " inodes");
    AddChild(*parent, BaseOf(name), ino);
    claimed = Name{ino, kNoHardlink, true};

    if (format == S_IFREG) {
      regular_ = ino;
      regular_name_ = name;
      ASSIGN_OR_RETURN(regular_digest_, f.String(Key::kDigest));
      if (toc_.inodes[ino - 1].size > 0) return AddChunk(f);
    }
    return Status::Ok();
  }

  Result<Toc> Finish() {
    RETURN_IF_ERROR(FinishRegular());
    RETURN_IF_ERROR(ResolveHardlinks());
    ComputeBlobEnds();
    for (TocInode& inode : toc_.inodes) {
      if (!S_ISDIR(inode.mode)) continue;
      std::sort(inode.children.begin(), inode.children.end(),
                [](const TocDirent& a, const TocDirent& b) { return a.name < b.name; });
      inode.nlink = 2;
      for (const TocDirent& child : inode.children) {
        if (S_ISDIR(toc_.inodes[child.ino - 1].mode)) inode.nlink++;
      }
    }
    FindLandmarks();
    return std::move(toc_);
  }

 private:
  struct Name {
    fuse::Ino ino = 0;              // 0: a hard link not resolved yet
    size_t hardlink = kNoHardlink;  // index in hardlinks_
    bool listed = false;            // has its own entry (not an implied parent)
    bool resolving = false;         // cycle detection
  };
  struct Hardlink {
    std::string_view name;  // Stable, as the keys of names_
    std::string_view target;
    fuse::Ino parent = 0;
  };
  struct RawChunk {
    TocChunk chunk;
    uint64_t declared_size = 0;  // chunkSize; 0 means "to the end of the file"
    uint64_t end_offset = 0;     // endOffset; 0 when not given
    size_t entry_index = 0;
  };

  Status ReadAttrs(const EntryFields& f, mode_t format, TocInode* out) {
    ASSIGN_OR_RETURN(uint64_t mode, f.Unsigned(Key::kMode));
    ASSIGN_OR_RETURN(uint64_t uid, f.Unsigned(Key::kUid, UINT32_MAX - 1));
    ASSIGN_OR_RETURN(uint64_t gid, f.Unsigned(Key::kGid, UINT32_MAX - 1));
    out->mode = format | static_cast<mode_t>(mode & 07777);
    out->uid = static_cast<uint32_t>(uid);
    out->gid = static_cast<uint32_t>(gid);
    ASSIGN_OR_RETURN(std::string_view modtime, f.String(Key::kModtime));
    // Like estargz's reader, an unreadable time is the epoch rather than an error.
    if (!modtime.empty() && !ParseRfc3339(modtime, &out->mtime)) out->mtime = {};
    RETURN_IF_ERROR(ReadXattrs(f, &out->xattrs));
    switch (format) {
      case S_IFREG: {
        ASSIGN_OR_RETURN(out->size, f.Unsigned(Key::kSize, kMaxFileBytes));
        break;
      }
      case S_IFLNK: {
        ASSIGN_OR_RETURN(out->symlink_target, f.String(Key::kLinkName));
        if (out->symlink_target.empty()) return f.Error("symlink without linkName");
        if (out->symlink_target.size() > kMaxNameBytes ||
            out->symlink_target.find('\0') != std::string::npos) {
          return f.Error("symlink target over 4096 bytes or with a NUL byte");
        }
        out->size = out->symlink_target.size();
        break;
      }
      case S_IFCHR:
      case S_IFBLK: {
        ASSIGN_OR_RETURN(uint64_t major, f.Unsigned(Key::kDevMajor, UINT32_MAX));
        ASSIGN_OR_RETURN(uint64_t minor, f.Unsigned(Key::kDevMinor, UINT32_MAX));
        out->rdev = makedev(static_cast<unsigned>(major), static_cast<unsigned>(minor));
        break;
      }
      default:
        break;
    }
    return Status::Ok();
  }

  Status ReadXattrs(const EntryFields& f, std::map<std::string, std::string>* out) {
    const simdjson::dom::element* xattrs = f.Find(Key::kXattrs);
    if (xattrs == nullptr || xattrs->is_null()) return Status::Ok();
    simdjson::dom::object object;
    if (xattrs->get_object().get(object) != simdjson::SUCCESS) {
      return f.Error("xattrs is not an object");
    }
    // Checked in name order, a name given twice once with its last value, so that which
    // error is found first does not depend on the writer's order.
    std::vector<std::pair<std::string_view, simdjson::dom::element>> fields;
    for (simdjson::dom::key_value_pair field : object) fields.emplace_back(field.key, field.value);
    std::stable_sort(fields.begin(), fields.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (size_t i = 0; i < fields.size(); i++) {
      if (i + 1 < fields.size() && fields[i + 1].first == fields[i].first) continue;
      const auto& [name, value] = fields[i];
      if (name.empty() || name.size() > kMaxXattrNameBytes ||
          name.find('\0') != std::string_view::npos) {
        return f.Error("invalid xattr name " + Quote(name));
      }
      if (!value.is_string()) return f.Error("xattr " + Quote(name) + " is not base64 text");
      Result<std::string> decoded = transfer::tar::DecodeBase64(value.get_string().value_unsafe());
      if (!decoded.ok()) {
        return f.Error("xattr " + Quote(name) + ": " + decoded.status().message());
      }
      if (decoded->size() > kMaxXattrValueBytes) {
        return f.Error("xattr " + Quote(name) + " is over 64 KiB");
      }
      // As the unpacker does: a layer does not get to set overlayfs's own attributes.
      if (transfer::IsOverlayXattr(name)) continue;
      (*out)[std::string(name)] = std::move(decoded).value();
    }
    return Status::Ok();
  }

  static void ApplyDirAttrs(TocInode attrs, TocInode* dir) {
    dir->mode = attrs.mode;
    dir->uid = attrs.uid;
    dir->gid = attrs.gid;
    dir->mtime = attrs.mtime;
    dir->xattrs = std::move(attrs.xattrs);
  }

  // 0 when the inode limit is reached.
  fuse::Ino NewInode(TocInode inode) {
    if (toc_.inodes.size() >= limits_.max_entries) return 0;
    toc_.inodes.push_back(std::move(inode));
    return toc_.inodes.size();
  }

  void AddChild(fuse::Ino dir, std::string_view name, fuse::Ino ino) {
    toc_.inodes[dir - 1].children.push_back(TocDirent{std::string(name), ino});
  }

  // CleanName's `name` as a view that lives as long as the builder: the name itself when
  // it is a view into the document, else a copy in arena_.
  std::string_view Stable(std::string_view name) {
    if (name.data() != name_buffer_.data()) return name;
    char* copy = static_cast<char*>(arena_.allocate(name.size(), 1));
    std::copy(name.begin(), name.end(), copy);
    return {copy, name.size()};
  }

  // The directory `path`, created (with its parents) when the TOC has not listed it.
  Result<fuse::Ino> EnsureDir(std::string_view path) {
    if (path.empty()) return fuse::kRootIno;
    // Entries come in tar order, mostly several to a directory.
    if (path == last_dir_path_) return last_dir_ino_;
    ASSIGN_OR_RETURN(fuse::Ino ino, LookUpOrCreateDir(path));
    last_dir_path_ = path;
    last_dir_ino_ = ino;
    return ino;
  }

  Result<fuse::Ino> LookUpOrCreateDir(std::string_view path) {
    auto it = names_.find(path);
    if (it != names_.end()) {
      fuse::Ino ino = it->second.ino;
      if (ino != 0 && S_ISDIR(toc_.inodes[ino - 1].mode)) return ino;
      return Status::InvalidArgument(Quote(path) + " is not a directory but has entries under it");
    }
    ASSIGN_OR_RETURN(fuse::Ino parent, EnsureDir(ParentOf(path)));
    TocInode dir;
    dir.mode = S_IFDIR | 0755;
    dir.parent = parent;
    fuse::Ino ino = NewInode(std::move(dir));
    if (!ino) return Status::InvalidArgument("too many inodes");
    AddChild(parent, BaseOf(path), ino);
    names_.emplace(path, Name{ino, kNoHardlink, false});
    return ino;
  }

  // `name`: Stable.
  Status AddHardlink(const EntryFields& f, std::string_view name) {
    if (name.empty()) return f.Error("the root cannot be a hard link");
    if (names_.count(name)) return f.Error("duplicate entry");
    ASSIGN_OR_RETURN(std::string_view link, f.String(Key::kLinkName));
    Result<std::string_view> target = CleanName(link, &name_buffer_);
    if (!target.ok()) return f.Error("hard link target: " + target.status().message());
    const std::string_view stable_target = Stable(*target);
    Result<fuse::Ino> parent = EnsureDir(ParentOf(name));
    if (!parent.ok()) return f.Error(parent.status().message());
    names_.emplace(name, Name{0, hardlinks_.size(), true});
    hardlinks_.push_back(Hardlink{name, stable_target, *parent});
    return Status::Ok();
  }

  Status AddChunkEntry(const EntryFields& f) {
    if (regular_ == 0) return f.Error("chunk entry without a regular file before it");
    ASSIGN_OR_RETURN(std::string_view raw_name, f.String(Key::kName));
    if (!raw_name.empty()) {
      Result<std::string_view> name = CleanName(raw_name, &name_buffer_);
      if (!name.ok() || *name != regular_name_) {
        return f.Error("chunk entry does not belong to " + Quote(regular_name_) +
                       ", the regular file before it");
      }
    }
    if (toc_.inodes[regular_ - 1].size == 0) return f.Error("chunk entry of an empty file");
    return AddChunk(f);
  }

  Status AddChunk(const EntryFields& f) {
    RawChunk raw;
    ASSIGN_OR_RETURN(raw.chunk.blob_offset, f.Unsigned(Key::kOffset));
    ASSIGN_OR_RETURN(raw.chunk.file_offset, f.Unsigned(Key::kChunkOffset));
    ASSIGN_OR_RETURN(raw.declared_size, f.Unsigned(Key::kChunkSize));
    ASSIGN_OR_RETURN(raw.chunk.inner_offset, f.Unsigned(Key::kInnerOffset));
    ASSIGN_OR_RETURN(raw.chunk.digest, f.String(Key::kChunkDigest));
    ASSIGN_OR_RETURN(raw.end_offset, f.Unsigned(Key::kEndOffset));
    ASSIGN_OR_RETURN(std::string_view chunk_type, f.String(Key::kChunkType));
    if (chunk_type == "zeros") {
      raw.chunk.zeros = true;
    } else if (!chunk_type.empty()) {
      return f.Error("unknown chunkType " + Quote(chunk_type));
    }
    raw.entry_index = f.index();
    pending_.push_back(std::move(raw));
    return Status::Ok();
  }

  // Checks the chunks of the regular file just listed and stores them in its inode.
  Status FinishRegular() {
    if (regular_ == 0) return Status::Ok();
    TocInode& inode = toc_.inodes[regular_ - 1];
    const uint64_t size = inode.size;
    uint64_t covered = 0;
    for (size_t i = 0; i < pending_.size(); i++) {
      RawChunk& raw = pending_[i];
      TocChunk& c = raw.chunk;
      auto error = [&](const std::string& what) {
        return Status::InvalidArgument("TOC entry " + std::to_string(raw.entry_index) + " (" +
                                       Quote(regular_name_) + "): " + what);
      };
      if (c.file_offset != covered) {
        return error("chunk at file offset " + std::to_string(c.file_offset) + ", expected " +
                     std::to_string(covered) + " (chunks overlap or leave a gap)");
      }
      c.size = raw.declared_size != 0 ? raw.declared_size : size - covered;
      if (c.size == 0 || c.size > size - covered) {
        return error("chunk of " + std::to_string(c.size) + " bytes at " + std::to_string(covered) +
                     " runs past the file's " + std::to_string(size) + " bytes");
      }
      if (!c.zeros) {
        if (c.size > limits_.max_chunk_bytes || c.inner_offset > limits_.max_chunk_bytes) {
          return error("chunk size or innerOffset over the limit of " +
                       std::to_string(limits_.max_chunk_bytes) + " bytes");
        }
        if (c.blob_offset >= toc_.payload_end) {
          return error("chunk offset " + std::to_string(c.blob_offset) +
                       " is outside the blob's data, which ends at " +
                       std::to_string(toc_.payload_end));
        }
        if (raw.end_offset != 0) {
          if (raw.end_offset <= c.blob_offset || raw.end_offset > toc_.payload_end) {
            return error("endOffset " + std::to_string(raw.end_offset) + " is not after offset " +
                         std::to_string(c.blob_offset) + " within the blob's data");
          }
          c.blob_end = raw.end_offset;
        }
        if (c.digest.empty() && pending_.size() == 1) c.digest = regular_digest_;
        if (c.digest.empty()) return error("chunk without chunkDigest cannot be verified");
        Status valid = ValidateDigest(c.digest);
        if (!valid.ok() || c.digest.rfind("sha256:", 0) != 0) {
          return error("chunk digest " + Quote(c.digest) + " is not a sha256 digest");
        }
      } else {
        c = TocChunk{c.file_offset, c.size, 0, 0, 0, "", true};
      }
      covered += c.size;
      inode.chunks.push_back(std::move(c));
    }
    if (covered != size) {
      return Status::InvalidArgument("TOC entry " + Quote(regular_name_) + ": chunks cover " +
                                     std::to_string(covered) + " of its " + std::to_string(size) +
                                     " bytes");
    }
    pending_.clear();
    regular_ = 0;
    return Status::Ok();
  }

  // The inode a name stands for, following hard links to hard links.
  Result<fuse::Ino> Resolve(std::string_view name, std::string_view referrer) {
    auto it = names_.find(name);
    if (it == names_.end()) {
      return Status::InvalidArgument("hard link " + Quote(referrer) + " points to " + Quote(name) +
                                     ", which is not in the TOC");
    }
    Name& n = it->second;
    if (n.ino != 0) return n.ino;
    if (n.resolving) {
      return Status::InvalidArgument("hard link " + Quote(referrer) + " is part of a cycle");
    }
    n.resolving = true;
    Result<fuse::Ino> ino = Resolve(hardlinks_[n.hardlink].target, it->first);
    n.resolving = false;
    if (!ino.ok()) return ino.status();
    n.ino = *ino;
    return ino;
  }

  Status ResolveHardlinks() {
    for (const Hardlink& link : hardlinks_) {
      ASSIGN_OR_RETURN(fuse::Ino ino, Resolve(link.target, link.name));
      TocInode& target = toc_.inodes[ino - 1];
      if (S_ISDIR(target.mode)) {
        return Status::InvalidArgument("hard link " + Quote(link.name) + " points to directory " +
                                       Quote(link.target));
      }
      target.nlink++;
      AddChild(link.parent, BaseOf(link.name), ino);
      names_.find(link.name)->second.ino = ino;
    }
    return Status::Ok();
  }

  // A chunk without endOffset may use the compressed bytes up to the next member that
  // holds another chunk (or the end of the data).
  void ComputeBlobEnds() {
    std::vector<uint64_t> starts;
    for (const TocInode& inode : toc_.inodes) {
      for (const TocChunk& c : inode.chunks) {
        if (!c.zeros) starts.push_back(c.blob_offset);
      }
    }
    std::sort(starts.begin(), starts.end());
    starts.erase(std::unique(starts.begin(), starts.end()), starts.end());
    for (TocInode& inode : toc_.inodes) {
      for (TocChunk& c : inode.chunks) {
        if (c.zeros || c.blob_end != 0) continue;
        auto next = std::upper_bound(starts.begin(), starts.end(), c.blob_offset);
        c.blob_end = next == starts.end() ? toc_.payload_end : *next;
      }
    }
  }

  void FindLandmarks() {
    auto is_regular = [&](std::string_view name) -> const TocInode* {
      auto it = names_.find(name);
      if (it == names_.end() || it->second.ino == 0) return nullptr;
      const TocInode& inode = toc_.inodes[it->second.ino - 1];
      return S_ISREG(inode.mode) ? &inode : nullptr;
    };
    if (is_regular(kNoPrefetchLandmark)) {
      toc_.prefetch = PrefetchHint::kNone;
    } else if (const TocInode* landmark = is_regular(kPrefetchLandmark)) {
      toc_.prefetch = PrefetchHint::kLandmark;
      toc_.prefetch_end = landmark->chunks.empty() ? 0 : landmark->chunks.front().blob_offset;
    }
  }

  const TocLimits limits_;
  Toc toc_;
  // The map from cleaned names (views into the document, or copies in arena_, see
  // Stable) lives in an arena: a TOC has tens of thousands of names.
  std::pmr::monotonic_buffer_resource arena_;
  std::pmr::unordered_map<std::string_view, Name> names_{&arena_};
  std::string name_buffer_;  // CleanName's output when it is not a view into the name
  // EnsureDir's last answer: a directory stays one.
  std::string_view last_dir_path_;
  fuse::Ino last_dir_ino_ = 0;
  std::vector<Hardlink> hardlinks_;
  bool root_listed_ = false;
  // The regular file whose chunks are being listed.
  fuse::Ino regular_ = 0;
  std::string_view regular_name_;    // Stable
  std::string_view regular_digest_;  // in the document
  std::vector<RawChunk> pending_;
};

// The number of elements of `array`.
size_t CountElements(simdjson::dom::array array) {
  constexpr size_t kSaturated = 0xFFFFFF;  // where dom::array::size stops counting
  size_t n = array.size();
  if (n < kSaturated) return n;
  n = 0;
  for ([[maybe_unused]] simdjson::dom::element element : array) n++;
  return n;
}

// ParseTocJson, for `text` followed by `readable_after` more bytes that may be read:
// with kJsonPadding of them the parser reads `text` in place, else it copies it.
Result<Toc> ParseTocJsonImpl(std::string_view text, size_t readable_after, BlobFormat format,
                             uint64_t payload_end, const TocLimits& limits) {
  if (text.size() > limits.max_json_bytes) {
    return Status(Code::kResourceExhausted, "TOC JSON of " + std::to_string(text.size()) +
                                                " bytes is over the limit of " +
                                                std::to_string(limits.max_json_bytes));
  }
  // JSON may start with a UTF-8 byte order mark, which simdjson does not skip itself.
  constexpr std::string_view kByteOrderMark = "\xEF\xBB\xBF";
  if (text.starts_with(kByteOrderMark)) text.remove_prefix(kByteOrderMark.size());
  // A TOC nests four levels (document, entries, entry, xattrs); deeper is hostile. The
  // parser's depth counts a value inside the deepest container as one more level.
  simdjson::dom::parser parser;
  simdjson::error_code error = parser.allocate(text.size(), kMaxJsonDepth + 1);
  simdjson::dom::element root;
  if (error == simdjson::SUCCESS) {
    const bool copy = readable_after < kJsonPadding;
    error = parser.parse(text.data(), text.size(), copy).get(root);
  }
  switch (error) {
    case simdjson::SUCCESS:
      break;
    case simdjson::MEMALLOC:
      return Status(Code::kResourceExhausted, "out of memory parsing the TOC");
    case simdjson::DEPTH_ERROR:
      return Status::InvalidArgument("TOC JSON nests too deeply");
    default:
      return Status::InvalidArgument(std::string("TOC is not valid JSON: ") +
                                     simdjson::error_message(error));
  }
  simdjson::dom::object doc;
  if (root.get_object().get(doc) != simdjson::SUCCESS) {
    return Status::InvalidArgument("TOC JSON is not an object");
  }
  // Of a key given twice the last value counts, as in EntryFields.
  std::optional<simdjson::dom::element> version;
  std::optional<simdjson::dom::element> entries_value;
  for (simdjson::dom::key_value_pair field : doc) {
    if (field.key == "version") version = field.value;
    if (field.key == "entries") entries_value = field.value;
  }
  if (!version || version->type() != simdjson::dom::element_type::INT64 ||
      version->get_int64().value_unsafe() != 1) {
    return Status::InvalidArgument("TOC version is not 1");
  }
  simdjson::dom::array entries;
  if (!entries_value || entries_value->get_array().get(entries) != simdjson::SUCCESS) {
    return Status::InvalidArgument("TOC has no \"entries\" array");
  }
  const size_t entry_count = CountElements(entries);
  if (entry_count > limits.max_entries) {
    return Status::InvalidArgument("TOC has " + std::to_string(entry_count) +
                                   " entries, over the limit of " +
                                   std::to_string(limits.max_entries));
  }
  TocBuilder builder(format, payload_end, limits, entry_count);
  size_t index = 0;
  for (simdjson::dom::element entry : entries) RETURN_IF_ERROR(builder.Add(entry, index++));
  return builder.Finish();
}

Result<Toc> ParseTocJsonNoThrow(std::string_view text, size_t readable_after, BlobFormat format,
                                uint64_t payload_end, const TocLimits& limits) {
  try {
    return ParseTocJsonImpl(text, readable_after, format, payload_end, limits);
  } catch (const std::bad_alloc&) {
    return Status(Code::kResourceExhausted, "out of memory parsing the TOC");
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("malformed TOC: ") + e.what());
  }
}

}  // namespace

Result<std::string> DecompressToc(const Footer& footer, std::string_view compressed_toc,
                                  uint64_t max_json_bytes) {
  const bool zstd = footer.format == BlobFormat::kZstdChunked;
  auto corrupt = [](const Status& s) {
    if (s.code() == Code::kResourceExhausted) return s;
    return Status::DataLoss("cannot decompress the TOC: " + s.message());
  };
  Result<std::unique_ptr<transfer::ByteSource>> source =
      transfer::Decompress(transfer::NewStringSource(std::string(compressed_toc)),
                           zstd ? transfer::Compression::kZstd : transfer::Compression::kGzip);
  if (!source.ok()) return corrupt(source.status());
  if (zstd) {
    Result<std::string> json = transfer::ReadAll(**source, max_json_bytes);
    if (!json.ok()) return corrupt(json.status());
    if (footer.toc_json_bytes != 0 && json->size() != footer.toc_json_bytes) {
      return Status::DataLoss("TOC JSON is " + std::to_string(json->size()) +
                              " bytes; the footer says " + std::to_string(footer.toc_json_bytes));
    }
    return json;
  }
  transfer::TarReader tar(**source);
  Result<bool> more = tar.Next();
  if (!more.ok()) return corrupt(more.status());
  if (!*more) return Status::DataLoss("TOC tar archive is empty");
  const transfer::TarEntry& entry = tar.entry();
  if (entry.path != kTocTarName || entry.type != transfer::TarEntryType::kRegular) {
    return Status::DataLoss("TOC tar entry is " + Quote(entry.path) + ", not " +
                            std::string(kTocTarName));
  }
  if (static_cast<uint64_t>(entry.size) > max_json_bytes) {
    return Status(Code::kResourceExhausted, "TOC JSON of " + std::to_string(entry.size) +
                                                " bytes is over the limit of " +
                                                std::to_string(max_json_bytes));
  }
  std::string json;
  json.reserve(static_cast<size_t>(entry.size) + kJsonPadding);
  json.resize(static_cast<size_t>(entry.size));
  size_t have = 0;
  while (have < json.size()) {
    Result<size_t> got = tar.Read(json.data() + have, json.size() - have);
    if (!got.ok()) return corrupt(got.status());
    if (*got == 0) return Status::DataLoss("TOC tar entry is truncated");
    have += *got;
  }
  return json;
}

Result<Toc> ParseTocJson(std::string_view json, BlobFormat format, uint64_t payload_end,
                         const TocLimits& limits) {
  return ParseTocJsonNoThrow(json, 0, format, payload_end, limits);
}

Result<Toc> LoadToc(BlobReader& blob, const LoadTocOptions& options) {
  for (const std::string* digest : {&options.toc_digest, &options.zstd_manifest_checksum}) {
    if (!digest->empty()) {
      Status valid = ValidateDigest(*digest);
      if (!valid.ok()) return valid.WithContext("expected TOC digest");
    }
  }
  Status last;
  for (int attempt = 0; attempt <= options.verify_retries; attempt++) {
    ASSIGN_OR_RETURN(FooterAndToc read, ReadFooterAndToc(blob, options.read));
    const Footer& footer = read.footer;
    const bool check_json = !options.toc_digest.empty();
    const bool check_compressed =
        footer.format == BlobFormat::kZstdChunked && !options.zstd_manifest_checksum.empty();
    if (!check_json && !check_compressed && !options.allow_unverified) {
      return Status::FailedPrecondition(std::string(BlobFormatName(footer.format)) + " blob " +
                                        blob.digest() +
                                        " has no TOC digest to verify against (annotation " +
                                        std::string(kTocDigestAnnotation) + ")");
    }
    if (check_compressed) {
      std::string got = Sha256Digest(read.compressed_toc);
      if (got != options.zstd_manifest_checksum) {
        last = Status::DataLoss("TOC digest mismatch: compressed TOC of blob " + blob.digest() +
                                " is " + got + ", the manifest checksum says " +
                                options.zstd_manifest_checksum);
      }
    }
    if (last.ok()) {
      Result<std::string> json =
          DecompressToc(footer, read.compressed_toc, options.limits.max_json_bytes);
      if (!json.ok() && json.status().code() == Code::kResourceExhausted) return json.status();
      if (!json.ok()) {
        last = json.status().WithContext("blob " + blob.digest());
      } else {
        std::string json_digest = Sha256Digest(*json);
        if (check_json && json_digest != options.toc_digest) {
          last =
              Status::DataLoss("TOC digest mismatch: TOC JSON of blob " + blob.digest() + " is " +
                               json_digest + ", the manifest says " + options.toc_digest);
        } else {
          Result<Toc> toc = ParseTocJsonNoThrow(*json, json->capacity() - json->size(),
                                                footer.format, footer.payload_end, options.limits);
          if (!toc.ok()) return toc.status().WithContext("blob " + blob.digest());
          toc->json_digest = std::move(json_digest);
          return toc;
        }
      }
    }
    spdlog::error("stargz: {} (attempt {} of {})", last.message(), attempt + 1,
                  options.verify_retries + 1);
    blob.Invalidate(footer.toc_offset, blob.size() - footer.toc_offset);
    if (attempt < options.verify_retries) last = Status::Ok();
  }
  return last;
}

bool HasTocAnnotation(const std::map<std::string, std::string>& annotations) {
  for (std::string_view key : {kTocDigestAnnotation, kZstdChunkedManifestChecksumAnnotation,
                               kLegacyZstdChunkedManifestChecksumAnnotation}) {
    auto it = annotations.find(std::string(key));
    if (it != annotations.end() && !it->second.empty()) return true;
  }
  return false;
}

}  // namespace strata::lazy::stargz
