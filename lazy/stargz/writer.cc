#include "lazy/stargz/writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "core/digest.h"
#include "core/fs.h"
#include "core/quote.h"
#include "lazy/stargz/toc.h"
#include "transfer/root_dir.h"
#include "transfer/tar_format.h"
#include "transfer/tar_reader.h"
#include "transfer/tar_writer.h"

namespace strata::lazy::stargz {

namespace {

using Json = nlohmann::ordered_json;
using transfer::TarEntry;
using transfer::TarEntryType;

constexpr size_t kReadBufferBytes = 512 << 10;
// What TOC readers (toc.h) and Linux accept.
constexpr size_t kMaxComponentBytes = 255;
constexpr size_t kMaxXattrNameBytes = 255;
constexpr size_t kMaxXattrValueBytes = size_t{64} << 10;
constexpr char kLandmarkContent = 0x0f;

// Reads up to n bytes of the current entry's content; 0 at its end.
using ContentReader = std::function<Result<size_t>(char* buf, size_t n)>;

// ---- format helpers ----

std::string Base64(std::string_view data) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  auto byte = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(data[i])); };
  size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    const uint32_t group = byte(i) << 16 | byte(i + 1) << 8 | byte(i + 2);
    for (int shift = 18; shift >= 0; shift -= 6) out += kAlphabet[(group >> shift) & 63];
  }
  const size_t rest = data.size() - i;
  if (rest > 0) {
    const uint32_t group = byte(i) << 16 | (rest == 2 ? byte(i + 1) << 8 : 0);
    out += kAlphabet[(group >> 18) & 63];
    out += kAlphabet[(group >> 12) & 63];
    out += rest == 2 ? kAlphabet[(group >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

// Well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF): what
// JSON strings can carry.
bool IsUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t extra;
    uint32_t code;
    uint32_t min;
    if (c < 0x80) {
      i++;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      extra = 1, code = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      extra = 2, code = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      extra = 3, code = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (extra > s.size() - i - 1) return false;
    for (size_t k = 1; k <= extra; k++) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      code = code << 6 | (cc & 0x3f);
    }
    if (code < min || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return false;
    i += extra + 1;
  }
  return true;
}

// "2006-01-02T15:04:05Z"; "" when the year is outside 0000-9999 (RFC 3339 cannot say it).
std::string Rfc3339(int64_t seconds) {
  const time_t t = static_cast<time_t>(seconds);
  tm utc{};
  if (gmtime_r(&t, &utc) == nullptr) return "";
  const int64_t year = int64_t{utc.tm_year} + 1900;
  if (year < 0 || year > 9999) return "";
  char text[32];
  std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02dZ", static_cast<int>(year),
                utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec);
  return text;
}

// An empty gzip member whose header carries the TOC offset in an extra field: FEXTRA
// alone set, XLEN 26, subfield 'S','G' of 22 bytes ("%016x" and "STARGZ"), then an
// empty final stored block, CRC-32 0 and length 0.
std::string EstargzFooter(uint64_t toc_offset) {
  char offset_hex[17];
  std::snprintf(offset_hex, sizeof offset_hex, "%016llx",
                static_cast<unsigned long long>(toc_offset));
  std::string footer;
  footer.append("\x1f\x8b\x08\x04", 4);      // magic, deflate, FEXTRA
  footer.append(4, '\0');                    // MTIME
  footer.append("\x00\xff", 2);              // XFL, OS unknown
  footer.append("\x1a\x00", 2);              // XLEN 26
  footer.append("SG\x16\x00", 4);            // subfield ID, length 22
  footer.append(offset_hex, 16);             //
  footer.append("STARGZ");                   //
  footer.append("\x01\x00\x00\xff\xff", 5);  // final stored block of 0 bytes
  footer.append(8, '\0');                    // CRC-32 and ISIZE of nothing
  return footer;
}

// The TOC's type for an entry.
const char* TocType(TarEntryType type) {
  switch (type) {
    case TarEntryType::kRegular:
      return "reg";
    case TarEntryType::kHardlink:
      return "hardlink";
    case TarEntryType::kSymlink:
      return "symlink";
    case TarEntryType::kCharDevice:
      return "char";
    case TarEntryType::kBlockDevice:
      return "block";
    case TarEntryType::kDirectory:
      return "dir";
    case TarEntryType::kFifo:
      return "fifo";
    case TarEntryType::kOther:
      break;
  }
  return nullptr;
}

// Compact JSON. Strings were checked to be UTF-8 before; "replace" keeps dump() from
// ever throwing.
std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

bool IsUnder(std::string_view name, std::string_view dir) {
  return name.size() > dir.size() && name.compare(0, dir.size(), dir) == 0 &&
         name[dir.size()] == '/';
}

// Names the writer reserves for itself; the input's entries of these are dropped.
bool IsReserved(std::string_view clean) {
  for (std::string_view reserved : {kTocTarName, kPrefetchLandmark, kNoPrefetchLandmark}) {
    if (clean == reserved || IsUnder(clean, reserved)) return true;
  }
  return false;
}

// ---- the blob being written ----

// Writes entries into the gzip members and keeps the TOC: one JSON text per TOC entry
// in blob order (emptied when a later entry replaces it) and an index of names.
class EstargzBuilder {
 public:
  EstargzBuilder(std::unique_ptr<GzipMemberWriter> gzip, uint64_t chunk_size)
      : gzip_(std::move(gzip)), chunk_size_(chunk_size), buffer_(kReadBufferBytes, '\0') {}

  // Appends the entries of the tar in `source` whose cleaned name `wanted` accepts
  // (all of them when it is empty).
  Status CopyEntries(transfer::ByteSource& source,
                     const std::function<bool(const std::string&)>& wanted) {
    transfer::TarReader reader(source);
    for (;;) {
      ASSIGN_OR_RETURN(bool more, reader.Next());
      if (!more) return Status::Ok();
      const TarEntry& entry = reader.entry();
      ASSIGN_OR_RETURN(std::string clean, transfer::CleanArchivePath(entry.path));
      if (wanted && !wanted(clean)) continue;
      if (IsReserved(clean)) {
        dropped_entries_++;
        continue;
      }
      Status added =
          AddEntry(entry, clean, [&](char* buf, size_t n) { return reader.Read(buf, n); });
      if (!added.ok()) return added.WithContext("tar entry " + Quote(entry.path));
    }
  }

  // A landmark file: one byte, 0x0f, in its own member like any file's content.
  Status AddLandmark(std::string_view name) {
    TarEntry entry;
    entry.type = TarEntryType::kRegular;
    entry.path = std::string(name);
    entry.size = 1;
    entry.mode = 0644;
    bool read = false;
    return AddEntry(entry, entry.path, [&](char* buf, size_t n) -> Result<size_t> {
      if (read || n == 0) return size_t{0};
      read = true;
      buf[0] = kLandmarkContent;
      return size_t{1};
    });
  }

  // Writes the TOC and the footer and fills in `result`.
  Status Finish(EstargzResult* result) {
    RETURN_IF_ERROR(CheckHardlinks());
    RETURN_IF_ERROR(gzip_->EndMember());
    const uint64_t toc_offset = gzip_->offset();
    std::string json = "{\"version\":1,\"entries\":[";
    json.reserve(json.size() + live_json_bytes_ + 2 * live_records_ + 3);
    bool first = true;
    for (std::string& record : records_) {
      if (record.empty()) continue;
      json += first ? "\n" : ",\n";
      json += record;
      std::string().swap(record);
      first = false;
    }
    json += "\n]}";
    result->toc_digest = Sha256Digest(json);

    TarEntry toc_entry;
    toc_entry.type = TarEntryType::kRegular;
    toc_entry.path = std::string(kTocTarName);
    toc_entry.size = static_cast<int64_t>(json.size());
    toc_entry.mode = 0644;
    ASSIGN_OR_RETURN(std::string header, transfer::EncodeTarHeader(toc_entry));
    RETURN_IF_ERROR(gzip_->Write(header));
    RETURN_IF_ERROR(gzip_->Write(json));
    RETURN_IF_ERROR(gzip_->Write(std::string(
        transfer::tar::PaddingOf(json.size()) + transfer::kTarEndOfArchiveBytes, '\0')));
    RETURN_IF_ERROR(gzip_->WriteRaw(EstargzFooter(toc_offset)));
    RETURN_IF_ERROR(gzip_->Flush());

    result->toc_offset = toc_offset;
    result->diff_id = gzip_->UncompressedDigest();
    result->uncompressed_size = gzip_->uncompressed_bytes();
    result->blob_digest = gzip_->BlobDigest();
    result->blob_size = gzip_->offset();
    result->dropped_entries = dropped_entries_;
    return Status::Ok();
  }

 private:
  enum class Kind { kDirectory, kHardlink, kOther };

  struct NameState {
    Kind kind = Kind::kOther;
    size_t first_record = 0;  // its TOC entries: records_[first_record, + record_count)
    size_t record_count = 0;
    std::string link_target;  // hard links: the cleaned name they link to
  };

  Status AddEntry(const TarEntry& entry, const std::string& clean, const ContentReader& read) {
    if (clean.empty() && entry.type != TarEntryType::kDirectory) {
      dropped_entries_++;
      return Status::Ok();
    }
    const char* type = TocType(entry.type);
    if (type == nullptr) {
      return Status::InvalidArgument("tar type " + Quote(std::string(1, entry.typeflag)) +
                                     " has no eStargz equivalent");
    }
    RETURN_IF_ERROR(CheckName(clean, "name"));
    if (entry.uid < 0 || entry.uid >= int64_t{UINT32_MAX} || entry.gid < 0 ||
        entry.gid >= int64_t{UINT32_MAX}) {
      return Status::InvalidArgument("uid or gid out of range");
    }
    for (const auto& [name, value] : entry.xattrs) {
      if (!IsUtf8(name) || name.size() > kMaxXattrNameBytes) {
        return Status::InvalidArgument("xattr name " + Quote(name) +
                                       " is not UTF-8 or over 255 bytes");
      }
      if (value.size() > kMaxXattrValueBytes) {
        return Status::InvalidArgument("xattr " + Quote(name) + " has a value over 64 KiB");
      }
    }
    std::string link_target;
    if (entry.type == TarEntryType::kHardlink) {
      ASSIGN_OR_RETURN(link_target, transfer::CleanArchivePath(entry.link_target));
      if (link_target.empty()) return Status::InvalidArgument("hard link to the layer root");
      if (link_target == clean) return Status::InvalidArgument("hard link to itself");
      RETURN_IF_ERROR(CheckName(link_target, "hard link target"));
    } else if (entry.type == TarEntryType::kSymlink) {
      if (entry.link_target.empty()) return Status::InvalidArgument("symlink without a target");
      if (!IsUtf8(entry.link_target)) {
        return Status::InvalidArgument("symlink target is not UTF-8");
      }
      link_target = entry.link_target;
    }
    RETURN_IF_ERROR(CheckParents(clean));
    const Kind kind = entry.type == TarEntryType::kDirectory  ? Kind::kDirectory
                      : entry.type == TarEntryType::kHardlink ? Kind::kHardlink
                                                              : Kind::kOther;
    RETURN_IF_ERROR(Replace(clean, kind));

    TarEntry out = entry;
    out.path = clean.empty() ? "./" : kind == Kind::kDirectory ? clean + "/" : clean;
    out.link_target = link_target;
    if (entry.type != TarEntryType::kRegular) out.size = 0;
    ASSIGN_OR_RETURN(std::string header, transfer::EncodeTarHeader(out));
    RETURN_IF_ERROR(gzip_->Write(header));

    Json toc_entry = TocEntry(out, clean, type);
    NameState state;
    state.kind = kind;
    state.first_record = records_.size();
    if (kind == Kind::kHardlink) {
      state.link_target = link_target;
      link_refs_[link_target]++;
    }
    if (entry.type == TarEntryType::kRegular && entry.size > 0) {
      RETURN_IF_ERROR(WriteContent(std::move(toc_entry), static_cast<uint64_t>(entry.size), read));
    } else {
      RETURN_IF_ERROR(AddRecord(Dump(toc_entry)));
    }
    state.record_count = records_.size() - state.first_record;
    names_[clean] = std::move(state);
    return Status::Ok();
  }

  // The TOC entry of an entry's header (for a regular file, without its first chunk).
  static Json TocEntry(const TarEntry& e, const std::string& clean, const char* type) {
    Json j;
    j["name"] = clean.empty() ? "./" : clean;
    j["type"] = type;
    if (e.type == TarEntryType::kRegular && e.size > 0) j["size"] = e.size;
    if (e.mtime.seconds != 0) {
      std::string modtime = Rfc3339(e.mtime.seconds);
      if (!modtime.empty()) j["modtime"] = modtime;
    }
    if (!e.link_target.empty()) j["linkName"] = e.link_target;
    if (e.mode != 0) j["mode"] = e.mode;
    if (e.uid != 0) j["uid"] = e.uid;
    if (e.gid != 0) j["gid"] = e.gid;
    // Owner names are informational; ones JSON cannot carry are left out.
    if (!e.uname.empty() && IsUtf8(e.uname)) j["userName"] = e.uname;
    if (!e.gname.empty() && IsUtf8(e.gname)) j["groupName"] = e.gname;
    if (e.type == TarEntryType::kCharDevice || e.type == TarEntryType::kBlockDevice) {
      if (e.dev_major != 0) j["devMajor"] = e.dev_major;
      if (e.dev_minor != 0) j["devMinor"] = e.dev_minor;
    }
    if (!e.xattrs.empty()) {
      Json xattrs = Json::object();
      for (const auto& [name, value] : e.xattrs) xattrs[name] = Base64(value);
      j["xattrs"] = std::move(xattrs);
    }
    return j;
  }

  // Writes `size` bytes of content from `read` in pieces of chunk_size_, each in a new
  // member, then the padding to the next block; records the TOC entries.
  Status WriteContent(Json first, uint64_t size, const ContentReader& read) {
    const size_t first_record = records_.size();
    RETURN_IF_ERROR(AddRecord(std::string()));  // filled in once the file's digest is known
    Sha256 file_sha;
    for (uint64_t chunk_offset = 0; chunk_offset < size;) {
      RETURN_IF_ERROR(gzip_->EndMember());
      const uint64_t member_offset = gzip_->offset();
      const uint64_t piece = std::min(chunk_size_, size - chunk_offset);
      Sha256 chunk_sha;
      for (uint64_t left = piece; left > 0;) {
        ASSIGN_OR_RETURN(
            size_t got,
            read(buffer_.data(), static_cast<size_t>(std::min<uint64_t>(left, buffer_.size()))));
        if (got == 0) return Status::DataLoss("content ended before its size");
        std::string_view bytes(buffer_.data(), got);
        RETURN_IF_ERROR(gzip_->Write(bytes));
        chunk_sha.Update(bytes);
        file_sha.Update(bytes);
        left -= got;
      }
      if (chunk_offset == 0) {
        first["offset"] = member_offset;
        first["chunkSize"] = piece;
        first["chunkDigest"] = chunk_sha.Digest();
      } else {
        Json chunk;
        chunk["name"] = first["name"];
        chunk["type"] = "chunk";
        chunk["offset"] = member_offset;
        chunk["chunkOffset"] = chunk_offset;
        chunk["chunkSize"] = piece;
        chunk["chunkDigest"] = chunk_sha.Digest();
        RETURN_IF_ERROR(AddRecord(Dump(chunk)));
      }
      chunk_offset += piece;
    }
    RETURN_IF_ERROR(gzip_->Write(std::string(transfer::tar::PaddingOf(size), '\0')));
    first["digest"] = file_sha.Digest();
    std::string text = Dump(first);
    live_json_bytes_ += text.size();
    records_[first_record] = std::move(text);
    return CheckTocSize();
  }

  // Appends a TOC entry's JSON (an empty text: a slot filled in later).
  Status AddRecord(std::string text) {
    live_json_bytes_ += text.size();
    live_records_++;
    records_.push_back(std::move(text));
    return CheckTocSize();
  }

  Status CheckTocSize() const {
    static const TocLimits kLimits;
    // Emptied records count too, so that a layer replacing one name over and over
    // cannot grow the list without bound.
    if (live_records_ > kLimits.max_entries || records_.size() > 2 * kLimits.max_entries) {
      return Status(Code::kResourceExhausted, "the TOC would have more than " +
                                                  std::to_string(kLimits.max_entries) +
                                                  " entries, more than readers accept");
    }
    // Each entry adds ",\n" to the document, which adds a few bytes around them all.
    if (live_json_bytes_ + 2 * live_records_ + 64 > kLimits.max_json_bytes) {
      return Status(Code::kResourceExhausted, "the TOC would be over " +
                                                  std::to_string(kLimits.max_json_bytes) +
                                                  " bytes of JSON, more than readers accept");
    }
    return Status::Ok();
  }

  static Status CheckName(const std::string& clean, const char* what) {
    if (!IsUtf8(clean)) return Status::InvalidArgument(std::string(what) + " is not UTF-8");
    size_t start = 0;
    while (start < clean.size()) {
      size_t slash = clean.find('/', start);
      if (slash == std::string::npos) slash = clean.size();
      if (slash - start > kMaxComponentBytes) {
        return Status::InvalidArgument(std::string(what) + " has a component over 255 bytes");
      }
      start = slash + 1;
    }
    return Status::Ok();
  }

  // Every listed parent of `clean` must be a directory.
  Status CheckParents(const std::string& clean) const {
    for (size_t slash = clean.find('/'); slash != std::string::npos;
         slash = clean.find('/', slash + 1)) {
      auto it = names_.find(clean.substr(0, slash));
      if (it != names_.end() && it->second.kind != Kind::kDirectory) {
        return Status::InvalidArgument("it lies under " + Quote(it->first) +
                                       ", which is not a directory");
      }
    }
    return Status::Ok();
  }

  // Makes room for a new entry of `kind` at `clean`: the entry there before leaves the
  // TOC, and so does everything under it unless a directory replaces a directory.
  Status Replace(const std::string& clean, Kind kind) {
    auto it = names_.find(clean);
    if (it != names_.end()) {
      RETURN_IF_ERROR(Drop(it));
      names_.erase(it);
    }
    if (kind == Kind::kDirectory || clean.empty()) return Status::Ok();
    const std::string prefix = clean + "/";
    auto under = names_.lower_bound(prefix);
    while (under != names_.end() && under->first.compare(0, prefix.size(), prefix) == 0) {
      RETURN_IF_ERROR(Drop(under));
      under = names_.erase(under);
    }
    return Status::Ok();
  }

  // Empties the TOC entries of a name about to leave the index.
  Status Drop(std::map<std::string, NameState>::iterator it) {
    auto refs = link_refs_.find(it->first);
    if (refs != link_refs_.end() && refs->second > 0) {
      return Status::InvalidArgument("replaces " + Quote(it->first) +
                                     ", which an earlier hard link points to");
    }
    const NameState& state = it->second;
    for (size_t i = state.first_record; i < state.first_record + state.record_count; i++) {
      live_json_bytes_ -= records_[i].size();
      live_records_--;
      std::string().swap(records_[i]);
    }
    if (state.kind == Kind::kHardlink) {
      auto target = link_refs_.find(state.link_target);
      if (target != link_refs_.end() && --target->second == 0) link_refs_.erase(target);
    }
    return Status::Ok();
  }

  // What TOC readers check once every entry is known: each hard link leads, through
  // any hard links, to a name the layer lists that is not a directory.
  Status CheckHardlinks() const {
    size_t hardlinks = 0;
    for (const auto& [name, state] : names_) hardlinks += state.kind == Kind::kHardlink;
    for (const auto& [name, state] : names_) {
      if (state.kind != Kind::kHardlink) continue;
      std::string target = state.link_target;
      for (size_t hops = 0;; hops++) {
        auto it = names_.find(target);
        if (it == names_.end()) {
          return Status::InvalidArgument("hard link " + Quote(name) + " points to " +
                                         Quote(target) + ", which the layer does not have");
        }
        if (it->second.kind == Kind::kDirectory) {
          return Status::InvalidArgument("hard link " + Quote(name) + " points to directory " +
                                         Quote(target));
        }
        if (it->second.kind != Kind::kHardlink) break;
        if (hops >= hardlinks) {
          return Status::InvalidArgument("hard link " + Quote(name) + " is part of a cycle");
        }
        target = it->second.link_target;
      }
    }
    return Status::Ok();
  }

  std::unique_ptr<GzipMemberWriter> gzip_;
  const uint64_t chunk_size_;
  std::string buffer_;
  std::vector<std::string> records_;
  size_t live_records_ = 0;
  uint64_t live_json_bytes_ = 0;
  std::map<std::string, NameState> names_;  // ordered: what lies under a name is a range
  std::unordered_map<std::string, uint32_t> link_refs_;  // name -> hard links to it
  uint64_t dropped_entries_ = 0;
};

// ---- prioritized files: spool, index, selection ----

// The names the layer has (cleaned, reserved ones left out) and its hard links.
struct LayerIndex {
  std::set<std::string> names;
  std::multimap<std::string, std::string> hardlinks;  // name -> cleaned target
};

Result<LayerIndex> IndexLayer(transfer::ByteSource& source) {
  LayerIndex index;
  transfer::TarReader reader(source);
  for (;;) {
    ASSIGN_OR_RETURN(bool more, reader.Next());
    if (!more) return index;
    const TarEntry& entry = reader.entry();
    Result<std::string> clean = transfer::CleanArchivePath(entry.path);
    if (!clean.ok()) return clean.status().WithContext("tar entry " + Quote(entry.path));
    if (IsReserved(*clean)) continue;
    if (entry.type == TarEntryType::kHardlink) {
      Result<std::string> target = transfer::CleanArchivePath(entry.link_target);
      if (target.ok()) index.hardlinks.emplace(*clean, *target);
    }
    index.names.insert(std::move(clean).value());
  }
}

// The names that make up the prioritized files: each file, the listed directories
// above it and, for hard links, what they link to (and its directories).
std::unordered_set<std::string> SelectPrioritized(const LayerIndex& index,
                                                  const std::vector<std::string>& prioritized,
                                                  std::vector<std::string>* missing) {
  std::unordered_set<std::string> selected;
  std::vector<std::string> work;
  for (const std::string& path : prioritized) {
    std::string_view relative = path;
    while (!relative.empty() && relative.front() == '/') relative.remove_prefix(1);
    Result<std::string> clean = transfer::CleanArchivePath(relative.empty() ? "." : relative);
    if (!clean.ok() || IsReserved(*clean) || !index.names.count(*clean)) {
      missing->push_back(path);
      continue;
    }
    work.push_back(std::move(clean).value());
  }
  while (!work.empty()) {
    std::string name = std::move(work.back());
    work.pop_back();
    if (!selected.insert(name).second) continue;
    if (!name.empty() && index.names.count("")) selected.insert("");
    for (size_t slash = name.find('/'); slash != std::string::npos;
         slash = name.find('/', slash + 1)) {
      std::string parent = name.substr(0, slash);
      if (index.names.count(parent)) selected.insert(std::move(parent));
    }
    auto [begin, end] = index.hardlinks.equal_range(name);
    for (auto it = begin; it != end; ++it) {
      if (index.names.count(it->second)) work.push_back(it->second);
    }
  }
  return selected;
}

// Passes `in` through, copying every byte to `fd`.
class TeeSource : public transfer::ByteSource {
 public:
  TeeSource(transfer::ByteSource& in, int fd) : in_(in), fd_(fd) {}

  Result<size_t> Read(char* buf, size_t n) override {
    ASSIGN_OR_RETURN(size_t got, in_.Read(buf, n));
    RETURN_IF_ERROR(fs::WriteAll(fd_, std::string_view(buf, got), "write spool file"));
    return got;
  }

 private:
  transfer::ByteSource& in_;
  const int fd_;
};

// An unlinked temporary file in `dir` ("": $TMPDIR, else /var/tmp).
Result<transfer::UniqueFd> OpenSpool(const std::string& dir_option) {
  std::string dir = dir_option;
  if (dir.empty()) {
    const char* tmpdir = std::getenv("TMPDIR");
    dir = tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/var/tmp";
  }
  int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
    // A file system without O_TMPFILE: a named file, unlinked at once.
    std::string path = dir + "/strata-estargz-XXXXXX";
    fd = ::mkostemp(path.data(), O_CLOEXEC);
    if (fd >= 0) ::unlink(path.c_str());
  }
  if (fd < 0) return Status::FromErrno(errno, "create a spool file in " + dir);
  return transfer::UniqueFd(fd);
}

// A source reading the spool from its start. The fd stays the caller's.
Result<std::unique_ptr<transfer::ByteSource>> RewindSpool(int fd) {
  if (::lseek(fd, 0, SEEK_SET) < 0) return Status::FromErrno(errno, "rewind spool file");
  return transfer::NewFdSource(fd, /*take_ownership=*/false);
}

}  // namespace

Result<EstargzResult> ConvertLayerToEstargz(transfer::ByteSource& input,
                                            const registry::BlobSink& sink,
                                            const EstargzWriterOptions& options) {
  static const TocLimits kLimits;
  if (options.chunk_size == 0 || options.chunk_size > kLimits.max_chunk_bytes) {
    return Status::InvalidArgument("chunk size " + std::to_string(options.chunk_size) +
                                   " is not between 1 and " +
                                   std::to_string(kLimits.max_chunk_bytes));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<GzipMemberWriter> gzip,
                   GzipMemberWriter::Create(sink, options.gzip_level));
  EstargzBuilder builder(std::move(gzip), options.chunk_size);
  EstargzResult result;
  if (options.prioritized_files.empty()) {
    RETURN_IF_ERROR(builder.AddLandmark(kNoPrefetchLandmark));
    RETURN_IF_ERROR(builder.CopyEntries(input, nullptr));
  } else {
    ASSIGN_OR_RETURN(transfer::UniqueFd spool, OpenSpool(options.spool_dir));
    TeeSource tee(input, spool.get());
    ASSIGN_OR_RETURN(LayerIndex index, IndexLayer(tee));
    const std::unordered_set<std::string> selected =
        SelectPrioritized(index, options.prioritized_files, &result.missing_prioritized_files);
    index = LayerIndex();
    ASSIGN_OR_RETURN(auto first_pass, RewindSpool(spool.get()));
    RETURN_IF_ERROR(builder.CopyEntries(
        *first_pass, [&](const std::string& name) { return selected.count(name) > 0; }));
    RETURN_IF_ERROR(builder.AddLandmark(kPrefetchLandmark));
    ASSIGN_OR_RETURN(auto second_pass, RewindSpool(spool.get()));
    RETURN_IF_ERROR(builder.CopyEntries(
        *second_pass, [&](const std::string& name) { return selected.count(name) == 0; }));
  }
  RETURN_IF_ERROR(builder.Finish(&result));
  return result;
}

}  // namespace strata::lazy::stargz
