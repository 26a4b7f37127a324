// Specification of GzipMemberWriter (lazy/stargz/gzip_members.h).
#include <gtest/gtest.h>

#include "core/digest.h"
#include "lazy/stargz/gzip_members.h"
#include "transfer/byte_source.h"
#include "transfer/decompress.h"

namespace strata::lazy::stargz {
namespace {

std::string Gunzip(std::string_view gzip) {
  auto source = transfer::Decompress(transfer::NewStringSource(std::string(gzip)),
                                     transfer::Compression::kGzip);
  EXPECT_TRUE(source.ok()) << source.status().ToString();
  if (!source.ok()) return "";
  Result<std::string> data = transfer::ReadAll(**source);
  EXPECT_TRUE(data.ok()) << data.status().ToString();
  return data.ok() ? *data : "";
}

// A writer appending the blob to `*bytes`.
std::unique_ptr<GzipMemberWriter> NewWriter(std::string* bytes, int level = -1) {
  auto writer = GzipMemberWriter::Create(
      [bytes](const char* data, size_t n) {
        bytes->append(data, n);
        return Status::Ok();
      },
      level);
  EXPECT_TRUE(writer.ok()) << writer.status().ToString();
  return writer.ok() ? std::move(writer).value() : nullptr;
}

TEST(GzipMemberWriterTest, EachMemberDecompressesFromItsOffset) {
  std::string blob;
  std::unique_ptr<GzipMemberWriter> writer = NewWriter(&blob);
  GzipMemberWriter& w = *writer;
  ASSERT_TRUE(w.Write("first member, ").ok());
  ASSERT_TRUE(w.Write("two writes").ok());
  ASSERT_TRUE(w.EndMember().ok());
  const uint64_t second = w.offset();
  ASSERT_TRUE(w.Write("second member").ok());
  EXPECT_TRUE(w.member_open());
  ASSERT_TRUE(w.EndMember().ok());
  ASSERT_TRUE(w.Flush().ok());
  EXPECT_EQ(w.offset(), blob.size());
  EXPECT_EQ(Gunzip(blob), "first member, two writessecond member");
  EXPECT_EQ(Gunzip(std::string_view(blob).substr(second)), "second member");
  EXPECT_EQ(Gunzip(std::string_view(blob).substr(0, second)), "first member, two writes");
}

TEST(GzipMemberWriterTest, NoMemberIsEverEmpty) {
  std::string blob;
  std::unique_ptr<GzipMemberWriter> writer = NewWriter(&blob);
  GzipMemberWriter& w = *writer;
  ASSERT_TRUE(w.EndMember().ok());
  ASSERT_TRUE(w.Write("").ok());
  ASSERT_TRUE(w.EndMember().ok());
  EXPECT_FALSE(w.member_open());
  ASSERT_TRUE(w.Flush().ok());
  EXPECT_EQ(w.offset(), 0u);
  EXPECT_TRUE(blob.empty());
}

TEST(GzipMemberWriterTest, RawBytesCountInTheBlobNotTheData) {
  std::string blob;
  std::unique_ptr<GzipMemberWriter> writer = NewWriter(&blob, 9);
  GzipMemberWriter& w = *writer;
  ASSERT_TRUE(w.Write("data").ok());
  ASSERT_TRUE(w.WriteRaw("RAW").ok());  // ends the member first
  ASSERT_TRUE(w.Flush().ok());
  EXPECT_EQ(blob.substr(blob.size() - 3), "RAW");
  EXPECT_EQ(Gunzip(std::string_view(blob).substr(0, blob.size() - 3)), "data");
  EXPECT_EQ(w.offset(), blob.size());
  EXPECT_EQ(w.uncompressed_bytes(), 4u);
  EXPECT_EQ(w.UncompressedDigest(), Sha256Digest("data"));
  EXPECT_EQ(w.BlobDigest(), Sha256Digest(blob));
}

TEST(GzipMemberWriterTest, SinkErrorsAreSticky) {
  int calls = 0;
  auto writer = GzipMemberWriter::Create(
      [&](const char*, size_t) {
        calls++;
        return Status::Unavailable("gone");
      },
      1);
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Write("x").ok());  // buffered
  EXPECT_EQ((*writer)->Flush().code(), Code::kUnavailable);
  EXPECT_EQ((*writer)->Write("y").code(), Code::kUnavailable);
  EXPECT_EQ((*writer)->EndMember().code(), Code::kUnavailable);
  EXPECT_EQ(calls, 1);
}

TEST(GzipMemberWriterTest, RefusesLevelsZlibDoesNotHave) {
  auto sink = [](const char*, size_t) { return Status::Ok(); };
  EXPECT_TRUE(GzipMemberWriter::Create(sink, 10).status().IsInvalidArgument());
  EXPECT_TRUE(GzipMemberWriter::Create(sink, -2).status().IsInvalidArgument());
}

}  // namespace
}  // namespace strata::lazy::stargz
