// StargzTree: an eStargz, legacy stargz or zstd:chunked layer blob served as a
// read-only fuse::Tree, reading file data through a lazy::BlobReader on demand.
//
// The tree is what the layer holds, presented as an overlayfs lower layer expects:
//   - a whiteout ".wh.NAME" appears as NAME, a character device 0:0 (unless the same
//     directory also has a real NAME, which then wins); ".wh..wh..opq" makes its
//     directory opaque (TreeOptions::opaque_xattrs read "y"); other ".wh..wh." names
//     are hidden;
//   - the prefetch landmarks in the root are hidden;
//   - overlayfs's own xattrs (trusted.overlay.*, user.overlay.*) from the TOC are
//     dropped, as the unpacker drops them.
//
// Reads: a file's bytes come from its chunks. Each chunk's compressed bytes (a gzip
// member or zstd frame, starting at the chunk's offset) are read through the
// BlobReader, decompressed, and checked against the chunk's sha256 before any byte of
// it is returned. On a mismatch (or corrupt compressed data) the tree calls
// BlobReader::Invalidate on the chunk's bytes, logs an error, reads once more
// (TreeOptions::verify_retries) and then fails the read with DataLoss (EIO). Verified
// chunks stay in a bounded in-memory LRU.
//
// Thread-safe: the metadata is immutable after construction; the chunk cache locks.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "fuse/tree.h"
#include "lazy/blob_reader.h"
#include "lazy/stargz/chunk_cache.h"
#include "lazy/stargz/toc.h"
#include "registry/client.h"

namespace strata::lazy::stargz {

struct TreeOptions {
  size_t chunk_cache_bytes = 64 << 20;
  // Names that read "y" on an opaque directory: trusted.overlay.opaque for a
  // privileged overlay mount; add or use user.overlay.opaque for "userxattr" mounts.
  std::vector<std::string> opaque_xattrs = {"trusted.overlay.opaque"};
  // Further reads of a chunk that did not verify, each after Invalidate.
  int verify_retries = 1;
};

struct OpenOptions {
  LoadTocOptions toc;
  TreeOptions tree;
};

class StargzTree final : public fuse::Tree {
 public:
  // Serves `toc` (parsed from `blob`, see LoadToc) with data read through `blob`.
  StargzTree(std::shared_ptr<BlobReader> blob, Toc toc, TreeOptions options = {});

  // LoadToc then the constructor: footer and TOC cost one or two reads of `blob`.
  // LoadToc's errors.
  static Result<std::unique_ptr<StargzTree>> Open(std::shared_ptr<BlobReader> blob,
                                                  const OpenOptions& options);

  StargzTree(const StargzTree&) = delete;
  StargzTree& operator=(const StargzTree&) = delete;

  Result<fuse::Attr> Lookup(fuse::Ino parent, std::string_view name) override;
  Result<fuse::Attr> GetAttr(fuse::Ino ino) override;
  Status ReadDir(fuse::Ino dir, uint64_t offset,
                 const std::function<bool(const fuse::DirEntry&)>& emit) override;
  Result<std::string> ReadLink(fuse::Ino ino) override;
  // Errors: FailedPrecondition for a directory, InvalidArgument for other
  // non-regular files, DataLoss when a chunk does not verify, the BlobReader's
  // DeadlineExceeded and Unavailable as they are, and its other errors (such as
  // FailedPrecondition for a blob the engine dropped) as Unavailable, so that every
  // failed fetch reads as EIO.
  Result<size_t> Read(fuse::Ino ino, char* buf, size_t n, uint64_t offset) override;
  Result<std::string> GetXattr(fuse::Ino ino, std::string_view name) override;
  Result<std::vector<std::string>> ListXattr(fuse::Ino ino) override;
  fuse::FsStats StatFs() override;

  // The blob ranges worth fetching before anyone asks: [0, landmark offset) when the
  // layer has a .prefetch.landmark, else none (also for .no.prefetch.landmark).
  std::vector<registry::ByteRange> PrefetchRanges() const;

  const Toc& toc() const { return toc_; }
  BlobReader& blob() const { return *blob_; }
  // Bytes of verified chunk data held in memory.
  size_t cached_chunk_bytes() const { return cache_.size_bytes(); }

 private:
  Result<const TocInode*> Find(fuse::Ino ino) const;
  fuse::Attr AttrOf(fuse::Ino ino, const TocInode& inode) const;
  void PresentForOverlay();
  static Status ReadError(const Status& status, fuse::Ino ino, uint64_t offset);
  Result<ChunkCache::Data> LoadChunk(const TocChunk& chunk);
  Result<ChunkCache::Data> FetchVerified(const TocChunk& chunk);
  Result<std::string> FetchChunk(const TocChunk& chunk);

  std::shared_ptr<BlobReader> blob_;
  Toc toc_;
  const TreeOptions options_;
  std::vector<bool> opaque_;  // by ino - 1
  ChunkCache cache_;
};

}  // namespace strata::lazy::stargz
