// The table of contents (TOC) of an eStargz, legacy stargz or zstd:chunked blob, as an
// in-memory index of inodes, and the way from a blob to a verified index (LoadToc).
//
// The TOC is JSON: {"version": 1, "entries": [...]}, one entry per tar entry in blob
// order, with fields name, type (dir, reg, symlink, hardlink, char, block, fifo, or
// chunk for the second and later chunks of a regular file), size, modtime (RFC 3339),
// linkName, mode, uid, gid, devMajor, devMinor, xattrs (name -> base64 value), digest
// (of a regular file's content), and for file data offset (where the gzip member or
// zstd frame holding the chunk starts in the blob), innerOffset (bytes into that
// member's decompressed stream where the chunk starts), chunkOffset, chunkSize and
// chunkDigest (sha256 of the uncompressed chunk); containers/storage adds endOffset
// (where the chunk's frame ends) and chunkType ("zeros": no data in the blob).
//
// Digests. The manifest annotation containerd.io/snapshot/stargz/toc.digest is the
// sha256 of the TOC JSON bytes themselves, uncompressed, for every layout: for gzip it
// is the content of the "stargz.index.json" tar entry inside the TOC member (not the
// tar, not the gzip bytes); for zstd:chunked the decompressed TOC frame. zstd:chunked
// layers may also carry io.github.containers.zstd-chunked.manifest-checksum (older
// writers: io.containers.zstd-chunked.manifest-checksum), the sha256 of the compressed
// TOC bytes (the zstd frame inside the skippable frame).
#pragma once

#include <sys/types.h>
#include <time.h>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "fuse/tree.h"
#include "lazy/blob_reader.h"
#include "lazy/stargz/footer.h"

namespace strata::lazy::stargz {

inline constexpr std::string_view kTocDigestAnnotation = "containerd.io/snapshot/stargz/toc.digest";
inline constexpr std::string_view kZstdChunkedManifestChecksumAnnotation =
    "io.github.containers.zstd-chunked.manifest-checksum";
inline constexpr std::string_view kLegacyZstdChunkedManifestChecksumAnnotation =
    "io.containers.zstd-chunked.manifest-checksum";
inline constexpr std::string_view kTocTarName = "stargz.index.json";
inline constexpr std::string_view kPrefetchLandmark = ".prefetch.landmark";
inline constexpr std::string_view kNoPrefetchLandmark = ".no.prefetch.landmark";

// Whether layer annotations (or remote-snapshot labels, which carry them) say where
// the layer's TOC is and how to verify it: a non-empty kTocDigestAnnotation or
// zstd:chunked manifest checksum. Only such layers are served lazily.
bool HasTocAnnotation(const std::map<std::string, std::string>& annotations);

// One piece of a regular file's content.
struct TocChunk {
  uint64_t file_offset = 0;   // chunkOffset: where the piece starts in the file
  uint64_t size = 0;          // uncompressed bytes of the piece (> 0)
  uint64_t blob_offset = 0;   // offset: start of its gzip member / zstd frame
  uint64_t blob_end = 0;      // end of the compressed bytes that may hold it
  uint64_t inner_offset = 0;  // innerOffset: uncompressed bytes before it in the member
  std::string digest;         // "sha256:<hex>" of the uncompressed piece; empty if zeros
  bool zeros = false;         // chunkType "zeros": all zero bytes, nothing in the blob
};

struct TocDirent {
  std::string name;
  fuse::Ino ino = 0;
};

// A file of the layer. Hard links share one inode; nlink counts its names (for a
// directory: 2 plus its subdirectories).
struct TocInode {
  mode_t mode = 0;  // S_IFMT type bits | permission, setuid, setgid and sticky bits
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;  // regular files: content bytes; symlinks: target length
  dev_t rdev = 0;
  timespec mtime{};
  uint32_t nlink = 1;
  fuse::Ino parent = 0;        // directories: the directory holding it (root: itself)
  std::string symlink_target;  // symlinks
  std::map<std::string, std::string> xattrs;
  std::vector<TocChunk> chunks;     // regular files: ordered, covering [0, size) exactly
  std::vector<TocDirent> children;  // directories: sorted by name, "." and ".." excluded
};

enum class PrefetchHint {
  kUnspecified,  // no landmark: the blob does not say
  kNone,         // .no.prefetch.landmark: do not prefetch
  kLandmark,     // .prefetch.landmark: blob bytes [0, prefetch_end) are worth prefetching
};

struct Toc {
  BlobFormat format = BlobFormat::kEstargz;
  std::string json_digest;       // "sha256:<hex>" of the TOC JSON
  std::vector<TocInode> inodes;  // inodes[ino - 1]; fuse::kRootIno is the root directory
  PrefetchHint prefetch = PrefetchHint::kUnspecified;
  uint64_t prefetch_end = 0;
  uint64_t payload_end = 0;  // Footer::payload_end

  // The inode `ino`, or nullptr when there is none.
  const TocInode* inode(fuse::Ino ino) const {
    return ino >= 1 && ino <= inodes.size() ? &inodes[ino - 1] : nullptr;
  }
};

struct TocLimits {
  uint64_t max_json_bytes = 128 << 20;  // uncompressed TOC JSON
  uint64_t max_chunk_bytes = 64 << 20;  // a chunk's size and innerOffset
  uint64_t max_entries = 1 << 22;
};

// Decompresses a TOC as the footer's format stores it and returns the TOC JSON:
// eStargz/legacy: one gzip member holding a tar whose first entry is
// "stargz.index.json"; zstd:chunked: a zstd frame (its length checked against the
// footer's). DataLoss for corrupt compressed data or a malformed tar;
// ResourceExhausted for JSON over `max_json_bytes`.
Result<std::string> DecompressToc(const Footer& footer, std::string_view compressed_toc,
                                  uint64_t max_json_bytes);

// Parses TOC JSON into an index. Names are cleaned ("./a//b/" is "a/b"); parents not
// listed are created as directories (0755, root-owned). Refused with InvalidArgument,
// the message naming the entry: malformed JSON (integers beyond 64 bits included) or
// field types, version other than 1, unknown types, absolute names or names with "..",
// duplicate names, a name under a non-directory, hard links to missing names,
// directories or in a cycle, chunks that do not cover their file exactly or point
// outside [0, payload_end), chunks without a digest (a single-chunk file may use the
// file's "digest"), sizes over `limits`.
Result<Toc> ParseTocJson(std::string_view json, BlobFormat format, uint64_t payload_end,
                         const TocLimits& limits = {});

struct LoadTocOptions {
  // From the layer descriptor's annotations: kTocDigestAnnotation's value, and for
  // zstd:chunked the manifest checksum. At least one must apply to the blob's format
  // unless allow_unverified is set.
  std::string toc_digest;
  std::string zstd_manifest_checksum;
  bool allow_unverified = false;
  // Reads again (after BlobReader::Invalidate) this many times when what was read does
  // not verify, in case the cache held bad bytes.
  int verify_retries = 1;
  ReadTocOptions read;
  TocLimits limits;
};

// Reads footer and TOC from `blob` (ReadFooterAndToc: at most two reads per attempt),
// verifies the TOC against the digests given, and parses it. Errors:
//   FailedPrecondition when no digest applies and allow_unverified is not set;
//   DataLoss "TOC digest mismatch ..." (after Invalidate of the TOC and footer bytes
//     and the retries) when the TOC does not match, and for an undecodable TOC;
//   ParseFooter's InvalidArgument for a blob that is none of the three layouts;
//   ParseTocJson's errors; the BlobReader's errors as they are.
Result<Toc> LoadToc(BlobReader& blob, const LoadTocOptions& options);

}  // namespace strata::lazy::stargz
