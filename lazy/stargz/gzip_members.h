// GzipMemberWriter: writes a gzip stream as a sequence of members (RFC 1952) so that a
// reader can start decompressing at any member's first byte, and tells where each
// member starts. The gzip layouts of lazily pullable blobs are built on it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/digest.h"
#include "core/status.h"
#include "registry/client.h"

namespace strata::lazy::stargz {

// Compresses with zlib's deflate and hands the blob front to back to a
// registry::BlobSink; an error the sink returns stops the writer, which returns that
// error as it is. Members are opened by the first Write after
// EndMember (or at the start) and closed by EndMember, so no member is ever empty.
// Compressed output is buffered (up to 256 KiB) and handed to the sink when the buffer
// fills and by Flush.
//
// Errors are sticky: after a failed call every call returns the same error.
// Not thread-safe.
class GzipMemberWriter {
 public:
  // `level` is zlib's: -1 (its default, 6) or 0 (stored) to 9. InvalidArgument for
  // other levels; Internal when zlib cannot be set up.
  static Result<std::unique_ptr<GzipMemberWriter>> Create(registry::BlobSink sink, int level);

  ~GzipMemberWriter();
  GzipMemberWriter(const GzipMemberWriter&) = delete;
  GzipMemberWriter& operator=(const GzipMemberWriter&) = delete;

  // Compresses `data` into the open member, opening one at offset() when none is.
  Status Write(std::string_view data);

  // Finishes the open member (its deflate end and gzip trailer); nothing when none is
  // open. The next Write starts a member at offset().
  Status EndMember();

  // Ends the open member, then appends `bytes` to the blob as they are, outside any
  // member (a footer). They count in the blob's size and digest, not as uncompressed
  // data.
  Status WriteRaw(std::string_view bytes);

  // Hands every buffered byte to the sink. An open member stays open.
  Status Flush();

  // Bytes of the blob so far, handed to the sink or buffered. While no member is open
  // this is where the next member will start.
  uint64_t offset() const { return offset_; }
  bool member_open() const { return member_open_; }

  // Bytes given to Write so far, and their SHA-256 ("sha256:<hex>").
  uint64_t uncompressed_bytes() const { return uncompressed_bytes_; }
  // Ends the digests: call once, after the last Write / WriteRaw and Flush.
  std::string UncompressedDigest() { return uncompressed_sha_.Digest(); }
  std::string BlobDigest() { return blob_sha_.Digest(); }

 private:
  struct Deflater;

  GzipMemberWriter(registry::BlobSink sink, std::unique_ptr<Deflater> deflater);
  // Runs deflate with `flush` until it has taken all input (and, for Z_FINISH, ended
  // the member), moving output to the buffer.
  Status Deflate(int flush);
  Status Emit(std::string_view bytes);
  Status Fail(Status status);

  registry::BlobSink sink_;
  std::unique_ptr<Deflater> deflater_;
  std::string buffer_;
  size_t buffered_ = 0;
  bool member_open_ = false;
  uint64_t offset_ = 0;
  uint64_t uncompressed_bytes_ = 0;
  Sha256 uncompressed_sha_;
  Sha256 blob_sha_;
  Status error_;
};

}  // namespace strata::lazy::stargz
