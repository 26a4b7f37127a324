#include "transfer/tar_writer.h"

#include <algorithm>
#include <cstring>
#include <string_view>
#include <utility>
#include <vector>

#include "core/quote.h"

namespace strata::transfer {

namespace {

using tar::Field;

constexpr size_t kNameBytes = 100;
constexpr size_t kOwnerNameBytes = 32;  // uname and gname, NUL included
constexpr uint64_t kMaxOctal7 = 07777777;
constexpr uint64_t kMaxOctal11 = 077777777777;

void PutString(char* block, Field field, std::string_view value) {
  std::memcpy(block + field.offset, value.data(), std::min(value.size(), field.length));
}

// Octal digits filling all of the field but its last byte, which stays NUL. The caller
// checks that `value` fits.
void PutOctal(char* block, Field field, uint64_t value) {
  for (size_t i = field.length - 1; i-- > 0;) {
    block[field.offset + i] = static_cast<char>('0' + (value & 7));
    value >>= 3;
  }
}

// GNU base-256: a marker byte 0x80, then the value big-endian.
void PutBase256(char* block, Field field, uint64_t value) {
  for (size_t i = field.length; i-- > 1;) {
    block[field.offset + i] = static_cast<char>(value & 0xff);
    value >>= 8;
  }
  block[field.offset] = static_cast<char>(0x80);
}

void PutChecksum(char* block) {
  std::memset(block + tar::kChecksum.offset, ' ', tar::kChecksum.length);
  uint32_t sum = 0;
  for (size_t i = 0; i < tar::kBlockSize; i++) sum += static_cast<unsigned char>(block[i]);
  // Six octal digits, NUL, space: the form every tar writes.
  for (size_t i = 6; i-- > 0;) {
    block[tar::kChecksum.offset + i] = static_cast<char>('0' + (sum & 7));
    sum >>= 3;
  }
  block[tar::kChecksum.offset + 6] = '\0';
}

void PutUstarMagic(char* block) {
  PutString(block, tar::kMagic, std::string_view("ustar\0", 6));
  PutString(block, tar::kVersion, "00");
}

// "<length> <key>=<value>\n", the length counting its own digits.
std::string PaxRecord(std::string_view key, std::string_view value) {
  const size_t rest = 1 + key.size() + 1 + value.size() + 1;  // ' ', '=', '\n'
  size_t total = rest + 1;
  for (;;) {
    size_t next = rest + std::to_string(total).size();
    if (next == total) break;
    total = next;
  }
  std::string record = std::to_string(total);
  record += ' ';
  record += key;
  record += '=';
  record += value;
  record += '\n';
  return record;
}

// Seconds with an optional fraction, as ParsePaxTime reads it back.
std::string PaxTime(const tar::Time& t) {
  if (t.nanos == 0) return std::to_string(t.seconds);
  auto fraction = [](uint32_t nanos) {
    std::string digits = std::to_string(nanos);
    digits.insert(0, 9 - digits.size(), '0');
    while (digits.back() == '0') digits.pop_back();
    return digits;
  };
  if (t.seconds >= 0) return std::to_string(t.seconds) + "." + fraction(t.nanos);
  // seconds + nanos/1e9 is negative: -(|seconds| - 1).(1e9 - nanos)
  return "-" + std::to_string(-(t.seconds + 1)) + "." + fraction(1000000000 - t.nanos);
}

char TypeflagOf(TarEntryType type) {
  switch (type) {
    case TarEntryType::kRegular:
      return '0';
    case TarEntryType::kHardlink:
      return '1';
    case TarEntryType::kSymlink:
      return '2';
    case TarEntryType::kCharDevice:
      return '3';
    case TarEntryType::kBlockDevice:
      return '4';
    case TarEntryType::kDirectory:
      return '5';
    case TarEntryType::kFifo:
      return '6';
    case TarEntryType::kOther:
      break;
  }
  return 0;
}

// The final component of `path`, trailing slashes ignored: names the pax header.
std::string_view BaseName(std::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

}  // namespace

Result<std::string> EncodeTarHeader(const TarEntry& entry) {
  auto invalid = [&](const std::string& what) {
    return Status::InvalidArgument("cannot write tar entry " + Quote(entry.path) + ": " + what);
  };
  const char typeflag = TypeflagOf(entry.type);
  if (typeflag == 0) {
    return invalid("type " + Quote(std::string(1, entry.typeflag)) + " is not supported");
  }
  if (entry.path.empty()) return invalid("empty path");
  if (entry.path.find('\0') != std::string::npos) return invalid("path holds a NUL byte");
  if (entry.link_target.find('\0') != std::string::npos) {
    return invalid("link target holds a NUL byte");
  }
  if (entry.size < 0 || entry.uid < 0 || entry.gid < 0) {
    return invalid("negative size, uid or gid");
  }

  std::string header(tar::kBlockSize, '\0');
  char* block = header.data();
  std::vector<std::pair<std::string, std::string>> pax;

  PutString(block, tar::kName, entry.path);
  if (entry.path.size() > kNameBytes) pax.emplace_back("path", entry.path);
  PutString(block, tar::kLinkname, entry.link_target);
  if (entry.link_target.size() > kNameBytes) pax.emplace_back("linkpath", entry.link_target);

  PutOctal(block, tar::kMode, entry.mode & 07777);
  const std::pair<const char*, int64_t> ids[] = {{"uid", entry.uid}, {"gid", entry.gid}};
  const Field id_fields[] = {tar::kUid, tar::kGid};
  for (int i = 0; i < 2; i++) {
    uint64_t id = static_cast<uint64_t>(ids[i].second);
    if (id <= kMaxOctal7) {
      PutOctal(block, id_fields[i], id);
    } else {
      PutOctal(block, id_fields[i], 0);
      pax.emplace_back(ids[i].first, std::to_string(id));
    }
  }

  const uint64_t size =
      entry.type == TarEntryType::kRegular ? static_cast<uint64_t>(entry.size) : 0;
  if (size <= kMaxOctal11) {
    PutOctal(block, tar::kSize, size);
  } else {
    PutOctal(block, tar::kSize, 0);
    pax.emplace_back("size", std::to_string(size));
  }

  const tar::Time& mtime = entry.mtime;
  if (mtime.seconds < 0) {
    PutOctal(block, tar::kMtime, 0);
  } else {
    PutOctal(block, tar::kMtime, std::min(static_cast<uint64_t>(mtime.seconds), kMaxOctal11));
  }
  if (mtime.seconds < 0 || static_cast<uint64_t>(mtime.seconds) > kMaxOctal11 || mtime.nanos != 0) {
    pax.emplace_back("mtime", PaxTime(mtime));
  }
  if (entry.atime) pax.emplace_back("atime", PaxTime(*entry.atime));

  block[tar::kTypeflagOffset] = typeflag;
  PutUstarMagic(block);
  if (entry.uname.size() < kOwnerNameBytes) {
    PutString(block, tar::kUname, entry.uname);
  } else {
    pax.emplace_back("uname", entry.uname);
  }
  if (entry.gname.size() < kOwnerNameBytes) {
    PutString(block, tar::kGname, entry.gname);
  } else {
    pax.emplace_back("gname", entry.gname);
  }
  const std::pair<uint32_t, Field> devices[] = {{entry.dev_major, tar::kDevMajor},
                                                {entry.dev_minor, tar::kDevMinor}};
  for (const auto& [number, field] : devices) {
    if (number <= kMaxOctal7) {
      PutOctal(block, field, number);
    } else {
      PutBase256(block, field, number);
    }
  }

  for (const auto& [name, value] : entry.xattrs) {
    if (name.empty() || name.find('=') != std::string::npos ||
        name.find('\0') != std::string::npos) {
      return invalid("xattr name " + Quote(name) + " cannot be written in a pax record");
    }
    pax.emplace_back("SCHILY.xattr." + name, value);
  }
  PutChecksum(block);
  if (pax.empty()) return header;

  std::string records;
  for (const auto& [key, value] : pax) records += PaxRecord(key, value);
  if (records.size() > tar::kMaxPaxHeaderBytes) {
    return invalid("pax header of " + std::to_string(records.size()) + " bytes is over " +
                   std::to_string(tar::kMaxPaxHeaderBytes));
  }
  std::string out(tar::kBlockSize, '\0');
  char* pax_block = out.data();
  std::string pax_name = "PaxHeaders/" + std::string(BaseName(entry.path));
  PutString(pax_block, tar::kName, pax_name.substr(0, kNameBytes));
  PutOctal(pax_block, tar::kMode, 0644);
  PutOctal(pax_block, tar::kUid, 0);
  PutOctal(pax_block, tar::kGid, 0);
  PutOctal(pax_block, tar::kSize, records.size());
  std::memcpy(pax_block + tar::kMtime.offset, block + tar::kMtime.offset, tar::kMtime.length);
  pax_block[tar::kTypeflagOffset] = 'x';
  PutUstarMagic(pax_block);
  PutChecksum(pax_block);
  out += records;
  out.append(tar::PaddingOf(records.size()), '\0');
  out += header;
  return out;
}

}  // namespace strata::transfer
