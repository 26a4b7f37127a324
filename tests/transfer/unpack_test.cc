// Specification of UnpackLayer and FinishLayer (unpack.h). Runs as root on the real
// filesystem under /tmp (trusted.* xattrs, chown and mknod need root).
#include "transfer/unpack.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "core/digest.h"
#include "tests/transfer/tar_builder.h"
#include "tests/transfer/unpack_test_support.h"
#include "transfer/pipe.h"

namespace strata::transfer {
namespace {

using testing::TarBuilder;
using testing::TarHeader;

// A valid VFS_CAP_REVISION_2 security.capability value (cap_net_bind_service, effective).
const std::string kCapability(
    "\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00",
    20);

std::string Xattr(const std::string& path, const std::string& name) {
  char buf[4096];
  ssize_t n = ::lgetxattr(path.c_str(), name.c_str(), buf, sizeof buf);
  return n < 0 ? "<none>" : std::string(buf, static_cast<size_t>(n));
}

struct stat Lstat(const std::string& path) {
  struct stat st = {};
  if (::lstat(path.c_str(), &st) != 0) st.st_mode = 0;
  return st;
}

bool Contains(const Status& status, const std::string& text) {
  return status.message().find(text) != std::string::npos;
}

TarHeader Header(const std::string& name, char typeflag = '0', uint32_t mode = 0644) {
  TarHeader h;
  h.name = name;
  h.typeflag = typeflag;
  h.mode = mode;
  return h;
}

class UnpackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dest_ = tmp_.Sub("dest");
    sentinel_ = tmp_.Sub("sentinel");
    ASSERT_EQ(::mkdir(dest_.c_str(), 0755), 0);
    ASSERT_EQ(::mkdir(sentinel_.c_str(), 0755), 0);
    testing::WriteFile(sentinel_ + "/secret", "untouched");
    sentinel_before_ = testing::DescribeTree(sentinel_, true);
    sentinel_dir_before_ = Lstat(sentinel_);
  }

  Result<UnpackResult> Unpack(const std::string& blob, UnpackOptions options = {}) {
    auto source = NewStringSource(blob);
    return UnpackLayer(*source, dest_, options);
  }

  UnpackResult UnpackOk(const std::string& blob, UnpackOptions options = {}) {
    auto result = Unpack(blob, options);
    EXPECT_TRUE(result.ok()) << result.status().ToString();
    return result.ok() ? *result : UnpackResult();
  }

  // Unpacks a hostile archive: it must fail with `code`, and nothing outside dest may
  // have changed.
  Status UnpackHostile(const std::string& blob, Code code, UnpackOptions options = {}) {
    auto result = Unpack(blob, options);
    EXPECT_FALSE(result.ok()) << "hostile archive was accepted: "
                              << testing::Output("cd " + dest_ + " && find .");
    if (result.ok()) return Status::Ok();
    EXPECT_EQ(result.status().code(), code) << result.status().ToString();
    ExpectOutsideUntouched();
    return result.status();
  }

  void ExpectOutsideUntouched() {
    EXPECT_EQ(testing::DescribeTree(sentinel_, true), sentinel_before_);
    struct stat st = Lstat(sentinel_);
    EXPECT_EQ(st.st_mode, sentinel_dir_before_.st_mode);
    EXPECT_EQ(st.st_uid, sentinel_dir_before_.st_uid);
    EXPECT_EQ(Xattr(sentinel_, "trusted.overlay.opaque"), "<none>");
    std::string listing = testing::Output("ls -A " + tmp_.path());
    EXPECT_EQ(listing, "dest\nsentinel\n");
    EXPECT_FALSE(testing::Output("ls -A /").find("escaped") != std::string::npos);
  }

  std::string D(const std::string& relative) const { return dest_ + "/" + relative; }

  testing::TempDir tmp_;
  std::string dest_;
  std::string sentinel_;
  std::map<std::string, std::string> sentinel_before_;
  struct stat sentinel_dir_before_;
};

TEST_F(UnpackTest, UnpacksEveryEntryType) {
  TarBuilder b;
  b.Dir("dir/", 0750);
  b.File("dir/file", "content", 0640);
  b.Symlink("dir/link", "../elsewhere");
  b.Hardlink("dir/hard", "dir/file");
  TarHeader chr = Header("dev/null", '3', 0666);
  chr.dev_major = 1;
  chr.dev_minor = 3;
  b.Entry(chr);
  TarHeader blk = Header("dev/loop0", '4', 0660);
  blk.dev_major = 7;
  blk.dev_minor = 0;
  b.Entry(blk);
  b.Entry(Header("fifo", '6', 0600));
  b.Entry(Header("empty", '0', 0444));
  b.End();
  UnpackOptions options;
  options.allow_devices = true;
  UnpackResult result = UnpackOk(b.str(), options);
  EXPECT_EQ(result.entries, 8u);

  struct stat dir = Lstat(D("dir"));
  EXPECT_TRUE(S_ISDIR(dir.st_mode));
  EXPECT_EQ(dir.st_mode & 07777, 0750u);
  EXPECT_EQ(testing::ReadFileOrEmpty(D("dir/file")), "content");
  EXPECT_EQ(Lstat(D("dir/file")).st_mode & 07777, 0640u);
  EXPECT_EQ(testing::Output("readlink " + D("dir/link")), "../elsewhere\n");
  struct stat file = Lstat(D("dir/file"));
  struct stat hard = Lstat(D("dir/hard"));
  EXPECT_EQ(file.st_ino, hard.st_ino);
  EXPECT_EQ(file.st_nlink, 2u);
  struct stat null_dev = Lstat(D("dev/null"));
  EXPECT_TRUE(S_ISCHR(null_dev.st_mode));
  EXPECT_EQ(null_dev.st_rdev, makedev(1, 3));
  EXPECT_EQ(null_dev.st_mode & 07777, 0666u);
  struct stat loop = Lstat(D("dev/loop0"));
  EXPECT_TRUE(S_ISBLK(loop.st_mode));
  EXPECT_EQ(loop.st_rdev, makedev(7, 0));
  EXPECT_TRUE(S_ISFIFO(Lstat(D("fifo")).st_mode));
  EXPECT_EQ(Lstat(D("empty")).st_size, 0);
  EXPECT_EQ(Lstat(D("empty")).st_mode & 07777, 0444u);
}

TEST_F(UnpackTest, DevicesAreRefusedUnlessAllowed) {
  TarBuilder b;
  TarHeader chr = Header("dev/mem", '3', 0600);
  chr.dev_major = 1;
  chr.dev_minor = 1;
  b.Entry(chr).End();
  Status s = UnpackHostile(b.str(), Code::kPermissionDenied);
  EXPECT_TRUE(Contains(s, "\"dev/mem\"")) << s.message();
  EXPECT_EQ(Lstat(D("dev/mem")).st_mode, 0u);
}

TEST_F(UnpackTest, OwnersAndSpecialModeBitsSurviveChown) {
  TarBuilder b;
  TarHeader suid = Header("bin/su", '0', 06755);
  suid.uid = 1000;
  suid.gid = 2000;
  b.Entry(suid, "binary");
  TarHeader sticky = Header("tmp/", '5', 01777);
  b.Entry(sticky);
  TarHeader setgid_dir = Header("shared/", '5', 02775);
  setgid_dir.uid = 3;
  setgid_dir.gid = 4;
  b.Entry(setgid_dir);
  TarHeader link = Header("bin/link", '2', 0777);
  link.linkname = "su";
  link.uid = 55;
  link.gid = 66;
  b.Entry(link);
  b.Pax({{"uid", "4000000000"}, {"gid", "70000"}});
  b.File("bigids", "x");
  b.End();
  UnpackOk(b.str());
  struct stat su = Lstat(D("bin/su"));
  EXPECT_EQ(su.st_mode & 07777, 06755u);
  EXPECT_EQ(su.st_uid, 1000u);
  EXPECT_EQ(su.st_gid, 2000u);
  EXPECT_EQ(Lstat(D("tmp")).st_mode & 07777, 01777u);
  struct stat shared = Lstat(D("shared"));
  EXPECT_EQ(shared.st_mode & 07777, 02775u);
  EXPECT_EQ(shared.st_uid, 3u);
  struct stat symlink = Lstat(D("bin/link"));
  EXPECT_TRUE(S_ISLNK(symlink.st_mode));
  EXPECT_EQ(symlink.st_uid, 55u);
  EXPECT_EQ(symlink.st_gid, 66u);
  EXPECT_EQ(Lstat(D("bigids")).st_uid, 4000000000u);
  EXPECT_EQ(Lstat(D("bigids")).st_gid, 70000u);
}

TEST_F(UnpackTest, XattrsIncludingSecurityCapabilityAfterChown) {
  TarBuilder b;
  b.Pax({{"SCHILY.xattr.user.note", "hello"},
         {"SCHILY.xattr.trusted.meta", "t"},
         {"SCHILY.xattr.security.capability", kCapability},
         {"uid", "1000"}});
  b.File("ping", "elf", 0755);
  b.Pax({{"LIBARCHIVE.xattr.user.b64", "YmFzZTY0"}, {"SCHILY.xattr.user.empty", ""}});
  b.Dir("dir/");
  b.Pax({{"SCHILY.xattr.trusted.t", "on-symlink"}, {"SCHILY.xattr.user.skip", "x"}});
  b.Symlink("sym", "ping");
  // overlayfs's own xattrs in an archive are ignored.
  b.Pax({{"SCHILY.xattr.trusted.overlay.opaque", "y"},
         {"SCHILY.xattr.trusted.overlay.redirect", "/etc"}});
  b.Dir("sneaky/");
  b.End();
  UnpackOk(b.str());
  EXPECT_EQ(Xattr(D("ping"), "user.note"), "hello");
  EXPECT_EQ(Xattr(D("ping"), "trusted.meta"), "t");
  EXPECT_EQ(Xattr(D("ping"), "security.capability"), kCapability);
  EXPECT_EQ(Lstat(D("ping")).st_uid, 1000u);
  EXPECT_EQ(Xattr(D("dir"), "user.b64"), "base64");
  EXPECT_EQ(Xattr(D("dir"), "user.empty"), "");
  EXPECT_EQ(Xattr(D("sym"), "trusted.t"), "on-symlink");
  EXPECT_EQ(Xattr(D("sym"), "user.skip"), "<none>");  // user.* is not allowed on symlinks
  EXPECT_EQ(Xattr(D("sneaky"), "trusted.overlay.opaque"), "<none>");
  EXPECT_EQ(Xattr(D("sneaky"), "trusted.overlay.redirect"), "<none>");
}

TEST_F(UnpackTest, TimesKeepNanosecondsAndDirectoriesGetTheirsLast) {
  TarBuilder b;
  b.Pax({{"mtime", "1500000000.111111111"}});
  b.Dir("dir/");
  b.Pax({{"mtime", "1600000000.123456789"}, {"atime", "1600000100.987654321"}});
  b.File("dir/file", "x");
  b.Pax({{"mtime", "1400000000.5"}});
  b.Symlink("dir/link", "file");
  b.Pax({{"mtime", "1300000000.000000001"}});
  b.Dir("dir/sub/");
  b.File("dir/sub/late", "made after dir/sub's entry");
  b.End();
  UnpackOk(b.str());
  struct stat file = Lstat(D("dir/file"));
  EXPECT_EQ(file.st_mtim.tv_sec, 1600000000);
  EXPECT_EQ(file.st_mtim.tv_nsec, 123456789);
  EXPECT_EQ(file.st_atim.tv_sec, 1600000100);
  EXPECT_EQ(file.st_atim.tv_nsec, 987654321);
  struct stat link = Lstat(D("dir/link"));
  EXPECT_EQ(link.st_mtim.tv_sec, 1400000000);
  EXPECT_EQ(link.st_mtim.tv_nsec, 500000000);
  struct stat dir = Lstat(D("dir"));
  EXPECT_EQ(dir.st_mtim.tv_sec, 1500000000);
  EXPECT_EQ(dir.st_mtim.tv_nsec, 111111111);
  struct stat sub = Lstat(D("dir/sub"));
  EXPECT_EQ(sub.st_mtim.tv_sec, 1300000000);
  EXPECT_EQ(sub.st_mtim.tv_nsec, 1);
}

TEST_F(UnpackTest, SparseFilesKeepTheirHoles) {
  std::vector<std::pair<int64_t, int64_t>> segments = {
      {0, 4096}, {int64_t{32} << 20, 8192}, {int64_t{64} << 20, 0}};
  std::string stored = testing::RandomBytes(4096 + 8192, 7);
  TarBuilder b;
  b.OldGnuSparse("disk.img", segments, int64_t{64} << 20, stored);
  b.PaxSparse10("pax.img", {{int64_t{16} << 20, 100}}, int64_t{20} << 20, stored.substr(0, 100));
  b.End();
  UnpackOk(b.str());
  struct stat st = Lstat(D("disk.img"));
  EXPECT_EQ(st.st_size, int64_t{64} << 20);
  EXPECT_LT(st.st_blocks * 512, 1 << 20) << "holes were written as data";
  std::string content = testing::ReadFileOrEmpty(D("disk.img"));
  ASSERT_EQ(content.size(), size_t{64} << 20);
  EXPECT_EQ(content.substr(0, 4096), stored.substr(0, 4096));
  EXPECT_EQ(content.substr(size_t{32} << 20, 8192), stored.substr(4096));
  EXPECT_EQ(content.find_first_not_of('\0', 4096), size_t{32} << 20);
  EXPECT_EQ(content.find_first_not_of('\0', (size_t{32} << 20) + 8192), std::string::npos);
  struct stat pax = Lstat(D("pax.img"));
  EXPECT_EQ(pax.st_size, int64_t{20} << 20);
  EXPECT_LT(pax.st_blocks * 512, 1 << 20);
  std::string pax_content = testing::ReadFileOrEmpty(D("pax.img"));
  EXPECT_EQ(pax_content.substr(size_t{16} << 20, 100), stored.substr(0, 100));
}

TEST_F(UnpackTest, WhiteoutsAndOpaqueDirectories) {
  TarBuilder b;
  b.Dir("dir/");
  TarHeader whiteout = Header("dir/.wh.gone", '0', 0644);
  whiteout.uid = 12;
  whiteout.gid = 34;
  b.Entry(whiteout);
  b.File(".wh.top", "");
  b.Dir("opq/");
  b.File("opq/.wh..wh..opq", "");
  b.File("opq/kept", "k");
  b.File("implicit/.wh..wh..opq", "");
  b.File("dir/.wh..wh.plnk", "");  // aufs bookkeeping: ignored
  b.End();
  UnpackResult result = UnpackOk(b.str());
  struct stat gone = Lstat(D("dir/gone"));
  EXPECT_TRUE(S_ISCHR(gone.st_mode));
  EXPECT_EQ(gone.st_rdev, makedev(0, 0));
  EXPECT_EQ(gone.st_uid, 12u);
  EXPECT_EQ(gone.st_gid, 34u);
  EXPECT_EQ(Lstat(D("dir/.wh.gone")).st_mode, 0u);
  EXPECT_TRUE(S_ISCHR(Lstat(D("top")).st_mode));
  EXPECT_EQ(Xattr(D("opq"), "trusted.overlay.opaque"), "y");
  EXPECT_EQ(Lstat(D("opq/.wh..wh..opq")).st_mode, 0u);
  EXPECT_EQ(testing::ReadFileOrEmpty(D("opq/kept")), "k");
  EXPECT_EQ(Xattr(D("implicit"), "trusted.overlay.opaque"), "y");
  EXPECT_EQ(result.implicit_dirs, std::vector<std::string>{"implicit"});
  EXPECT_EQ(Lstat(D("dir/.wh..wh.plnk")).st_mode, 0u);
  EXPECT_EQ(Lstat(D("dir/plnk")).st_mode, 0u);
  EXPECT_EQ(Xattr(D("dir"), "trusted.overlay.opaque"), "<none>");
}

TEST_F(UnpackTest, UserxattrMarksOpaqueDirectoriesInTheUserNamespace) {
  TarBuilder b;
  b.Dir("opq/").File("opq/.wh..wh..opq", "").End();
  UnpackOptions options;
  options.userxattr = true;
  UnpackOk(b.str(), options);
  EXPECT_EQ(Xattr(D("opq"), "user.overlay.opaque"), "y");
  EXPECT_EQ(Xattr(D("opq"), "trusted.overlay.opaque"), "<none>");
}

TEST_F(UnpackTest, MissingParentsAreCreatedAndReported) {
  TarBuilder b;
  b.File("a/b/c/file", "deep");
  b.File("x/y", "");
  b.Dir("a/", 0700);  // listed after all: no longer implicit
  b.End();
  UnpackResult result = UnpackOk(b.str());
  EXPECT_EQ(result.implicit_dirs, (std::vector<std::string>{"a/b", "a/b/c", "x"}));
  EXPECT_EQ(Lstat(D("a/b")).st_mode & 07777, 0755u);
  EXPECT_EQ(Lstat(D("a")).st_mode & 07777, 0700u);
  EXPECT_EQ(testing::ReadFileOrEmpty(D("a/b/c/file")), "deep");
}

TEST_F(UnpackTest, LaterEntriesReplaceEarlierOnes) {
  TarBuilder b;
  b.File("f", "first");
  b.File("f", "second");
  b.File("becomes-dir", "file");
  b.Dir("becomes-dir/");
  b.Dir("becomes-file/");
  b.File("becomes-file/child", "gone");
  b.File("becomes-file", "now a file");
  b.Dir("merged/", 0700);
  b.File("merged/old", "stays");
  b.Dir("merged/", 0711);
  b.Symlink("was-link", "f");
  b.File("was-link", "regular now");
  b.File("implicit/child", "");
  b.Symlink("implicit", "f");
  b.File("to-link", "");
  b.Symlink("to-link", "f");
  b.End();
  UnpackResult result = UnpackOk(b.str());
  EXPECT_EQ(testing::ReadFileOrEmpty(D("f")), "second");
  EXPECT_TRUE(S_ISDIR(Lstat(D("becomes-dir")).st_mode));
  EXPECT_TRUE(S_ISREG(Lstat(D("becomes-file")).st_mode));
  EXPECT_EQ(testing::ReadFileOrEmpty(D("becomes-file")), "now a file");
  EXPECT_EQ(testing::ReadFileOrEmpty(D("merged/old")), "stays");
  EXPECT_EQ(Lstat(D("merged")).st_mode & 07777, 0711u);
  EXPECT_TRUE(S_ISREG(Lstat(D("was-link")).st_mode));
  EXPECT_EQ(testing::ReadFileOrEmpty(D("f")), "second");  // not written through the link
  EXPECT_TRUE(S_ISLNK(Lstat(D("implicit")).st_mode));
  EXPECT_TRUE(result.implicit_dirs.empty());
  EXPECT_TRUE(S_ISLNK(Lstat(D("to-link")).st_mode));
}

TEST_F(UnpackTest, HardlinksToFilesOutsideTheLayerAreDeferred) {
  TarBuilder b;
  b.Hardlink("bin/tool", "usr/bin/tool");
  b.Hardlink("bin/tool2", "bin/tool");  // a link to a deferred link waits for the same file
  b.File("usr/local/real", "r");
  b.Hardlink("usr/local/link", "usr/local/real");
  b.Hardlink("replaced", "usr/bin/other");
  b.File("replaced", "a later entry took the place");
  b.End();
  UnpackResult result = UnpackOk(b.str());
  EXPECT_EQ(
      result.deferred_hardlinks,
      (std::vector<DeferredHardlink>{{"bin/tool", "usr/bin/tool"}, {"bin/tool2", "usr/bin/tool"}}));
  EXPECT_EQ(Lstat(D("bin/tool")).st_mode, 0u);
  EXPECT_EQ(Lstat(D("usr/local/link")).st_ino, Lstat(D("usr/local/real")).st_ino);
  EXPECT_EQ(result.implicit_dirs, (std::vector<std::string>{"bin", "usr", "usr/local"}));
}

TEST_F(UnpackTest, HardlinkToADirectoryIsRefused) {
  TarBuilder b;
  b.Dir("d/").Hardlink("l", "d").End();
  Status s = UnpackHostile(b.str(), Code::kInvalidArgument);
  EXPECT_TRUE(Contains(s, "hard link to directory")) << s.message();
}

TEST_F(UnpackTest, DiffIdIsTheSha256OfTheTarStream) {
  TarBuilder b;
  b.Dir("etc/").File("etc/hostname", "strata\n").File("big", testing::RandomBytes(3 << 20, 9));
  b.End();
  b.Raw(std::string(10240 - b.str().size() % 10240, '\0'));  // record padding after the marker
  std::string tar = b.str();
  testing::WriteFile(tmp_.Sub("layer.tar"), tar);
  std::string expected =
      "sha256:" + testing::Output("sha256sum " + tmp_.Sub("layer.tar")).substr(0, 64);
  ASSERT_EQ(::unlink(tmp_.Sub("layer.tar").c_str()), 0);

  for (const auto& [label, blob] : {std::pair<std::string, std::string>{"plain", tar},
                                    {"gzip", testing::GzipCompress(tar)},
                                    {"zstd", testing::ZstdCompress(tar)}}) {
    ASSERT_EQ(testing::Run("rm -rf " + dest_ + " && mkdir " + dest_), 0);
    UnpackResult result = UnpackOk(blob);
    EXPECT_EQ(result.diff_id, expected) << label;
    EXPECT_EQ(result.uncompressed_bytes, tar.size()) << label;
    EXPECT_EQ(result.compressed_bytes, blob.size()) << label;
    EXPECT_EQ(result.entries, 3u) << label;
    EXPECT_EQ(testing::ReadFileOrEmpty(D("etc/hostname")), "strata\n") << label;
  }
}

TEST_F(UnpackTest, ExpectedDiffIdMismatchIsDataLoss) {
  TarBuilder b;
  b.File("f", "x").End();
  UnpackOptions options;
  options.expected_diff_id = Sha256Digest(b.str());
  UnpackOk(b.str(), options);
  ASSERT_EQ(testing::Run("rm -rf " + dest_ + " && mkdir " + dest_), 0);
  options.expected_diff_id = Sha256Digest("something else");
  auto result = Unpack(b.str(), options);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), Code::kDataLoss);
  EXPECT_EQ(result.status().message(), "layer diff id mismatch: expected " +
                                           options.expected_diff_id + ", got " +
                                           Sha256Digest(b.str()));
}

TEST_F(UnpackTest, CorruptCompressedLayerFails) {
  TarBuilder b;
  b.File("f", testing::RandomBytes(100000, 3)).End();
  std::string gz = testing::GzipCompress(b.str());
  auto truncated = Unpack(gz.substr(0, gz.size() - 10));
  EXPECT_EQ(truncated.status().code(), Code::kDataLoss) << truncated.status().ToString();
  UnpackOptions zstd;
  zstd.compression = Compression::kZstd;
  EXPECT_TRUE(Unpack(gz, zstd).status().IsInvalidArgument());
}

TEST_F(UnpackTest, SameTreeWithAndWithoutThePipelineThread) {
  TarBuilder b;
  for (int i = 0; i < 50; i++) {
    b.File("d" + std::to_string(i % 5) + "/f" + std::to_string(i),
           testing::RandomBytes(static_cast<size_t>(i) * 3000, static_cast<uint32_t>(i)));
  }
  b.File("big", testing::CompressibleBytes(5 << 20, 1)).End();
  std::string gz = testing::GzipCompress(b.str());
  std::map<std::string, std::string> first;
  for (size_t pipeline : {size_t{0}, size_t{4096}, size_t{4} << 20}) {
    ASSERT_EQ(testing::Run("rm -rf " + dest_ + " && mkdir " + dest_), 0);
    UnpackOptions options;
    options.pipeline_bytes = pipeline;
    UnpackResult result = UnpackOk(gz, options);
    EXPECT_EQ(result.diff_id, Sha256Digest(b.str()));
    auto tree = testing::DescribeTree(dest_, false);
    if (first.empty()) first = tree;
    EXPECT_EQ(tree, first) << "pipeline " << pipeline;
  }
  EXPECT_EQ(first.size(), 56u);
}

TEST_F(UnpackTest, ReadsFromAPipeFedByADownloadThread) {
  TarBuilder b;
  b.File("file", testing::RandomBytes(2 << 20, 11)).End();
  std::string blob = testing::ZstdCompress(b.str());
  Pipe download(64 * 1024);
  std::thread downloader([&] {
    for (size_t pos = 0; pos < blob.size(); pos += 5000) {
      if (!download.Write(blob.data() + pos, std::min<size_t>(5000, blob.size() - pos)).ok())
        return;
    }
    download.CloseWrite(Status::Ok());
  });
  auto result = UnpackLayer(download, dest_);
  downloader.join();
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->diff_id, Sha256Digest(b.str()));
  EXPECT_EQ(testing::ReadFileOrEmpty(D("file")), testing::RandomBytes(2 << 20, 11));
}

TEST_F(UnpackTest, DownloadErrorsFailTheUnpack) {
  TarBuilder b;
  b.File("file", testing::RandomBytes(1 << 20, 12)).End();
  std::string blob = testing::GzipCompress(b.str());
  Pipe download(64 * 1024);
  std::thread downloader([&] {
    (void)download.Write(blob.data(), blob.size() / 2);
    download.CloseWrite(Status::Unavailable("connection reset by registry"));
  });
  auto result = UnpackLayer(download, dest_);
  downloader.join();
  EXPECT_EQ(result.status().code(), Code::kUnavailable);
}

TEST_F(UnpackTest, DotDotInsideTheTreeIsFolded) {
  TarBuilder b;
  b.File("./a/../b", "folded").File("c/./d/../e", "e").End();
  UnpackOk(b.str());
  EXPECT_EQ(testing::ReadFileOrEmpty(D("b")), "folded");
  EXPECT_EQ(testing::ReadFileOrEmpty(D("c/e")), "e");
}

TEST_F(UnpackTest, RootEntryIsIgnored) {
  TarBuilder b;
  b.Dir("./", 0700).File("./f", "x").End();
  UnpackResult result = UnpackOk(b.str());
  EXPECT_EQ(result.entries, 2u);
  EXPECT_EQ(Lstat(dest_).st_mode & 07777, 0755u);
}

// ---- hostile archives ----

TEST_F(UnpackTest, AbsolutePathsAreRefused) {
  TarBuilder b;
  b.File("/" + tmp_.Sub("escaped").substr(1), "pwned").End();
  Status s = UnpackHostile(b.str(), Code::kInvalidArgument);
  EXPECT_TRUE(Contains(s, "absolute path")) << s.message();
  TarBuilder root;
  root.File("/escaped", "pwned").End();
  (void)UnpackHostile(root.str(), Code::kInvalidArgument);
}

TEST_F(UnpackTest, DotDotThatLeavesTheRootIsRefused) {
  for (std::string name : {"../sentinel/evil", "a/../../sentinel/evil", "./../escaped", ".."}) {
    TarBuilder b;
    b.File(name, "pwned").End();
    Status s = UnpackHostile(b.str(), Code::kInvalidArgument);
    EXPECT_TRUE(Contains(s, "climbs above the layer root")) << name << ": " << s.message();
  }
}

TEST_F(UnpackTest, EntriesThroughASymlinkAreRefused) {
  for (std::string target : {sentinel_, std::string("../sentinel"), std::string("/")}) {
    for (std::string entry :
         {"link/evil", "link/sub/evil", "link/.wh.secret", "link/.wh..wh..opq"}) {
      ASSERT_EQ(testing::Run("rm -rf " + dest_ + " && mkdir " + dest_), 0);
      TarBuilder b;
      b.Symlink("link", target).File(entry, "pwned").End();
      Status s = UnpackHostile(b.str(), Code::kPermissionDenied);
      EXPECT_TRUE(Contains(s, "goes through symlink \"link\"")) << entry << ": " << s.message();
    }
  }
  EXPECT_EQ(testing::ReadFileOrEmpty(sentinel_ + "/secret"), "untouched");
}

TEST_F(UnpackTest, SymlinkThatReplacedADirectoryMidArchiveIsNotFollowed) {
  TarBuilder b;
  b.Dir("d/");
  b.File("d/a", "inside");
  b.Symlink("d", sentinel_);
  b.File("d/evil", "pwned");
  b.End();
  (void)UnpackHostile(b.str(), Code::kPermissionDenied);
  TarBuilder deeper;  // the cached directory below the replaced one must not be reused
  deeper.Dir("d/").Dir("d/e/").File("d/e/a", "x").Symlink("d", sentinel_).File("d/e/b", "pwned");
  deeper.End();
  ASSERT_EQ(testing::Run("rm -rf " + dest_ + " && mkdir " + dest_), 0);
  (void)UnpackHostile(deeper.str(), Code::kPermissionDenied);
}

TEST_F(UnpackTest, EntriesReplacingASymlinkDoNotWriteThroughIt) {
  TarBuilder b;
  b.Symlink("x", sentinel_ + "/secret");
  b.File("x", "replaced");
  b.Symlink("y", sentinel_);
  b.Dir("y/", 0700);
  b.Symlink("z", sentinel_ + "/secret");
  b.Hardlink("h", "z");  // links the symlink itself
  b.End();
  UnpackOk(b.str());
  EXPECT_EQ(testing::ReadFileOrEmpty(D("x")), "replaced");
  EXPECT_TRUE(S_ISDIR(Lstat(D("y")).st_mode));
  EXPECT_TRUE(S_ISLNK(Lstat(D("h")).st_mode));
  EXPECT_EQ(Lstat(D("h")).st_ino, Lstat(D("z")).st_ino);
  ExpectOutsideUntouched();
}

TEST_F(UnpackTest, HardlinksThatEscapeAreRefused) {
  {
    TarBuilder b;
    b.Hardlink("h", "../sentinel/secret").End();
    (void)UnpackHostile(b.str(), Code::kInvalidArgument);
  }
  {
    TarBuilder b;
    b.Hardlink("h", sentinel_ + "/secret").End();
    Status s = UnpackHostile(b.str(), Code::kInvalidArgument);
    EXPECT_TRUE(Contains(s, "absolute path")) << s.message();
  }
  {
    ASSERT_EQ(testing::Run("rm -rf " + dest_ + " && mkdir " + dest_), 0);
    TarBuilder b;
    b.Symlink("link", sentinel_).Hardlink("h", "link/secret").End();
    Status s = UnpackHostile(b.str(), Code::kPermissionDenied);
    EXPECT_TRUE(Contains(s, "goes through symlink")) << s.message();
  }
  EXPECT_EQ(Lstat(sentinel_ + "/secret").st_nlink, 1u);
}

TEST_F(UnpackTest, MalformedArchivesAreRefused) {
  {
    TarBuilder b;
    b.Pax({{"path", std::string("a\0/../../escaped", 16)}}).File("f", "").End();
    Status s = UnpackHostile(b.str(), Code::kInvalidArgument);
    EXPECT_TRUE(Contains(s, "NUL")) << s.message();
  }
  {
    TarBuilder b;
    b.Pax({{"comment", std::string(2 << 20, 'x')}}).File("f", "").End();
    (void)UnpackHostile(b.str(), Code::kInvalidArgument);
  }
  {
    TarBuilder b;
    b.File("ok", "1").File("cut", std::string(10000, 'c')).End();
    Status s = UnpackHostile(b.str().substr(0, 3000), Code::kDataLoss);
    EXPECT_TRUE(Contains(s, "truncated tar archive")) << s.message();
    EXPECT_TRUE(Contains(s, "\"cut\"")) << s.message();
  }
  {
    TarBuilder b;  // a size larger than what follows
    TarHeader h = Header("liar");
    h.size = int64_t{1} << 33;
    b.Header(h).Content("short").End();
    (void)UnpackHostile(b.str(), Code::kDataLoss);
  }
  {
    TarBuilder b;
    TarHeader h = Header("bad-uid");
    h.base256_numbers = true;
    h.uid = 4294967295;  // would mean "leave unchanged" to chown
    b.Entry(h, "").End();
    (void)UnpackHostile(b.str(), Code::kInvalidArgument);
  }
  {
    TarBuilder b;
    b.File("x/.wh..", "").End();
    (void)UnpackHostile(b.str(), Code::kInvalidArgument);
  }
  {
    TarBuilder b;
    b.Entry(Header("weird", 'D')).End();
    Status s = UnpackHostile(b.str(), Code::kInvalidArgument);
    EXPECT_TRUE(Contains(s, "unsupported tar entry type")) << s.message();
  }
}

// ---- FinishLayer ----

class FinishLayerTest : public UnpackTest {
 protected:
  void SetUp() override {
    UnpackTest::SetUp();
    near_ = tmp_.Sub("near");
    far_ = tmp_.Sub("far");
    ASSERT_EQ(testing::Run("mkdir -p " + near_ + "/usr/lib " + far_ + "/usr/lib " + far_ +
                           "/opt/app " + near_ + "/blocked " + far_ + "/blocked/dir"),
              0);
    SetAttrs(near_ + "/usr", 0700, 5, 6, 1111111111, 111);
    ASSERT_EQ(::lsetxattr((near_ + "/usr").c_str(), "user.origin", "near", 4, 0), 0);
    ASSERT_EQ(::lsetxattr((near_ + "/usr").c_str(), "trusted.overlay.opaque", "y", 1, 0), 0);
    SetAttrs(far_ + "/usr", 0711, 7, 8, 1222222222, 222);
    SetAttrs(far_ + "/opt", 0750, 9, 10, 1333333333, 333);
    // In the near layer "blocked" is a file: the far layer's blocked/dir is hidden.
    ASSERT_EQ(testing::Run("rmdir " + near_ + "/blocked && touch " + near_ + "/blocked"), 0);
    SetAttrs(far_ + "/blocked/dir", 0700, 1, 1, 1, 1);
    // A file in the far layer only.
    testing::WriteFile(far_ + "/usr/lib/libc.so", "libc data");
    SetAttrs(far_ + "/usr/lib/libc.so", 04711, 11, 12, 1444444444, 444);
    ASSERT_EQ(::lsetxattr((far_ + "/usr/lib/libc.so").c_str(), "security.capability",
                          kCapability.data(), kCapability.size(), 0),
              0);
  }

  static void SetAttrs(const std::string& path, mode_t mode, uid_t uid, gid_t gid, time_t sec,
                       long nsec) {
    ASSERT_EQ(::lchown(path.c_str(), uid, gid), 0);
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
    struct timespec times[2] = {{sec, nsec}, {sec, nsec}};
    ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW), 0);
  }

  // The far layer stays unchanged by everything below.
  std::string near_;
  std::string far_;
};

TEST_F(FinishLayerTest, ImplicitDirectoriesTakeAttributesFromTheNearestLower) {
  TarBuilder b;
  b.File("usr/bin/new", "n");
  b.File("opt/app/new", "n");
  b.File("fresh/new", "n");
  b.File("blocked/dir/new", "n");
  b.End();
  UnpackResult result = UnpackOk(b.str());
  ASSERT_EQ(result.implicit_dirs, (std::vector<std::string>{"blocked", "blocked/dir", "fresh",
                                                            "opt", "opt/app", "usr", "usr/bin"}));
  ASSERT_TRUE(FinishLayer(dest_, {near_, far_}, result).ok());
  struct stat usr = Lstat(D("usr"));
  EXPECT_EQ(usr.st_mode & 07777, 0700u);  // from near, not far
  EXPECT_EQ(usr.st_uid, 5u);
  EXPECT_EQ(usr.st_gid, 6u);
  EXPECT_EQ(usr.st_mtim.tv_sec, 1111111111);
  EXPECT_EQ(usr.st_mtim.tv_nsec, 111);
  EXPECT_EQ(Xattr(D("usr"), "user.origin"), "near");
  EXPECT_EQ(Xattr(D("usr"), "trusted.overlay.opaque"), "<none>");  // overlay's own: not copied
  struct stat opt = Lstat(D("opt"));
  EXPECT_EQ(opt.st_mode & 07777, 0750u);  // only far has it
  EXPECT_EQ(opt.st_uid, 9u);
  EXPECT_EQ(opt.st_mtim.tv_sec, 1333333333);
  EXPECT_EQ(Lstat(D("fresh")).st_mode & 07777, 0755u);  // in no lower
  EXPECT_EQ(Lstat(D("fresh")).st_uid, 0u);
  EXPECT_EQ(Lstat(D("usr/bin")).st_mode & 07777, 0755u);
  EXPECT_EQ(Lstat(D("blocked/dir")).st_mode & 07777, 0755u);  // hidden by near's file
  EXPECT_EQ(testing::ReadFileOrEmpty(D("usr/bin/new")), "n");
}

TEST_F(FinishLayerTest, DeferredHardlinksBecomeCopiesOfTheLowerFile) {
  TarBuilder b;
  TarHeader dir = Header("bin/", '5', 0755);
  dir.mtime = 1555555555;
  b.Entry(dir);
  b.Hardlink("bin/libc-link", "usr/lib/libc.so");
  b.Hardlink("bin/second-link", "usr/lib/libc.so");
  b.End();
  UnpackResult result = UnpackOk(b.str());
  ASSERT_EQ(result.deferred_hardlinks.size(), 2u);
  Status finished = FinishLayer(dest_, {near_, far_}, result);
  ASSERT_TRUE(finished.ok()) << finished.ToString();
  std::string copy = D("bin/libc-link");
  EXPECT_EQ(testing::ReadFileOrEmpty(copy), "libc data");
  struct stat st = Lstat(copy);
  EXPECT_EQ(st.st_mode & 07777, 04711u);
  EXPECT_EQ(st.st_uid, 11u);
  EXPECT_EQ(st.st_gid, 12u);
  EXPECT_EQ(st.st_mtim.tv_sec, 1444444444);
  EXPECT_EQ(st.st_mtim.tv_nsec, 444);
  EXPECT_EQ(Xattr(copy, "security.capability"), kCapability);
  EXPECT_EQ(Lstat(D("bin/second-link")).st_ino, st.st_ino);
  EXPECT_EQ(st.st_nlink, 2u);
  EXPECT_EQ(Lstat(D("bin")).st_mtim.tv_sec, 1555555555);  // the directory's time is kept
  EXPECT_NE(Lstat(far_ + "/usr/lib/libc.so").st_ino, st.st_ino);
}

TEST_F(FinishLayerTest, SparseFilesAreCopiedWithTheirHoles) {
  int fd = ::open((far_ + "/usr/lib/big.img").c_str(), O_WRONLY | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, "head", 4, 0), 4);
  ASSERT_EQ(::pwrite(fd, "tail", 4, (64 << 20) - 4), 4);
  ::close(fd);
  TarBuilder b;
  b.Hardlink("img", "usr/lib/big.img").End();
  UnpackResult result = UnpackOk(b.str());
  ASSERT_TRUE(FinishLayer(dest_, {near_, far_}, result).ok());
  struct stat st = Lstat(D("img"));
  EXPECT_EQ(st.st_size, 64 << 20);
  EXPECT_LT(st.st_blocks * 512, 1 << 20);
  std::string content = testing::ReadFileOrEmpty(D("img"));
  EXPECT_EQ(content.substr(0, 4), "head");
  EXPECT_EQ(content.substr(content.size() - 4), "tail");
}

TEST_F(FinishLayerTest, MissingOrWhitedOutTargetIsNotFound) {
  TarBuilder b;
  b.Hardlink("l", "usr/lib/nowhere").End();
  UnpackResult result = UnpackOk(b.str());
  Status s = FinishLayer(dest_, {near_, far_}, result);
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();
  // A whiteout in the nearer layer hides the far layer's file.
  ASSERT_EQ(::mknod((near_ + "/usr/lib/libc.so").c_str(), S_IFCHR, makedev(0, 0)), 0);
  ASSERT_EQ(testing::Run("rm -rf " + dest_ + " && mkdir " + dest_), 0);
  TarBuilder w;
  w.Hardlink("l", "usr/lib/libc.so").End();
  result = UnpackOk(w.str());
  EXPECT_TRUE(FinishLayer(dest_, {near_, far_}, result).IsNotFound());
}

// ---- round trip through GNU tar ----

TEST_F(UnpackTest, GnuTarRoundTripKeepsEveryAttribute) {
  std::string src = tmp_.Sub("src");
  std::string script = R"(set -e
    cd )" + src + R"(
    mkdir -p etc usr/bin usr/share/doc var/tmp "dir with spaces" deep/a/b/c/d/e
    printf 'root:x:0:0\n' > etc/passwd
    chmod 0644 etc/passwd
    printf 'binary' > usr/bin/su && chmod 4755 usr/bin/su
    printf 'g' > usr/bin/wall && chown 0:5 usr/bin/wall && chmod 2755 usr/bin/wall
    chmod 1777 var/tmp
    chmod 2775 usr/share/doc && chown 1234:5678 usr/share/doc
    printf 'owned' > usr/share/doc/owned && chown 1234:5678 usr/share/doc/owned && chmod 0600 usr/share/doc/owned
    : > empty
    head -c 3000000 /dev/urandom > big
    truncate -s 50M sparse && printf 'data' | dd of=sparse bs=1 seek=20000000 conv=notrunc status=none
    ln -s ../etc/passwd usr/relative-link
    ln -s /etc/absolute usr/absolute-link
    ln -s dangling usr/dangling-link
    ln usr/bin/su usr/bin/su-hardlink
    mkfifo var/fifo
    mknod dev-null c 1 3
    printf 'x' > "dir with spaces/file name"
    printf 'deep' > deep/a/b/c/d/e/)" +
                       std::string(150, 'n') + R"(
    setfattr -n user.mime -v text/plain etc/passwd
    setfattr -n trusted.secret -v s3 etc/passwd
    setfattr -n user.dirattr -v d usr/share/doc
    touch -h -d '2020-01-02 03:04:05.123456789' usr/relative-link
    find . -depth -not -type l -exec touch -d '2021-05-06 07:08:09.987654321' {} +
    touch -d '2019-12-31 23:59:59.5' etc/passwd
  )";
  ASSERT_EQ(testing::Run("mkdir " + src), 0);
  testing::WriteFile(tmp_.Sub("make.sh"), script);
  ASSERT_EQ(testing::Run("sh " + tmp_.Sub("make.sh")), 0);
  ASSERT_EQ(::unlink(tmp_.Sub("make.sh").c_str()), 0);
  // security.capability set last: a chown would drop it.
  ASSERT_EQ(::lsetxattr((src + "/usr/bin/wall").c_str(), "security.capability", kCapability.data(),
                        kCapability.size(), 0),
            0);
  struct timespec times[2] = {{1600000000, 5}, {1600000000, 5}};
  ASSERT_EQ(::utimensat(AT_FDCWD, (src + "/usr/bin/wall").c_str(), times, 0), 0);

  std::string tar = tmp_.Sub("layer.tar");
  ASSERT_EQ(testing::Run("tar -C " + src +
                         " --xattrs --xattrs-include='*' --numeric-owner -S -cpf " + tar + " ."),
            0);
  std::string gz = testing::GzipCompress(testing::ReadFileOrEmpty(tar));
  std::string sha = testing::Output("sha256sum " + tar).substr(0, 64);
  ASSERT_EQ(testing::Run("rm " + tar), 0);

  UnpackOptions options;
  options.allow_devices = true;
  options.expected_diff_id = "sha256:" + sha;
  UnpackResult result = UnpackOk(gz, options);
  EXPECT_TRUE(result.implicit_dirs.empty());
  EXPECT_TRUE(result.deferred_hardlinks.empty());

  auto want = testing::DescribeTree(src, true);
  auto got = testing::DescribeTree(dest_, true);
  EXPECT_EQ(got.size(), want.size());
  for (const auto& [path, line] : want) {
    auto it = got.find(path);
    if (it == got.end()) {
      ADD_FAILURE() << "missing " << path;
      continue;
    }
    EXPECT_EQ(it->second, line) << path;
  }
  EXPECT_EQ(Lstat(D("usr/bin/su")).st_ino, Lstat(D("usr/bin/su-hardlink")).st_ino);
  EXPECT_LT(Lstat(D("sparse")).st_blocks * 512, 1 << 20);
  EXPECT_EQ(Xattr(D("usr/bin/wall"), "security.capability"), kCapability);
  EXPECT_EQ(Xattr(D("etc/passwd"), "trusted.secret"), "s3");
}

// ---- throughput (logged, not asserted) ----

TEST_F(UnpackTest, LogsUnpackThroughput) {
  TarBuilder b;
  for (int i = 0; i < 2000; i++) {
    b.File("many/d" + std::to_string(i % 40) + "/f" + std::to_string(i),
           testing::CompressibleBytes(16 * 1024, static_cast<uint32_t>(i)));
  }
  for (int i = 0; i < 4; i++) {
    b.File("large/" + std::to_string(i),
           i % 2 ? testing::RandomBytes(16 << 20, i) : testing::CompressibleBytes(16 << 20, i));
  }
  b.End();
  std::string tar = b.str();
  std::string gz = testing::GzipCompress(tar);
  std::string zst = testing::ZstdCompress(tar);
  // On tmpfs the figures measure the unpacker, not the disk (or ext4's inode allocator,
  // which slows down after many deletions); /tmp's filesystem if tmpfs cannot be mounted.
  std::string mount_point = tmp_.Sub("tmpfs");
  ASSERT_EQ(::mkdir(mount_point.c_str(), 0755), 0);
  bool mounted = testing::Run("mount -t tmpfs -o size=1g tmpfs " + mount_point) == 0;
  std::string fs = mounted ? "tmpfs" : "/tmp";
  std::string dest = mount_point + "/dest";
  for (const auto& [label, blob] :
       {std::pair<std::string, const std::string*>{"gzip", &gz}, {"zstd", &zst}}) {
    for (size_t pipeline : {size_t{0}, size_t{4} << 20}) {
      ASSERT_EQ(testing::Run("rm -rf " + dest + " && mkdir " + dest), 0);
      UnpackOptions options;
      options.pipeline_bytes = pipeline;
      auto source = NewStringSource(*blob);
      auto start = std::chrono::steady_clock::now();
      auto result = UnpackLayer(*source, dest, options);
      double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      ASSERT_TRUE(result.ok()) << result.status().ToString();
      EXPECT_EQ(result->uncompressed_bytes, tar.size());
      std::printf(
          "[ throughput ] unpack %s layer to %s (%zu MiB tar, %llu entries, %s): %.0f MB/s\n",
          label.c_str(), fs.c_str(), tar.size() >> 20,
          static_cast<unsigned long long>(result->entries),
          pipeline ? "decompress on a 2nd thread" : "one thread",
          static_cast<double>(tar.size()) / 1e6 / seconds);
    }
  }
  if (mounted) {
    EXPECT_EQ(testing::Run("umount " + mount_point), 0);
  }
}

}  // namespace
}  // namespace strata::transfer
