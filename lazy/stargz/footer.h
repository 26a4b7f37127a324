// The footers of lazily pullable layer blobs, and the one or two ranged reads that
// fetch footer and table of contents (TOC) together.
//
// Three layouts end a blob with a fixed-size footer that says where the TOC is:
//
//   eStargz (51 bytes): an empty gzip member whose header carries an extra field with
//     subfield 'S','G' holding "%016x" of the TOC offset followed by "STARGZ". The TOC
//     is one gzip member at that offset, running up to the footer: a tar archive whose
//     first entry, "stargz.index.json", is the TOC JSON.
//   legacy stargz (47 bytes): the same, but the extra field is the 22 bytes
//     "%016xSTARGZ" without a subfield header.
//   zstd:chunked: a zstd skippable frame (magic 0x184D2A50, little-endian length)
//     holding little-endian u64s: TOC offset, compressed TOC length, uncompressed TOC
//     length, manifest type (1), then 8 magic bytes. stargz-snapshotter writes a
//     40-byte payload ending in "GnUlInUx"; containers/storage (podman) a 64-byte one
//     that adds the tar-split offset and lengths before "GNUlInUx". The TOC is a zstd
//     frame at the offset (itself inside a skippable frame whose 8-byte header
//     precedes the offset).
//
// No footer carries the TOC's digest: that comes from the image manifest (see toc.h).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"
#include "lazy/blob_reader.h"

namespace strata::lazy::stargz {

enum class BlobFormat { kEstargz, kLegacyStargz, kZstdChunked };

// "eStargz", "legacy stargz", "zstd:chunked".
std::string_view BlobFormatName(BlobFormat format);

struct Footer {
  BlobFormat format = BlobFormat::kEstargz;
  uint64_t footer_bytes = 0;  // bytes at the end of the blob the footer takes
  uint64_t toc_offset = 0;    // first byte of the compressed TOC
  uint64_t toc_bytes = 0;     // length of the compressed TOC
  // Length of the TOC JSON when the footer states it (zstd:chunked), else 0.
  uint64_t toc_json_bytes = 0;
  // End of the file data: every chunk lies before it (the TOC offset, or for
  // zstd:chunked the skippable frame header in front of it).
  uint64_t payload_end = 0;
};

// The largest footer: a skippable frame header (8) and a 64-byte payload.
inline constexpr size_t kMaxFooterBytes = 72;

// Parses the footer at the end of `tail`, the last tail.size() bytes of a blob of
// `blob_size` bytes (tail.size() <= blob_size). Tries eStargz, legacy stargz and
// both zstd:chunked footers. InvalidArgument naming what was wrong when none of them
// fits, or when the TOC it points at lies outside the blob.
Result<Footer> ParseFooter(std::string_view tail, uint64_t blob_size);

struct FooterAndToc {
  Footer footer;
  std::string compressed_toc;  // exactly footer.toc_bytes bytes
};

struct ReadTocOptions {
  // Bytes before the footer read together with it: when the TOC fits in them, footer
  // and TOC cost one ReadAt; otherwise a second ReadAt fetches the rest of the TOC.
  size_t tail_bytes = 64 * 1024;
  // A TOC larger than this (compressed) is refused with ResourceExhausted.
  uint64_t max_toc_bytes = 64 << 20;
};

// Reads the footer and the compressed TOC of `blob` in at most two ReadAt calls.
// Errors: ParseFooter's; ResourceExhausted for an oversize TOC; DataLoss when the blob
// returns fewer bytes than its size promises; the BlobReader's own errors as they are.
// Nothing is verified here: the caller checks the TOC against its digest.
Result<FooterAndToc> ReadFooterAndToc(BlobReader& blob, const ReadTocOptions& options = {});

// Reads exactly `n` bytes at `offset` (ReadAt until done). DataLoss when the blob ends
// first.
Status ReadFully(BlobReader& blob, char* buf, size_t n, uint64_t offset);

}  // namespace strata::lazy::stargz
