#include "transfer/tar_reader.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <optional>

#include "core/quote.h"

namespace strata::transfer {

using tar::kBlockSize;

namespace {

constexpr size_t kReadAheadBytes = 128 * 1024;

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

constexpr std::string_view kSchilyXattr = "SCHILY.xattr.";
constexpr std::string_view kLibarchiveXattr = "LIBARCHIVE.xattr.";

bool IsXattrKey(std::string_view key) {
  return StartsWith(key, kSchilyXattr) || StartsWith(key, kLibarchiveXattr);
}

Status CheckName(std::string_view name, std::string_view what) {
  if (name.find('\0') != std::string_view::npos) {
    return Status::InvalidArgument(std::string(what) + " " + Quote(name) + " contains a NUL byte");
  }
  if (name.size() > tar::kMaxNameBytes) {
    return Status::InvalidArgument(std::string(what) + " " + Quote(name) + " is longer than " +
                                   std::to_string(tar::kMaxNameBytes) + " bytes");
  }
  return Status::Ok();
}

// Types whose header is all there is: Go's archive/tar ignores their size field.
bool IsHeaderOnly(TarEntryType type) {
  switch (type) {
    case TarEntryType::kHardlink:
    case TarEntryType::kSymlink:
    case TarEntryType::kCharDevice:
    case TarEntryType::kBlockDevice:
    case TarEntryType::kDirectory:
    case TarEntryType::kFifo:
      return true;
    default:
      return false;
  }
}

TarEntryType TypeOf(char typeflag, std::string_view name) {
  switch (typeflag) {
    case '0':
    case '7':
    case 'S':
      return TarEntryType::kRegular;
    case '\0':
      return !name.empty() && name.back() == '/' ? TarEntryType::kDirectory
                                                 : TarEntryType::kRegular;
    case '1':
      return TarEntryType::kHardlink;
    case '2':
      return TarEntryType::kSymlink;
    case '3':
      return TarEntryType::kCharDevice;
    case '4':
      return TarEntryType::kBlockDevice;
    case '5':
      return TarEntryType::kDirectory;
    case '6':
      return TarEntryType::kFifo;
    default:
      return TarEntryType::kOther;
  }
}

// A sparse map given as "offset,length,offset,length,...".
Result<std::vector<tar::SparseSegment>> ParseSparsePairs(const std::vector<std::string>& numbers) {
  if (numbers.size() % 2 != 0) {
    return Status::InvalidArgument("sparse map has an odd number of values");
  }
  if (numbers.size() / 2 > tar::kMaxSparseSegments) {
    return Status::InvalidArgument("sparse map has more than " +
                                   std::to_string(tar::kMaxSparseSegments) + " segments");
  }
  std::vector<tar::SparseSegment> segments;
  for (size_t i = 0; i < numbers.size(); i += 2) {
    ASSIGN_OR_RETURN(int64_t offset, tar::ParsePaxInteger(numbers[i], "GNU.sparse offset"));
    ASSIGN_OR_RETURN(int64_t length, tar::ParsePaxInteger(numbers[i + 1], "GNU.sparse length"));
    segments.push_back({offset, length});
  }
  return segments;
}

std::vector<std::string> SplitCommas(std::string_view text) {
  std::vector<std::string> parts;
  if (text.empty()) return parts;
  size_t start = 0;
  for (;;) {
    size_t comma = text.find(',', start);
    parts.emplace_back(text.substr(start, comma - start));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
    if (parts.size() > 2 * tar::kMaxSparseSegments) break;  // ParseSparsePairs refuses it
  }
  return parts;
}

std::optional<std::string> Find(const std::map<std::string, std::string>& records,
                                const std::string& key) {
  auto it = records.find(key);
  if (it == records.end()) return std::nullopt;
  return it->second;
}

Result<uint32_t> ParseDeviceNumber(const char* block, tar::Field field, const char* what) {
  ASSIGN_OR_RETURN(int64_t value, tar::ParseNumeric(tar::FieldOf(block, field), what));
  if (value < 0 || value > UINT32_MAX) {
    return Status::InvalidArgument(std::string(what) + " " + std::to_string(value) +
                                   " is out of range");
  }
  return static_cast<uint32_t>(value);
}

bool LooksLikeText(std::string_view field) {
  std::string_view text = tar::CString(field);
  if (text.empty()) return false;
  for (unsigned char c : text) {
    if (c < 0x20 || c >= 0x7f) return false;
  }
  return true;
}

}  // namespace

// What the special headers before an entry said about it.
struct TarReader::PendingExtensions {
  std::optional<std::string> long_name;
  std::optional<std::string> long_link;
  std::vector<std::pair<std::string, std::string>> records;  // 'x' records, in order
  std::string last_kind;                                     // for error messages
  bool any() const { return !last_kind.empty(); }
};

TarReader::TarReader(ByteSource& source) : source_(source), buffer_(kReadAheadBytes) {}

Status TarReader::Fail(Status status) {
  error_ = status;
  return status;
}

std::string TarReader::Describe() const {
  return "entry " + Quote(entry_.path) + " (header at offset " +
         std::to_string(entry_header_offset_) + ")";
}

Result<size_t> TarReader::ReadSome(char* buf, size_t n) {
  if (buffer_pos_ == buffer_end_) {
    if (n >= buffer_.size()) {
      // Large reads bypass the buffer: file content goes straight to the caller.
      ASSIGN_OR_RETURN(size_t got, source_.Read(buf, n));
      offset_ += got;
      return got;
    }
    ASSIGN_OR_RETURN(size_t got, source_.Read(buffer_.data(), buffer_.size()));
    buffer_pos_ = 0;
    buffer_end_ = got;
    if (got == 0) return size_t{0};
  }
  size_t take = std::min(n, buffer_end_ - buffer_pos_);
  std::memcpy(buf, buffer_.data() + buffer_pos_, take);
  buffer_pos_ += take;
  offset_ += take;
  return take;
}

Status TarReader::ReadExact(char* buf, size_t n, const std::string& what) {
  while (n > 0) {
    ASSIGN_OR_RETURN(size_t got, ReadSome(buf, n));
    if (got == 0) return Status::DataLoss("truncated tar archive: the stream ends inside " + what);
    buf += got;
    n -= got;
  }
  return Status::Ok();
}

Status TarReader::Skip(uint64_t n, const std::string& what) {
  while (n > 0) {
    if (buffer_pos_ == buffer_end_) {
      ASSIGN_OR_RETURN(size_t got, source_.Read(buffer_.data(), buffer_.size()));
      buffer_pos_ = 0;
      buffer_end_ = got;
      if (got == 0) {
        return Status::DataLoss("truncated tar archive: the stream ends inside " + what);
      }
    }
    size_t take = static_cast<size_t>(std::min<uint64_t>(n, buffer_end_ - buffer_pos_));
    buffer_pos_ += take;
    offset_ += take;
    n -= take;
  }
  return Status::Ok();
}

Result<bool> TarReader::ReadBlock(char* block) {
  ASSIGN_OR_RETURN(size_t got, ReadSome(block, kBlockSize));
  if (got == 0) return false;
  std::string what = "a header";
  if (have_entry_) what += " after " + Describe();
  RETURN_IF_ERROR(ReadExact(block + got, kBlockSize - got, what));
  return true;
}

Result<std::string> TarReader::ReadSpecialContent(const char* block, size_t limit,
                                                  const char* what) {
  uint64_t header_offset = offset_ - kBlockSize;
  std::string where = std::string(what) + " at offset " + std::to_string(header_offset);
  ASSIGN_OR_RETURN(int64_t size, tar::ParseNumeric(tar::FieldOf(block, tar::kSize), "size"));
  if (size < 0 || static_cast<uint64_t>(size) > limit) {
    return Status::InvalidArgument(where + " is " + std::to_string(size) +
                                   " bytes, more than the limit of " + std::to_string(limit));
  }
  std::string content(static_cast<size_t>(size), '\0');
  RETURN_IF_ERROR(ReadExact(content.data(), content.size(), where));
  RETURN_IF_ERROR(Skip(tar::PaddingOf(content.size()), where));
  return content;
}

Result<bool> TarReader::Next() {
  if (!error_.ok()) return error_;
  if (ended_) return false;
  if (have_entry_) {
    Status skipped =
        Skip(static_cast<uint64_t>(stored_remaining_) + padding_, "the content of " + Describe());
    if (!skipped.ok()) return Fail(skipped);
    stored_remaining_ = 0;
    padding_ = 0;
  }
  PendingExtensions pending;
  char block[kBlockSize];
  for (;;) {
    uint64_t header_offset = offset_;
    auto got = ReadBlock(block);
    if (!got.ok()) return Fail(got.status());
    if (*got && tar::IsZeroBlock(block)) {
      // End of archive, unless a second block is there and is not zero.
      auto second = ReadBlock(block);
      if (!second.ok()) return Fail(second.status());
      if (*second && !tar::IsZeroBlock(block)) {
        return Fail(Status::InvalidArgument("invalid tar archive: a zero block at offset " +
                                            std::to_string(header_offset) +
                                            " is followed by a header"));
      }
      *got = false;
    }
    if (!*got) {
      if (pending.any()) {
        return Fail(Status::DataLoss("truncated tar archive: the archive ends after a " +
                                     pending.last_kind + " header, before its entry"));
      }
      ended_ = true;
      have_entry_ = false;
      return false;
    }
    if (!tar::ChecksumMatches(block)) {
      std::string after = have_entry_ ? " after " + Describe() : "";
      return Fail(Status::DataLoss("tar header checksum mismatch at offset " +
                                   std::to_string(header_offset) + after));
    }
    char typeflag = block[tar::kTypeflagOffset];
    if (typeflag == 'x' || typeflag == 'g') {
      auto content = ReadSpecialContent(block, tar::kMaxPaxHeaderBytes, "pax header");
      if (!content.ok()) return Fail(content.status());
      auto records = tar::ParsePaxRecords(*content);
      if (!records.ok()) {
        return Fail(
            records.status().WithContext("pax header at offset " + std::to_string(header_offset)));
      }
      if (typeflag == 'x') {
        for (auto& record : *records) pending.records.push_back(std::move(record));
        pending.last_kind = "pax";
        continue;
      }
      for (auto& [key, value] : *records) {
        if (value.empty()) {
          global_records_.erase(key);
        } else {
          global_records_[key] = std::move(value);
        }
      }
      global_records_bytes_ = 0;
      for (const auto& [key, value] : global_records_) {
        global_records_bytes_ += key.size() + value.size();
      }
      if (global_records_bytes_ > tar::kMaxGlobalPaxBytes) {
        return Fail(Status::InvalidArgument("global pax records exceed the limit of " +
                                            std::to_string(tar::kMaxGlobalPaxBytes) +
                                            " bytes at offset " + std::to_string(header_offset)));
      }
      continue;
    }
    if (typeflag == 'L' || typeflag == 'K') {
      const char* what = typeflag == 'L' ? "GNU long name" : "GNU long link name";
      auto content = ReadSpecialContent(block, tar::kMaxNameBytes + 1, what);
      if (!content.ok()) return Fail(content.status());
      std::string name = std::move(*content);
      while (!name.empty() && name.back() == '\0') name.pop_back();
      Status valid = CheckName(name, what);
      if (!valid.ok()) return Fail(valid);
      (typeflag == 'L' ? pending.long_name : pending.long_link) = std::move(name);
      pending.last_kind = what;
      continue;
    }
    entry_header_offset_ = header_offset;
    Status built = BuildEntry(block, pending);
    if (!built.ok()) {
      return Fail(built.WithContext("tar header at offset " + std::to_string(header_offset)));
    }
    return true;
  }
}

Status TarReader::BuildEntry(const char* block, PendingExtensions& pending) {
  using tar::FieldOf;
  TarEntry e;
  tar::Format format = tar::DetectFormat(block);
  e.typeflag = block[tar::kTypeflagOffset];
  e.path = std::string(tar::CString(FieldOf(block, tar::kName)));
  std::string_view prefix;
  if (format == tar::Format::kUstar) prefix = tar::CString(FieldOf(block, tar::kPrefix));
  if (format == tar::Format::kStar) prefix = tar::CString(FieldOf(block, tar::kStarPrefix));
  e.link_target = std::string(tar::CString(FieldOf(block, tar::kLinkname)));
  ASSIGN_OR_RETURN(int64_t mode, tar::ParseNumeric(FieldOf(block, tar::kMode), "mode"));
  e.mode = static_cast<uint32_t>(mode) & 07777;
  ASSIGN_OR_RETURN(e.uid, tar::ParseNumeric(FieldOf(block, tar::kUid), "uid"));
  ASSIGN_OR_RETURN(e.gid, tar::ParseNumeric(FieldOf(block, tar::kGid), "gid"));
  ASSIGN_OR_RETURN(int64_t stored, tar::ParseNumeric(FieldOf(block, tar::kSize), "size"));
  ASSIGN_OR_RETURN(e.mtime.seconds, tar::ParseNumeric(FieldOf(block, tar::kMtime), "mtime"));
  if (format != tar::Format::kV7) {
    e.uname = std::string(tar::CString(FieldOf(block, tar::kUname)));
    e.gname = std::string(tar::CString(FieldOf(block, tar::kGname)));
    if (e.typeflag == '3' || e.typeflag == '4') {
      ASSIGN_OR_RETURN(e.dev_major, ParseDeviceNumber(block, tar::kDevMajor, "device major"));
      ASSIGN_OR_RETURN(e.dev_minor, ParseDeviceNumber(block, tar::kDevMinor, "device minor"));
    }
  }
  if (format == tar::Format::kGnu) {
    auto atime = tar::ParseNumeric(FieldOf(block, tar::kGnuAtime), "atime");
    auto ctime = tar::ParseNumeric(FieldOf(block, tar::kGnuCtime), "ctime");
    if (atime.ok() && ctime.ok()) {
      if (*atime != 0) e.atime = tar::Time{*atime, 0};
    } else if (LooksLikeText(FieldOf(block, tar::kPrefix))) {
      // Go before 1.8 wrote a ustar prefix into GNU headers; read those as Go does.
      prefix = tar::CString(FieldOf(block, tar::kPrefix));
    } else {
      return atime.ok() ? ctime.status() : atime.status();
    }
  }
  if (format == tar::Format::kStar) {
    ASSIGN_OR_RETURN(int64_t atime, tar::ParseNumeric(FieldOf(block, tar::kStarAtime), "atime"));
    if (atime != 0) e.atime = tar::Time{atime, 0};
  }
  if (!prefix.empty()) e.path = std::string(prefix) + "/" + e.path;
  if (pending.long_name) e.path = std::move(*pending.long_name);
  if (pending.long_link) e.link_target = std::move(*pending.long_link);

  // pax records: the global ones in force, overridden by this entry's. An empty value
  // removes the keyword (the header field applies again), except for an xattr, whose
  // value may legitimately be empty. GNU.sparse 0.0 repeats its offset/numbytes keys,
  // so those are kept in order apart.
  std::map<std::string, std::string> records = global_records_;
  std::vector<std::string> sparse_numbers;
  for (auto& [key, value] : pending.records) {
    if (key == "GNU.sparse.offset" || key == "GNU.sparse.numbytes") {
      if (sparse_numbers.size() >= 2 * tar::kMaxSparseSegments) {
        return Status::InvalidArgument("sparse map has more than " +
                                       std::to_string(tar::kMaxSparseSegments) + " segments");
      }
      sparse_numbers.push_back(std::move(value));
    } else if (value.empty() && !IsXattrKey(key)) {
      records.erase(key);
    } else {
      records[key] = std::move(value);
    }
  }
  std::optional<int64_t> pax_size;
  for (const auto& [key, value] : records) {
    if (key == "path") {
      e.path = value;
    } else if (key == "linkpath") {
      e.link_target = value;
    } else if (key == "size") {
      ASSIGN_OR_RETURN(pax_size, tar::ParsePaxInteger(value, key));
    } else if (key == "uid") {
      ASSIGN_OR_RETURN(e.uid, tar::ParsePaxInteger(value, key));
    } else if (key == "gid") {
      ASSIGN_OR_RETURN(e.gid, tar::ParsePaxInteger(value, key));
    } else if (key == "uname") {
      e.uname = value;
    } else if (key == "gname") {
      e.gname = value;
    } else if (key == "mtime") {
      ASSIGN_OR_RETURN(e.mtime, tar::ParsePaxTime(value, key));
    } else if (key == "atime") {
      ASSIGN_OR_RETURN(e.atime, tar::ParsePaxTime(value, key));
    } else if (StartsWith(key, kSchilyXattr)) {
      e.xattrs[key.substr(kSchilyXattr.size())] = value;
    } else if (StartsWith(key, kLibarchiveXattr)) {
      ASSIGN_OR_RETURN(std::string name,
                       tar::DecodePercentEscapes(key.substr(kLibarchiveXattr.size())));
      auto decoded = tar::DecodeBase64(value);
      if (!decoded.ok()) return decoded.status().WithContext("pax " + Quote(key));
      e.xattrs[name] = std::move(*decoded);
    }
  }

  // GNU sparse files in pax form: 0.0 (offset/numbytes records), 0.1 (GNU.sparse.map),
  // 1.0 (the map at the start of the content). The real name and size are records too.
  auto major = Find(records, "GNU.sparse.major");
  auto minor = Find(records, "GNU.sparse.minor");
  auto map = Find(records, "GNU.sparse.map");
  bool pax_sparse_v0 = false;
  bool pax_sparse_v1 = false;
  if (major || minor) {
    if (major == "0" && (minor == "0" || minor == "1")) {
      pax_sparse_v0 = true;
    } else if (major == "1" && minor == "0") {
      pax_sparse_v1 = true;
    } else {
      return Status::InvalidArgument("unsupported GNU sparse format " + Quote(major.value_or("")) +
                                     "." + Quote(minor.value_or("")));
    }
  } else if (map || !sparse_numbers.empty()) {
    pax_sparse_v0 = true;
  }
  std::optional<int64_t> sparse_real_size;
  if (pax_sparse_v0 || pax_sparse_v1) {
    if (auto name = Find(records, "GNU.sparse.name")) e.path = *name;
    for (const char* key : {"GNU.sparse.size", "GNU.sparse.realsize"}) {
      if (auto value = Find(records, key)) {
        ASSIGN_OR_RETURN(sparse_real_size, tar::ParsePaxInteger(*value, key));
      }
    }
    if (!sparse_real_size) {
      return Status::InvalidArgument("GNU sparse entry " + Quote(e.path) + " has no real size");
    }
  }
  if (pax_sparse_v0) {
    std::vector<std::string> numbers = map ? SplitCommas(*map) : std::move(sparse_numbers);
    ASSIGN_OR_RETURN(e.sparse_map, ParseSparsePairs(numbers));
  }

  RETURN_IF_ERROR(CheckName(e.path, "entry name"));
  RETURN_IF_ERROR(CheckName(e.link_target, "link target of " + Quote(e.path)));
  if (pax_size) stored = *pax_size;
  if (stored < 0) return Status::InvalidArgument("entry " + Quote(e.path) + " has a negative size");
  e.type = TypeOf(e.typeflag, e.path);
  if (IsHeaderOnly(e.type)) stored = 0;
  e.size = stored;
  e.sparse = e.typeflag == 'S' || pax_sparse_v0 || pax_sparse_v1;
  if (e.sparse && e.type != TarEntryType::kRegular) {
    return Status::InvalidArgument("sparse map on entry " + Quote(e.path) +
                                   ", which is not a regular file");
  }
  if (sparse_real_size) e.size = *sparse_real_size;

  entry_ = std::move(e);
  have_entry_ = true;
  stored_remaining_ = stored;
  padding_ = tar::PaddingOf(static_cast<uint64_t>(stored));
  position_ = 0;
  segment_ = 0;
  if (entry_.typeflag == 'S') RETURN_IF_ERROR(ReadOldGnuSparseMap(block));
  if (pax_sparse_v1) RETURN_IF_ERROR(ReadSparseMapFromData());
  if (entry_.sparse) {
    Status valid = tar::ValidateSparseMap(entry_.sparse_map, entry_.size, stored_remaining_);
    if (!valid.ok()) return valid.WithContext("entry " + Quote(entry_.path));
  }
  return Status::Ok();
}

Status TarReader::ReadOldGnuSparseMap(const char* block) {
  // Reads the entries of one sparse array; false once an entry is empty (as GNU tar,
  // the first byte of its offset being NUL ends the list).
  auto read_entries = [&](const char* array, size_t count) -> Result<bool> {
    for (size_t i = 0; i < count; i++) {
      const char* entry = array + i * tar::kSparseEntryBytes;
      if (entry[0] == '\0') return false;
      if (entry_.sparse_map.size() >= tar::kMaxSparseSegments) {
        return Status::InvalidArgument("sparse map has more than " +
                                       std::to_string(tar::kMaxSparseSegments) + " segments");
      }
      ASSIGN_OR_RETURN(int64_t offset, tar::ParseNumeric({entry, 12}, "sparse offset"));
      ASSIGN_OR_RETURN(int64_t length, tar::ParseNumeric({entry + 12, 12}, "sparse length"));
      entry_.sparse_map.push_back({offset, length});
    }
    return true;
  };
  auto header_full = read_entries(block + tar::kGnuSparseOffset, tar::kGnuSparseEntries);
  if (!header_full.ok()) return header_full.status();
  ASSIGN_OR_RETURN(entry_.size,
                   tar::ParseNumeric(tar::FieldOf(block, tar::kGnuRealSize), "sparse real size"));
  bool extended = block[tar::kGnuIsExtendedOffset] != 0;
  char ext[kBlockSize];
  while (extended) {
    RETURN_IF_ERROR(ReadExact(ext, kBlockSize, "the sparse map of " + Describe()));
    auto full = read_entries(ext, tar::kGnuExtSparseEntries);
    if (!full.ok()) return full.status();
    extended = ext[tar::kGnuExtIsExtendedOffset] != 0;
  }
  return Status::Ok();
}

Status TarReader::ReadSparseMapFromData() {
  // Decimal numbers, one per line: the count of segments, then offset and length of
  // each. The map fills whole blocks at the start of the entry's content.
  std::string text;
  size_t pos = 0;
  auto next_number = [&]() -> Result<int64_t> {
    for (;;) {
      size_t newline = text.find('\n', pos);
      if (newline != std::string::npos) {
        std::string_view digits(text.data() + pos, newline - pos);
        pos = newline + 1;
        return tar::ParsePaxInteger(digits, "GNU.sparse 1.0 map value");
      }
      if (text.size() - pos > 20) {
        return Status::InvalidArgument("GNU.sparse 1.0 map has a value longer than 20 digits");
      }
      if (stored_remaining_ < static_cast<int64_t>(kBlockSize)) {
        return Status::InvalidArgument("GNU.sparse 1.0 map runs past the content of " + Describe());
      }
      text.erase(0, pos);
      pos = 0;
      size_t old_size = text.size();
      text.resize(old_size + kBlockSize);
      RETURN_IF_ERROR(
          ReadExact(text.data() + old_size, kBlockSize, "the content of " + Describe()));
      stored_remaining_ -= kBlockSize;
    }
  };
  ASSIGN_OR_RETURN(int64_t count, next_number());
  if (count > static_cast<int64_t>(tar::kMaxSparseSegments)) {
    return Status::InvalidArgument("sparse map has " + std::to_string(count) +
                                   " segments, more than the limit of " +
                                   std::to_string(tar::kMaxSparseSegments));
  }
  for (int64_t i = 0; i < count; i++) {
    ASSIGN_OR_RETURN(int64_t offset, next_number());
    ASSIGN_OR_RETURN(int64_t length, next_number());
    entry_.sparse_map.push_back({offset, length});
  }
  return Status::Ok();
}

Result<TarDataRun> TarReader::NextRun(char* buf, size_t n, int64_t max_hole) {
  if (!error_.ok()) return error_;
  if (!have_entry_) return Status::FailedPrecondition("no current tar entry");
  if (n == 0) return Status::InvalidArgument("reading tar content needs a buffer");
  int64_t data_end = entry_.size;  // where the stored bytes being read end
  if (entry_.sparse) {
    const auto& map = entry_.sparse_map;
    while (segment_ < map.size() && position_ >= map[segment_].offset + map[segment_].length) {
      segment_++;
    }
    if (position_ >= entry_.size) return TarDataRun{position_, 0, false};
    int64_t next_data = segment_ < map.size() ? map[segment_].offset : entry_.size;
    if (position_ < next_data) {
      TarDataRun hole{position_, std::min(next_data - position_, max_hole), true};
      position_ += hole.length;
      return hole;
    }
    data_end = map[segment_].offset + map[segment_].length;
  } else if (stored_remaining_ == 0) {
    return TarDataRun{position_, 0, false};
  }
  size_t want =
      static_cast<size_t>(std::min<int64_t>({static_cast<int64_t>(std::min<size_t>(n, INT64_MAX)),
                                             data_end - position_, stored_remaining_}));
  auto got = ReadSome(buf, want);
  if (!got.ok()) return Fail(got.status());
  if (*got == 0) {
    return Fail(Status::DataLoss("truncated tar archive: the stream ends inside the content of " +
                                 Describe() + ", " + std::to_string(stored_remaining_) +
                                 " bytes short"));
  }
  TarDataRun run{position_, static_cast<int64_t>(*got), false};
  position_ += run.length;
  stored_remaining_ -= run.length;
  return run;
}

Result<TarDataRun> TarReader::ReadRun(char* buf, size_t n) { return NextRun(buf, n, INT64_MAX); }

Result<size_t> TarReader::Read(char* buf, size_t n) {
  if (n == 0) return size_t{0};
  ASSIGN_OR_RETURN(TarDataRun run,
                   NextRun(buf, n, static_cast<int64_t>(std::min<size_t>(n, INT64_MAX))));
  if (run.hole) std::memset(buf, 0, static_cast<size_t>(run.length));
  return static_cast<size_t>(run.length);
}

}  // namespace strata::transfer
