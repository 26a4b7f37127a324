// Test-only tar writer: builds archives byte by byte, including the broken and hostile
// ones no real tar would write (bad checksums, lying sizes, huge headers).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace strata::transfer::testing {

struct TarHeader {
  enum class Magic { kUstar, kGnu, kV7 };
  enum class Checksum { kUnsigned, kSigned, kBad };

  std::string name;
  char typeflag = '0';
  uint32_t mode = 0644;
  int64_t uid = 0;
  int64_t gid = 0;
  int64_t size = -1;  // -1: the size of the content given to Entry
  int64_t mtime = 1700000000;
  std::string linkname;
  std::string uname;
  std::string gname;
  uint32_t dev_major = 0;
  uint32_t dev_minor = 0;
  Magic magic = Magic::kUstar;
  std::string prefix;            // ustar prefix field
  bool base256_numbers = false;  // uid, gid, size and mtime in GNU base-256
  Checksum checksum = Checksum::kUnsigned;
  // Old GNU sparse ('S') fields: up to 4 {offset, length} in the header.
  std::vector<std::pair<int64_t, int64_t>> gnu_sparse;
  bool gnu_is_extended = false;
  int64_t gnu_real_size = 0;
  int64_t gnu_atime = 0;
};

class TarBuilder {
 public:
  // A header block as `header` describes it (size -1 is written as 0, other negative
  // sizes as they are).
  TarBuilder& Header(const TarHeader& header);
  // `data` padded with zeros to whole blocks.
  TarBuilder& Content(std::string_view data);
  // Header (its size defaulting to data.size()) and content.
  TarBuilder& Entry(TarHeader header, std::string_view data = {});
  // Bytes appended as they are.
  TarBuilder& Raw(std::string_view bytes);

  TarBuilder& File(const std::string& name, std::string_view data, uint32_t mode = 0644);
  TarBuilder& Dir(const std::string& name, uint32_t mode = 0755);
  TarBuilder& Symlink(const std::string& name, const std::string& target);
  TarBuilder& Hardlink(const std::string& name, const std::string& target);

  // A pax header ('x' per entry, 'g' global) holding `records` in order.
  TarBuilder& Pax(const std::vector<std::pair<std::string, std::string>>& records,
                  char typeflag = 'x');
  // A GNU long name ('L') or long link ('K') header, the name NUL-terminated.
  TarBuilder& GnuLong(const std::string& name, char typeflag = 'L');

  // An old GNU sparse file: the first four segments in the header, the rest in
  // extension blocks; `data` is the segments' bytes back to back.
  TarBuilder& OldGnuSparse(const std::string& name,
                           const std::vector<std::pair<int64_t, int64_t>>& segments,
                           int64_t real_size, std::string_view data);
  // A pax GNU.sparse 1.0 file: the map at the start of the content.
  TarBuilder& PaxSparse10(const std::string& name,
                          const std::vector<std::pair<int64_t, int64_t>>& segments,
                          int64_t real_size, std::string_view data);

  // The end-of-archive marker: two zero blocks.
  TarBuilder& End();

  const std::string& str() const { return out_; }

  // "<length> <key>=<value>\n".
  static std::string PaxRecord(const std::string& key, const std::string& value);

 private:
  std::string out_;
};

}  // namespace strata::transfer::testing
