#include "tests/transfer/tar_builder.h"

#include <cstdio>
#include <cstring>

namespace strata::transfer::testing {

namespace {

constexpr size_t kBlock = 512;

void PutString(char* block, size_t offset, size_t length, std::string_view value) {
  std::memcpy(block + offset, value.data(), std::min(length, value.size()));
}

// Octal, zero-padded to length - 1 digits and NUL-terminated.
void PutOctal(char* block, size_t offset, size_t length, int64_t value) {
  char text[32];
  std::snprintf(text, sizeof text, "%0*llo", static_cast<int>(length - 1),
                static_cast<unsigned long long>(value));
  std::memcpy(block + offset, text, length - 1);
  block[offset + length - 1] = '\0';
}

// GNU base-256: marker byte, then the value big-endian (two's complement if negative).
void PutBase256(char* block, size_t offset, size_t length, int64_t value) {
  int64_t bits = value;  // shifted arithmetically: negative values stay sign-extended
  for (size_t i = length; i-- > 1;) {
    block[offset + i] = static_cast<char>(bits & 0xff);
    bits >>= 8;
  }
  block[offset] = static_cast<char>(value < 0 ? 0xff : 0x80);
}

void PutNumber(char* block, size_t offset, size_t length, int64_t value, bool base256) {
  if (base256) {
    PutBase256(block, offset, length, value);
  } else {
    PutOctal(block, offset, length, value);
  }
}

void PutSparseEntries(char* at, const std::pair<int64_t, int64_t>* entries, size_t count) {
  for (size_t i = 0; i < count; i++) {
    PutOctal(at, i * 24, 12, entries[i].first);
    PutOctal(at, i * 24 + 12, 12, entries[i].second);
  }
}

}  // namespace

TarBuilder& TarBuilder::Header(const TarHeader& h) {
  char block[kBlock] = {};
  PutString(block, 0, 100, h.name);
  PutOctal(block, 100, 8, h.mode);
  PutNumber(block, 108, 8, h.uid, h.base256_numbers);
  PutNumber(block, 116, 8, h.gid, h.base256_numbers);
  PutNumber(block, 124, 12, h.size == -1 ? 0 : h.size, h.base256_numbers);
  PutNumber(block, 136, 12, h.mtime, h.base256_numbers);
  block[156] = h.typeflag;
  PutString(block, 157, 100, h.linkname);
  switch (h.magic) {
    case TarHeader::Magic::kUstar:
      std::memcpy(block + 257,
                  "ustar\0"
                  "00",
                  8);
      PutString(block, 345, 155, h.prefix);
      break;
    case TarHeader::Magic::kGnu:
      std::memcpy(block + 257, "ustar  \0", 8);
      if (h.gnu_atime != 0) PutOctal(block, 345, 12, h.gnu_atime);
      PutSparseEntries(block + 386, h.gnu_sparse.data(), std::min<size_t>(h.gnu_sparse.size(), 4));
      block[482] = h.gnu_is_extended ? 1 : 0;
      if (h.typeflag == 'S') PutOctal(block, 483, 12, h.gnu_real_size);
      break;
    case TarHeader::Magic::kV7:
      break;
  }
  if (h.magic != TarHeader::Magic::kV7) {
    PutString(block, 265, 32, h.uname);
    PutString(block, 297, 32, h.gname);
    if (h.typeflag == '3' || h.typeflag == '4') {
      PutOctal(block, 329, 8, h.dev_major);
      PutOctal(block, 337, 8, h.dev_minor);
    }
  }
  std::memset(block + 148, ' ', 8);
  int64_t sum = 0;
  for (size_t i = 0; i < kBlock; i++) {
    sum += h.checksum == TarHeader::Checksum::kSigned ? static_cast<signed char>(block[i])
                                                      : static_cast<unsigned char>(block[i]);
  }
  if (h.checksum == TarHeader::Checksum::kBad) sum += 1;
  char text[16];
  std::snprintf(text, sizeof text, "%06llo", static_cast<unsigned long long>(sum & 0777777));
  std::memcpy(block + 148, text, 6);
  block[154] = '\0';
  block[155] = ' ';
  out_.append(block, kBlock);
  return *this;
}

TarBuilder& TarBuilder::Content(std::string_view data) {
  out_.append(data);
  out_.append((kBlock - data.size() % kBlock) % kBlock, '\0');
  return *this;
}

TarBuilder& TarBuilder::Entry(TarHeader header, std::string_view data) {
  if (header.size == -1) header.size = static_cast<int64_t>(data.size());
  Header(header);
  return Content(data);
}

TarBuilder& TarBuilder::Raw(std::string_view bytes) {
  out_.append(bytes);
  return *this;
}

TarBuilder& TarBuilder::File(const std::string& name, std::string_view data, uint32_t mode) {
  TarHeader h;
  h.name = name;
  h.mode = mode;
  return Entry(h, data);
}

TarBuilder& TarBuilder::Dir(const std::string& name, uint32_t mode) {
  TarHeader h;
  h.name = name;
  h.typeflag = '5';
  h.mode = mode;
  return Entry(h);
}

TarBuilder& TarBuilder::Symlink(const std::string& name, const std::string& target) {
  TarHeader h;
  h.name = name;
  h.typeflag = '2';
  h.mode = 0777;
  h.linkname = target;
  return Entry(h);
}

TarBuilder& TarBuilder::Hardlink(const std::string& name, const std::string& target) {
  TarHeader h;
  h.name = name;
  h.typeflag = '1';
  h.linkname = target;
  return Entry(h);
}

std::string TarBuilder::PaxRecord(const std::string& key, const std::string& value) {
  // The length counts its own digits: grow it until it is consistent.
  size_t body = 1 + key.size() + 1 + value.size() + 1;  // " key=value\n"
  size_t length = body + 1;
  while (std::to_string(length).size() + body != length)
    length = std::to_string(length).size() + body;
  return std::to_string(length) + " " + key + "=" + value + "\n";
}

TarBuilder& TarBuilder::Pax(const std::vector<std::pair<std::string, std::string>>& records,
                            char typeflag) {
  std::string data;
  for (const auto& [key, value] : records) data += PaxRecord(key, value);
  TarHeader h;
  h.name = "PaxHeaders/entry";
  h.typeflag = typeflag;
  return Entry(h, data);
}

TarBuilder& TarBuilder::GnuLong(const std::string& name, char typeflag) {
  TarHeader h;
  h.name = "././@LongLink";
  h.typeflag = typeflag;
  h.magic = TarHeader::Magic::kGnu;
  std::string data = name;
  data += '\0';
  return Entry(h, data);
}

TarBuilder& TarBuilder::OldGnuSparse(const std::string& name,
                                     const std::vector<std::pair<int64_t, int64_t>>& segments,
                                     int64_t real_size, std::string_view data) {
  TarHeader h;
  h.name = name;
  h.typeflag = 'S';
  h.magic = TarHeader::Magic::kGnu;
  h.size = static_cast<int64_t>(data.size());
  h.gnu_real_size = real_size;
  size_t in_header = std::min<size_t>(segments.size(), 4);
  h.gnu_sparse.assign(segments.begin(), segments.begin() + static_cast<long>(in_header));
  h.gnu_is_extended = segments.size() > 4;
  Header(h);
  for (size_t i = 4; i < segments.size(); i += 21) {
    char block[kBlock] = {};
    size_t count = std::min<size_t>(21, segments.size() - i);
    PutSparseEntries(block, segments.data() + i, count);
    block[504] = i + 21 < segments.size() ? 1 : 0;
    out_.append(block, kBlock);
  }
  return Content(data);
}

TarBuilder& TarBuilder::PaxSparse10(const std::string& name,
                                    const std::vector<std::pair<int64_t, int64_t>>& segments,
                                    int64_t real_size, std::string_view data) {
  Pax({{"GNU.sparse.major", "1"},
       {"GNU.sparse.minor", "0"},
       {"GNU.sparse.name", name},
       {"GNU.sparse.realsize", std::to_string(real_size)}});
  std::string map = std::to_string(segments.size()) + "\n";
  for (const auto& [offset, length] : segments) {
    map += std::to_string(offset) + "\n" + std::to_string(length) + "\n";
  }
  map.append((kBlock - map.size() % kBlock) % kBlock, '\0');
  TarHeader h;
  h.name = "GNUSparseFile.0/" + name;
  return Entry(h, map + std::string(data));
}

TarBuilder& TarBuilder::End() {
  out_.append(2 * kBlock, '\0');
  return *this;
}

}  // namespace strata::transfer::testing
