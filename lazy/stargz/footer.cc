#include "lazy/stargz/footer.h"

#include <algorithm>
#include <cstring>

namespace strata::lazy::stargz {

namespace {

constexpr size_t kEstargzFooterBytes = 51;
constexpr size_t kLegacyFooterBytes = 47;
constexpr size_t kSkippableHeaderBytes = 8;
constexpr size_t kZstdChunkedPayloadBytes = 40;  // stargz-snapshotter's
constexpr size_t kZstdStoragePayloadBytes = 64;  // containers/storage's
constexpr std::string_view kStargzMagic = "STARGZ";
constexpr std::string_view kZstdChunkedMagic = "GnUlInUx";
constexpr std::string_view kZstdStorageMagic = "GNUlInUx";
constexpr unsigned char kSkippableFrameMagic[] = {0x50, 0x2a, 0x4d, 0x18};
constexpr uint64_t kManifestTypeCrfs = 1;

uint16_t Le16(std::string_view b, size_t at) {
  return static_cast<uint16_t>(static_cast<unsigned char>(b[at]) |
                               static_cast<unsigned char>(b[at + 1]) << 8);
}

uint32_t Le32(std::string_view b, size_t at) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = v << 8 | static_cast<unsigned char>(b[at + i]);
  return v;
}

uint64_t Le64(std::string_view b, size_t at) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | static_cast<unsigned char>(b[at + i]);
  return v;
}

// 16 hex digits (either case, as Go's strconv accepts them) to a number.
Result<uint64_t> ParseHex16(std::string_view digits) {
  uint64_t v = 0;
  for (char c : digits) {
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else {
      return Status::InvalidArgument("TOC offset in the footer is not 16 hex digits");
    }
    v = v << 4 | static_cast<uint64_t>(d);
  }
  return v;
}

// The gzip header of a stargz footer: magic, deflate, only FEXTRA set, and XLEN.
Status CheckGzipFooterHeader(std::string_view f, uint16_t xlen) {
  if (static_cast<unsigned char>(f[0]) != 0x1f || static_cast<unsigned char>(f[1]) != 0x8b ||
      f[2] != 8) {
    return Status::InvalidArgument("not a gzip member");
  }
  if (f[3] != 0x04) return Status::InvalidArgument("gzip flags are not FEXTRA alone");
  if (Le16(f, 10) != xlen) {
    return Status::InvalidArgument("gzip extra field is " + std::to_string(Le16(f, 10)) +
                                   " bytes, not " + std::to_string(xlen));
  }
  return Status::Ok();
}

// The TOC of a gzip layout runs from its offset up to the footer.
Result<Footer> GzipFooter(BlobFormat format, uint64_t footer_bytes, std::string_view subfield,
                          uint64_t blob_size) {
  if (subfield.substr(16) != kStargzMagic) {
    return Status::InvalidArgument("no STARGZ magic in the gzip extra field");
  }
  ASSIGN_OR_RETURN(uint64_t toc_offset, ParseHex16(subfield.substr(0, 16)));
  if (toc_offset >= blob_size - footer_bytes) {
    return Status::InvalidArgument("TOC offset " + std::to_string(toc_offset) +
                                   " is not before the footer at " +
                                   std::to_string(blob_size - footer_bytes));
  }
  Footer footer;
  footer.format = format;
  footer.footer_bytes = footer_bytes;
  footer.toc_offset = toc_offset;
  footer.toc_bytes = blob_size - footer_bytes - toc_offset;
  footer.payload_end = toc_offset;
  return footer;
}

Result<Footer> ParseEstargz(std::string_view tail, uint64_t blob_size) {
  if (tail.size() < kEstargzFooterBytes) return Status::InvalidArgument("blob too small");
  std::string_view f = tail.substr(tail.size() - kEstargzFooterBytes);
  RETURN_IF_ERROR(CheckGzipFooterHeader(f, 26));
  if (f[12] != 'S' || f[13] != 'G') return Status::InvalidArgument("subfield ID is not SG");
  if (Le16(f, 14) != 22) return Status::InvalidArgument("subfield length is not 22");
  return GzipFooter(BlobFormat::kEstargz, kEstargzFooterBytes, f.substr(16, 22), blob_size);
}

Result<Footer> ParseLegacy(std::string_view tail, uint64_t blob_size) {
  if (tail.size() < kLegacyFooterBytes) return Status::InvalidArgument("blob too small");
  std::string_view f = tail.substr(tail.size() - kLegacyFooterBytes);
  RETURN_IF_ERROR(CheckGzipFooterHeader(f, 22));
  return GzipFooter(BlobFormat::kLegacyStargz, kLegacyFooterBytes, f.substr(12, 22), blob_size);
}

Result<Footer> ParseZstdChunked(std::string_view tail, uint64_t blob_size) {
  if (tail.size() < kSkippableHeaderBytes + kZstdChunkedPayloadBytes) {
    return Status::InvalidArgument("blob too small");
  }
  std::string_view magic = tail.substr(tail.size() - 8);
  size_t payload_bytes;
  if (magic == kZstdChunkedMagic) {
    payload_bytes = kZstdChunkedPayloadBytes;
  } else if (magic == kZstdStorageMagic) {
    payload_bytes = kZstdStoragePayloadBytes;
  } else {
    return Status::InvalidArgument("no zstd:chunked magic");
  }
  uint64_t footer_bytes = kSkippableHeaderBytes + payload_bytes;
  if (tail.size() < footer_bytes) return Status::InvalidArgument("blob too small");
  std::string_view f = tail.substr(tail.size() - footer_bytes);
  if (std::memcmp(f.data(), kSkippableFrameMagic, 4) != 0 || Le32(f, 4) != payload_bytes) {
    return Status::InvalidArgument("footer is not a skippable frame of " +
                                   std::to_string(payload_bytes) + " bytes");
  }
  std::string_view p = f.substr(kSkippableHeaderBytes);
  Footer footer;
  footer.format = BlobFormat::kZstdChunked;
  footer.footer_bytes = footer_bytes;
  footer.toc_offset = Le64(p, 0);
  footer.toc_bytes = Le64(p, 8);
  footer.toc_json_bytes = Le64(p, 16);
  if (Le64(p, 24) != kManifestTypeCrfs) {
    return Status::InvalidArgument("manifest type " + std::to_string(Le64(p, 24)) +
                                   " is not 1 (CRFS)");
  }
  uint64_t limit = blob_size - footer_bytes;
  if (footer.toc_offset < kSkippableHeaderBytes || footer.toc_bytes == 0 ||
      footer.toc_offset > limit || footer.toc_bytes > limit - footer.toc_offset) {
    return Status::InvalidArgument(
        "TOC at " + std::to_string(footer.toc_offset) + " (" + std::to_string(footer.toc_bytes) +
        " bytes) does not fit before the footer at " + std::to_string(limit));
  }
  footer.payload_end = footer.toc_offset - kSkippableHeaderBytes;
  return footer;
}

}  // namespace

std::string_view BlobFormatName(BlobFormat format) {
  switch (format) {
    case BlobFormat::kEstargz:
      return "eStargz";
    case BlobFormat::kLegacyStargz:
      return "legacy stargz";
    case BlobFormat::kZstdChunked:
      return "zstd:chunked";
  }
  return "unknown";
}

Result<Footer> ParseFooter(std::string_view tail, uint64_t blob_size) {
  if (tail.size() > blob_size) {
    return Status::InvalidArgument("footer bytes exceed the blob size");
  }
  Result<Footer> estargz = ParseEstargz(tail, blob_size);
  if (estargz.ok()) return estargz;
  Result<Footer> legacy = ParseLegacy(tail, blob_size);
  if (legacy.ok()) return legacy;
  Result<Footer> zstd = ParseZstdChunked(tail, blob_size);
  if (zstd.ok()) return zstd;
  return Status::InvalidArgument(
      "no eStargz, stargz or zstd:chunked footer at the end of the blob (eStargz: " +
      estargz.status().message() + "; legacy stargz: " + legacy.status().message() +
      "; zstd:chunked: " + zstd.status().message() + ")");
}

Status ReadFully(BlobReader& blob, char* buf, size_t n, uint64_t offset) {
  size_t have = 0;
  while (have < n) {
    ASSIGN_OR_RETURN(size_t got, blob.ReadAt(buf + have, n - have, offset + have));
    if (got == 0) {
      return Status::DataLoss("blob " + blob.digest() + " ended at byte " +
                              std::to_string(offset + have) + " of " + std::to_string(blob.size()) +
                              " it claims");
    }
    have += got;
  }
  return Status::Ok();
}

Result<FooterAndToc> ReadFooterAndToc(BlobReader& blob, const ReadTocOptions& options) {
  const uint64_t blob_size = blob.size();
  if (blob_size < kLegacyFooterBytes) {
    return Status::InvalidArgument("blob " + blob.digest() + " of " + std::to_string(blob_size) +
                                   " bytes is too small to hold a footer");
  }
  const uint64_t tail_len =
      std::min<uint64_t>(blob_size, uint64_t{options.tail_bytes} + kMaxFooterBytes);
  const uint64_t tail_start = blob_size - tail_len;
  std::string tail(tail_len, '\0');
  RETURN_IF_ERROR(ReadFully(blob, tail.data(), tail.size(), tail_start));

  Result<Footer> parsed = ParseFooter(tail, blob_size);
  if (!parsed.ok()) return parsed.status().WithContext("blob " + blob.digest());
  FooterAndToc out;
  out.footer = *parsed;
  const Footer& f = out.footer;
  if (f.toc_bytes > options.max_toc_bytes) {
    return Status(Code::kResourceExhausted,
                  "TOC of blob " + blob.digest() + " is " + std::to_string(f.toc_bytes) +
                      " bytes, over the limit of " + std::to_string(options.max_toc_bytes));
  }
  const uint64_t toc_end = f.toc_offset + f.toc_bytes;
  if (f.toc_offset >= tail_start) {
    out.compressed_toc = tail.substr(f.toc_offset - tail_start, f.toc_bytes);
    return out;
  }
  // The TOC starts before the tail: fetch what is missing in one more read.
  const uint64_t missing_end = std::min(toc_end, tail_start);
  out.compressed_toc.resize(f.toc_bytes);
  RETURN_IF_ERROR(
      ReadFully(blob, out.compressed_toc.data(), missing_end - f.toc_offset, f.toc_offset));
  if (toc_end > tail_start) {
    std::memcpy(out.compressed_toc.data() + (missing_end - f.toc_offset), tail.data(),
                toc_end - tail_start);
  }
  return out;
}

}  // namespace strata::lazy::stargz
