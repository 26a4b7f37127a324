// Decompression of layer blobs as a ByteSource: gzip through ISA-L's igzip, zstd
// through libzstd's streaming API, and uncompressed tar passed through.
#pragma once

#include <memory>
#include <string_view>

#include "core/status.h"
#include "transfer/byte_source.h"

namespace strata::transfer {

enum class Compression { kNone, kGzip, kZstd };

// "none", "gzip" or "zstd".
std::string_view CompressionName(Compression compression);

// The compression an OCI or Docker layer media type declares:
//   application/vnd.oci.image.layer.v1.tar[+gzip|+zstd] (and .nondistributable.),
//   application/vnd.docker.image.rootfs.diff.tar[.gzip] (and .foreign.).
// InvalidArgument for a media type that is not a layer; Unimplemented for a layer
// this library cannot read (encrypted, bzip2, xz, ...).
Result<Compression> CompressionOfMediaType(std::string_view media_type);

// Returns a source that yields the decompressed bytes of `in`, choosing the format by
// the first bytes: 1f 8b is gzip, 28 b5 2f fd is zstd, anything else is taken as
// uncompressed (an empty stream too). bzip2 and xz magics are refused with
// Unimplemented rather than passed on as tar. Errors from reading `in` (the first
// bytes are read here) are returned as they are.
//
// Reading the result fails with
//   DataLoss "truncated gzip stream" / "truncated zstd stream" when the input ends
//     inside a member or frame,
//   DataLoss "corrupt gzip stream: ..." for bad deflate data, a CRC-32 or length
//     trailer that does not match, or bytes after the last member that do not start
//     another member ("trailing data after gzip member"),
//   DataLoss "corrupt zstd stream: ..." likewise (libzstd's reason included),
//   InvalidArgument for a gzip member with an unsupported header (not deflate).
// Multi-member gzip and multi-frame zstd streams are decompressed as one stream
// (skippable zstd frames are skipped). zstd frames whose window exceeds 128 MiB are
// refused (libzstd's default limit) so that a hostile blob cannot claim gigabytes.
Result<std::unique_ptr<ByteSource>> Decompress(std::unique_ptr<ByteSource> in);

// Like Decompress, but the format is given (from the media type). InvalidArgument
// when the stream does not start with that format's magic, e.g. a "+gzip" layer that
// is not gzip; kNone passes `in` through unchecked.
Result<std::unique_ptr<ByteSource>> Decompress(std::unique_ptr<ByteSource> in,
                                               Compression compression);

}  // namespace strata::transfer
