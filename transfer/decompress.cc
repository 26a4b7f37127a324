#include "transfer/decompress.h"

#include <isa-l/igzip_lib.h>
#include <zstd.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <string>
#include <vector>

#include "core/quote.h"

namespace strata::transfer {

namespace {

constexpr size_t kInputBufferBytes = 256 * 1024;

// Compressed input for a decompressor: a buffer refilled from the source, which may
// start with bytes already read to detect the format.
class CompressedInput {
 public:
  CompressedInput(std::unique_ptr<ByteSource> in, std::string_view prefix)
      : in_(std::move(in)), buf_(std::max(kInputBufferBytes, prefix.size())) {
    std::memcpy(buf_.data(), prefix.data(), prefix.size());
    end_ = prefix.size();
  }

  uint8_t* data() { return buf_.data() + pos_; }
  size_t available() const { return end_ - pos_; }
  void Consume(size_t n) { pos_ += n; }
  bool eof() const { return eof_; }

  // Reads more input after what is still unread (moving that to the front); at the end
  // of the source sets eof() and adds nothing.
  Status Refill() {
    if (eof_) return Status::Ok();
    if (pos_ > 0) {
      std::memmove(buf_.data(), buf_.data() + pos_, end_ - pos_);
      end_ -= pos_;
      pos_ = 0;
    }
    if (end_ == buf_.size()) return Status::Internal("decompressor consumed no input");
    ASSIGN_OR_RETURN(size_t got,
                     in_->Read(reinterpret_cast<char*>(buf_.data() + end_), buf_.size() - end_));
    if (got == 0) eof_ = true;
    end_ += got;
    return Status::Ok();
  }

 private:
  std::unique_ptr<ByteSource> in_;
  std::vector<uint8_t> buf_;
  size_t pos_ = 0;
  size_t end_ = 0;
  bool eof_ = false;
};

constexpr uint8_t kGzipMagic[] = {0x1f, 0x8b};
constexpr uint8_t kZstdMagic[] = {0x28, 0xb5, 0x2f, 0xfd};
constexpr uint8_t kBzip2Magic[] = {'B', 'Z', 'h'};
constexpr uint8_t kXzMagic[] = {0xfd, '7', 'z', 'X', 'Z', 0x00};

bool StartsWith(std::string_view data, const uint8_t* magic, size_t n) {
  return data.substr(0, n) == std::string_view(reinterpret_cast<const char*>(magic), n);
}

std::string IsalError(int code) {
  switch (code) {
    case ISAL_INVALID_BLOCK:
      return "invalid deflate block";
    case ISAL_INVALID_SYMBOL:
      return "invalid deflate symbol";
    case ISAL_INVALID_LOOKBACK:
      return "invalid deflate distance";
    case ISAL_INVALID_WRAPPER:
      return "invalid gzip header";
    case ISAL_UNSUPPORTED_METHOD:
      return "unsupported compression method in gzip header";
    case ISAL_INCORRECT_CHECKSUM:
      return "CRC-32 or length trailer does not match the data";
    case ISAL_NEED_DICT:
      return "stream needs a preset dictionary";
    default:
      return "igzip error " + std::to_string(code);
  }
}

class GzipSource : public ByteSource {
 public:
  GzipSource(std::unique_ptr<ByteSource> in, std::string_view prefix) : in_(std::move(in), prefix) {
    isal_inflate_init(&state_);
    state_.crc_flag = ISAL_GZIP;
  }

  Result<size_t> Read(char* buf, size_t n) override {
    if (done_ || n == 0) return size_t{0};
    uint32_t want = static_cast<uint32_t>(std::min<size_t>(n, UINT32_MAX));
    for (;;) {
      if (state_.block_state == ISAL_BLOCK_FINISH) {
        RETURN_IF_ERROR(StartNextMember());
        if (done_) return size_t{0};
      }
      if (in_.available() == 0) RETURN_IF_ERROR(in_.Refill());
      state_.next_in = in_.data();
      state_.avail_in = static_cast<uint32_t>(std::min<size_t>(in_.available(), UINT32_MAX));
      state_.next_out = reinterpret_cast<uint8_t*>(buf);
      state_.avail_out = want;
      uint32_t in_before = state_.avail_in;
      int rc = isal_inflate(&state_);
      in_.Consume(in_before - state_.avail_in);
      if (rc < 0) {
        Status err = rc == ISAL_UNSUPPORTED_METHOD
                         ? Status::InvalidArgument("gzip stream: " + IsalError(rc))
                         : Status::DataLoss("corrupt gzip stream: " + IsalError(rc));
        return Fail(err, "in member " + std::to_string(members_ + 1));
      }
      size_t produced = want - state_.avail_out;
      if (produced > 0) return produced;
      if (state_.block_state == ISAL_BLOCK_FINISH) continue;
      if (in_before == state_.avail_in) {
        if (in_.eof()) {
          return Fail(Status::DataLoss("truncated gzip stream"),
                      "input ended inside member " + std::to_string(members_ + 1));
        }
        RETURN_IF_ERROR(in_.Refill());
      }
    }
  }

 private:
  // Called when a member ended: the stream ends here, or another member follows.
  Status StartNextMember() {
    members_++;
    while (in_.available() < 2 && !in_.eof()) RETURN_IF_ERROR(in_.Refill());
    if (in_.available() == 0) {
      done_ = true;
      return Status::Ok();
    }
    if (in_.available() < 2 || std::memcmp(in_.data(), kGzipMagic, 2) != 0) {
      return Fail(Status::DataLoss("corrupt gzip stream: trailing data after gzip member"),
                  "after member " + std::to_string(members_));
    }
    isal_inflate_reset(&state_);
    state_.crc_flag = ISAL_GZIP;
    return Status::Ok();
  }

  Status Fail(const Status& status, const std::string& where) {
    done_ = true;
    return Status(status.code(), status.message() + " (" + where + ")");
  }

  CompressedInput in_;
  inflate_state state_;
  uint64_t members_ = 0;
  bool done_ = false;
};

class ZstdSource : public ByteSource {
 public:
  ZstdSource(std::unique_ptr<ByteSource> in, std::string_view prefix)
      : in_(std::move(in), prefix), stream_(ZSTD_createDStream()) {}
  ~ZstdSource() override { ZSTD_freeDStream(stream_); }

  Result<size_t> Read(char* buf, size_t n) override {
    if (done_ || n == 0) return size_t{0};
    if (stream_ == nullptr) return Status(Code::kResourceExhausted, "cannot allocate zstd stream");
    for (;;) {
      if (in_.available() == 0) RETURN_IF_ERROR(in_.Refill());
      ZSTD_inBuffer input{in_.data(), in_.available(), 0};
      ZSTD_outBuffer output{buf, n, 0};
      size_t rc = ZSTD_decompressStream(stream_, &output, &input);
      in_.Consume(input.pos);
      if (ZSTD_isError(rc)) {
        done_ = true;
        return Status::DataLoss(std::string("corrupt zstd stream: ") + ZSTD_getErrorName(rc));
      }
      // 0 means a frame just ended and everything it holds was flushed. A call that
      // moved nothing (no input left) says nothing about the frame.
      if (input.pos > 0 || output.pos > 0) frame_open_ = rc != 0;
      if (output.pos > 0) return output.pos;
      if (in_.available() == 0 && in_.eof()) {
        done_ = true;
        if (frame_open_) return Status::DataLoss("truncated zstd stream");
        return size_t{0};
      }
      if (input.pos == 0) RETURN_IF_ERROR(in_.Refill());
    }
  }

 private:
  CompressedInput in_;
  ZSTD_DStream* stream_;
  bool frame_open_ = true;  // no frame has been completed yet
  bool done_ = false;
};

// Serves bytes read ahead to detect the format, then the rest of the source.
class PrefixedSource : public ByteSource {
 public:
  PrefixedSource(std::unique_ptr<ByteSource> in, std::string prefix)
      : in_(std::move(in)), prefix_(std::move(prefix)) {}

  Result<size_t> Read(char* buf, size_t n) override {
    if (pos_ < prefix_.size()) {
      size_t take = std::min(n, prefix_.size() - pos_);
      std::memcpy(buf, prefix_.data() + pos_, take);
      pos_ += take;
      return take;
    }
    return in_->Read(buf, n);
  }

 private:
  std::unique_ptr<ByteSource> in_;
  std::string prefix_;
  size_t pos_ = 0;
};

// Reads up to `n` bytes, fewer only at the end of the stream.
Result<std::string> ReadPrefix(ByteSource& in, size_t n) {
  std::string prefix(n, '\0');
  size_t have = 0;
  while (have < n) {
    ASSIGN_OR_RETURN(size_t got, in.Read(prefix.data() + have, n - have));
    if (got == 0) break;
    have += got;
  }
  prefix.resize(have);
  return prefix;
}

std::string HexBytes(std::string_view data) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : data) {
    if (!out.empty()) out += ' ';
    out += kHex[c >> 4];
    out += kHex[c & 0xf];
  }
  return out.empty() ? "(empty stream)" : out;
}

Result<std::unique_ptr<ByteSource>> MakeDecompressor(std::unique_ptr<ByteSource> in,
                                                     std::string prefix, Compression compression) {
  switch (compression) {
    case Compression::kGzip:
      return std::unique_ptr<ByteSource>(std::make_unique<GzipSource>(std::move(in), prefix));
    case Compression::kZstd:
      return std::unique_ptr<ByteSource>(std::make_unique<ZstdSource>(std::move(in), prefix));
    case Compression::kNone:
      break;
  }
  return std::unique_ptr<ByteSource>(
      std::make_unique<PrefixedSource>(std::move(in), std::move(prefix)));
}

}  // namespace

std::string_view CompressionName(Compression compression) {
  switch (compression) {
    case Compression::kNone:
      return "none";
    case Compression::kGzip:
      return "gzip";
    case Compression::kZstd:
      return "zstd";
  }
  return "unknown";
}

Result<Compression> CompressionOfMediaType(std::string_view media_type) {
  // Parameters ("; foo=bar") do not change the format.
  std::string_view base = media_type.substr(0, media_type.find(';'));
  while (!base.empty() && base.back() == ' ') base.remove_suffix(1);
  static constexpr std::string_view kOciLayers[] = {
      "application/vnd.oci.image.layer.v1.tar",
      "application/vnd.oci.image.layer.nondistributable.v1.tar"};
  for (std::string_view layer : kOciLayers) {
    if (base.substr(0, layer.size()) != layer) continue;
    std::string_view suffix = base.substr(layer.size());
    if (suffix.empty()) return Compression::kNone;
    if (suffix == "+gzip") return Compression::kGzip;
    if (suffix == "+zstd") return Compression::kZstd;
    return Status::Unimplemented("layer media type " + Quote(media_type) + " is not supported");
  }
  if (base == "application/vnd.docker.image.rootfs.diff.tar.gzip" ||
      base == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip") {
    return Compression::kGzip;
  }
  if (base == "application/vnd.docker.image.rootfs.diff.tar" ||
      base == "application/vnd.docker.image.rootfs.foreign.diff.tar") {
    return Compression::kNone;
  }
  return Status::InvalidArgument("media type " + Quote(media_type) + " is not an image layer");
}

Result<std::unique_ptr<ByteSource>> Decompress(std::unique_ptr<ByteSource> in) {
  ASSIGN_OR_RETURN(std::string prefix, ReadPrefix(*in, sizeof kXzMagic));
  Compression compression = Compression::kNone;
  if (StartsWith(prefix, kGzipMagic, sizeof kGzipMagic)) {
    compression = Compression::kGzip;
  } else if (StartsWith(prefix, kZstdMagic, sizeof kZstdMagic)) {
    compression = Compression::kZstd;
  } else if (StartsWith(prefix, kBzip2Magic, sizeof kBzip2Magic)) {
    return Status::Unimplemented("bzip2-compressed layers are not supported");
  } else if (StartsWith(prefix, kXzMagic, sizeof kXzMagic)) {
    return Status::Unimplemented("xz-compressed layers are not supported");
  }
  return MakeDecompressor(std::move(in), std::move(prefix), compression);
}

Result<std::unique_ptr<ByteSource>> Decompress(std::unique_ptr<ByteSource> in,
                                               Compression compression) {
  if (compression == Compression::kNone) return in;
  ASSIGN_OR_RETURN(std::string prefix, ReadPrefix(*in, sizeof kZstdMagic));
  bool matches = compression == Compression::kGzip
                     ? StartsWith(prefix, kGzipMagic, sizeof kGzipMagic)
                     : StartsWith(prefix, kZstdMagic, sizeof kZstdMagic);
  if (!matches) {
    return Status::InvalidArgument("not a " + std::string(CompressionName(compression)) +
                                   " stream: it starts with " + HexBytes(prefix));
  }
  return MakeDecompressor(std::move(in), std::move(prefix), compression);
}

}  // namespace strata::transfer
