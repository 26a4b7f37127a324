// The TOC: decompression, digests, parsing into inodes, and refusal of hostile TOCs.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <nlohmann/json.hpp>

#include "core/digest.h"
#include "lazy/stargz/toc.h"
#include "tests/lazy/stargz_builder.h"
#include "tests/lazy/stargz_test_support.h"

namespace strata::lazy::stargz {
namespace {

using Json = nlohmann::json;
using testing::BuildLayer;
using testing::BuildOptions;
using testing::File;
using ::testing::HasSubstr;
using testing::Layout;
using testing::StringBlobReader;

const std::string kDigestX = Sha256Digest("x");

Result<Toc> Parse(const Json& entries, uint64_t payload_end = 1 << 20,
                  const TocLimits& limits = {}) {
  Json doc = {{"version", 1}, {"entries", entries}};
  return ParseTocJson(doc.dump(), BlobFormat::kEstargz, payload_end, limits);
}

Json Reg(const std::string& name, uint64_t size = 1, uint64_t offset = 100) {
  Json e = {{"name", name}, {"type", "reg"}, {"size", size}};
  if (size > 0) {
    e["offset"] = offset;
    e["chunkDigest"] = kDigestX;
  }
  return e;
}

// The inode at `path` in a parsed TOC, or nullptr.
const TocInode* Find(const Toc& toc, const std::string& path, fuse::Ino* ino_out = nullptr) {
  fuse::Ino ino = fuse::kRootIno;
  size_t pos = 0;
  while (pos < path.size()) {
    size_t slash = path.find('/', pos);
    if (slash == std::string::npos) slash = path.size();
    std::string name = path.substr(pos, slash - pos);
    pos = slash + 1;
    const TocInode* dir = toc.inode(ino);
    auto it = std::find_if(dir->children.begin(), dir->children.end(),
                           [&](const TocDirent& d) { return d.name == name; });
    if (it == dir->children.end()) return nullptr;
    ino = it->ino;
  }
  if (ino_out) *ino_out = ino;
  return toc.inode(ino);
}

void ExpectRefused(const Json& entries, const std::string& reason, uint64_t payload_end = 1 << 20) {
  Result<Toc> toc = Parse(entries, payload_end);
  ASSERT_FALSE(toc.ok()) << "accepted: " << entries.dump();
  EXPECT_EQ(toc.status().code(), Code::kInvalidArgument) << toc.status().ToString();
  EXPECT_THAT(toc.status().message(), HasSubstr(reason)) << entries.dump();
}

// ---- what a TOC says --------------------------------------------------------------

TEST(StargzToc, ParsesEveryEntryType) {
  Json entries = Json::array({
      {{"name", "dir/"},
       {"type", "dir"},
       {"mode", 01775},
       {"uid", 10},
       {"gid", 20},
       {"modtime", "2023-11-14T22:13:20Z"}},
      Reg("dir/file"),
      {{"name", "dir/link"}, {"type", "symlink"}, {"linkName", "file"}, {"mode", 0777}},
      {{"name", "dir/hard"}, {"type", "hardlink"}, {"linkName", "dir/file"}},
      {{"name", "dev/null"}, {"type", "char"}, {"devMajor", 1}, {"devMinor", 3}, {"mode", 0666}},
      {{"name", "dev/sda"}, {"type", "block"}, {"devMajor", 8}, {"devMinor", 0}},
      {{"name", "fifo"}, {"type", "fifo"}, {"mode", 0600}},
      {{"name", "x"},
       {"type", "reg"},
       {"xattrs", {{"user.a", "aGVsbG8="}, {"security.capability", "AQID"}}}},
  });
  Result<Toc> toc = Parse(entries);
  ASSERT_TRUE(toc.ok()) << toc.status().ToString();
  const TocInode* dir = Find(*toc, "dir");
  ASSERT_NE(dir, nullptr);
  EXPECT_EQ(dir->mode, S_IFDIR | 01775u);
  EXPECT_EQ(dir->uid, 10u);
  EXPECT_EQ(dir->gid, 20u);
  EXPECT_EQ(dir->mtime.tv_sec, 1700000000);
  const TocInode* link = Find(*toc, "dir/link");
  ASSERT_NE(link, nullptr);
  EXPECT_TRUE(S_ISLNK(link->mode));
  EXPECT_EQ(link->symlink_target, "file");
  EXPECT_EQ(link->size, 4u);
  const TocInode* null = Find(*toc, "dev/null");
  ASSERT_NE(null, nullptr);
  EXPECT_EQ(null->mode, S_IFCHR | 0666u);
  EXPECT_EQ(null->rdev, makedev(1, 3));
  EXPECT_TRUE(S_ISBLK(Find(*toc, "dev/sda")->mode));
  EXPECT_TRUE(S_ISFIFO(Find(*toc, "fifo")->mode));
  const TocInode* x = Find(*toc, "x");
  ASSERT_NE(x, nullptr);
  EXPECT_EQ(x->xattrs.at("user.a"), "hello");
  EXPECT_EQ(x->xattrs.at("security.capability"), std::string("\x01\x02\x03"));
}

TEST(StargzToc, CreatesImpliedParentDirectories) {
  Result<Toc> toc = Parse(Json::array({Reg("a/b/c")}));
  ASSERT_TRUE(toc.ok()) << toc.status().ToString();
  const TocInode* a = Find(*toc, "a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->mode, S_IFDIR | 0755u);
  EXPECT_EQ(a->nlink, 3u);  // ".", its entry in the root, "b/.."
  ASSERT_NE(Find(*toc, "a/b"), nullptr);
  ASSERT_NE(Find(*toc, "a/b/c"), nullptr);
}

TEST(StargzToc, DirectoryListedAfterItsChildrenTakesItsOwnAttributes) {
  Result<Toc> toc =
      Parse(Json::array({Reg("a/f"), {{"name", "a/"}, {"type", "dir"}, {"mode", 0700}}}));
  ASSERT_TRUE(toc.ok()) << toc.status().ToString();
  EXPECT_EQ(Find(*toc, "a")->mode, S_IFDIR | 0700u);
  EXPECT_EQ(Find(*toc, "a")->children.size(), 1u);
}

TEST(StargzToc, RootEntrySetsRootAttributes) {
  Result<Toc> toc = Parse(Json::array({{{"name", "./"}, {"type", "dir"}, {"mode", 0711}}}));
  ASSERT_TRUE(toc.ok()) << toc.status().ToString();
  EXPECT_EQ(toc->inode(fuse::kRootIno)->mode, S_IFDIR | 0711u);
}

TEST(StargzToc, CleansNames) {
  Result<Toc> toc = Parse(Json::array({Reg("./a//b/./c")}));
  ASSERT_TRUE(toc.ok()) << toc.status().ToString();
  EXPECT_NE(Find(*toc, "a/b/c"), nullptr);
}

TEST(StargzToc, HardLinksShareOneInodeAndCountLinks) {
  Result<Toc> toc = Parse(Json::array({
      {{"name", "early"}, {"type", "hardlink"}, {"linkName", "f"}},  // before its target
      Reg("f"),
      {{"name", "d/h1"}, {"type", "hardlink"}, {"linkName", "f"}},
      {{"name", "h2"}, {"type", "hardlink"}, {"linkName", "d/h1"}},  // a link to a link
  }));
  ASSERT_TRUE(toc.ok()) << toc.status().ToString();
  fuse::Ino f = 0, h1 = 0, h2 = 0, early = 0;
  ASSERT_NE(Find(*toc, "f", &f), nullptr);
  Find(*toc, "d/h1", &h1);
  Find(*toc, "h2", &h2);
  Find(*toc, "early", &early);
  EXPECT_EQ(f, h1);
  EXPECT_EQ(f, h2);
  EXPECT_EQ(f, early);
  EXPECT_EQ(toc->inode(f)->nlink, 4u);
}

TEST(StargzToc, ParsesChunksOfALargeFile) {
  Json entries = Json::array({
      {{"name", "big"},
       {"type", "reg"},
       {"size", 250},
       {"offset", 10},
       {"chunkSize", 100},
       {"chunkDigest", kDigestX}},
      {{"name", "big"},
       {"type", "chunk"},
       {"offset", 50},
       {"chunkOffset", 100},
       {"chunkSize", 100},
       {"chunkDigest", kDigestX}},
      // chunkSize 0: to the end of the file.
      {{"name", "big"},
       {"type", "chunk"},
       {"offset", 90},
       {"chunkOffset", 200},
       {"chunkDigest", kDigestX}},
      Reg("next", 1, 200),
  });
  Result<Toc> toc = Parse(entries, 1000);
  ASSERT_TRUE(toc.ok()) << toc.status().ToString();
  const TocInode* big = Find(*toc, "big");
  ASSERT_EQ(big->chunks.size(), 3u);
  EXPECT_EQ(big->chunks[0].blob_offset, 10u);
  EXPECT_EQ(big->chunks[0].blob_end, 50u);
  EXPECT_EQ(big->chunks[1].file_offset, 100u);
  EXPECT_EQ(big->chunks[1].blob_end, 90u);
  EXPECT_EQ(big->chunks[2].size, 50u);
  EXPECT_EQ(big->chunks[2].blob_end, 200u);                  // the next file's member
  EXPECT_EQ(Find(*toc, "next")->chunks[0].blob_end, 1000u);  // the end of the data
}

TEST(StargzToc, SingleChunkFileWithoutChunkDigestUsesTheFileDigest) {
  Json e = {{"name", "f"}, {"type", "reg"}, {"size", 1}, {"offset", 5}, {"digest", kDigestX}};
  Result<Toc> toc = Parse(Json::array({e}));
  ASSERT_TRUE(toc.ok()) << toc.status().ToString();
  EXPECT_EQ(Find(*toc, "f")->chunks[0].digest, kDigestX);
}

TEST(StargzToc, ZeroChunksNeedNoDataOrDigest) {
  Json entries = Json::array({
      {{"name", "sparse"},
       {"type", "reg"},
       {"size", 200},
       {"offset", 10},
       {"chunkSize", 100},
       {"chunkDigest", kDigestX}},
      {{"name", "sparse"},
       {"type", "chunk"},
       {"chunkOffset", 100},
       {"chunkSize", 100},
       {"chunkType", "zeros"}},
  });
  Result<Toc> toc = Parse(entries);
  ASSERT_TRUE(toc.ok()) << toc.status().ToString();
  EXPECT_TRUE(Find(*toc, "sparse")->chunks[1].zeros);
}

TEST(StargzToc, EndOffsetBoundsTheChunk) {
  Json e = Reg("f", 1, 10);
  e["endOffset"] = 30;
  Result<Toc> toc = Parse(Json::array({e, Reg("g", 1, 500)}));
  ASSERT_TRUE(toc.ok()) << toc.status().ToString();
  EXPECT_EQ(Find(*toc, "f")->chunks[0].blob_end, 30u);
}

TEST(StargzToc, ParsesTimesWithFractionsAndOffsets) {
  Result<Toc> toc = Parse(Json::array({
      {{"name", "a"}, {"type", "dir"}, {"modtime", "2023-11-14T22:13:20.5Z"}},
      {{"name", "b"}, {"type", "dir"}, {"modtime", "2023-11-14T23:13:20+01:00"}},
      {{"name", "c"}, {"type", "dir"}, {"modtime", "not a time"}},
  }));
  ASSERT_TRUE(toc.ok()) << toc.status().ToString();
  EXPECT_EQ(Find(*toc, "a")->mtime.tv_sec, 1700000000);
  EXPECT_EQ(Find(*toc, "a")->mtime.tv_nsec, 500000000);
  EXPECT_EQ(Find(*toc, "b")->mtime.tv_sec, 1700000000);
  EXPECT_EQ(Find(*toc, "c")->mtime.tv_sec, 0);
}

TEST(StargzToc, DropsOverlayfsXattrsFromTheLayer) {
  Result<Toc> toc = Parse(Json::array({
      {{"name", "d"},
       {"type", "dir"},
       {"xattrs", {{"trusted.overlay.opaque", "eQ=="}, {"user.overlay.redirect", "eQ=="}}}},
  }));
  ASSERT_TRUE(toc.ok()) << toc.status().ToString();
  EXPECT_TRUE(Find(*toc, "d")->xattrs.empty());
}

TEST(StargzToc, IgnoresUnknownFields) {
  Json e = Reg("f");
  e["accesstime"] = "2023-11-14T22:13:20Z";
  e["userName"] = "root";
  EXPECT_TRUE(Parse(Json::array({e})).ok());
}

// ---- landmarks ------------------------------------------------------------------------

TEST(StargzToc, PrefetchLandmarkMarksTheEndOfThePrefetchRange) {
  BuildOptions options;
  options.prefetch_landmark_after = 2;
  testing::BuiltLayer layer =
      BuildLayer({File("first", "1"), File("second", "2"), File("third", "3")}, options);
  Result<Footer> footer = ParseFooter(layer.blob.substr(layer.blob.size() - 51), layer.blob.size());
  ASSERT_TRUE(footer.ok());
  Result<Toc> toc = ParseTocJson(layer.toc_json, BlobFormat::kEstargz, footer->payload_end);
  ASSERT_TRUE(toc.ok()) << toc.status().ToString();
  EXPECT_EQ(toc->prefetch, PrefetchHint::kLandmark);
  EXPECT_EQ(toc->prefetch_end, layer.landmark_offset);
  EXPECT_LT(Find(*toc, "second")->chunks[0].blob_offset, toc->prefetch_end);
  EXPECT_GT(Find(*toc, "third")->chunks[0].blob_offset, toc->prefetch_end);
}

TEST(StargzToc, NoPrefetchLandmarkMeansNoPrefetch) {
  Json landmark = Reg(".no.prefetch.landmark", 1, 10);
  Result<Toc> toc = Parse(Json::array({landmark, Reg("f", 1, 50)}));
  ASSERT_TRUE(toc.ok());
  EXPECT_EQ(toc->prefetch, PrefetchHint::kNone);
}

TEST(StargzToc, NoLandmarkLeavesPrefetchUnspecified) {
  Result<Toc> toc = Parse(Json::array({Reg("f")}));
  ASSERT_TRUE(toc.ok());
  EXPECT_EQ(toc->prefetch, PrefetchHint::kUnspecified);
}

// ---- hostile and broken TOCs -------------------------------------------------------------

TEST(StargzToc, RefusesNamesWithDotDot) {
  ExpectRefused(Json::array({Reg("../etc/passwd")}), "\"..\"");
  ExpectRefused(Json::array({Reg("a/../../b")}), "\"..\"");
  ExpectRefused(Json::array({{{"name", "l"}, {"type", "hardlink"}, {"linkName", "../x"}}}),
                "\"..\"");
}

TEST(StargzToc, RefusesAbsoluteNames) {
  ExpectRefused(Json::array({Reg("/etc/passwd")}), "absolute");
}

TEST(StargzToc, RefusesEmptyAndNulNames) {
  ExpectRefused(Json::array({Reg("")}), "empty name");
  ExpectRefused(Json::array({Reg(std::string("a\0b", 3))}), "NUL");
  ExpectRefused(Json::array({Reg(std::string(300, 'n'))}), "255 bytes");
}

TEST(StargzToc, RefusesDuplicateEntries) {
  ExpectRefused(Json::array({Reg("a"), Reg("./a")}), "duplicate entry");
  ExpectRefused(Json::array({{{"name", "d"}, {"type", "dir"}}, {{"name", "d/"}, {"type", "dir"}}}),
                "duplicate entry");
  ExpectRefused(Json::array({Reg("a"), {{"name", "a"}, {"type", "hardlink"}, {"linkName", "a"}}}),
                "duplicate entry");
  ExpectRefused(Json::array({{{"name", "."}, {"type", "dir"}}, {{"name", "/"}, {"type", "dir"}}}),
                "");
}

TEST(StargzToc, RefusesEntriesUnderANonDirectory) {
  ExpectRefused(Json::array({Reg("f"), Reg("f/x")}), "is not a directory");
  ExpectRefused(Json::array({Reg("f/x"), Reg("f")}), "duplicate entry");
}

TEST(StargzToc, RefusesBrokenHardLinks) {
  ExpectRefused(Json::array({{{"name", "l"}, {"type", "hardlink"}, {"linkName", "missing"}}}),
                "not in the TOC");
  ExpectRefused(Json::array({{{"name", "a"}, {"type", "hardlink"}, {"linkName", "b"}},
                             {{"name", "b"}, {"type", "hardlink"}, {"linkName", "a"}}}),
                "cycle");
  ExpectRefused(Json::array({{{"name", "a"}, {"type", "hardlink"}, {"linkName", "a"}}}), "cycle");
  ExpectRefused(Json::array({{{"name", "d"}, {"type", "dir"}},
                             {{"name", "l"}, {"type", "hardlink"}, {"linkName", "d"}}}),
                "points to directory");
}

TEST(StargzToc, RefusesChunksOutsideTheBlobData) {
  ExpectRefused(Json::array({Reg("f", 1, 5000)}), "outside the blob's data", 1000);
  Json e = Reg("f", 1, 10);
  e["endOffset"] = 2000;
  ExpectRefused(Json::array({e}), "endOffset", 1000);
  e["endOffset"] = 5;
  ExpectRefused(Json::array({e}), "endOffset", 1000);
}

TEST(StargzToc, RefusesChunksThatDoNotCoverTheFile) {
  auto chunk = [](uint64_t chunk_offset, uint64_t size) {
    return Json{{"name", "f"},
                {"type", "chunk"},
                {"offset", 50 + chunk_offset},
                {"chunkOffset", chunk_offset},
                {"chunkSize", size},
                {"chunkDigest", kDigestX}};
  };
  Json head = {{"name", "f"},  {"type", "reg"},    {"size", 300},
               {"offset", 10}, {"chunkSize", 100}, {"chunkDigest", kDigestX}};
  ExpectRefused(Json::array({head, chunk(150, 150)}), "leave a gap");
  ExpectRefused(Json::array({head, chunk(50, 250)}), "overlap");
  ExpectRefused(Json::array({head, chunk(100, 100)}), "cover 200 of its 300 bytes");
  ExpectRefused(Json::array({head, chunk(100, 500)}), "runs past");
  Json huge = Reg("g", uint64_t{1} << 40, 10);  // one tiny chunk claiming a terabyte
  huge["chunkSize"] = 100;
  ExpectRefused(Json::array({huge}), "cover 100 of its");
  ExpectRefused(Json::array({Reg("g", uint64_t{1} << 40, 10)}), "over the limit");
}

TEST(StargzToc, RefusesChunksWithoutUsableDigests) {
  Json no_digest = {{"name", "f"}, {"type", "reg"}, {"size", 1}, {"offset", 10}};
  ExpectRefused(Json::array({no_digest}), "without chunkDigest");
  Json md5 = Reg("f");
  md5["chunkDigest"] = "md5:d41d8cd98f00b204e9800998ecf8427e";
  ExpectRefused(Json::array({md5}), "not a sha256 digest");
  Json multi = {{"name", "f"},  {"type", "reg"},  {"size", 2},
                {"offset", 10}, {"chunkSize", 1}, {"digest", kDigestX}};
  ExpectRefused(
      Json::array(
          {multi,
           {{"type", "chunk"}, {"offset", 20}, {"chunkOffset", 1}, {"chunkDigest", kDigestX}}}),
      "without chunkDigest");
}

TEST(StargzToc, RefusesChunkEntriesWithoutTheirFile) {
  Json chunk = {{"type", "chunk"}, {"offset", 20}, {"chunkOffset", 1}, {"chunkDigest", kDigestX}};
  ExpectRefused(Json::array({chunk}), "without a regular file before it");
  ExpectRefused(Json::array({{{"name", "d"}, {"type", "dir"}}, chunk}), "without a regular file");
  ExpectRefused(Json::array({Reg("f", 0), chunk}), "chunk entry of an empty file");
  Json other = chunk;
  other["name"] = "other";
  ExpectRefused(Json::array({Reg("f", 2), other}), "does not belong to");
}

TEST(StargzToc, RefusesMalformedFields) {
  ExpectRefused(Json::array({{{"name", 7}, {"type", "reg"}}}), "name is not a string");
  ExpectRefused(Json::array({{{"name", "f"}, {"type", "reg"}, {"size", -1}}}), "negative");
  ExpectRefused(Json::array({{{"name", "f"}, {"type", "reg"}, {"size", 1.5}}}), "not an integer");
  ExpectRefused(Json::array({{{"name", "f"}, {"type", "reg"}, {"uid", 4294967295u}}}),
                "out of range");
  ExpectRefused(Json::array({{{"name", "f"}, {"type", "socket"}}}), "unknown type");
  ExpectRefused(Json::array({{{"name", "s"}, {"type", "symlink"}}}), "without linkName");
  ExpectRefused(Json::array({{{"name", "f"}, {"type", "dir"}, {"xattrs", {{"user.a", "!!"}}}}}),
                "base64");
  ExpectRefused(Json::array({{{"name", "f"}, {"type", "dir"}, {"xattrs", "x"}}}), "not an object");
  ExpectRefused(Json::array({42}), "is not an object");
  ExpectRefused(Json::array({{{"name", "./"}, {"type", "reg"}}}), "root is not a directory");
}

TEST(StargzToc, RefusesMalformedDocuments) {
  EXPECT_EQ(ParseTocJson("{", BlobFormat::kEstargz, 100).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ParseTocJson("[]", BlobFormat::kEstargz, 100).status().code(), Code::kInvalidArgument);
  EXPECT_THAT(
      ParseTocJson(R"({"version":2,"entries":[]})", BlobFormat::kEstargz, 100).status().message(),
      HasSubstr("version"));
  EXPECT_THAT(ParseTocJson(R"({"version":1})", BlobFormat::kEstargz, 100).status().message(),
              HasSubstr("entries"));
  std::string deep =
      R"({"version":1,"entries":)" + std::string(100000, '[') + std::string(100000, ']') + "}";
  EXPECT_THAT(ParseTocJson(deep, BlobFormat::kEstargz, 100).status().message(),
              HasSubstr("nests too deeply"));
  TocLimits limits;
  limits.max_json_bytes = 10;
  EXPECT_EQ(ParseTocJson(R"({"version":1,"entries":[]})", BlobFormat::kEstargz, 100, limits)
                .status()
                .code(),
            Code::kResourceExhausted);
}

// ---- decompression and verification ----------------------------------------------------

class StargzTocLayouts : public ::testing::TestWithParam<Layout> {};

TEST_P(StargzTocLayouts, TocDigestIsTheSha256OfTheTocJson) {
  BuildOptions options;
  options.layout = GetParam();
  testing::BuiltLayer layer = BuildLayer({File("a", "alpha"), File("b", "beta")}, options);
  StringBlobReader blob(layer.blob);
  LoadTocOptions load;
  load.toc_digest = layer.toc_digest;
  Result<Toc> toc = LoadToc(blob, load);
  ASSERT_TRUE(toc.ok()) << toc.status().ToString();
  EXPECT_EQ(toc->json_digest, layer.toc_digest);
  EXPECT_EQ(blob.reads(), 1);
  EXPECT_TRUE(blob.invalidations().empty());
}

TEST_P(StargzTocLayouts, RefusesTocWhoseDigestDiffersFromTheManifest) {
  BuildOptions options;
  options.layout = GetParam();
  testing::BuiltLayer layer = BuildLayer({File("a", "alpha")}, options);
  StringBlobReader blob(layer.blob);
  LoadTocOptions load;
  load.toc_digest = Sha256Digest("another TOC");
  Result<Toc> toc = LoadToc(blob, load);
  ASSERT_FALSE(toc.ok());
  EXPECT_EQ(toc.status().code(), Code::kDataLoss);
  EXPECT_THAT(toc.status().message(), HasSubstr("TOC digest mismatch"));
  // Read again once after invalidating TOC and footer.
  EXPECT_EQ(blob.reads(), 2);
  ASSERT_EQ(blob.invalidations().size(), 2u);
  EXPECT_EQ(blob.invalidations()[0].offset, layer.toc_offset);
  EXPECT_EQ(blob.invalidations()[0].offset + blob.invalidations()[0].length, layer.blob.size());
}

TEST_P(StargzTocLayouts, RereadsATocCorruptedInTheCache) {
  BuildOptions options;
  options.layout = GetParam();
  testing::BuiltLayer layer = BuildLayer({File("a", "alpha")}, options);
  StringBlobReader blob(layer.blob);
  blob.Corrupt(layer.toc_offset + 20, /*heals=*/true);
  LoadTocOptions load;
  load.toc_digest = layer.toc_digest;
  Result<Toc> toc = LoadToc(blob, load);
  ASSERT_TRUE(toc.ok()) << toc.status().ToString();
  EXPECT_EQ(blob.invalidations().size(), 1u);
}

INSTANTIATE_TEST_SUITE_P(AllLayouts, StargzTocLayouts,
                         ::testing::Values(Layout::kEstargz, Layout::kLegacyStargz,
                                           Layout::kZstdChunked, Layout::kZstdChunkedStorage));

TEST(StargzToc, RefusesTocWithoutDigestUnlessAllowed) {
  testing::BuiltLayer layer = BuildLayer({File("a", "alpha")});
  StringBlobReader blob(layer.blob);
  Result<Toc> toc = LoadToc(blob, {});
  ASSERT_FALSE(toc.ok());
  EXPECT_EQ(toc.status().code(), Code::kFailedPrecondition);
  LoadTocOptions load;
  load.allow_unverified = true;
  EXPECT_TRUE(LoadToc(blob, load).ok());
}

TEST(StargzToc, ZstdManifestChecksumIsTheSha256OfTheCompressedToc) {
  BuildOptions options;
  options.layout = Layout::kZstdChunked;
  testing::BuiltLayer layer = BuildLayer({File("a", "alpha")}, options);
  StringBlobReader blob(layer.blob);
  LoadTocOptions load;
  load.zstd_manifest_checksum = layer.compressed_toc_digest;
  EXPECT_TRUE(LoadToc(blob, load).ok());
  load.zstd_manifest_checksum = layer.toc_digest;  // the JSON's digest is not the checksum
  Result<Toc> toc = LoadToc(blob, load);
  ASSERT_FALSE(toc.ok());
  EXPECT_EQ(toc.status().code(), Code::kDataLoss);
}

TEST(StargzToc, ManifestChecksumDoesNotVerifyAGzipBlob) {
  testing::BuiltLayer layer = BuildLayer({File("a", "alpha")});
  StringBlobReader blob(layer.blob);
  LoadTocOptions load;
  load.zstd_manifest_checksum = layer.compressed_toc_digest;
  EXPECT_EQ(LoadToc(blob, load).status().code(), Code::kFailedPrecondition);
}

TEST(StargzToc, RefusesMalformedExpectedDigest) {
  testing::BuiltLayer layer = BuildLayer({File("a", "alpha")});
  StringBlobReader blob(layer.blob);
  LoadTocOptions load;
  load.toc_digest = "sha256:nothex";
  EXPECT_EQ(LoadToc(blob, load).status().code(), Code::kInvalidArgument);
}

TEST(StargzToc, HostileTocMatchingItsDigestIsStillRefused) {
  BuildOptions options;
  options.edit_toc = [](Json& toc) { toc["entries"][0]["name"] = "../../etc/shadow"; };
  testing::BuiltLayer layer = BuildLayer({File("a", "alpha")}, options);
  StringBlobReader blob(layer.blob);
  LoadTocOptions load;
  load.toc_digest = layer.toc_digest;
  Result<Toc> toc = LoadToc(blob, load);
  ASSERT_FALSE(toc.ok());
  EXPECT_EQ(toc.status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(blob.invalidations().empty());
}

TEST(StargzToc, DecompressTocRefusesATarWithoutTheIndex) {
  Footer footer;
  footer.format = BlobFormat::kEstargz;
  Result<std::string> json = DecompressToc(footer, testing::Gzip(std::string(1024, '\0')), 1 << 20);
  EXPECT_EQ(json.status().code(), Code::kDataLoss);
  json = DecompressToc(footer, "not gzip at all", 1 << 20);
  EXPECT_EQ(json.status().code(), Code::kDataLoss);
}

TEST(StargzToc, DecompressTocChecksTheFootersJsonLength) {
  Footer footer;
  footer.format = BlobFormat::kZstdChunked;
  footer.toc_json_bytes = 3;
  EXPECT_TRUE(DecompressToc(footer, testing::Zstd("{ }"), 100).ok());
  footer.toc_json_bytes = 4;
  EXPECT_EQ(DecompressToc(footer, testing::Zstd("{ }"), 100).status().code(), Code::kDataLoss);
}

}  // namespace
}  // namespace strata::lazy::stargz
