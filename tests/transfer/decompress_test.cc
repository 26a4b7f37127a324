// Specification of the byte plumbing of layer unpacking: ByteSource helpers, Pipe, and
// decompression (decompress.h).
#include "transfer/decompress.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "core/digest.h"
#include "tests/transfer/unpack_test_support.h"
#include "transfer/byte_source.h"
#include "transfer/pipe.h"

namespace strata::transfer {
namespace {

using testing::CompressibleBytes;
using testing::GzipCompress;
using testing::RandomBytes;
using testing::ZstdCompress;

// Serves a string at most `piece` bytes per Read, to exercise every refill path.
class DribbleSource : public ByteSource {
 public:
  DribbleSource(std::string data, size_t piece) : data_(std::move(data)), piece_(piece) {}
  Result<size_t> Read(char* buf, size_t n) override {
    size_t take = std::min({n, piece_, data_.size() - pos_});
    std::memcpy(buf, data_.data() + pos_, take);
    pos_ += take;
    return take;
  }

 private:
  std::string data_;
  size_t piece_;
  size_t pos_ = 0;
};

// Fails after serving `good` bytes.
class FailingSource : public ByteSource {
 public:
  explicit FailingSource(std::string good) : good_(std::move(good)) {}
  Result<size_t> Read(char* buf, size_t n) override {
    if (pos_ == good_.size()) return Status::Unavailable("connection reset");
    size_t take = std::min(n, good_.size() - pos_);
    std::memcpy(buf, good_.data() + pos_, take);
    pos_ += take;
    return take;
  }

 private:
  std::string good_;
  size_t pos_ = 0;
};

Result<std::string> DecompressAll(std::unique_ptr<ByteSource> in) {
  ASSIGN_OR_RETURN(auto out, Decompress(std::move(in)));
  return ReadAll(*out);
}

Result<std::string> DecompressString(std::string data) {
  return DecompressAll(NewStringSource(std::move(data)));
}

// Reads with an output buffer of `piece` bytes.
Result<std::string> DecompressInPieces(std::string data, size_t in_piece, size_t out_piece) {
  ASSIGN_OR_RETURN(auto out,
                   Decompress(std::make_unique<DribbleSource>(std::move(data), in_piece)));
  std::string result;
  std::vector<char> buf(out_piece);
  for (;;) {
    ASSIGN_OR_RETURN(size_t got, out->Read(buf.data(), buf.size()));
    if (got == 0) return result;
    result.append(buf.data(), got);
  }
}

TEST(ByteSourceTest, StringSourceServesItsBytesThenZero) {
  auto source = NewStringSource("hello");
  char buf[3];
  EXPECT_EQ(*source->Read(buf, 3), 3u);
  EXPECT_EQ(std::string(buf, 3), "hel");
  EXPECT_EQ(*source->Read(buf, 3), 2u);
  EXPECT_EQ(*source->Read(buf, 3), 0u);
  EXPECT_EQ(*source->Read(buf, 3), 0u);
}

TEST(ByteSourceTest, HashingSourceCountsAndHashesWhatPassedThrough) {
  std::string data = RandomBytes(100000, 1);
  HashingSource hashing(std::make_unique<DribbleSource>(data, 777));
  auto all = ReadAll(hashing);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(*all, data);
  EXPECT_EQ(hashing.bytes(), data.size());
  EXPECT_EQ(hashing.Digest(), Sha256Digest(data));
}

TEST(ByteSourceTest, FileSourceReadsTheFile) {
  testing::TempDir dir;
  testing::WriteFile(dir.Sub("f"), "file content");
  auto source = OpenFileSource(dir.Sub("f"));
  ASSERT_TRUE(source.ok());
  EXPECT_EQ(*ReadAll(**source), "file content");
  EXPECT_TRUE(OpenFileSource(dir.Sub("missing")).status().IsNotFound());
}

TEST(ByteSourceTest, ReadAllRefusesMoreThanTheLimit) {
  auto source = NewStringSource(std::string(100, 'x'));
  EXPECT_EQ(ReadAll(*source, 99).status().code(), Code::kResourceExhausted);
}

TEST(PipeTest, CarriesBytesFromAProducerThreadInOrder) {
  std::string data = RandomBytes(3 << 20, 2);
  Pipe pipe(64 * 1024);
  std::thread producer([&] {
    for (size_t pos = 0; pos < data.size(); pos += 10007) {
      ASSERT_TRUE(pipe.Write(data.data() + pos, std::min<size_t>(10007, data.size() - pos)).ok());
    }
    pipe.CloseWrite(Status::Ok());
  });
  auto received = ReadAll(pipe);
  producer.join();
  ASSERT_TRUE(received.ok()) << received.status().ToString();
  EXPECT_EQ(*received, data);
}

TEST(PipeTest, WriteLargerThanCapacityGoesThroughInPieces) {
  std::string data = RandomBytes(1 << 20, 3);
  Pipe pipe(1000);
  std::thread producer([&] {
    EXPECT_TRUE(pipe.Write(data.data(), data.size()).ok());
    pipe.CloseWrite(Status::Ok());
  });
  auto received = ReadAll(pipe);
  producer.join();
  EXPECT_EQ(*received, data);
}

TEST(PipeTest, ProducerErrorReachesTheReaderAfterTheBufferedBytes) {
  Pipe pipe(1024);
  ASSERT_TRUE(pipe.Write("abc", 3).ok());
  pipe.CloseWrite(Status::Unavailable("registry went away"));
  char buf[16];
  auto first = pipe.Read(buf, sizeof buf);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(std::string(buf, *first), "abc");
  auto second = pipe.Read(buf, sizeof buf);
  EXPECT_EQ(second.status().code(), Code::kUnavailable);
  EXPECT_EQ(second.status().message(), "registry went away");
}

TEST(PipeTest, CloseReadReleasesABlockedWriterWithTheReason) {
  Pipe pipe(16);
  Status write_status;
  std::thread producer([&] {
    std::string big(1000, 'x');
    write_status = pipe.Write(big.data(), big.size());  // blocks: nobody reads
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  pipe.CloseRead(Status::DataLoss("bad tar"));
  producer.join();
  EXPECT_EQ(write_status.code(), Code::kDataLoss);
  EXPECT_EQ(write_status.message(), "bad tar");
  EXPECT_EQ(pipe.Write("x", 1).code(), Code::kDataLoss);
}

TEST(PipeTest, WriteAfterCloseWriteFails) {
  Pipe pipe(16);
  pipe.CloseWrite(Status::Ok());
  EXPECT_TRUE(pipe.Write("x", 1).IsFailedPrecondition());
}

TEST(DecompressTest, GzipRoundTrip) {
  std::string data = CompressibleBytes(300000, 4);
  auto out = DecompressString(GzipCompress(data));
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(*out, data);
}

TEST(DecompressTest, GzipMultiMemberIsOneStream) {
  std::string a = CompressibleBytes(100000, 5);
  std::string b = RandomBytes(70000, 6);
  std::string c = "tail";
  std::string blob = GzipCompress(a) + GzipCompress(b) + GzipCompress("") + GzipCompress(c);
  auto out = DecompressString(blob);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(*out, a + b + c);
}

TEST(DecompressTest, GzipWithTinyInputAndOutputPieces) {
  std::string a = CompressibleBytes(20000, 7);
  std::string b = RandomBytes(5000, 8);
  std::string blob = GzipCompress(a) + GzipCompress(b);
  for (size_t in_piece : {1, 2, 3, 7, 100, 4096}) {
    for (size_t out_piece : {1, 13, 512, 65536}) {
      auto out = DecompressInPieces(blob, in_piece, out_piece);
      ASSERT_TRUE(out.ok()) << in_piece << "/" << out_piece << ": " << out.status().ToString();
      EXPECT_EQ(*out, a + b) << in_piece << "/" << out_piece;
    }
  }
}

TEST(DecompressTest, TruncatedGzipIsDataLoss) {
  std::string blob = GzipCompress(CompressibleBytes(100000, 9));
  for (size_t keep : {size_t{2}, size_t{10}, blob.size() / 2, blob.size() - 4, blob.size() - 1}) {
    auto out = DecompressString(blob.substr(0, keep));
    ASSERT_FALSE(out.ok()) << keep;
    EXPECT_EQ(out.status().code(), Code::kDataLoss) << keep;
    EXPECT_NE(out.status().message().find("truncated gzip stream"), std::string::npos)
        << out.status().message();
  }
}

TEST(DecompressTest, GzipWithWrongCrcIsDataLoss) {
  std::string blob = GzipCompress(CompressibleBytes(10000, 10));
  blob[blob.size() - 8] ^= 0x01;  // CRC-32 in the trailer
  auto out = DecompressString(blob);
  EXPECT_EQ(out.status().code(), Code::kDataLoss);
  EXPECT_NE(out.status().message().find("CRC-32"), std::string::npos) << out.status().message();
}

TEST(DecompressTest, GzipWithWrongLengthIsDataLoss) {
  std::string blob = GzipCompress(CompressibleBytes(10000, 11));
  blob[blob.size() - 4] ^= 0x01;  // ISIZE in the trailer
  EXPECT_EQ(DecompressString(blob).status().code(), Code::kDataLoss);
}

TEST(DecompressTest, CorruptDeflateDataIsDataLoss) {
  std::string blob = GzipCompress(RandomBytes(10000, 12));
  for (size_t i = 20; i < 60; i++) blob[i] = static_cast<char>(0xff);
  auto out = DecompressString(blob);
  EXPECT_EQ(out.status().code(), Code::kDataLoss);
  EXPECT_NE(out.status().message().find("corrupt gzip stream"), std::string::npos);
}

TEST(DecompressTest, TrailingGarbageAfterGzipIsDataLoss) {
  std::string data = CompressibleBytes(1000, 13);
  for (std::string garbage : {std::string("x"), std::string("garbage"), std::string(10, '\0')}) {
    auto out = DecompressString(GzipCompress(data) + garbage);
    ASSERT_FALSE(out.ok());
    EXPECT_EQ(out.status().code(), Code::kDataLoss);
    EXPECT_NE(out.status().message().find("trailing data after gzip member"), std::string::npos)
        << out.status().message();
  }
}

TEST(DecompressTest, SourceErrorsPassThrough) {
  std::string blob = GzipCompress(RandomBytes(200000, 14));
  auto out = DecompressAll(std::make_unique<FailingSource>(blob.substr(0, 1000)));
  EXPECT_EQ(out.status().code(), Code::kUnavailable);
}

TEST(DecompressTest, ZstdRoundTrip) {
  std::string data = CompressibleBytes(300000, 15);
  auto out = DecompressString(ZstdCompress(data));
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(*out, data);
}

TEST(DecompressTest, ZstdMultiFrameIsOneStream) {
  std::string a = CompressibleBytes(100000, 16);
  std::string b = RandomBytes(50000, 17);
  std::string blob = ZstdCompress(a) + ZstdCompress("") + ZstdCompress(b);
  auto out = DecompressString(blob);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(*out, a + b);
  auto pieces = DecompressInPieces(blob, 3, 17);
  ASSERT_TRUE(pieces.ok()) << pieces.status().ToString();
  EXPECT_EQ(*pieces, a + b);
}

TEST(DecompressTest, TruncatedZstdIsDataLoss) {
  std::string blob = ZstdCompress(CompressibleBytes(100000, 18));
  for (size_t keep : {size_t{4}, size_t{8}, blob.size() / 2, blob.size() - 1}) {
    auto out = DecompressString(blob.substr(0, keep));
    ASSERT_FALSE(out.ok()) << keep;
    EXPECT_EQ(out.status().code(), Code::kDataLoss) << keep;
    EXPECT_NE(out.status().message().find("truncated zstd stream"), std::string::npos)
        << out.status().message();
  }
}

TEST(DecompressTest, CorruptZstdIsDataLoss) {
  // Compressed data that does not decode, and stored (incompressible) data whose
  // content checksum does not match.
  for (std::string data : {CompressibleBytes(100000, 19), RandomBytes(100000, 19)}) {
    std::string blob = ZstdCompress(data, 1);
    for (size_t i = blob.size() / 2; i < blob.size() / 2 + 64; i++) blob[i] ^= 0x5a;
    auto out = DecompressString(blob);
    EXPECT_EQ(out.status().code(), Code::kDataLoss);
    EXPECT_NE(out.status().message().find("corrupt zstd stream"), std::string::npos)
        << out.status().message();
  }
}

TEST(DecompressTest, TrailingGarbageAfterZstdIsDataLoss) {
  auto out = DecompressString(ZstdCompress("data") + "garbage!");
  EXPECT_EQ(out.status().code(), Code::kDataLoss);
}

TEST(DecompressTest, PlainStreamPassesThrough) {
  std::string tar = std::string(1024, '\0') + "not compressed";
  auto out = DecompressString(tar);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(*out, tar);
  auto tiny = DecompressString("ab");
  ASSERT_TRUE(tiny.ok());
  EXPECT_EQ(*tiny, "ab");
  auto empty = DecompressString("");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, "");
}

TEST(DecompressTest, Bzip2AndXzAreRefusedAsUnimplemented) {
  EXPECT_EQ(DecompressString("BZh91AY&SY").status().code(), Code::kUnimplemented);
  EXPECT_EQ(DecompressString(std::string("\xfd"
                                         "7zXZ\0\0",
                                         8))
                .status()
                .code(),
            Code::kUnimplemented);
}

TEST(DecompressTest, ExplicitFormatMustMatchTheMagic) {
  auto gz = Decompress(NewStringSource(ZstdCompress("x")), Compression::kGzip);
  EXPECT_TRUE(gz.status().IsInvalidArgument());
  EXPECT_NE(gz.status().message().find("not a gzip stream"), std::string::npos);
  auto zst = Decompress(NewStringSource("plain tar"), Compression::kZstd);
  EXPECT_TRUE(zst.status().IsInvalidArgument());
  auto ok = Decompress(NewStringSource(GzipCompress("hello")), Compression::kGzip);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ReadAll(**ok), "hello");
  // kNone passes anything through, even compressed bytes.
  std::string gz_bytes = GzipCompress("hello");
  auto none = Decompress(NewStringSource(gz_bytes), Compression::kNone);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*ReadAll(**none), gz_bytes);
}

TEST(DecompressTest, MediaTypesMapToCompression) {
  EXPECT_EQ(*CompressionOfMediaType("application/vnd.oci.image.layer.v1.tar"), Compression::kNone);
  EXPECT_EQ(*CompressionOfMediaType("application/vnd.oci.image.layer.v1.tar+gzip"),
            Compression::kGzip);
  EXPECT_EQ(*CompressionOfMediaType("application/vnd.oci.image.layer.v1.tar+zstd"),
            Compression::kZstd);
  EXPECT_EQ(*CompressionOfMediaType("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"),
            Compression::kGzip);
  EXPECT_EQ(*CompressionOfMediaType("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Compression::kGzip);
  EXPECT_EQ(*CompressionOfMediaType("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"),
            Compression::kGzip);
  EXPECT_EQ(
      CompressionOfMediaType("application/vnd.oci.image.layer.v1.tar+encrypted").status().code(),
      Code::kUnimplemented);
  EXPECT_TRUE(CompressionOfMediaType("application/vnd.oci.image.config.v1+json")
                  .status()
                  .IsInvalidArgument());
}

// 64 MiB alternating incompressible and compressible megabytes, through each format.
// Checks the content by digest and logs the throughput (no timing assertion).
class BigStreamTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_ = new std::string();
    data_->reserve(64 << 20);
    for (int i = 0; i < 64; i++) {
      *data_ += i % 2 == 0 ? RandomBytes(1 << 20, 100 + i) : CompressibleBytes(1 << 20, 100 + i);
    }
  }
  static void TearDownTestSuite() { delete data_; }

  static double MegabytesPerSecond(size_t bytes, std::chrono::steady_clock::duration d) {
    return static_cast<double>(bytes) / 1e6 / std::chrono::duration<double>(d).count();
  }

  // Decompresses `blob` in 1 MiB reads, returning the digest of the output.
  static std::string DecompressTimed(const std::string& blob, const char* label) {
    std::string output(data_->size(), '\0');
    auto source = NewStringSource(blob);
    auto start = std::chrono::steady_clock::now();
    auto out = Decompress(BorrowSource(*source));
    EXPECT_TRUE(out.ok());
    if (!out.ok()) return "";
    size_t total = 0;
    for (;;) {
      size_t room = std::min<size_t>(1 << 20, output.size() - total);
      auto got = (*out)->Read(output.data() + total, room);
      EXPECT_TRUE(got.ok()) << got.status().ToString();
      if (!got.ok() || *got == 0) break;
      total += *got;
      if (total == output.size()) {
        char extra;
        auto end = (*out)->Read(&extra, 1);  // reaches the end: trailers are checked
        EXPECT_TRUE(end.ok() && *end == 0);
        break;
      }
    }
    auto elapsed = std::chrono::steady_clock::now() - start;
    std::printf("[ throughput ] %s: %zu MiB -> %.0f MB/s of output\n", label, total >> 20,
                MegabytesPerSecond(total, elapsed));
    output.resize(total);
    return Sha256Digest(output);
  }

  static std::string* data_;
};
std::string* BigStreamTest::data_ = nullptr;

TEST_F(BigStreamTest, Gzip64MiB) {
  std::string blob = GzipCompress(*data_, 6);
  EXPECT_EQ(DecompressTimed(blob, "gzip (ISA-L igzip)"), Sha256Digest(*data_));
  // zlib on the same blob, for comparison in the log.
  auto start = std::chrono::steady_clock::now();
  std::string out(data_->size(), '\0');
  uLongf out_len = out.size();
  z_stream z = {};
  inflateInit2(&z, 15 + 16);
  z.next_in = reinterpret_cast<Bytef*>(blob.data());
  z.avail_in = static_cast<uInt>(blob.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out_len);
  EXPECT_EQ(inflate(&z, Z_FINISH), Z_STREAM_END);
  inflateEnd(&z);
  std::printf("[ throughput ] gzip (zlib inflate, reference): %.0f MB/s of output\n",
              MegabytesPerSecond(out.size(), std::chrono::steady_clock::now() - start));
}

TEST_F(BigStreamTest, Zstd64MiB) {
  std::string blob = ZstdCompress(*data_, 3);
  EXPECT_EQ(DecompressTimed(blob, "zstd"), Sha256Digest(*data_));
}

TEST_F(BigStreamTest, Plain64MiB) {
  EXPECT_EQ(DecompressTimed(*data_, "plain"), Sha256Digest(*data_));
}

}  // namespace
}  // namespace strata::transfer
