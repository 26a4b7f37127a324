// The field-level grammar of tar archives (POSIX ustar and pax, GNU, old GNU sparse):
// header block layout, numeric fields, checksums, pax records, and the encodings pax
// values use. TarReader (tar_reader.h) puts these together into a stream reader.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace strata::transfer::tar {

constexpr size_t kBlockSize = 512;

// Limits that keep a hostile archive from making the reader allocate without bound.
constexpr size_t kMaxPaxHeaderBytes = 1 << 20;  // one 'x' or 'g' header's records
constexpr size_t kMaxGlobalPaxBytes = 1 << 20;  // all global records in force together
constexpr size_t kMaxNameBytes = 4096;          // a path or link target (Linux PATH_MAX)
constexpr size_t kMaxSparseSegments = 1 << 16;  // data fragments of one sparse file

// Header block fields: {offset, length}.
struct Field {
  size_t offset;
  size_t length;
};
constexpr Field kName{0, 100};
constexpr Field kMode{100, 8};
constexpr Field kUid{108, 8};
constexpr Field kGid{116, 8};
constexpr Field kSize{124, 12};
constexpr Field kMtime{136, 12};
constexpr Field kChecksum{148, 8};
constexpr size_t kTypeflagOffset = 156;
constexpr Field kLinkname{157, 100};
constexpr Field kMagic{257, 6};
constexpr Field kVersion{263, 2};
constexpr Field kUname{265, 32};
constexpr Field kGname{297, 32};
constexpr Field kDevMajor{329, 8};
constexpr Field kDevMinor{337, 8};
// POSIX ustar.
constexpr Field kPrefix{345, 155};
// star (a ustar variant marked by "tar\0" at the end of the block).
constexpr Field kStarPrefix{345, 131};
constexpr Field kStarAtime{476, 12};
constexpr Field kStarTrailer{508, 4};
// GNU.
constexpr Field kGnuAtime{345, 12};
constexpr Field kGnuCtime{357, 12};
constexpr size_t kGnuSparseOffset = 386;  // 4 entries of {offset[12], numbytes[12]}
constexpr size_t kGnuSparseEntries = 4;
constexpr size_t kGnuIsExtendedOffset = 482;
constexpr Field kGnuRealSize{483, 12};
// An old GNU sparse extension block: 21 entries, then the is-extended flag.
constexpr size_t kGnuExtSparseEntries = 21;
constexpr size_t kGnuExtIsExtendedOffset = 504;
constexpr size_t kSparseEntryBytes = 24;

enum class Format { kV7, kUstar, kStar, kGnu };

// Which header layout the block uses, from its magic and version.
Format DetectFormat(const char* block);

// The bytes of `field` in `block`.
inline std::string_view FieldOf(const char* block, Field field) {
  return std::string_view(block + field.offset, field.length);
}

// A NUL-terminated string field (the whole field when it has no NUL).
std::string_view CString(std::string_view field);

// Parses a numeric field: octal ASCII digits padded with spaces or NULs on either side
// (an empty field is 0), or GNU base-256 (first byte has the high bit set; two's
// complement when the next bit is set too). InvalidArgument naming `what` for other
// characters or a value beyond int64.
Result<int64_t> ParseNumeric(std::string_view field, std::string_view what);

// True if the checksum field matches the sum of the header's bytes with the checksum
// field counted as spaces, summing the bytes either unsigned (POSIX) or signed (some
// historic tars).
bool ChecksumMatches(const char* block);

bool IsZeroBlock(const char* block);

// Bytes needed to pad `size` to a whole number of blocks.
inline uint64_t PaddingOf(uint64_t size) { return (kBlockSize - size % kBlockSize) % kBlockSize; }

// A time with nanoseconds, possibly before 1970 (then seconds < 0, 0 <= nanos < 1e9).
struct Time {
  int64_t seconds = 0;
  uint32_t nanos = 0;
  bool operator==(const Time&) const = default;
};

// The records of a pax extended header ("<length> <key>=<value>\n" each), in order.
// InvalidArgument for a malformed record (bad length, missing '=' or newline, empty key).
Result<std::vector<std::pair<std::string, std::string>>> ParsePaxRecords(std::string_view data);

// A pax decimal integer ("size", "uid", ...); InvalidArgument naming `key` otherwise.
Result<int64_t> ParsePaxInteger(std::string_view value, std::string_view key);

// A pax time: optional '-', decimal seconds, optional '.' and fraction digits (digits
// beyond nanoseconds are dropped).
Result<Time> ParsePaxTime(std::string_view value, std::string_view key);

// Standard base64 (RFC 4648), padding optional. InvalidArgument for other characters.
Result<std::string> DecodeBase64(std::string_view text);

// Undoes libarchive's %XX escaping of xattr names in "LIBARCHIVE.xattr.<name>" keys.
Result<std::string> DecodePercentEscapes(std::string_view text);

// One data fragment of a sparse file: bytes [offset, offset + length) are stored in the
// archive, everything else in the file is a hole (zeros).
struct SparseSegment {
  int64_t offset = 0;
  int64_t length = 0;
  bool operator==(const SparseSegment&) const = default;
};

// Checks that segments are in increasing order, do not overlap, lie within a file of
// `file_size` bytes, and that their lengths add up to `stored_bytes`, the data the
// archive holds for the entry. InvalidArgument saying which rule broke.
Status ValidateSparseMap(const std::vector<SparseSegment>& segments, int64_t file_size,
                         int64_t stored_bytes);

}  // namespace strata::transfer::tar
