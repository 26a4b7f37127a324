// Specification of ConvertLayerToEstargz (lazy/stargz/writer.h): layer tars in, eStargz
// blobs out, read back with the project's own reader (LoadToc, StargzTree), gunzip and
// GNU tar.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <random>

#include "core/digest.h"
#include "core/subprocess.h"
#include "lazy/stargz/footer.h"
#include "lazy/stargz/toc.h"
#include "lazy/stargz/tree.h"
#include "lazy/stargz/writer.h"
#include "tests/lazy/stargz_test_support.h"
#include "tests/transfer/tar_builder.h"
#include "transfer/byte_source.h"
#include "transfer/decompress.h"

namespace strata::lazy::stargz {
namespace {

using Json = nlohmann::json;
using testing::CompareTreeWithTar;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using testing::LookupPath;
using testing::ReadWhole;
using testing::StringBlobReader;
using transfer::testing::TarBuilder;
using transfer::testing::TarHeader;

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(rng());
  return out;
}

struct Converted {
  EstargzResult result;
  std::string blob;
};

Result<Converted> Convert(const std::string& tar, const EstargzWriterOptions& options = {}) {
  Converted out;
  auto source = transfer::NewStringSource(tar);
  ASSIGN_OR_RETURN(out.result, ConvertLayerToEstargz(
                                   *source,
                                   [&](const char* data, size_t n) {
                                     out.blob.append(data, n);
                                     return Status::Ok();
                                   },
                                   options));
  return out;
}

Converted ConvertOk(const std::string& tar, const EstargzWriterOptions& options = {}) {
  Result<Converted> converted = Convert(tar, options);
  EXPECT_TRUE(converted.ok()) << converted.status().ToString();
  return converted.ok() ? std::move(converted).value() : Converted{};
}

// The blob opened as the snapshotter opens it: TOC verified against its digest.
std::unique_ptr<StargzTree> Open(const Converted& c) {
  OpenOptions options;
  options.toc.toc_digest = c.result.toc_digest;
  Result<std::unique_ptr<StargzTree>> tree =
      StargzTree::Open(std::make_shared<StringBlobReader>(c.blob), options);
  EXPECT_TRUE(tree.ok()) << tree.status().ToString();
  return tree.ok() ? std::move(tree).value() : nullptr;
}

// The TOC JSON's entries, read straight from the blob.
Json TocEntries(const std::string& blob) {
  StringBlobReader reader(blob);
  Result<FooterAndToc> read = ReadFooterAndToc(reader);
  EXPECT_TRUE(read.ok()) << read.status().ToString();
  if (!read.ok()) return Json::array();
  Result<std::string> json = DecompressToc(read->footer, read->compressed_toc, 1 << 30);
  EXPECT_TRUE(json.ok()) << json.status().ToString();
  return json.ok() ? Json::parse(*json)["entries"] : Json::array();
}

// The names of the TOC entries in order, chunk entries left out.
std::vector<std::string> TocNames(const std::string& blob) {
  std::vector<std::string> names;
  for (const Json& e : TocEntries(blob)) {
    if (e["type"] != "chunk") names.push_back(e["name"]);
  }
  return names;
}

std::string Gunzip(std::string_view gzip) {
  auto source = transfer::Decompress(transfer::NewStringSource(std::string(gzip)),
                                     transfer::Compression::kGzip);
  EXPECT_TRUE(source.ok()) << source.status().ToString();
  if (!source.ok()) return "";
  Result<std::string> data = transfer::ReadAll(**source);
  EXPECT_TRUE(data.ok()) << data.status().ToString();
  return data.ok() ? *data : "";
}

TarHeader Header(std::string name, char typeflag = '0') {
  TarHeader h;
  h.name = std::move(name);
  h.typeflag = typeflag;
  return h;
}

// A layer with every kind of entry and attribute the format carries.
std::string RichLayerTar() {
  TarBuilder b;
  TarHeader root = Header("./", '5');
  root.mode = 0755;
  b.Entry(root);
  TarHeader etc = Header("./etc/", '5');
  etc.mode = 0750;
  etc.uid = 1000;
  etc.gid = 1001;
  b.Entry(etc);
  TarHeader owned = Header("./etc/owned");
  owned.mode = 0640;
  owned.uid = 1000;
  owned.gid = 1001;
  owned.uname = "alice";
  owned.gname = "staff";
  owned.mtime = 1600000000;
  b.Entry(owned, "owned by 1000\n");
  b.Dir("bin/");
  b.Pax({{"SCHILY.xattr.security.capability", std::string("\x01\x00\x00\x02\x00\x20", 6)},
         {"SCHILY.xattr.user.comment", "pings"}});
  b.File("bin/ping", "ping binary", 04755);
  b.File("bin/empty", "");
  b.Symlink("bin/sh", "/bin/busybox");
  b.Symlink("bin/rel", "../etc/owned");
  b.File("bin/busybox", RandomBytes(100000, 1), 0755);
  b.Hardlink("bin/ls", "bin/busybox");
  b.Dir("dev/");
  TarHeader null = Header("dev/null", '3');
  null.dev_major = 1;
  null.dev_minor = 3;
  null.mode = 0666;
  b.Entry(null);
  TarHeader sda = Header("dev/sda", '4');
  sda.dev_major = 8;
  sda.dev_minor = 0;
  sda.mode = 0660;
  b.Entry(sda);
  b.Entry(Header("dev/fifo", '6'));
  const std::string long_name = "deep/" + std::string(120, 'd') + "/" + std::string(90, 'f');
  b.GnuLong(long_name);
  b.Entry(Header(long_name.substr(0, 100)), "long name");
  b.Pax({{"path", "deep/pax-" + std::string(150, 'p')}, {"mtime", "1700000000.25"}});
  b.Entry(Header("ignored"), "pax name");
  b.Pax({{"linkpath", "/" + std::string(200, 't')}});
  b.Entry(Header("deep/long-target", '2'));
  b.File(".wh.removed", "");
  b.Dir("opaque/");
  b.File("opaque/.wh..wh..opq", "");
  b.PaxSparse10("sparse.img", {{4096, 100}, {200000, 50}}, 300000,
                std::string(100, 'a') + std::string(50, 'b'));
  b.File("dup", "first version");
  b.File("dup", "second version wins");
  b.End();
  return b.str();
}

// ---- (1) the project's reader sees the input layer ----

TEST(EstargzWriterTest, ReaderSeesEveryEntryAsTheInputHasIt) {
  const std::string tar = RichLayerTar();
  Converted c = ConvertOk(tar);
  std::unique_ptr<StargzTree> tree = Open(c);
  ASSERT_NE(tree, nullptr);
  EXPECT_THAT(CompareTreeWithTar(*tree, tar), IsEmpty());
  // Spot checks of what CompareTreeWithTar covers, for the reader of this test.
  Result<fuse::Attr> null = LookupPath(*tree, "dev/null");
  ASSERT_TRUE(null.ok());
  EXPECT_TRUE(S_ISCHR(null->mode));
  EXPECT_EQ(null->rdev, makedev(1, 3));
  Result<fuse::Attr> ping = LookupPath(*tree, "bin/ping");
  ASSERT_TRUE(ping.ok());
  EXPECT_EQ(ping->mode & 07777, 04755u);
  Result<std::string> cap = tree->GetXattr(ping->ino, "security.capability");
  ASSERT_TRUE(cap.ok()) << cap.status().ToString();
  EXPECT_EQ(*cap, std::string("\x01\x00\x00\x02\x00\x20", 6));
  Result<fuse::Attr> ls = LookupPath(*tree, "bin/ls");
  Result<fuse::Attr> busybox = LookupPath(*tree, "bin/busybox");
  ASSERT_TRUE(ls.ok() && busybox.ok());
  EXPECT_EQ(ls->ino, busybox->ino);
  EXPECT_EQ(busybox->nlink, 2u);
  Result<fuse::Attr> etc = LookupPath(*tree, "etc");
  ASSERT_TRUE(etc.ok());
  EXPECT_EQ(etc->mode & 07777, 0750u);
  EXPECT_EQ(etc->uid, 1000u);
}

TEST(EstargzWriterTest, TocEntriesCarryTheAttributes) {
  Converted c = ConvertOk(RichLayerTar());
  std::map<std::string, Json> by_name;
  for (const Json& e : TocEntries(c.blob)) {
    if (e["type"] != "chunk") by_name[e["name"]] = e;
  }
  const Json& owned = by_name["etc/owned"];
  EXPECT_EQ(owned["type"], "reg");
  EXPECT_EQ(owned["mode"], 0640);
  EXPECT_EQ(owned["uid"], 1000);
  EXPECT_EQ(owned["gid"], 1001);
  EXPECT_EQ(owned["userName"], "alice");
  EXPECT_EQ(owned["groupName"], "staff");
  EXPECT_EQ(owned["modtime"], "2020-09-13T12:26:40Z");
  EXPECT_EQ(owned["size"], 14);
  EXPECT_EQ(owned["digest"], Sha256Digest("owned by 1000\n"));
  EXPECT_EQ(owned["chunkDigest"], Sha256Digest("owned by 1000\n"));
  EXPECT_EQ(by_name["bin/ping"]["xattrs"]["user.comment"], "cGluZ3M=");
  EXPECT_EQ(by_name["bin/ls"]["type"], "hardlink");
  EXPECT_EQ(by_name["bin/ls"]["linkName"], "bin/busybox");
  EXPECT_EQ(by_name["bin/sh"]["linkName"], "/bin/busybox");
  EXPECT_EQ(by_name["dev/sda"]["type"], "block");
  EXPECT_EQ(by_name["dev/sda"]["devMajor"], 8);
  EXPECT_EQ(by_name["dev/fifo"]["type"], "fifo");
  EXPECT_EQ(by_name["./"]["type"], "dir");
  EXPECT_EQ(by_name["bin/empty"].count("offset"), 0u);
}

// ---- (2) digests, sizes, and the blob as a plain tar.gz ----

TEST(EstargzWriterTest, DigestsAndSizesDescribeTheBlob) {
  Converted c = ConvertOk(RichLayerTar());
  const std::string tar = Gunzip(c.blob);
  EXPECT_EQ(c.result.diff_id, Sha256Digest(tar));
  EXPECT_EQ(c.result.uncompressed_size, tar.size());
  EXPECT_EQ(c.result.blob_digest, Sha256Digest(c.blob));
  EXPECT_EQ(c.result.blob_size, c.blob.size());
  EXPECT_EQ(tar.size() % 512, 0u);
  EXPECT_EQ(tar.substr(tar.size() - 1024), std::string(1024, '\0'));

  StringBlobReader reader(c.blob);
  Result<FooterAndToc> read = ReadFooterAndToc(reader);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(read->footer.format, BlobFormat::kEstargz);
  EXPECT_EQ(read->footer.footer_bytes, 51u);
  EXPECT_EQ(read->footer.toc_offset, c.result.toc_offset);
  Result<std::string> json = DecompressToc(read->footer, read->compressed_toc, 1 << 30);
  ASSERT_TRUE(json.ok()) << json.status().ToString();
  EXPECT_EQ(c.result.toc_digest, Sha256Digest(*json));
  std::unique_ptr<StargzTree> tree = Open(c);
  ASSERT_NE(tree, nullptr);
  EXPECT_EQ(tree->toc().json_digest, c.result.toc_digest);
}

TEST(EstargzWriterTest, GnuTarListsEveryEntryThenTheToc) {
  TarBuilder b;
  b.Dir("./").Dir("./etc/").File("./etc/passwd", "root:x:0:0\n").File("bin//sh", "#!");
  b.Symlink("etc/link", "passwd").Hardlink("etc/hard", "./etc/passwd");
  const std::string long_name = "etc/" + std::string(150, 'x');
  b.Pax({{"SCHILY.xattr.user.x", "y"}, {"path", long_name}}).File(long_name, "long");
  b.End();
  Converted c = ConvertOk(b.str());
  ProcessOptions options;
  options.stdin_data = c.blob;
  Result<ProcessResult> tar = RunProcess({"tar", "-tzf", "-"}, options);
  if (!tar.ok() && tar.status().IsNotFound()) GTEST_SKIP() << "GNU tar is not installed";
  ASSERT_TRUE(tar.ok()) << tar.status().ToString();
  EXPECT_EQ(tar->exit_code, 0) << tar->stderr_data;
  EXPECT_EQ(tar->stderr_data, "");
  EXPECT_EQ(tar->stdout_data,
            ".no.prefetch.landmark\n./\netc/\netc/passwd\nbin/sh\netc/link\n"
            "etc/hard\netc/" +
                std::string(150, 'x') + "\nstargz.index.json\n");
}

TEST(EstargzWriterTest, EveryGzipLevelMakesAReadableBlob) {
  const std::string tar = RichLayerTar();
  for (int level : {0, 1, 9}) {
    EstargzWriterOptions options;
    options.gzip_level = level;
    Converted c = ConvertOk(tar, options);
    std::unique_ptr<StargzTree> tree = Open(c);
    ASSERT_NE(tree, nullptr) << "level " << level;
    EXPECT_THAT(CompareTreeWithTar(*tree, tar), IsEmpty()) << "level " << level;
  }
}

// A directory tree with what file systems hold, archived by GNU tar in `format`.
Result<std::string> GnuTarOfATree(const std::string& format) {
  char dir_template[] = "/tmp/strata-estargz-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) return Status::FromErrno(errno, "mkdtemp");
  const std::string dir = dir_template;
  ProcessOptions quiet;
  auto sh = [&](const std::string& script) { return RunProcess({"sh", "-c", script}, quiet); };
  const std::string long_dir = std::string(120, 'd');
  Result<ProcessResult> made =
      sh("set -e; cd " + dir + "; mkdir -p a/b " + long_dir + "; echo hello > a/b/hello;" +
         "head -c 300000 /dev/urandom > a/random; ln a/random a/random-link; ln -s b/hello a/sym;" +
         "mkfifo a/fifo; chmod 4711 a/random; touch -d @1234567890.5 a/b/hello;" + "echo long > " +
         long_dir + "/" + std::string(150, 'f') + "; : > a/empty;" +
         "setfattr -n user.note -v noted a/b/hello 2>/dev/null || true");
  if (!made.ok()) return made.status();
  if (made->exit_code != 0) return Status::Internal("making the tree: " + made->stderr_data);
  ProcessOptions capture;
  capture.max_output_bytes = 64 << 20;
  Result<ProcessResult> tar =
      RunProcess({"tar", "--format=" + format, "--xattrs", "-C", dir, "-cf", "-", "."}, capture);
  (void)sh("rm -rf " + dir);
  if (!tar.ok()) return tar.status();
  if (tar->exit_code != 0) return Status::Internal("tar: " + tar->stderr_data);
  return tar->stdout_data;
}

TEST(EstargzWriterTest, ConvertsWhatGnuTarWrites) {
  for (const char* format : {"posix", "gnu", "ustar"}) {
    Result<std::string> tar = GnuTarOfATree(format);
    if (!tar.ok() && tar.status().IsNotFound()) GTEST_SKIP() << "GNU tar is not installed";
    if (!tar.ok() && std::string(format) == "ustar") continue;  // the long name does not fit
    ASSERT_TRUE(tar.ok()) << format << ": " << tar.status().ToString();
    Converted c = ConvertOk(*tar);
    std::unique_ptr<StargzTree> tree = Open(c);
    ASSERT_NE(tree, nullptr) << format;
    EXPECT_THAT(CompareTreeWithTar(*tree, *tar), IsEmpty()) << format;
  }
}

// ---- (3) chunks ----

TEST(EstargzWriterTest, LargeFilesAreCutIntoIndependentlyDecompressibleChunks) {
  const std::string content = RandomBytes(10 << 20, 7);
  const std::string tar = TarBuilder().File("big.bin", content).File("after", "x").End().str();
  EstargzWriterOptions options;
  options.chunk_size = 1 << 20;
  Converted c = ConvertOk(tar, options);

  std::vector<Json> entries;
  for (const Json& e : TocEntries(c.blob)) {
    if (e["name"] == "big.bin") entries.push_back(e);
  }
  ASSERT_EQ(entries.size(), 10u);
  EXPECT_EQ(entries[0]["type"], "reg");
  EXPECT_EQ(entries[0]["size"], 10 << 20);
  EXPECT_EQ(entries[0]["digest"], Sha256Digest(content));
  for (size_t i = 0; i < entries.size(); i++) {
    if (i > 0) EXPECT_EQ(entries[i]["type"], "chunk");
    EXPECT_EQ(entries[i].value("chunkOffset", uint64_t{0}), i << 20);
    EXPECT_EQ(entries[i]["chunkSize"], 1 << 20);
  }

  std::unique_ptr<StargzTree> tree = Open(c);
  ASSERT_NE(tree, nullptr);
  Result<fuse::Attr> big = LookupPath(*tree, "big.bin");
  ASSERT_TRUE(big.ok());
  const TocInode* inode = tree->toc().inode(big->ino);
  ASSERT_EQ(inode->chunks.size(), 10u);
  for (size_t i = 0; i < inode->chunks.size(); i++) {
    const TocChunk& chunk = inode->chunks[i];
    EXPECT_EQ(chunk.inner_offset, 0u);
    EXPECT_EQ(chunk.blob_offset, entries[i]["offset"].get<uint64_t>());
    // The chunk's member, cut out of the blob, decompresses alone and starts with
    // exactly the chunk.
    const std::string piece = Gunzip(
        std::string_view(c.blob).substr(chunk.blob_offset, chunk.blob_end - chunk.blob_offset));
    ASSERT_GE(piece.size(), chunk.size);
    EXPECT_EQ(piece.substr(0, chunk.size), content.substr(i << 20, 1 << 20)) << "chunk " << i;
    EXPECT_EQ(chunk.digest, Sha256Digest(content.substr(i << 20, 1 << 20)));
  }
  Result<std::string> whole = ReadWhole(*tree, big->ino, 300000);
  ASSERT_TRUE(whole.ok()) << whole.status().ToString();
  EXPECT_TRUE(*whole == content);
}

TEST(EstargzWriterTest, ShortLastChunkRunsToTheEndOfTheFile) {
  const std::string content = RandomBytes(2500, 3);
  EstargzWriterOptions options;
  options.chunk_size = 1000;
  Converted c = ConvertOk(TarBuilder().File("f", content).End().str(), options);
  std::vector<uint64_t> sizes;
  for (const Json& e : TocEntries(c.blob)) {
    if (e["name"] == "f") sizes.push_back(e["chunkSize"]);
  }
  EXPECT_THAT(sizes, ElementsAre(1000, 1000, 500));
  std::unique_ptr<StargzTree> tree = Open(c);
  ASSERT_NE(tree, nullptr);
  Result<fuse::Attr> f = LookupPath(*tree, "f");
  ASSERT_TRUE(f.ok());
  Result<std::string> read = ReadWhole(*tree, f->ino, 777);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(*read, content);
}

// ---- (4) prefetch landmarks ----

TEST(EstargzWriterTest, WithoutPrioritizedFilesNoPrefetchLandmarkComesFirst) {
  Converted c = ConvertOk(TarBuilder().File("a", "a").File("b", "b").End().str());
  EXPECT_THAT(TocNames(c.blob), ElementsAre(".no.prefetch.landmark", "a", "b"));
  std::unique_ptr<StargzTree> tree = Open(c);
  ASSERT_NE(tree, nullptr);
  EXPECT_EQ(tree->toc().prefetch, PrefetchHint::kNone);
  EXPECT_THAT(tree->PrefetchRanges(), IsEmpty());
}

// The layer of the prioritization tests: usr/bin/tool comes late in the input, and its
// hard link usr/bin/tool-link points into usr/lib.
std::string PrioritizedLayerTar() {
  TarBuilder b;
  b.Dir("etc/").File("etc/a", RandomBytes(70000, 11));
  b.Dir("usr/").Dir("usr/bin/").Dir("usr/lib/");
  b.File("usr/lib/libx.so", RandomBytes(150000, 12));
  b.File("var-log", RandomBytes(90000, 13));
  b.File("usr/bin/tool", RandomBytes(200000, 14));
  b.Hardlink("usr/bin/tool-link", "usr/lib/libx.so");
  b.File("usr/bin/other", RandomBytes(30000, 15));
  b.End();
  return b.str();
}

TEST(EstargzWriterTest, PrioritizedFilesComeFirstThenThePrefetchLandmark) {
  const std::string tar = PrioritizedLayerTar();
  EstargzWriterOptions options;
  options.chunk_size = 64 << 10;
  options.prioritized_files = {"/usr/bin/tool", "./usr/bin/tool-link", "no/such/file"};
  Converted c = ConvertOk(tar, options);
  EXPECT_THAT(c.result.missing_prioritized_files, ElementsAre("no/such/file"));
  // In input order: the directories above them, what the hard link links to.
  EXPECT_THAT(TocNames(c.blob),
              ElementsAre("usr", "usr/bin", "usr/lib", "usr/lib/libx.so", "usr/bin/tool",
                          "usr/bin/tool-link", ".prefetch.landmark", "etc", "etc/a", "var-log",
                          "usr/bin/other"));

  std::unique_ptr<StargzTree> tree = Open(c);
  ASSERT_NE(tree, nullptr);
  EXPECT_THAT(CompareTreeWithTar(*tree, tar), IsEmpty());
  EXPECT_EQ(tree->toc().prefetch, PrefetchHint::kLandmark);
  uint64_t landmark_offset = 0;
  for (const Json& e : TocEntries(c.blob)) {
    if (e["name"] == ".prefetch.landmark") landmark_offset = e["offset"];
  }
  std::vector<registry::ByteRange> ranges = tree->PrefetchRanges();
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(ranges[0].offset, 0u);
  EXPECT_EQ(ranges[0].length, landmark_offset);
  // The range holds every chunk of the prioritized files and none of the others.
  for (const char* path : {"usr/lib/libx.so", "usr/bin/tool"}) {
    Result<fuse::Attr> a = LookupPath(*tree, path);
    ASSERT_TRUE(a.ok()) << path;
    for (const TocChunk& chunk : tree->toc().inode(a->ino)->chunks) {
      EXPECT_LE(chunk.blob_end, landmark_offset) << path;
    }
  }
  for (const char* path : {"etc/a", "var-log", "usr/bin/other"}) {
    Result<fuse::Attr> a = LookupPath(*tree, path);
    ASSERT_TRUE(a.ok()) << path;
    for (const TocChunk& chunk : tree->toc().inode(a->ino)->chunks) {
      EXPECT_GE(chunk.blob_offset, landmark_offset) << path;
    }
  }
}

TEST(EstargzWriterTest, PrioritizedConversionMatchesItsDigests) {
  EstargzWriterOptions options;
  options.prioritized_files = {"usr/bin/other"};
  Converted c = ConvertOk(PrioritizedLayerTar(), options);
  const std::string tar = Gunzip(c.blob);
  EXPECT_EQ(c.result.diff_id, Sha256Digest(tar));
  EXPECT_EQ(c.result.uncompressed_size, tar.size());
  EXPECT_EQ(c.result.blob_digest, Sha256Digest(c.blob));
  EXPECT_THAT(c.result.missing_prioritized_files, IsEmpty());
}

TEST(EstargzWriterTest, OnlyMissingPrioritizedFilesStillWriteTheLandmarkFirst) {
  EstargzWriterOptions options;
  options.prioritized_files = {"nothing"};
  Converted c = ConvertOk(TarBuilder().File("a", "a").End().str(), options);
  EXPECT_THAT(TocNames(c.blob), ElementsAre(".prefetch.landmark", "a"));
  EXPECT_THAT(c.result.missing_prioritized_files, ElementsAre("nothing"));
}

TEST(EstargzWriterTest, SpoolDirectoryMustExist) {
  EstargzWriterOptions options;
  options.prioritized_files = {"a"};
  options.spool_dir = "/nonexistent/strata-spool";
  Result<Converted> c = Convert(TarBuilder().File("a", "a").End().str(), options);
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(c.status().IsNotFound()) << c.status().ToString();
}

// ---- names: cleaning, replacement, reserved names ----

TEST(EstargzWriterTest, NamesAreCleanedAsTheUnpackerCleansThem) {
  Converted c = ConvertOk(TarBuilder().Dir("./a//").File("a/./b/../c", "c").End().str());
  EXPECT_THAT(TocNames(c.blob), ElementsAre(".no.prefetch.landmark", "a", "a/c"));
}

TEST(EstargzWriterTest, LaterEntriesReplaceEarlierOnes) {
  TarBuilder b;
  b.File("dup", "first").File("dup", "second");
  b.Dir("d/").File("d/x", "x").File("d", "d is a file now");
  b.Dir("keep/").File("keep/y", "y").Dir("keep/", 0700);
  b.End();
  Converted c = ConvertOk(b.str());
  EXPECT_THAT(TocNames(c.blob), ElementsAre(".no.prefetch.landmark", "dup", "d", "keep/y", "keep"));
  std::unique_ptr<StargzTree> tree = Open(c);
  ASSERT_NE(tree, nullptr);
  Result<fuse::Attr> dup = LookupPath(*tree, "dup");
  ASSERT_TRUE(dup.ok());
  EXPECT_EQ(*ReadWhole(*tree, dup->ino), "second");
  Result<fuse::Attr> d = LookupPath(*tree, "d");
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(S_ISREG(d->mode));
  Result<fuse::Attr> keep = LookupPath(*tree, "keep");
  ASSERT_TRUE(keep.ok());
  EXPECT_EQ(keep->mode & 07777, 0700u);
  EXPECT_TRUE(LookupPath(*tree, "keep/y").ok());
}

TEST(EstargzWriterTest, ReservedNamesFromTheInputAreDropped) {
  TarBuilder b;
  b.File("stargz.index.json", "{}").File("./.prefetch.landmark", "\x0f");
  b.File(".no.prefetch.landmark", "\x0f").File("real", "real");
  b.End();
  Converted c = ConvertOk(b.str());
  EXPECT_EQ(c.result.dropped_entries, 3u);
  EXPECT_THAT(TocNames(c.blob), ElementsAre(".no.prefetch.landmark", "real"));
  EXPECT_NE(Open(c), nullptr);
}

TEST(EstargzWriterTest, ConvertingAnEstargzLayerAgainGivesTheSameTree) {
  const std::string tar = RichLayerTar();
  EstargzWriterOptions options;
  options.prioritized_files = {"bin/busybox"};
  Converted once = ConvertOk(tar, options);
  Converted twice = ConvertOk(Gunzip(once.blob), options);
  EXPECT_EQ(twice.result.dropped_entries, 2u);  // the landmark and stargz.index.json
  EXPECT_EQ(TocNames(twice.blob), TocNames(once.blob));
  std::unique_ptr<StargzTree> tree = Open(twice);
  ASSERT_NE(tree, nullptr);
  EXPECT_THAT(CompareTreeWithTar(*tree, tar), IsEmpty());
}

// ---- hostile and unsupported input ----

Status ConvertError(const std::string& tar) {
  Result<Converted> c = Convert(tar);
  EXPECT_FALSE(c.ok()) << "conversion succeeded";
  return c.ok() ? Status::Ok() : c.status();
}

TEST(EstargzWriterTest, RefusesNamesThatLeaveTheLayer) {
  EXPECT_TRUE(
      ConvertError(TarBuilder().File("../../etc/passwd", "x").End().str()).IsInvalidArgument());
  EXPECT_TRUE(ConvertError(TarBuilder().File("/etc/passwd", "x").End().str()).IsInvalidArgument());
  EXPECT_TRUE(ConvertError(TarBuilder().File("a", "x").Hardlink("b", "../a").End().str())
                  .IsInvalidArgument());
}

TEST(EstargzWriterTest, RefusesWhatTocReadersWouldRefuse) {
  // A name component longer than any file system allows.
  Status long_component =
      ConvertError(TarBuilder().Pax({{"path", std::string(300, 'n')}}).File("x", "").End().str());
  EXPECT_TRUE(long_component.IsInvalidArgument()) << long_component.ToString();
  Status not_utf8 = ConvertError(TarBuilder().File("bad\xff", "x").End().str());
  EXPECT_TRUE(not_utf8.IsInvalidArgument());
  EXPECT_THAT(not_utf8.message(), HasSubstr("UTF-8"));
  Status under_file = ConvertError(TarBuilder().File("f", "x").File("f/g", "y").End().str());
  EXPECT_TRUE(under_file.IsInvalidArgument());
  EXPECT_THAT(under_file.message(), HasSubstr("not a directory"));
  Status dangling = ConvertError(TarBuilder().Hardlink("h", "missing").End().str());
  EXPECT_TRUE(dangling.IsInvalidArgument());
  EXPECT_THAT(dangling.message(), HasSubstr("does not have"));
  Status to_dir = ConvertError(TarBuilder().Dir("d/").Hardlink("h", "d").End().str());
  EXPECT_TRUE(to_dir.IsInvalidArgument());
  Status cycle = ConvertError(TarBuilder().Hardlink("a", "b").Hardlink("b", "a").End().str());
  EXPECT_TRUE(cycle.IsInvalidArgument());
  EXPECT_THAT(cycle.message(), HasSubstr("cycle"));
  Status replaced_link_target =
      ConvertError(TarBuilder().File("t", "1").Hardlink("h", "t").File("t", "2").End().str());
  EXPECT_TRUE(replaced_link_target.IsInvalidArgument());
  Status volume = ConvertError(TarBuilder().Entry(Header("label", 'V')).End().str());
  EXPECT_TRUE(volume.IsInvalidArgument());
  Status big_xattr = ConvertError(TarBuilder()
                                      .Pax({{"SCHILY.xattr.user.big", std::string(70000, 'v')}})
                                      .File("x", "")
                                      .End()
                                      .str());
  EXPECT_TRUE(big_xattr.IsInvalidArgument());
  EXPECT_THAT(big_xattr.message(), HasSubstr("64 KiB"));
  TarHeader negative = Header("neg");
  negative.uid = -1;
  negative.base256_numbers = true;
  EXPECT_TRUE(ConvertError(TarBuilder().Entry(negative, "").End().str()).IsInvalidArgument());
}

TEST(EstargzWriterTest, AbsurdSizesEndInDataLossNotACrash) {
  TarHeader huge = Header("huge");
  huge.size = int64_t{1} << 40;
  TarBuilder b;
  b.Header(huge).Raw(std::string(5000, 'x'));
  Status status = ConvertError(b.str());
  EXPECT_EQ(status.code(), Code::kDataLoss) << status.ToString();
}

TEST(EstargzWriterTest, SinkErrorsStopTheConversion) {
  auto source = transfer::NewStringSource(RichLayerTar());
  int calls = 0;
  Result<EstargzResult> result = ConvertLayerToEstargz(*source, [&](const char*, size_t) {
    calls++;
    return Status::Unavailable("disk gone");
  });
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), Code::kUnavailable);
  EXPECT_EQ(calls, 1);
}

TEST(EstargzWriterTest, RefusesOptionsOutOfRange) {
  EstargzWriterOptions zero_chunks;
  zero_chunks.chunk_size = 0;
  EXPECT_TRUE(Convert("", zero_chunks).status().IsInvalidArgument());
  EstargzWriterOptions huge_chunks;
  huge_chunks.chunk_size = uint64_t{65} << 20;
  EXPECT_TRUE(Convert("", huge_chunks).status().IsInvalidArgument());
  EstargzWriterOptions bad_level;
  bad_level.gzip_level = 10;
  EXPECT_TRUE(Convert("", bad_level).status().IsInvalidArgument());
}

TEST(EstargzWriterTest, EmptyLayerHasOnlyTheLandmark) {
  Converted c = ConvertOk(TarBuilder().End().str());
  EXPECT_THAT(TocNames(c.blob), ElementsAre(".no.prefetch.landmark"));
  EXPECT_NE(Open(c), nullptr);
}

// ---- streaming ----

// A tar of one file of `size` bytes, made up as it is read; counts what was read.
class GeneratedLayer : public transfer::ByteSource {
 public:
  explicit GeneratedLayer(uint64_t size) : size_(size) {
    TarHeader h = Header("big");
    h.size = static_cast<int64_t>(size);
    header_ = TarBuilder().Header(h).str();
    total_ = header_.size() + size + (512 - size % 512) % 512 + 1024;
  }

  Result<size_t> Read(char* buf, size_t n) override {
    size_t done = 0;
    while (done < n && produced_ < total_) {
      if (produced_ < header_.size()) {
        buf[done] = header_[produced_];
      } else if (produced_ < header_.size() + size_) {
        buf[done] = static_cast<char>((produced_ * 2654435761u) >> 13);
      } else {
        buf[done] = '\0';
      }
      done++;
      produced_++;
    }
    return done;
  }

  uint64_t produced() const { return produced_; }

 private:
  const uint64_t size_;
  std::string header_;
  uint64_t total_ = 0;
  uint64_t produced_ = 0;
};

TEST(EstargzWriterTest, StreamsWithoutHoldingTheLayer) {
  GeneratedLayer layer(uint64_t{96} << 20);
  uint64_t emitted = 0;
  uint64_t max_lag = 0;
  EstargzWriterOptions options;
  options.gzip_level = 0;  // stored: the blob grows as fast as the input is read
  Result<EstargzResult> result = ConvertLayerToEstargz(
      layer,
      [&](const char*, size_t n) {
        emitted += n;
        if (layer.produced() > emitted) max_lag = std::max(max_lag, layer.produced() - emitted);
        return Status::Ok();
      },
      options);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_GT(result->blob_size, uint64_t{96} << 20);
  // Buffers, not the layer: the tar reader's, the 512 KiB content buffer, the 256 KiB
  // output buffer.
  EXPECT_LT(max_lag, uint64_t{4} << 20);
}

}  // namespace
}  // namespace strata::lazy::stargz
