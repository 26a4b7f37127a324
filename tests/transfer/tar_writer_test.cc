// Specification of EncodeTarHeader (tar_writer.h): what it writes, TarReader and GNU
// tar read back as it was.
#include "transfer/tar_writer.h"

#include <gtest/gtest.h>

#include "core/subprocess.h"
#include "transfer/byte_source.h"

namespace strata::transfer {
namespace {

TarEntry Regular(std::string path, int64_t size) {
  TarEntry e;
  e.type = TarEntryType::kRegular;
  e.typeflag = '0';
  e.path = std::move(path);
  e.size = size;
  e.mode = 0644;
  e.mtime = {1700000000, 0};
  return e;
}

// One archive of `entries`, each with `content` bytes of 'x' for regular files.
std::string Archive(const std::vector<TarEntry>& entries) {
  std::string out;
  for (const TarEntry& e : entries) {
    Result<std::string> header = EncodeTarHeader(e);
    EXPECT_TRUE(header.ok()) << header.status().ToString();
    if (!header.ok()) continue;
    out += *header;
    if (e.type == TarEntryType::kRegular) {
      out += std::string(static_cast<size_t>(e.size), 'x');
      out += std::string(tar::PaddingOf(static_cast<uint64_t>(e.size)), '\0');
    }
  }
  out += std::string(kTarEndOfArchiveBytes, '\0');
  return out;
}

std::vector<TarEntry> ReadBack(const std::string& archive) {
  auto source = NewStringSource(archive);
  TarReader reader(*source);
  std::vector<TarEntry> entries;
  for (;;) {
    Result<bool> more = reader.Next();
    EXPECT_TRUE(more.ok()) << more.status().ToString();
    if (!more.ok() || !*more) return entries;
    entries.push_back(reader.entry());
  }
}

void ExpectSameEntry(const TarEntry& want, const TarEntry& got) {
  EXPECT_EQ(got.path, want.path);
  EXPECT_EQ(got.type, want.type) << want.path;
  EXPECT_EQ(got.link_target, want.link_target) << want.path;
  EXPECT_EQ(got.size, want.type == TarEntryType::kRegular ? want.size : 0) << want.path;
  EXPECT_EQ(got.mode, want.mode) << want.path;
  EXPECT_EQ(got.uid, want.uid) << want.path;
  EXPECT_EQ(got.gid, want.gid) << want.path;
  EXPECT_EQ(got.uname, want.uname) << want.path;
  EXPECT_EQ(got.gname, want.gname) << want.path;
  EXPECT_EQ(got.mtime, want.mtime) << want.path;
  EXPECT_EQ(got.atime, want.atime) << want.path;
  EXPECT_EQ(got.dev_major, want.dev_major) << want.path;
  EXPECT_EQ(got.dev_minor, want.dev_minor) << want.path;
  EXPECT_EQ(got.xattrs, want.xattrs) << want.path;
}

TEST(TarWriterTest, UstarEntriesReadBackAsWritten) {
  TarEntry dir;
  dir.type = TarEntryType::kDirectory;
  dir.path = "etc/";
  dir.mode = 0755;
  dir.uid = 1000;
  dir.gid = 100;
  dir.uname = "user";
  dir.gname = "users";
  dir.mtime = {1600000000, 0};
  TarEntry file = Regular("etc/passwd", 1000);
  file.mode = 04755;
  TarEntry link;
  link.type = TarEntryType::kSymlink;
  link.path = "etc/link";
  link.link_target = "../usr/lib/thing";
  link.mode = 0777;
  TarEntry hard;
  hard.type = TarEntryType::kHardlink;
  hard.path = "etc/hard";
  hard.link_target = "etc/passwd";
  TarEntry dev;
  dev.type = TarEntryType::kBlockDevice;
  dev.path = "dev/sda";
  dev.dev_major = 8;
  dev.dev_minor = 1;
  dev.mode = 0660;
  TarEntry fifo;
  fifo.type = TarEntryType::kFifo;
  fifo.path = "run/fifo";
  const std::vector<TarEntry> entries = {dir, file, link, hard, dev, fifo};

  const std::string archive = Archive(entries);
  // Nothing here needs pax: one header block per entry.
  EXPECT_EQ(archive.size(), 6 * 512 + 1024 + 1024);
  std::vector<TarEntry> got = ReadBack(archive);
  ASSERT_EQ(got.size(), entries.size());
  for (size_t i = 0; i < entries.size(); i++) ExpectSameEntry(entries[i], got[i]);
}

TEST(TarWriterTest, WhatUstarCannotHoldGoesIntoPaxRecords) {
  TarEntry e = Regular(std::string(150, 'n') + "/" + std::string(120, 'f'), 70);
  e.uid = 3000000000;  // over 7 octal digits
  e.gid = 2097152;
  e.uname = std::string(40, 'u');
  e.gname = std::string(32, 'g');
  e.mtime = {1700000000, 123456789};
  e.atime = tar::Time{1700000001, 500000000};
  e.xattrs = {{"security.capability", std::string("\x01\x00\x00\x02\xff", 5)},
              {"user.with space", "value=with=equals\nand newline"}};
  TarEntry old;
  old.type = TarEntryType::kSymlink;
  old.path = "old";
  old.link_target = std::string(300, 't');
  old.mtime = {-2, 500000000};  // 1.5 s before 1970
  TarEntry future = Regular("future", 0);
  future.mtime = {int64_t{1} << 40, 0};  // past 11 octal digits
  TarEntry big_dev;
  big_dev.type = TarEntryType::kCharDevice;
  big_dev.path = "dev/big";
  big_dev.dev_major = 4000000000u;
  big_dev.dev_minor = 3000000;

  const std::vector<TarEntry> entries = {e, old, future, big_dev};
  std::vector<TarEntry> got = ReadBack(Archive(entries));
  ASSERT_EQ(got.size(), entries.size());
  for (size_t i = 0; i < entries.size(); i++) ExpectSameEntry(entries[i], got[i]);
}

TEST(TarWriterTest, SizesOver8GiBUsePaxSize) {
  TarEntry e = Regular("huge", int64_t{9} << 30);
  Result<std::string> header = EncodeTarHeader(e);
  ASSERT_TRUE(header.ok()) << header.status().ToString();
  // Content not written: reading the header back is enough.
  auto source = NewStringSource(*header + std::string(512, 'x'));
  TarReader reader(*source);
  Result<bool> more = reader.Next();
  ASSERT_TRUE(more.ok()) << more.status().ToString();
  ASSERT_TRUE(*more);
  EXPECT_EQ(reader.entry().size, int64_t{9} << 30);
}

TEST(TarWriterTest, SparseEntriesAreWrittenAsWholeRegularFiles) {
  TarEntry e = Regular("sparse", 4096);
  e.typeflag = 'S';
  e.sparse = true;
  e.sparse_map = {{0, 512}};
  std::vector<TarEntry> got = ReadBack(Archive({e}));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].typeflag, '0');
  EXPECT_FALSE(got[0].sparse);
  EXPECT_EQ(got[0].size, 4096);
}

TEST(TarWriterTest, GnuTarListsWhatWasWritten) {
  TarEntry dir;
  dir.type = TarEntryType::kDirectory;
  dir.path = "a/";
  dir.mode = 0755;
  TarEntry file = Regular("a/" + std::string(200, 'l'), 10);
  file.xattrs = {{"user.note", "hello"}};
  std::string archive = Archive({dir, file});
  ProcessOptions options;
  options.stdin_data = archive;
  Result<ProcessResult> tar = RunProcess({"tar", "-tf", "-"}, options);
  if (!tar.ok() && tar.status().IsNotFound()) GTEST_SKIP() << "no tar";
  ASSERT_TRUE(tar.ok()) << tar.status().ToString();
  EXPECT_EQ(tar->exit_code, 0) << tar->stderr_data;
  EXPECT_EQ(tar->stdout_data, "a/\na/" + std::string(200, 'l') + "\n");
}

TEST(TarWriterTest, RefusesWhatATarCannotSay) {
  TarEntry other = Regular("volume", 0);
  other.type = TarEntryType::kOther;
  other.typeflag = 'V';
  EXPECT_TRUE(EncodeTarHeader(other).status().IsInvalidArgument());
  EXPECT_TRUE(EncodeTarHeader(Regular("", 0)).status().IsInvalidArgument());
  EXPECT_TRUE(EncodeTarHeader(Regular(std::string("a\0b", 3), 0)).status().IsInvalidArgument());
  EXPECT_TRUE(EncodeTarHeader(Regular("negative", -1)).status().IsInvalidArgument());
  TarEntry negative_uid = Regular("uid", 0);
  negative_uid.uid = -5;
  EXPECT_TRUE(EncodeTarHeader(negative_uid).status().IsInvalidArgument());
  TarEntry bad_xattr = Regular("xattr", 0);
  bad_xattr.xattrs = {{"user.a=b", "v"}};
  EXPECT_TRUE(EncodeTarHeader(bad_xattr).status().IsInvalidArgument());
  TarEntry huge_xattrs = Regular("xattrs", 0);
  for (int i = 0; i < 20; i++) {
    huge_xattrs.xattrs["user.x" + std::to_string(i)] = std::string(64 << 10, 'v');
  }
  EXPECT_TRUE(EncodeTarHeader(huge_xattrs).status().IsInvalidArgument());
}

}  // namespace
}  // namespace strata::transfer
