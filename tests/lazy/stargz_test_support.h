// Test doubles and checks for lazy/stargz: a BlobReader over a string that counts and
// can corrupt reads, and a comparison of a fuse::Tree with the tar it should present.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "fuse/tree.h"
#include "lazy/blob_reader.h"

namespace strata::lazy::stargz::testing {

// Serves `data` as a blob. Thread-safe.
class StringBlobReader : public BlobReader {
 public:
  explicit StringBlobReader(std::string data);

  const std::string& digest() const override { return digest_; }
  uint64_t size() const override { return data_.size(); }
  Result<size_t> ReadAt(char* buf, size_t n, uint64_t offset) override;
  void Prefetch(const std::vector<registry::ByteRange>& ranges) override;
  void FetchRemaining() override {}
  void Invalidate(uint64_t offset, uint64_t n) override;
  uint64_t CachedBytes() const override { return 0; }

  // Serves byte `offset` XOR 0xff until an Invalidate covers it (`heals`: a bad cache
  // entry) or for good (a corrupt blob).
  void Corrupt(uint64_t offset, bool heals);
  // Every ReadAt fails with `status` (OK again: stop failing).
  void FailReads(Status status);

  int reads() const { return reads_; }
  void ResetReads() { reads_ = 0; }
  std::vector<registry::ByteRange> invalidations() const;
  std::vector<registry::ByteRange> prefetches() const;

 private:
  const std::string data_;
  const std::string digest_;
  std::atomic<int> reads_{0};
  mutable std::mutex mu_;
  std::set<uint64_t> corrupt_healing_;
  std::set<uint64_t> corrupt_forever_;
  Status fail_;
  std::vector<registry::ByteRange> invalidations_;
  std::vector<registry::ByteRange> prefetches_;
};

// Compares `tree` with the tar `layer_tar` as an overlayfs lower layer should show
// it: every entry (last one wins) with its type, permissions, owner, mtime (to the
// second), size, content (read in pieces of `read_piece_bytes`), symlink target,
// device numbers and xattrs; hard links as one inode; whiteouts (.wh.NAME) as char
// devices 0:0 and .wh..wh..opq as trusted.overlay.opaque=y; and nothing else in the
// tree but implied parent directories. Landmarks and "stargz.index.json" in the tar
// are ignored. Returns the differences found, empty when equal.
std::vector<std::string> CompareTreeWithTar(fuse::Tree& tree, const std::string& layer_tar,
                                            size_t read_piece_bytes = 4096 + 17);

// The inode of `path` ("a/b/c"; "" for the root), looked up from the root.
Result<fuse::Attr> LookupPath(fuse::Tree& tree, std::string_view path);

// The whole content of regular file `ino`, read in pieces of `piece` bytes.
Result<std::string> ReadWhole(fuse::Tree& tree, fuse::Ino ino, size_t piece = 65536);

}  // namespace strata::lazy::stargz::testing
