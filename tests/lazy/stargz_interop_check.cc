// Checks a layer blob written by another tool (stargz-snapshotter's ctr-remote) with
// strata's reader: opens it as a StargzTree over the file, verifying the TOC against the
// digest given, and compares the tree with the layer's original tar, byte for byte.
//
//   stargz_interop_check --blob FILE --tar FILE [--toc-digest D] [--manifest-checksum D]
//       [--format estargz|legacy|zstd] [--prefetch landmark|none|unspecified]
//       [--prefetched PATH]... [--not-prefetched PATH]...
//
// Prints what differs and exits 1, or prints a summary and exits 0.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "lazy/stargz/tree.h"
#include "tests/lazy/stargz_test_support.h"

namespace strata::lazy::stargz {
namespace {

class FileBlobReader : public BlobReader {
 public:
  FileBlobReader(int fd, uint64_t size) : fd_(fd), size_(size) {}
  ~FileBlobReader() override { ::close(fd_); }
  const std::string& digest() const override { return digest_; }
  uint64_t size() const override { return size_; }
  Result<size_t> ReadAt(char* buf, size_t n, uint64_t offset) override {
    reads_++;
    ssize_t got = ::pread(fd_, buf, n, static_cast<off_t>(offset));
    if (got < 0) return Status::FromErrno(errno, "pread");
    return static_cast<size_t>(got);
  }
  void Prefetch(const std::vector<registry::ByteRange>&) override {}
  void FetchRemaining() override {}
  void Invalidate(uint64_t, uint64_t) override { invalidations_++; }
  uint64_t CachedBytes() const override { return size_; }

  int reads_ = 0;
  int invalidations_ = 0;

 private:
  int fd_;
  uint64_t size_;
  std::string digest_ = "file";
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

int Fail(const std::string& what) {
  std::cout << "FAIL: " << what << "\n";
  return 1;
}

int Main(int argc, char** argv) {
  std::string blob_path, tar_path, format, prefetch;
  std::vector<std::string> prefetched, not_prefetched;
  OpenOptions options;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--blob") {
      blob_path = value;
    } else if (flag == "--tar") {
      tar_path = value;
    } else if (flag == "--toc-digest") {
      options.toc.toc_digest = value;
    } else if (flag == "--manifest-checksum") {
      options.toc.zstd_manifest_checksum = value;
    } else if (flag == "--format") {
      format = value;
    } else if (flag == "--prefetch") {
      prefetch = value;
    } else if (flag == "--prefetched") {
      prefetched.push_back(value);
    } else if (flag == "--not-prefetched") {
      not_prefetched.push_back(value);
    } else {
      return Fail("unknown flag " + flag);
    }
  }
  int fd = ::open(blob_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Fail("cannot open " + blob_path);
  off_t size = ::lseek(fd, 0, SEEK_END);
  auto blob = std::make_shared<FileBlobReader>(fd, static_cast<uint64_t>(size));
  Result<std::unique_ptr<StargzTree>> opened = StargzTree::Open(blob, options);
  if (!opened.ok()) return Fail("open: " + opened.status().ToString());
  StargzTree& tree = **opened;
  const int open_reads = blob->reads_;
  const Toc& toc = tree.toc();

  int failures = 0;
  std::string want_format = format == "estargz"  ? "eStargz"
                            : format == "legacy" ? "legacy stargz"
                            : format == "zstd"   ? "zstd:chunked"
                                                 : "";
  if (!want_format.empty() && BlobFormatName(toc.format) != want_format) {
    failures += Fail("format is " + std::string(BlobFormatName(toc.format)));
  }
  if (open_reads > 2)
    failures += Fail("footer and TOC took " + std::to_string(open_reads) + " reads");
  const char* hint = toc.prefetch == PrefetchHint::kLandmark ? "landmark"
                     : toc.prefetch == PrefetchHint::kNone   ? "none"
                                                             : "unspecified";
  if (!prefetch.empty() && prefetch != hint)
    failures += Fail(std::string("prefetch hint is ") + hint);
  auto chunk_start = [&](const std::string& path) -> int64_t {
    Result<fuse::Attr> a = testing::LookupPath(tree, path);
    if (!a.ok()) return -1;
    const TocInode* inode = toc.inode(a->ino);
    return inode->chunks.empty() ? -1 : static_cast<int64_t>(inode->chunks.front().blob_offset);
  };
  for (const std::string& path : prefetched) {
    int64_t at = chunk_start(path);
    if (at < 0 || static_cast<uint64_t>(at) >= toc.prefetch_end) {
      failures += Fail(path + " is not in the prefetch range");
    }
  }
  for (const std::string& path : not_prefetched) {
    int64_t at = chunk_start(path);
    if (at < 0 || static_cast<uint64_t>(at) < toc.prefetch_end) {
      failures += Fail(path + " is in the prefetch range");
    }
  }
  for (const std::string& diff : testing::CompareTreeWithTar(tree, ReadFile(tar_path), 100003)) {
    failures += Fail(diff);
  }
  if (blob->invalidations_ != 0) failures += Fail("chunks failed verification");
  std::cout << BlobFormatName(toc.format) << " blob of " << size << " bytes: " << toc.inodes.size()
            << " inodes, footer+TOC in " << open_reads << " read(s), prefetch " << hint << " [0, "
            << toc.prefetch_end << "), " << blob->reads_ << " reads in all\n";
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace strata::lazy::stargz

int main(int argc, char** argv) { return strata::lazy::stargz::Main(argc, argv); }
