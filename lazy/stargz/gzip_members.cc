#include "lazy/stargz/gzip_members.h"

#include <zlib.h>

#include <algorithm>
#include <climits>

namespace strata::lazy::stargz {

namespace {

constexpr size_t kBufferBytes = 256 << 10;
constexpr int kGzipWindowBits = 15 + 16;  // 32 KiB window, gzip header and trailer
constexpr int kMemLevel = 8;              // zlib's default

}  // namespace

struct GzipMemberWriter::Deflater {
  z_stream z{};
  ~Deflater() { deflateEnd(&z); }
};

Result<std::unique_ptr<GzipMemberWriter>> GzipMemberWriter::Create(registry::BlobSink sink,
                                                                   int level) {
  if (level < -1 || level > 9) {
    return Status::InvalidArgument("gzip level " + std::to_string(level) +
                                   " is not -1 (default) or 0 to 9");
  }
  auto deflater = std::make_unique<Deflater>();
  if (deflateInit2(&deflater->z, level, Z_DEFLATED, kGzipWindowBits, kMemLevel,
                   Z_DEFAULT_STRATEGY) != Z_OK) {
    // deflateEnd on a stream whose init failed is harmless (Z_STREAM_ERROR).
    return Status::Internal("zlib deflateInit2 failed");
  }
  return std::unique_ptr<GzipMemberWriter>(
      new GzipMemberWriter(std::move(sink), std::move(deflater)));
}

GzipMemberWriter::GzipMemberWriter(registry::BlobSink sink, std::unique_ptr<Deflater> deflater)
    : sink_(std::move(sink)), deflater_(std::move(deflater)), buffer_(kBufferBytes, '\0') {}

GzipMemberWriter::~GzipMemberWriter() = default;

Status GzipMemberWriter::Fail(Status status) {
  if (error_.ok()) error_ = std::move(status);
  return error_;
}

Status GzipMemberWriter::Emit(std::string_view bytes) {
  if (bytes.empty()) return Status::Ok();
  blob_sha_.Update(bytes);
  Status status = sink_(bytes.data(), bytes.size());
  if (!status.ok()) return Fail(std::move(status));
  return Status::Ok();
}

Status GzipMemberWriter::Flush() {
  if (!error_.ok()) return error_;
  RETURN_IF_ERROR(Emit(std::string_view(buffer_.data(), buffered_)));
  buffered_ = 0;
  return Status::Ok();
}

Status GzipMemberWriter::Deflate(int flush) {
  z_stream& z = deflater_->z;
  for (;;) {
    if (buffered_ == buffer_.size()) RETURN_IF_ERROR(Flush());
    const size_t room = buffer_.size() - buffered_;
    z.next_out = reinterpret_cast<Bytef*>(buffer_.data() + buffered_);
    z.avail_out = static_cast<uInt>(room);
    const int rc = deflate(&z, flush);
    const size_t produced = room - z.avail_out;
    buffered_ += produced;
    offset_ += produced;
    if (rc == Z_STREAM_END) return Status::Ok();
    // Z_BUF_ERROR only says that no progress was possible this call.
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      return Fail(Status::Internal("zlib deflate failed (" + std::to_string(rc) + ")"));
    }
    if (flush == Z_NO_FLUSH && z.avail_in == 0) return Status::Ok();
  }
}

Status GzipMemberWriter::Write(std::string_view data) {
  if (!error_.ok()) return error_;
  if (data.empty()) return Status::Ok();
  z_stream& z = deflater_->z;
  if (!member_open_) {
    if (deflateReset(&z) != Z_OK) return Fail(Status::Internal("zlib deflateReset failed"));
    member_open_ = true;
  }
  uncompressed_sha_.Update(data);
  uncompressed_bytes_ += data.size();
  while (!data.empty()) {
    const size_t piece = std::min<size_t>(data.size(), UINT_MAX);
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    z.avail_in = static_cast<uInt>(piece);
    RETURN_IF_ERROR(Deflate(Z_NO_FLUSH));
    data.remove_prefix(piece);
  }
  return Status::Ok();
}

Status GzipMemberWriter::EndMember() {
  if (!error_.ok()) return error_;
  if (!member_open_) return Status::Ok();
  deflater_->z.avail_in = 0;
  RETURN_IF_ERROR(Deflate(Z_FINISH));
  member_open_ = false;
  return Status::Ok();
}

Status GzipMemberWriter::WriteRaw(std::string_view bytes) {
  RETURN_IF_ERROR(EndMember());
  RETURN_IF_ERROR(Flush());
  RETURN_IF_ERROR(Emit(bytes));
  offset_ += bytes.size();
  return Status::Ok();
}

}  // namespace strata::lazy::stargz
