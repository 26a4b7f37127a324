#include "transfer/tar_format.h"

#include <cstring>
#include <limits>

#include "core/quote.h"

namespace strata::transfer::tar {

namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Parses decimal digits (no sign) into a non-negative int64; false on overflow or a
// non-digit or nothing at all.
bool ParseDecimal(std::string_view digits, int64_t* out) {
  if (digits.empty()) return false;
  int64_t value = 0;
  for (char c : digits) {
    if (!IsDigit(c)) return false;
    int d = c - '0';
    if (value > (std::numeric_limits<int64_t>::max() - d) / 10) return false;
    value = value * 10 + d;
  }
  *out = value;
  return true;
}

}  // namespace

Format DetectFormat(const char* block) {
  std::string_view magic = FieldOf(block, kMagic);
  std::string_view version = FieldOf(block, kVersion);
  if (magic == std::string_view("ustar\0", 6) && version == "00") {
    if (FieldOf(block, kStarTrailer) == std::string_view("tar\0", 4)) return Format::kStar;
    return Format::kUstar;
  }
  if (magic == "ustar " && version == std::string_view(" \0", 2)) return Format::kGnu;
  return Format::kV7;
}

std::string_view CString(std::string_view field) {
  size_t nul = field.find('\0');
  return nul == std::string_view::npos ? field : field.substr(0, nul);
}

Result<int64_t> ParseNumeric(std::string_view field, std::string_view what) {
  if (!field.empty() && (static_cast<unsigned char>(field[0]) & 0x80) != 0) {
    // Base-256: big-endian, the first byte's top bit is the marker and its next bit
    // the sign. Inverting a negative number's bytes gives -x-1 as an unsigned value.
    unsigned char invert = (static_cast<unsigned char>(field[0]) & 0x40) != 0 ? 0xff : 0x00;
    uint64_t value = 0;
    for (size_t i = 0; i < field.size(); i++) {
      unsigned char c = static_cast<unsigned char>(field[i]) ^ invert;
      if (i == 0) c &= 0x7f;
      if ((value >> 56) != 0) {
        return Status::InvalidArgument(std::string(what) + " field overflows 64 bits");
      }
      value = (value << 8) | c;
    }
    if ((value >> 63) != 0) {
      return Status::InvalidArgument(std::string(what) + " field overflows 64 bits");
    }
    int64_t signed_value = static_cast<int64_t>(value);
    return invert != 0 ? ~signed_value : signed_value;
  }
  size_t begin = 0;
  size_t end = field.size();
  while (begin < end && (field[begin] == ' ' || field[begin] == '\0')) begin++;
  while (end > begin && (field[end - 1] == ' ' || field[end - 1] == '\0')) end--;
  uint64_t value = 0;
  for (size_t i = begin; i < end; i++) {
    char c = field[i];
    if (c < '0' || c > '7') {
      return Status::InvalidArgument("invalid " + std::string(what) + " field " + Quote(field));
    }
    if ((value >> 61) != 0) {
      return Status::InvalidArgument(std::string(what) + " field overflows 64 bits");
    }
    value = value * 8 + static_cast<uint64_t>(c - '0');
  }
  if ((value >> 63) != 0) {
    return Status::InvalidArgument(std::string(what) + " field overflows 64 bits");
  }
  return static_cast<int64_t>(value);
}

bool ChecksumMatches(const char* block) {
  auto stored = ParseNumeric(FieldOf(block, kChecksum), "checksum");
  if (!stored.ok()) return false;
  int64_t unsigned_sum = 0;
  int64_t signed_sum = 0;
  for (size_t i = 0; i < kBlockSize; i++) {
    bool in_checksum = i >= kChecksum.offset && i < kChecksum.offset + kChecksum.length;
    char c = in_checksum ? ' ' : block[i];
    unsigned_sum += static_cast<unsigned char>(c);
    signed_sum += static_cast<signed char>(c);
  }
  return *stored == unsigned_sum || *stored == signed_sum;
}

bool IsZeroBlock(const char* block) {
  for (size_t i = 0; i < kBlockSize; i++) {
    if (block[i] != 0) return false;
  }
  return true;
}

Result<std::vector<std::pair<std::string, std::string>>> ParsePaxRecords(std::string_view data) {
  std::vector<std::pair<std::string, std::string>> records;
  size_t pos = 0;
  while (pos < data.size()) {
    std::string_view rest = data.substr(pos);
    size_t space = rest.find(' ');
    int64_t length = 0;
    if (space == std::string_view::npos || space > 20 ||
        !ParseDecimal(rest.substr(0, space), &length) ||
        static_cast<uint64_t>(length) > rest.size() || static_cast<size_t>(length) <= space + 1) {
      return Status::InvalidArgument("malformed pax record at byte " + std::to_string(pos) +
                                     ": bad length");
    }
    std::string_view record = rest.substr(space + 1, static_cast<size_t>(length) - space - 1);
    if (record.empty() || record.back() != '\n') {
      return Status::InvalidArgument("malformed pax record at byte " + std::to_string(pos) +
                                     ": no newline at its end");
    }
    record.remove_suffix(1);
    size_t equals = record.find('=');
    if (equals == std::string_view::npos || equals == 0) {
      return Status::InvalidArgument("malformed pax record at byte " + std::to_string(pos) +
                                     ": no key");
    }
    records.emplace_back(std::string(record.substr(0, equals)),
                         std::string(record.substr(equals + 1)));
    pos += static_cast<size_t>(length);
  }
  return records;
}

Result<int64_t> ParsePaxInteger(std::string_view value, std::string_view key) {
  int64_t out = 0;
  if (!ParseDecimal(value, &out)) {
    return Status::InvalidArgument("invalid pax " + std::string(key) + " " + Quote(value));
  }
  return out;
}

Result<Time> ParsePaxTime(std::string_view value, std::string_view key) {
  auto invalid = [&] {
    return Status::InvalidArgument("invalid pax " + std::string(key) + " " + Quote(value));
  };
  bool negative = !value.empty() && value[0] == '-';
  std::string_view digits = negative ? value.substr(1) : value;
  size_t dot = digits.find('.');
  std::string_view whole = digits.substr(0, dot);
  std::string_view fraction =
      dot == std::string_view::npos ? std::string_view() : digits.substr(dot + 1);
  int64_t seconds = 0;
  if (!ParseDecimal(whole, &seconds)) return invalid();
  if (dot != std::string_view::npos && fraction.empty()) return invalid();
  uint32_t nanos = 0;
  for (size_t i = 0; i < fraction.size(); i++) {
    if (!IsDigit(fraction[i])) return invalid();
    if (i < 9) nanos = nanos * 10 + static_cast<uint32_t>(fraction[i] - '0');
  }
  for (size_t i = fraction.size(); i < 9; i++) nanos *= 10;
  Time t;
  if (!negative) {
    t.seconds = seconds;
    t.nanos = nanos;
  } else if (nanos == 0) {
    t.seconds = -seconds;
  } else {
    t.seconds = -seconds - 1;
    t.nanos = 1000000000 - nanos;
  }
  return t;
}

Result<std::string> DecodeBase64(std::string_view text) {
  auto value_of = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  if (text.size() % 4 == 1) return Status::InvalidArgument("invalid base64 length");
  std::string out;
  out.reserve(text.size() * 3 / 4);
  uint32_t bits = 0;
  int nbits = 0;
  for (char c : text) {
    int v = value_of(c);
    if (v < 0) return Status::InvalidArgument("invalid base64 character " + Quote({&c, 1}));
    bits = (bits << 6) | static_cast<uint32_t>(v);
    nbits += 6;
    if (nbits >= 8) {
      nbits -= 8;
      out += static_cast<char>((bits >> nbits) & 0xff);
    }
  }
  return out;
}

Result<std::string> DecodePercentEscapes(std::string_view text) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  for (size_t i = 0; i < text.size(); i++) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    if (i + 2 >= text.size()) {
      return Status::InvalidArgument("invalid %-escape in " + Quote(text));
    }
    int hi = hex(text[i + 1]);
    int lo = hex(text[i + 2]);
    if (hi < 0 || lo < 0) return Status::InvalidArgument("invalid %-escape in " + Quote(text));
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

Status ValidateSparseMap(const std::vector<SparseSegment>& segments, int64_t file_size,
                         int64_t stored_bytes) {
  if (file_size < 0) return Status::InvalidArgument("negative sparse file size");
  if (segments.size() > kMaxSparseSegments) {
    return Status::InvalidArgument("sparse map has " + std::to_string(segments.size()) +
                                   " segments, more than the limit of " +
                                   std::to_string(kMaxSparseSegments));
  }
  int64_t previous_end = 0;
  int64_t total = 0;
  for (size_t i = 0; i < segments.size(); i++) {
    const SparseSegment& s = segments[i];
    std::string which = "sparse segment " + std::to_string(i);
    if (s.offset < 0 || s.length < 0) return Status::InvalidArgument(which + " is negative");
    if (s.offset < previous_end) {
      return Status::InvalidArgument(which + " overlaps or precedes the one before it");
    }
    if (s.length > file_size || s.offset > file_size - s.length) {
      return Status::InvalidArgument(which + " lies beyond the file size " +
                                     std::to_string(file_size));
    }
    previous_end = s.offset + s.length;
    total += s.length;  // bounded by file_size, so no overflow
  }
  if (total != stored_bytes) {
    return Status::InvalidArgument("sparse map covers " + std::to_string(total) +
                                   " bytes but the archive stores " + std::to_string(stored_bytes));
  }
  return Status::Ok();
}

}  // namespace strata::transfer::tar
