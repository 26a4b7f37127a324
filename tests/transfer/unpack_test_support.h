// Helpers shared by the unpack tests: temporary directories, compressors that make the
// test inputs (zlib and libzstd, independent of the code under test), file helpers, and
// a tree description to compare directories file by file.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace strata::transfer::testing {

// A new directory under /tmp, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& relative) const { return path_ + "/" + relative; }

 private:
  std::string path_;
};

// One gzip member made by zlib.
std::string GzipCompress(std::string_view data, int level = 6);
// One zstd frame made by libzstd, with a content checksum (as the zstd command makes).
std::string ZstdCompress(std::string_view data, int level = 3);

// Bytes from a fixed-seed generator: incompressible.
std::string RandomBytes(size_t n, uint32_t seed);
// Text-like bytes that compress several times over.
std::string CompressibleBytes(size_t n, uint32_t seed);

std::string ReadFileOrEmpty(const std::string& path);
void WriteFile(const std::string& path, std::string_view data);
// Runs `command` with /bin/sh; returns its exit status (-1 if it did not exit).
int Run(const std::string& command);
// Runs `command` and returns what it wrote to stdout.
std::string Output(const std::string& command);

// One line per file below `root` (the root excluded), keyed by relative path: type,
// mode, owner, size, content digest, link target, device, xattrs, and mtime in ns
// (directories too) when `with_mtimes`.
std::map<std::string, std::string> DescribeTree(const std::string& root, bool with_mtimes);

}  // namespace strata::transfer::testing
