// Footers of eStargz, legacy stargz and zstd:chunked blobs, and reading footer and TOC
// in one or two ranged reads.
#include <gtest/gtest.h>

#include "lazy/stargz/footer.h"
#include "tests/lazy/stargz_builder.h"
#include "tests/lazy/stargz_test_support.h"

namespace strata::lazy::stargz {
namespace {

using testing::BuildLayer;
using testing::BuildOptions;
using testing::File;
using testing::Layout;
using testing::StringBlobReader;

std::string Tail(const std::string& blob) {
  return blob.substr(blob.size() - std::min<size_t>(blob.size(), kMaxFooterBytes));
}

testing::BuiltLayer SmallLayer(Layout layout) {
  BuildOptions options;
  options.layout = layout;
  return BuildLayer({File("hello.txt", "hello world\n")}, options);
}

TEST(StargzFooter, ParsesEstargzFooter) {
  testing::BuiltLayer layer = SmallLayer(Layout::kEstargz);
  Result<Footer> footer = ParseFooter(Tail(layer.blob), layer.blob.size());
  ASSERT_TRUE(footer.ok()) << footer.status().ToString();
  EXPECT_EQ(footer->format, BlobFormat::kEstargz);
  EXPECT_EQ(footer->footer_bytes, 51u);
  EXPECT_EQ(footer->toc_offset, layer.toc_offset);
  EXPECT_EQ(footer->toc_bytes, layer.blob.size() - 51 - layer.toc_offset);
  EXPECT_EQ(footer->payload_end, layer.toc_offset);
  EXPECT_EQ(footer->toc_json_bytes, 0u);
}

TEST(StargzFooter, ParsesLegacyStargzFooter) {
  testing::BuiltLayer layer = SmallLayer(Layout::kLegacyStargz);
  Result<Footer> footer = ParseFooter(Tail(layer.blob), layer.blob.size());
  ASSERT_TRUE(footer.ok()) << footer.status().ToString();
  EXPECT_EQ(footer->format, BlobFormat::kLegacyStargz);
  EXPECT_EQ(footer->footer_bytes, 47u);
  EXPECT_EQ(footer->toc_offset, layer.toc_offset);
  EXPECT_EQ(footer->toc_bytes, layer.blob.size() - 47 - layer.toc_offset);
}

TEST(StargzFooter, ParsesZstdChunkedFooter) {
  testing::BuiltLayer layer = SmallLayer(Layout::kZstdChunked);
  Result<Footer> footer = ParseFooter(Tail(layer.blob), layer.blob.size());
  ASSERT_TRUE(footer.ok()) << footer.status().ToString();
  EXPECT_EQ(footer->format, BlobFormat::kZstdChunked);
  EXPECT_EQ(footer->footer_bytes, 48u);
  EXPECT_EQ(footer->toc_offset, layer.toc_offset);
  EXPECT_EQ(footer->toc_bytes, layer.blob.size() - 48 - layer.toc_offset);
  EXPECT_EQ(footer->toc_json_bytes, layer.toc_json.size());
  EXPECT_EQ(footer->payload_end, layer.toc_offset - 8);
}

TEST(StargzFooter, ParsesContainersStorageZstdChunkedFooter) {
  testing::BuiltLayer layer = SmallLayer(Layout::kZstdChunkedStorage);
  Result<Footer> footer = ParseFooter(Tail(layer.blob), layer.blob.size());
  ASSERT_TRUE(footer.ok()) << footer.status().ToString();
  EXPECT_EQ(footer->format, BlobFormat::kZstdChunked);
  EXPECT_EQ(footer->footer_bytes, 72u);
  EXPECT_EQ(footer->toc_offset, layer.toc_offset);
  EXPECT_EQ(footer->toc_json_bytes, layer.toc_json.size());
  // The tar-split frame sits between TOC and footer.
  EXPECT_LT(footer->toc_offset + footer->toc_bytes, layer.blob.size() - 72);
}

TEST(StargzFooter, RefusesPlainGzipLayer) {
  std::string blob = testing::Gzip(std::string(10000, 'x'));
  Result<Footer> footer = ParseFooter(Tail(blob), blob.size());
  ASSERT_FALSE(footer.ok());
  EXPECT_EQ(footer.status().code(), Code::kInvalidArgument);
  EXPECT_NE(footer.status().message().find("no eStargz, stargz or zstd:chunked footer"),
            std::string::npos);
}

TEST(StargzFooter, RefusesTocOffsetAtOrPastFooter) {
  testing::BuiltLayer layer = SmallLayer(Layout::kEstargz);
  std::string blob = layer.blob;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(blob.size() - 51));
  blob.replace(blob.size() - 51 + 16, 16, hex);
  Result<Footer> footer = ParseFooter(Tail(blob), blob.size());
  ASSERT_FALSE(footer.ok());
  EXPECT_NE(footer.status().message().find("is not before the footer"), std::string::npos)
      << footer.status().message();
}

TEST(StargzFooter, RefusesOffsetThatIsNotHex) {
  testing::BuiltLayer layer = SmallLayer(Layout::kEstargz);
  std::string blob = layer.blob;
  blob[blob.size() - 51 + 16] = 'g';
  EXPECT_FALSE(ParseFooter(Tail(blob), blob.size()).ok());
}

TEST(StargzFooter, RefusesZstdTocThatOverflowsTheBlob) {
  testing::BuiltLayer layer = SmallLayer(Layout::kZstdChunked);
  std::string blob = layer.blob;
  // Compressed TOC length: 2^64 - 1.
  blob.replace(blob.size() - 40 + 8, 8, std::string(8, '\xff'));
  Result<Footer> footer = ParseFooter(Tail(blob), blob.size());
  ASSERT_FALSE(footer.ok());
  EXPECT_NE(footer.status().message().find("does not fit before the footer"), std::string::npos)
      << footer.status().message();
}

TEST(StargzFooter, RefusesZstdFooterWithoutSkippableFrame) {
  testing::BuiltLayer layer = SmallLayer(Layout::kZstdChunked);
  std::string blob = layer.blob;
  blob[blob.size() - 48] = 0;
  EXPECT_FALSE(ParseFooter(Tail(blob), blob.size()).ok());
}

TEST(StargzFooter, RefusesBlobTooSmallForAFooter) {
  StringBlobReader blob("tiny");
  Result<FooterAndToc> read = ReadFooterAndToc(blob);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), Code::kInvalidArgument);
}

TEST(StargzFooter, ReadsFooterAndSmallTocInOneRead) {
  for (Layout layout : {Layout::kEstargz, Layout::kLegacyStargz, Layout::kZstdChunked,
                        Layout::kZstdChunkedStorage}) {
    testing::BuiltLayer layer = SmallLayer(layout);
    StringBlobReader blob(layer.blob);
    Result<FooterAndToc> read = ReadFooterAndToc(blob);
    ASSERT_TRUE(read.ok()) << read.status().ToString();
    EXPECT_EQ(blob.reads(), 1);
    EXPECT_EQ(read->compressed_toc, layer.blob.substr(layer.toc_offset, read->footer.toc_bytes));
  }
}

TEST(StargzFooter, ReadsTocLargerThanTheTailInTwoReads) {
  std::vector<testing::LayerEntry> entries;
  for (int i = 0; i < 400; i++) entries.push_back(File("file-" + std::to_string(i), "x"));
  for (Layout layout : {Layout::kEstargz, Layout::kZstdChunkedStorage}) {
    BuildOptions options;
    options.layout = layout;
    testing::BuiltLayer layer = BuildLayer(entries, options);
    StringBlobReader blob(layer.blob);
    ReadTocOptions read_options;
    read_options.tail_bytes = 1000;
    Result<FooterAndToc> read = ReadFooterAndToc(blob, read_options);
    ASSERT_TRUE(read.ok()) << read.status().ToString();
    ASSERT_GT(read->footer.toc_bytes, 1000u);
    EXPECT_EQ(blob.reads(), 2);
    EXPECT_EQ(read->compressed_toc, layer.blob.substr(layer.toc_offset, read->footer.toc_bytes));
  }
}

TEST(StargzFooter, RefusesTocOverTheLimit) {
  testing::BuiltLayer layer = SmallLayer(Layout::kEstargz);
  StringBlobReader blob(layer.blob);
  ReadTocOptions options;
  options.max_toc_bytes = 10;
  Result<FooterAndToc> read = ReadFooterAndToc(blob, options);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), Code::kResourceExhausted);
}

}  // namespace
}  // namespace strata::lazy::stargz
