// StargzTree: the layer as a fuse::Tree, byte for byte, with verified lazy reads.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "core/digest.h"
#include "lazy/stargz/tree.h"
#include "tests/lazy/stargz_builder.h"
#include "tests/lazy/stargz_test_support.h"

namespace strata::lazy::stargz {
namespace {

using Json = nlohmann::json;
using testing::BuildLayer;
using testing::BuildOptions;
using testing::CompareTreeWithTar;
using testing::Device;
using testing::Dir;
using ::testing::ElementsAre;
using testing::Fifo;
using testing::File;
using testing::Hardlink;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using testing::LayerEntry;
using testing::Layout;
using testing::LookupPath;
using testing::ReadWhole;
using testing::StringBlobReader;
using testing::Symlink;

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(rng());
  return out;
}

// Compressible but not trivially: words from a small vocabulary.
std::string TextBytes(size_t n, uint32_t seed) {
  static const char* kWords[] = {"layer ", "chunk ", "gzip ", "toc ", "blob\n", "lazy "};
  std::mt19937 rng(seed);
  std::string out;
  while (out.size() < n) out += kWords[rng() % 6];
  out.resize(n);
  return out;
}

std::vector<LayerEntry> RichLayer() {
  LayerEntry owned = File("etc/owned", "owned by 1000\n", 0640);
  owned.uid = 1000;
  owned.gid = 1001;
  owned.mtime = 1600000000;
  LayerEntry with_xattrs = File("bin/ping", "ping", 04755);
  with_xattrs.xattrs = {{"security.capability", std::string("\x01\x00\x00\x02", 4)},
                        {"user.comment", "hello"}};
  LayerEntry dir_with_xattr = Dir("var/", 0755);
  dir_with_xattr.xattrs = {{"user.dir", "yes"}};
  return {
      Dir("./", 0755),
      Dir("etc/", 0755),
      owned,
      File("etc/empty", ""),
      File("etc/one", "1"),
      File("etc/block511", TextBytes(511, 1)),
      File("etc/block512", TextBytes(512, 2)),
      File("etc/block513", TextBytes(513, 3)),
      Dir("bin/", 0755),
      with_xattrs,
      Symlink("bin/sh", "busybox"),
      Symlink("bin/abs", "/usr/bin/env"),
      File("bin/busybox", RandomBytes(200000, 4), 0755),
      Hardlink("bin/ls", "bin/busybox"),
      Hardlink("bin/cat", "bin/busybox"),
      Dir("tmp/", 01777),
      dir_with_xattr,
      Device("dev/null", '3', 1, 3),
      Device("dev/sda", '4', 8, 0),
      Fifo("run/fifo"),
      File("deep/a/b/c/d/e/f/g/file", "deep"),  // parents implied
      File(std::string(120, 'L') + "/" + std::string(150, 'n'), "long name"),
      File("var/big", TextBytes(300000, 5)),
      // overlayfs: a whiteout, an opaque directory, and a whiteout shadowed by a file.
      File("var/.wh.removed", ""),
      Dir("opaque/", 0755),
      File("opaque/.wh..wh..opq", ""),
      File("opaque/kept", "kept"),
      File("var/.wh.big", ""),
      File("var/.wh..wh.plnk", ""),
  };
}

struct Opened {
  testing::BuiltLayer layer;
  std::shared_ptr<StringBlobReader> blob;
  std::unique_ptr<StargzTree> tree;
};

Opened Open(const std::vector<LayerEntry>& entries, const BuildOptions& options = {},
            TreeOptions tree_options = {}) {
  Opened o;
  o.layer = BuildLayer(entries, options);
  o.blob = std::make_shared<StringBlobReader>(o.layer.blob);
  OpenOptions open;
  open.toc.toc_digest = o.layer.toc_digest;
  open.tree = std::move(tree_options);
  Result<std::unique_ptr<StargzTree>> tree = StargzTree::Open(o.blob, open);
  EXPECT_TRUE(tree.ok()) << tree.status().ToString();
  if (tree.ok()) o.tree = std::move(tree).value();
  return o;
}

// ---- the tree equals the tar, in every layout ------------------------------------------

struct LayoutCase {
  const char* name;
  Layout layout;
  size_t chunk_size;
  size_t min_chunk_size;
  bool end_offsets;
};

void PrintTo(const LayoutCase& c, std::ostream* os) { *os << c.name; }

class StargzTreeLayouts : public ::testing::TestWithParam<LayoutCase> {};

TEST_P(StargzTreeLayouts, TreeEqualsTheTar) {
  BuildOptions options;
  options.layout = GetParam().layout;
  options.chunk_size = GetParam().chunk_size;
  options.min_chunk_size = GetParam().min_chunk_size;
  options.end_offsets = GetParam().end_offsets;
  Opened o = Open(RichLayer(), options);
  ASSERT_NE(o.tree, nullptr);
  EXPECT_THAT(CompareTreeWithTar(*o.tree, o.layer.tar), IsEmpty());
  // Read in odd piece sizes too, so that reads straddle chunks.
  EXPECT_THAT(CompareTreeWithTar(*o.tree, o.layer.tar, 65536 + 3), IsEmpty());
}

INSTANTIATE_TEST_SUITE_P(
    AllLayouts, StargzTreeLayouts,
    ::testing::Values(
        LayoutCase{"Estargz", Layout::kEstargz, 4 << 20, 0, false},
        LayoutCase{"EstargzSmallChunks", Layout::kEstargz, 10000, 0, false},
        LayoutCase{"EstargzInnerOffsets", Layout::kEstargz, 30000, 4096, false},
        LayoutCase{"LegacyStargz", Layout::kLegacyStargz, 65536, 0, false},
        LayoutCase{"ZstdChunked", Layout::kZstdChunked, 50000, 0, false},
        LayoutCase{"ZstdChunkedInnerOffsets", Layout::kZstdChunked, 50000, 1000, false},
        LayoutCase{"ZstdChunkedStorage", Layout::kZstdChunkedStorage, 40000, 0, true}),
    [](const ::testing::TestParamInfo<LayoutCase>& info) { return info.param.name; });

// ---- attributes and the overlayfs view ----------------------------------------------------

TEST(StargzTree, RegularFileAttributes) {
  Opened o = Open(RichLayer());
  Result<fuse::Attr> a = LookupPath(*o.tree, "etc/block513");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->mode, S_IFREG | 0644u);
  EXPECT_EQ(a->size, 513u);
  EXPECT_EQ(a->blocks_512, 2u);
  EXPECT_EQ(a->mtime.tv_sec, 1700000000);
  Result<fuse::Attr> owned = LookupPath(*o.tree, "etc/owned");
  EXPECT_EQ(owned->uid, 1000u);
  EXPECT_EQ(owned->gid, 1001u);
  EXPECT_EQ(owned->mtime.tv_sec, 1600000000);
  EXPECT_EQ(LookupPath(*o.tree, "bin/ping")->mode, S_IFREG | 04755u);
  EXPECT_EQ(LookupPath(*o.tree, "tmp")->mode, S_IFDIR | 01777u);
}

TEST(StargzTree, HardLinksAreOneInodeWithALinkCount) {
  Opened o = Open(RichLayer());
  Result<fuse::Attr> busybox = LookupPath(*o.tree, "bin/busybox");
  Result<fuse::Attr> ls = LookupPath(*o.tree, "bin/ls");
  ASSERT_TRUE(busybox.ok() && ls.ok());
  EXPECT_EQ(busybox->ino, ls->ino);
  EXPECT_EQ(busybox->nlink, 3u);
}

TEST(StargzTree, DevicesSymlinksAndFifos) {
  Opened o = Open(RichLayer());
  Result<fuse::Attr> null = LookupPath(*o.tree, "dev/null");
  EXPECT_EQ(null->mode, S_IFCHR | 0600u);
  EXPECT_EQ(null->rdev, makedev(1, 3));
  EXPECT_EQ(LookupPath(*o.tree, "dev/sda")->rdev, makedev(8, 0));
  EXPECT_TRUE(S_ISFIFO(LookupPath(*o.tree, "run/fifo")->mode));
  Result<fuse::Attr> sh = LookupPath(*o.tree, "bin/sh");
  EXPECT_TRUE(S_ISLNK(sh->mode));
  EXPECT_EQ(sh->size, 7u);
  EXPECT_EQ(*o.tree->ReadLink(sh->ino), "busybox");
  EXPECT_EQ(o.tree->ReadLink(null->ino).status().code(), Code::kInvalidArgument);
}

TEST(StargzTree, Xattrs) {
  Opened o = Open(RichLayer());
  fuse::Ino ping = LookupPath(*o.tree, "bin/ping")->ino;
  EXPECT_THAT(*o.tree->ListXattr(ping), ElementsAre("security.capability", "user.comment"));
  EXPECT_EQ(*o.tree->GetXattr(ping, "user.comment"), "hello");
  EXPECT_EQ(o.tree->GetXattr(ping, "user.none").status().code(), Code::kNotFound);
  EXPECT_EQ(*o.tree->GetXattr(LookupPath(*o.tree, "var")->ino, "user.dir"), "yes");
}

TEST(StargzTree, WhiteoutsAreCharDevicesAndOpaqueDirsCarryTheXattr) {
  Opened o = Open(RichLayer());
  Result<fuse::Attr> removed = LookupPath(*o.tree, "var/removed");
  ASSERT_TRUE(removed.ok()) << removed.status().ToString();
  EXPECT_EQ(removed->mode & S_IFMT, static_cast<mode_t>(S_IFCHR));
  EXPECT_EQ(removed->rdev, makedev(0, 0));
  EXPECT_EQ(LookupPath(*o.tree, "var/.wh.removed").status().code(), Code::kNotFound);
  EXPECT_EQ(LookupPath(*o.tree, "var/.wh..wh.plnk").status().code(), Code::kNotFound);
  // A whiteout next to a real entry of the same name: the entry wins.
  EXPECT_TRUE(S_ISREG(LookupPath(*o.tree, "var/big")->mode));
  fuse::Ino opaque = LookupPath(*o.tree, "opaque")->ino;
  EXPECT_EQ(*o.tree->GetXattr(opaque, "trusted.overlay.opaque"), "y");
  EXPECT_THAT(*o.tree->ListXattr(opaque), ElementsAre("trusted.overlay.opaque"));
  EXPECT_EQ(LookupPath(*o.tree, "opaque/.wh..wh..opq").status().code(), Code::kNotFound);
  EXPECT_EQ(
      o.tree->GetXattr(LookupPath(*o.tree, "etc")->ino, "trusted.overlay.opaque").status().code(),
      Code::kNotFound);
}

TEST(StargzTree, UserxattrMountsReadTheUserOpaqueXattr) {
  TreeOptions options;
  options.opaque_xattrs = {"user.overlay.opaque"};
  Opened o = Open(RichLayer(), {}, options);
  fuse::Ino opaque = LookupPath(*o.tree, "opaque")->ino;
  EXPECT_EQ(*o.tree->GetXattr(opaque, "user.overlay.opaque"), "y");
  EXPECT_EQ(o.tree->GetXattr(opaque, "trusted.overlay.opaque").status().code(), Code::kNotFound);
}

TEST(StargzTree, ReadDirListsSortedEntriesWithStableOffsets) {
  Opened o = Open({File("b", "b"), File("a", "a"), Dir("c/"), File("c/x", "x")});
  std::vector<fuse::DirEntry> all;
  ASSERT_TRUE(o.tree
                  ->ReadDir(fuse::kRootIno, 0,
                            [&](const fuse::DirEntry& e) {
                              all.push_back(e);
                              return true;
                            })
                  .ok());
  std::vector<std::string> names;
  for (const fuse::DirEntry& e : all) names.push_back(e.name);
  EXPECT_THAT(names, ElementsAre(".", "..", "a", "b", "c"));
  EXPECT_EQ(all[0].ino, fuse::kRootIno);
  EXPECT_EQ(all[4].type, static_cast<mode_t>(S_IFDIR));
  for (size_t i = 1; i < all.size(); i++) EXPECT_GT(all[i].next_offset, all[i - 1].next_offset);
  // Resume after "a": the same tail; stop after one entry on request.
  std::vector<std::string> tail;
  ASSERT_TRUE(o.tree
                  ->ReadDir(fuse::kRootIno, all[2].next_offset,
                            [&](const fuse::DirEntry& e) {
                              tail.push_back(e.name);
                              return tail.size() < 1;
                            })
                  .ok());
  EXPECT_THAT(tail, ElementsAre("b"));
  // ".." of a subdirectory is its parent.
  fuse::Ino c = all[4].ino;
  std::vector<fuse::DirEntry> sub;
  ASSERT_TRUE(o.tree
                  ->ReadDir(c, 0,
                            [&](const fuse::DirEntry& e) {
                              sub.push_back(e);
                              return true;
                            })
                  .ok());
  ASSERT_EQ(sub.size(), 3u);
  EXPECT_EQ(sub[1].ino, fuse::kRootIno);
  EXPECT_EQ(o.tree->Lookup(c, "..")->ino, fuse::kRootIno);
}

TEST(StargzTree, ErrorsNameTheKindOfMistake) {
  Opened o = Open(RichLayer());
  fuse::Ino file = LookupPath(*o.tree, "etc/one")->ino;
  fuse::Ino dir = LookupPath(*o.tree, "etc")->ino;
  char buf[16];
  EXPECT_EQ(o.tree->Lookup(file, "x").status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(o.tree->Lookup(dir, "missing").status().code(), Code::kNotFound);
  EXPECT_EQ(o.tree->Read(dir, buf, sizeof buf, 0).status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(o.tree->Read(LookupPath(*o.tree, "bin/sh")->ino, buf, 1, 0).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(o.tree->ReadDir(file, 0, [](const fuse::DirEntry&) { return true; }).code(),
            Code::kFailedPrecondition);
  EXPECT_EQ(o.tree->GetAttr(999999).status().code(), Code::kNotFound);
  EXPECT_EQ(o.tree->GetAttr(0).status().code(), Code::kNotFound);
}

TEST(StargzTree, LandmarksAreHiddenAndGiveThePrefetchRange) {
  BuildOptions options;
  options.prefetch_landmark_after = 1;
  Opened o = Open({File("hot", "needed at start"), File("cold", "later")}, options);
  EXPECT_EQ(LookupPath(*o.tree, ".prefetch.landmark").status().code(), Code::kNotFound);
  std::vector<registry::ByteRange> ranges = o.tree->PrefetchRanges();
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(ranges[0].offset, 0u);
  EXPECT_EQ(ranges[0].length, o.layer.landmark_offset);
  EXPECT_THAT(CompareTreeWithTar(*o.tree, o.layer.tar), IsEmpty());
}

TEST(StargzTree, NoPrefetchLandmarkGivesNoRanges) {
  BuildOptions options;
  options.no_prefetch_landmark = true;
  Opened o = Open({File("a", "a")}, options);
  EXPECT_EQ(o.tree->toc().prefetch, PrefetchHint::kNone);
  EXPECT_THAT(o.tree->PrefetchRanges(), IsEmpty());
  EXPECT_EQ(LookupPath(*o.tree, ".no.prefetch.landmark").status().code(), Code::kNotFound);
}

TEST(StargzTree, LandmarkOutsideTheRootIsAnOrdinaryFile) {
  Opened o = Open({File("sub/.prefetch.landmark", "x")});
  EXPECT_TRUE(LookupPath(*o.tree, "sub/.prefetch.landmark").ok());
  EXPECT_EQ(o.tree->toc().prefetch, PrefetchHint::kUnspecified);
}

TEST(StargzTree, StatFsCountsFilesAndBlocks) {
  Opened o = Open({File("a", std::string(5000, 'a')), File("b", "b")});
  fuse::FsStats stats = o.tree->StatFs();
  EXPECT_EQ(stats.blocks, 3u);  // 2 + 1 blocks of 4096
  EXPECT_EQ(stats.files, 3u);   // root, a, b
}

// ---- reads ---------------------------------------------------------------------------------

TEST(StargzTree, OpenReadsFooterAndTocInOneRead) {
  testing::BuiltLayer layer = BuildLayer(RichLayer());
  auto blob = std::make_shared<StringBlobReader>(layer.blob);
  OpenOptions options;
  options.toc.toc_digest = layer.toc_digest;
  ASSERT_TRUE(StargzTree::Open(blob, options).ok());
  EXPECT_EQ(blob->reads(), 1);
}

TEST(StargzTree, BigFileReadAtRandomOffsets) {
  const std::string big = RandomBytes(5 * 1000 * 1000 + 123, 7);
  for (Layout layout : {Layout::kEstargz, Layout::kZstdChunked}) {
    BuildOptions options;
    options.layout = layout;
    options.chunk_size = 65536 + 1000;
    Opened o = Open({File("big", big)}, options);
    fuse::Ino ino = LookupPath(*o.tree, "big")->ino;
    std::mt19937 rng(11);
    std::string buf;
    for (int i = 0; i < 400; i++) {
      uint64_t offset = rng() % (big.size() + 100);
      size_t n = rng() % 3 == 0 ? rng() % 300000 : rng() % 5000;
      buf.assign(n, '\0');
      Result<size_t> got = o.tree->Read(ino, buf.data(), n, offset);
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      size_t want = offset >= big.size() ? 0 : std::min<size_t>(n, big.size() - offset);
      ASSERT_EQ(*got, want) << "offset " << offset << " n " << n;
      ASSERT_EQ(buf.substr(0, *got), big.substr(std::min<size_t>(offset, big.size()), want))
          << "offset " << offset << " n " << n;
    }
    EXPECT_EQ(*ReadWhole(*o.tree, ino, 1 << 20), big);
  }
}

TEST(StargzTree, ZeroChunksReadAsZerosWithoutFetching) {
  BuildOptions options;
  options.chunk_size = 100;
  options.edit_toc = [](Json& toc) {
    for (Json& e : toc["entries"]) {
      if (e["type"] == "chunk" && e["chunkOffset"] == 100) {
        e.erase("chunkDigest");
        e["chunkType"] = "zeros";
      }
    }
  };
  std::string data = std::string(100, 'a') + std::string(100, 'b') + std::string(50, 'c');
  Opened o = Open({File("f", data)}, options);
  fuse::Ino ino = LookupPath(*o.tree, "f")->ino;
  o.blob->ResetReads();
  char buf[100];
  ASSERT_EQ(*o.tree->Read(ino, buf, 100, 100), 100u);
  EXPECT_EQ(std::string(buf, 100), std::string(100, '\0'));
  EXPECT_EQ(o.blob->reads(), 0);
}

TEST(StargzTree, RepeatedReadsOfAChunkComeFromMemory) {
  Opened o = Open({File("f", TextBytes(100000, 3))});
  fuse::Ino ino = LookupPath(*o.tree, "f")->ino;
  char buf[4096];
  o.blob->ResetReads();
  ASSERT_TRUE(o.tree->Read(ino, buf, sizeof buf, 0).ok());
  int after_first = o.blob->reads();
  EXPECT_GE(after_first, 1);
  ASSERT_TRUE(o.tree->Read(ino, buf, sizeof buf, 50000).ok());
  EXPECT_EQ(o.blob->reads(), after_first);
  EXPECT_EQ(o.tree->cached_chunk_bytes(), 100000u);
}

TEST(StargzTree, ChunkCacheStaysWithinItsBound) {
  BuildOptions options;
  options.chunk_size = 10000;
  TreeOptions tree_options;
  tree_options.chunk_cache_bytes = 25000;
  Opened o = Open({File("f", TextBytes(100000, 3))}, options, tree_options);
  fuse::Ino ino = LookupPath(*o.tree, "f")->ino;
  ASSERT_EQ(ReadWhole(*o.tree, ino)->size(), 100000u);
  EXPECT_LE(o.tree->cached_chunk_bytes(), 25000u);
  EXPECT_GT(o.tree->cached_chunk_bytes(), 0u);
}

// A reader whose reads take a while, so that concurrent readers overlap.
class SlowBlobReader : public StringBlobReader {
 public:
  using StringBlobReader::StringBlobReader;
  Result<size_t> ReadAt(char* buf, size_t n, uint64_t offset) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return StringBlobReader::ReadAt(buf, n, offset);
  }
};

TEST(StargzTree, ConcurrentReadsOfOneChunkFetchItOnce) {
  testing::BuiltLayer layer = BuildLayer({File("f", TextBytes(100000, 9))});
  auto blob = std::make_shared<SlowBlobReader>(layer.blob);
  OpenOptions options;
  options.toc.toc_digest = layer.toc_digest;
  std::unique_ptr<StargzTree> tree = std::move(StargzTree::Open(blob, options)).value();
  fuse::Ino ino = LookupPath(*tree, "f")->ino;
  blob->ResetReads();
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; i++) {
    threads.emplace_back([&, i] {
      char buf[1000];
      Result<size_t> got = tree->Read(ino, buf, sizeof buf, i * 10000);
      if (got.ok() && *got == sizeof buf) ok++;
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(ok, 8);
  EXPECT_EQ(blob->reads(), 1);
}

// ---- verification ------------------------------------------------------------------------------

// The blob offset of the member holding the first chunk of `name`.
uint64_t ChunkOffsetOf(const testing::BuiltLayer& layer, const std::string& name) {
  Json toc = Json::parse(layer.toc_json);
  for (const Json& e : toc["entries"]) {
    if (e["name"] == name && e.contains("offset")) return e["offset"].get<uint64_t>();
  }
  return 0;
}

TEST(StargzTree, CorruptChunkGivesDataLossNeverWrongBytes) {
  for (Layout layout : {Layout::kEstargz, Layout::kZstdChunked}) {
    BuildOptions options;
    options.layout = layout;
    std::vector<LayerEntry> entries = {File("good", TextBytes(5000, 1)),
                                       File("bad", TextBytes(5000, 2))};
    Opened o = Open(entries, options);
    uint64_t member = ChunkOffsetOf(o.layer, "bad");
    ASSERT_GT(member, 0u);
    o.blob->Corrupt(member + 40, /*heals=*/false);
    fuse::Ino bad = LookupPath(*o.tree, "bad")->ino;
    std::string buf(5000, '\0');
    Result<size_t> got = o.tree->Read(bad, buf.data(), buf.size(), 0);
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.status().code(), Code::kDataLoss) << got.status().ToString();
    // Invalidated on each of the two attempts, covering the corrupt byte.
    std::vector<registry::ByteRange> invalidated = o.blob->invalidations();
    ASSERT_EQ(invalidated.size(), 2u);
    EXPECT_EQ(invalidated[0].offset, member);
    EXPECT_GT(invalidated[0].offset + invalidated[0].length, member + 40);
    // The rest of the layer is fine.
    EXPECT_EQ(*ReadWhole(*o.tree, LookupPath(*o.tree, "good")->ino), entries[0].data);
    // And the bad chunk stays bad: nothing wrong was cached.
    EXPECT_EQ(o.tree->Read(bad, buf.data(), buf.size(), 0).status().code(), Code::kDataLoss);
  }
}

TEST(StargzTree, ChunkCorruptedInTheCacheIsFetchedAgain) {
  Opened o = Open({File("f", TextBytes(5000, 1))});
  uint64_t member = ChunkOffsetOf(o.layer, "f");
  o.blob->Corrupt(member + 40, /*heals=*/true);
  fuse::Ino ino = LookupPath(*o.tree, "f")->ino;
  Result<std::string> content = ReadWhole(*o.tree, ino);
  ASSERT_TRUE(content.ok()) << content.status().ToString();
  EXPECT_EQ(*content, TextBytes(5000, 1));
  EXPECT_EQ(o.blob->invalidations().size(), 1u);
}

TEST(StargzTree, ChunkNotMatchingItsDigestIsRefused) {
  BuildOptions options;
  options.edit_toc = [](Json& toc) {
    for (Json& e : toc["entries"]) {
      if (e["name"] == "f") e["chunkDigest"] = Sha256Digest("something else");
    }
  };
  // A valid gzip member whose bytes are not what the TOC promises.
  Opened o = Open({File("f", "the real content")}, options);
  fuse::Ino ino = LookupPath(*o.tree, "f")->ino;
  char buf[64];
  Result<size_t> got = o.tree->Read(ino, buf, sizeof buf, 0);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), Code::kDataLoss);
  EXPECT_THAT(got.status().message(), HasSubstr("chunk digest mismatch"));
  EXPECT_EQ(o.blob->invalidations().size(), 2u);
}

TEST(StargzTree, ChunkPointingAtTheWrongMemberIsRefused) {
  BuildOptions options;
  options.edit_toc = [](Json& toc) {
    uint64_t other = 0;
    for (Json& e : toc["entries"]) {
      if (e["name"] == "a") other = e["offset"].get<uint64_t>();
    }
    for (Json& e : toc["entries"]) {
      if (e["name"] == "b") e["offset"] = other;
    }
  };
  Opened o = Open({File("a", "aaaa"), File("b", "bbbb")}, options);
  char buf[4];
  EXPECT_EQ(o.tree->Read(LookupPath(*o.tree, "b")->ino, buf, 4, 0).status().code(),
            Code::kDataLoss);
}

TEST(StargzTree, FetchErrorsPassThroughWithoutInvalidating) {
  Opened o = Open({File("f", "content")});
  fuse::Ino ino = LookupPath(*o.tree, "f")->ino;
  o.blob->FailReads(Status(Code::kDeadlineExceeded, "registry stalled"));
  char buf[16];
  Result<size_t> got = o.tree->Read(ino, buf, sizeof buf, 0);
  EXPECT_EQ(got.status().code(), Code::kDeadlineExceeded);
  EXPECT_TRUE(o.blob->invalidations().empty());
  o.blob->FailReads(Status::Ok());
  EXPECT_EQ(*o.tree->Read(ino, buf, sizeof buf, 0), 7u);
}

TEST(StargzTree, EveryOtherFetchErrorReadsAsUnavailable) {
  Opened o = Open({File("f", "content")});
  fuse::Ino ino = LookupPath(*o.tree, "f")->ino;
  // The engine dropped the blob: FailedPrecondition would read as EISDIR, not EIO.
  o.blob->FailReads(Status::FailedPrecondition("blob removed from the engine"));
  char buf[16];
  Result<size_t> got = o.tree->Read(ino, buf, sizeof buf, 0);
  EXPECT_EQ(got.status().code(), Code::kUnavailable);
  EXPECT_THAT(got.status().message(), HasSubstr("blob removed from the engine"));
}

}  // namespace
}  // namespace strata::lazy::stargz
