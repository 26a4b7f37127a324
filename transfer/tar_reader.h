// TarReader: reads the entries of a tar stream (POSIX ustar and pax, GNU, star, v7)
// one after the other, with their content.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "transfer/byte_source.h"
#include "transfer/tar_format.h"

namespace strata::transfer {

enum class TarEntryType {
  kRegular,      // '0', '\0' (a name without a trailing '/'), '7', and old GNU sparse 'S'
  kHardlink,     // '1'
  kSymlink,      // '2'
  kCharDevice,   // '3'
  kBlockDevice,  // '4'
  kDirectory,    // '5', and '\0' with a name ending in '/'
  kFifo,         // '6'
  kOther,        // any other type ('V', 'D', 'A', ...): content readable, meaning unknown
};

// One archive member, with every extension applied: GNU long names ('L', 'K'), global
// ('g') then per-entry ('x') pax records, sparse maps.
struct TarEntry {
  TarEntryType type = TarEntryType::kRegular;
  char typeflag = '0';      // the header's type byte, as it was
  std::string path;         // as the archive names it: not cleaned, may be hostile
  std::string link_target;  // hard link target (an archive path) or symlink content
  // Bytes of content the entry has: for a sparse file its full length, holes included.
  // 0 for hard links, symlinks, devices, directories and fifos, whatever the header
  // says (as Go's archive/tar, which wrote most layers, reads them).
  int64_t size = 0;
  uint32_t mode = 0;  // permission bits with setuid, setgid and sticky (07777)
  int64_t uid = 0;
  int64_t gid = 0;
  std::string uname;
  std::string gname;
  tar::Time mtime;
  std::optional<tar::Time> atime;  // pax "atime", or the GNU header's atime when set
  uint32_t dev_major = 0;
  uint32_t dev_minor = 0;
  // Extended attributes from pax SCHILY.xattr.<name> and LIBARCHIVE.xattr.<name>
  // (base64 value) records, by name.
  std::map<std::string, std::string> xattrs;
  // Sparse files (old GNU 'S', pax GNU.sparse 0.0, 0.1 and 1.0): the data fragments;
  // the rest of the `size` bytes are holes.
  bool sparse = false;
  std::vector<tar::SparseSegment> sparse_map;
};

// A piece of an entry's content as ReadRun returns it.
struct TarDataRun {
  int64_t offset = 0;  // position in the file
  int64_t length = 0;  // 0 only at the end of the content
  bool hole = false;   // true: `length` bytes of zeros that were not copied to the buffer
};

// Reads a tar stream from a ByteSource it borrows (the source must outlive the reader).
//
// Usage:
//   TarReader reader(source);
//   for (;;) {
//     ASSIGN_OR_RETURN(bool more, reader.Next());
//     if (!more) break;
//     const TarEntry& e = reader.entry();
//     ... reader.Read(buf, n) or reader.ReadRun(buf, n) until they return 0 ...
//   }
//
// The archive ends at two zero blocks. It also ends, as Go's archive/tar and so
// containerd accept it, where the source ends at a block boundary where a header would
// start or after a single zero block: layers written without the end marker exist, and
// the layer's diff id (checked by the unpacker) is what proves a stream complete. What
// follows the end marker is not interpreted; the reader may have read some of it ahead,
// so a caller that needs the whole stream (to hash it) reads the source on to its end.
//
// Errors (sticky: after one, every call returns it):
//   DataLoss "truncated tar archive: ..." naming the entry, when the source ends inside
//     a header, an entry's content or its padding;
//   DataLoss "tar header checksum mismatch ..." for a corrupt header;
//   InvalidArgument for malformed or hostile structure: bad numeric fields, malformed
//     pax records, a pax header over 1 MiB (tar::kMaxPaxHeaderBytes), a name or link
//     target over 4096 bytes or holding a NUL byte, an invalid or oversize sparse map,
//     a negative size;
//   the source's own error when reading it fails.
//
// Not thread-safe.
class TarReader {
 public:
  explicit TarReader(ByteSource& source);
  TarReader(const TarReader&) = delete;
  TarReader& operator=(const TarReader&) = delete;

  // Moves to the next entry, skipping what was not read of the current one. Returns
  // true when there is one (see entry()), false at the end of the archive.
  Result<bool> Next();

  // The entry Next moved to. Valid until the next call to Next.
  const TarEntry& entry() const { return entry_; }

  // Copies up to `n` bytes of the entry's content, holes of sparse files as zeros.
  // Returns 0 at the end of the content.
  Result<size_t> Read(char* buf, size_t n);

  // Returns the next piece of content: data (at most `n` bytes, copied to `buf`) or a
  // whole hole of a sparse file (nothing copied), so that a writer can seek over holes.
  // A run of length 0 marks the end of the content.
  Result<TarDataRun> ReadRun(char* buf, size_t n);

  // Bytes taken from the source so far.
  uint64_t offset() const { return offset_; }

 private:
  struct PendingExtensions;

  Result<TarDataRun> NextRun(char* buf, size_t n, int64_t max_hole);
  Result<size_t> ReadSome(char* buf, size_t n);
  Status ReadExact(char* buf, size_t n, const std::string& what);
  Status Skip(uint64_t n, const std::string& what);
  Result<bool> ReadBlock(char* block);
  Result<std::string> ReadSpecialContent(const char* block, size_t limit, const char* what);
  Status BuildEntry(const char* block, PendingExtensions& pending);
  Status ReadOldGnuSparseMap(const char* block);
  Status ReadSparseMapFromData();
  Status Fail(Status status);
  std::string Describe() const;

  ByteSource& source_;
  std::vector<char> buffer_;
  size_t buffer_pos_ = 0;
  size_t buffer_end_ = 0;
  uint64_t offset_ = 0;
  bool ended_ = false;
  Status error_;

  std::map<std::string, std::string> global_records_;
  size_t global_records_bytes_ = 0;
  TarEntry entry_;
  bool have_entry_ = false;
  uint64_t entry_header_offset_ = 0;
  int64_t stored_remaining_ = 0;  // content bytes of the entry still in the source
  uint64_t padding_ = 0;          // bytes after the content up to the next block
  int64_t position_ = 0;          // position in the (logical) file
  size_t segment_ = 0;            // current sparse segment
};

}  // namespace strata::transfer
