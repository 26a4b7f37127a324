// Specification of TarReader (tar_reader.h) and the tar field grammar (tar_format.h).
#include "transfer/tar_reader.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "tests/transfer/tar_builder.h"
#include "tests/transfer/unpack_test_support.h"
#include "transfer/byte_source.h"

namespace strata::transfer {
namespace {

using testing::TarBuilder;
using testing::TarHeader;

// An archive read completely: every entry with its content (holes as zeros).
struct ReadEntry {
  TarEntry entry;
  std::string content;
};

Result<std::vector<ReadEntry>> ReadArchive(const std::string& archive) {
  auto source = NewStringSource(archive);
  TarReader reader(*source);
  std::vector<ReadEntry> entries;
  for (;;) {
    ASSIGN_OR_RETURN(bool more, reader.Next());
    if (!more) return entries;
    ReadEntry e{reader.entry(), ""};
    char buf[1000];  // small: content crosses many reads
    for (;;) {
      ASSIGN_OR_RETURN(size_t got, reader.Read(buf, sizeof buf));
      if (got == 0) break;
      e.content.append(buf, got);
    }
    entries.push_back(std::move(e));
  }
}

std::vector<ReadEntry> ReadOk(const std::string& archive) {
  auto entries = ReadArchive(archive);
  EXPECT_TRUE(entries.ok()) << entries.status().ToString();
  return entries.ok() ? std::move(*entries) : std::vector<ReadEntry>();
}

// The error reading `archive` ends with.
Status ReadError(const std::string& archive) {
  auto entries = ReadArchive(archive);
  EXPECT_FALSE(entries.ok()) << "archive was accepted";
  return entries.ok() ? Status::Ok() : entries.status();
}

bool Contains(const Status& status, const std::string& text) {
  return status.message().find(text) != std::string::npos;
}

TEST(TarFormatTest, NumericFieldsInOctalAndBase256) {
  EXPECT_EQ(*tar::ParseNumeric("0000755\0", "mode"), 0755);
  EXPECT_EQ(*tar::ParseNumeric("  755 \0", "mode"), 0755);
  EXPECT_EQ(*tar::ParseNumeric(std::string(8, '\0'), "mode"), 0);
  EXPECT_TRUE(tar::ParseNumeric("0000758\0", "mode").status().IsInvalidArgument());
  EXPECT_EQ(*tar::ParseNumeric(std::string("\x80\0\0\0\0\0\0\x01\0\0\0\0", 12), "size"),
            int64_t{1} << 32);
  EXPECT_EQ(*tar::ParseNumeric(std::string("\xff\xff\xff\xff\xff\xff\xff\xfe", 8), "mtime"), -2);
  EXPECT_TRUE(tar::ParseNumeric(std::string("\x80\x80\0\0\0\0\0\0\0\0\0\0", 12), "size")
                  .status()
                  .IsInvalidArgument());
}

TEST(TarFormatTest, PaxTimesKeepNanoseconds) {
  EXPECT_EQ(*tar::ParsePaxTime("1700000000.123456789", "mtime"),
            (tar::Time{1700000000, 123456789}));
  EXPECT_EQ(*tar::ParsePaxTime("5.5", "mtime"), (tar::Time{5, 500000000}));
  EXPECT_EQ(*tar::ParsePaxTime("7", "mtime"), (tar::Time{7, 0}));
  EXPECT_EQ(*tar::ParsePaxTime("1.0000000019", "mtime"), (tar::Time{1, 1}));
  EXPECT_EQ(*tar::ParsePaxTime("-1.5", "mtime"), (tar::Time{-2, 500000000}));
  EXPECT_TRUE(tar::ParsePaxTime("1.", "mtime").status().IsInvalidArgument());
  EXPECT_TRUE(tar::ParsePaxTime("abc", "mtime").status().IsInvalidArgument());
}

TEST(TarFormatTest, PaxRecordsParseAndRejectMalformedOnes) {
  auto records = tar::ParsePaxRecords(TarBuilder::PaxRecord("path", "a=b") +
                                      TarBuilder::PaxRecord("SCHILY.xattr.user.x", ""));
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->size(), 2u);
  EXPECT_EQ((*records)[0], (std::pair<std::string, std::string>("path", "a=b")));
  EXPECT_EQ((*records)[1].second, "");
  EXPECT_TRUE(tar::ParsePaxRecords("10 path=ab\n").status().IsInvalidArgument());  // length
  EXPECT_TRUE(tar::ParsePaxRecords("11 path=abX").status().IsInvalidArgument());   // newline
  EXPECT_TRUE(tar::ParsePaxRecords("9 =value\n").status().IsInvalidArgument());    // no key
  EXPECT_TRUE(tar::ParsePaxRecords("x path=a\n").status().IsInvalidArgument());
}

TEST(TarFormatTest, Base64AndPercentDecoding) {
  EXPECT_EQ(*tar::DecodeBase64("aGVsbG8="), "hello");
  EXPECT_EQ(*tar::DecodeBase64("aGVsbG8"), "hello");
  EXPECT_EQ(*tar::DecodeBase64(""), "");
  EXPECT_TRUE(tar::DecodeBase64("a$==").status().IsInvalidArgument());
  EXPECT_EQ(*tar::DecodePercentEscapes("user.a%3Db%25"), "user.a=b%");
  EXPECT_TRUE(tar::DecodePercentEscapes("user.%4").status().IsInvalidArgument());
}

TEST(TarReaderTest, ReadsEveryUstarEntryType) {
  TarBuilder b;
  b.File("file.txt", "hello world", 04755);
  b.Dir("dir/", 01777);
  b.Symlink("link", "../target");
  b.Hardlink("hard", "file.txt");
  TarHeader dev;
  dev.name = "tty";
  dev.typeflag = '3';
  dev.dev_major = 4;
  dev.dev_minor = 64;
  b.Entry(dev);
  dev.name = "sda";
  dev.typeflag = '4';
  dev.dev_major = 8;
  dev.dev_minor = 0;
  b.Entry(dev);
  TarHeader fifo;
  fifo.name = "fifo";
  fifo.typeflag = '6';
  b.Entry(fifo);
  TarHeader old_regular;
  old_regular.name = "old";
  old_regular.typeflag = '\0';
  b.Entry(old_regular, "v7 data");
  TarHeader old_dir = old_regular;
  old_dir.name = "olddir/";
  b.Entry(old_dir);
  TarHeader contiguous;
  contiguous.name = "contig";
  contiguous.typeflag = '7';
  b.Entry(contiguous, "c");
  TarHeader other;
  other.name = "label";
  other.typeflag = 'V';
  b.Entry(other, "volume");
  b.End();

  auto entries = ReadOk(b.str());
  ASSERT_EQ(entries.size(), 11u);
  EXPECT_EQ(entries[0].entry.type, TarEntryType::kRegular);
  EXPECT_EQ(entries[0].entry.path, "file.txt");
  EXPECT_EQ(entries[0].entry.mode, 04755u);
  EXPECT_EQ(entries[0].entry.size, 11);
  EXPECT_EQ(entries[0].entry.mtime, (tar::Time{1700000000, 0}));
  EXPECT_EQ(entries[0].content, "hello world");
  EXPECT_EQ(entries[1].entry.type, TarEntryType::kDirectory);
  EXPECT_EQ(entries[1].entry.mode, 01777u);
  EXPECT_EQ(entries[2].entry.type, TarEntryType::kSymlink);
  EXPECT_EQ(entries[2].entry.link_target, "../target");
  EXPECT_EQ(entries[3].entry.type, TarEntryType::kHardlink);
  EXPECT_EQ(entries[3].entry.link_target, "file.txt");
  EXPECT_EQ(entries[4].entry.type, TarEntryType::kCharDevice);
  EXPECT_EQ(entries[4].entry.dev_major, 4u);
  EXPECT_EQ(entries[4].entry.dev_minor, 64u);
  EXPECT_EQ(entries[5].entry.type, TarEntryType::kBlockDevice);
  EXPECT_EQ(entries[5].entry.dev_major, 8u);
  EXPECT_EQ(entries[6].entry.type, TarEntryType::kFifo);
  EXPECT_EQ(entries[7].entry.type, TarEntryType::kRegular);
  EXPECT_EQ(entries[7].content, "v7 data");
  EXPECT_EQ(entries[8].entry.type, TarEntryType::kDirectory);
  EXPECT_EQ(entries[9].entry.type, TarEntryType::kRegular);
  EXPECT_EQ(entries[10].entry.type, TarEntryType::kOther);
  EXPECT_EQ(entries[10].entry.typeflag, 'V');
  EXPECT_EQ(entries[10].content, "volume");
}

TEST(TarReaderTest, HeaderOnlyTypesHaveNoContentWhateverTheirSize) {
  // As Go's archive/tar: a directory's size field does not announce content.
  TarBuilder b;
  TarHeader dir;
  dir.name = "d/";
  dir.typeflag = '5';
  dir.size = 1000;
  b.Header(dir);
  b.File("f", "x");
  b.End();
  auto entries = ReadOk(b.str());
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].entry.size, 0);
  EXPECT_EQ(entries[1].entry.path, "f");
}

TEST(TarReaderTest, UstarPrefixIsJoinedToTheName) {
  TarBuilder b;
  TarHeader h;
  h.prefix = std::string(120, 'p');
  h.name = "name.txt";
  b.Entry(h, "x").End();
  auto entries = ReadOk(b.str());
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].entry.path, std::string(120, 'p') + "/name.txt");
}

TEST(TarReaderTest, GnuLongNameAndLongLink) {
  std::string long_name = std::string(300, 'n') + "/file";
  std::string long_target = std::string(250, 't');
  TarBuilder b;
  b.GnuLong(long_name, 'L');
  b.GnuLong(long_target, 'K');
  TarHeader h;
  h.name = "truncated";
  h.typeflag = '2';
  h.linkname = "truncated";
  h.magic = TarHeader::Magic::kGnu;
  b.Entry(h);
  b.File("next", "n");
  b.End();
  auto entries = ReadOk(b.str());
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].entry.path, long_name);
  EXPECT_EQ(entries[0].entry.link_target, long_target);
  EXPECT_EQ(entries[1].entry.path, "next");  // the long name applied to one entry only
}

TEST(TarReaderTest, PaxRecordsOverrideTheHeader) {
  std::string path = std::string(200, 'a') + "/b";
  TarBuilder b;
  b.Pax({{"path", path},
         {"linkpath", "target"},
         {"uid", "3000000000"},
         {"gid", "42"},
         {"uname", "someone"},
         {"gname", "group"},
         {"mtime", "1600000000.123456789"},
         {"atime", "1600000001.5"},
         {"ctime", "1.0"},
         {"comment", "ignored"}});
  TarHeader h;
  h.name = "short";
  h.typeflag = '2';
  b.Entry(h);
  b.Pax({{"size", "5"}});
  TarHeader f;
  f.name = "f";
  f.size = 3;  // the pax size wins
  b.Header(f).Content("12345");
  b.End();
  auto entries = ReadOk(b.str());
  ASSERT_EQ(entries.size(), 2u);
  const TarEntry& e = entries[0].entry;
  EXPECT_EQ(e.path, path);
  EXPECT_EQ(e.link_target, "target");
  EXPECT_EQ(e.uid, 3000000000);
  EXPECT_EQ(e.gid, 42);
  EXPECT_EQ(e.uname, "someone");
  EXPECT_EQ(e.gname, "group");
  EXPECT_EQ(e.mtime, (tar::Time{1600000000, 123456789}));
  ASSERT_TRUE(e.atime.has_value());
  EXPECT_EQ(*e.atime, (tar::Time{1600000001, 500000000}));
  EXPECT_EQ(entries[1].content, "12345");
  EXPECT_FALSE(entries[1].entry.atime.has_value());
}

TEST(TarReaderTest, GlobalPaxRecordsApplyToTheFollowingEntries) {
  TarBuilder b;
  b.File("before", "");
  b.Pax({{"uid", "7"}, {"mtime", "100.25"}}, 'g');
  b.File("first", "");
  b.Pax({{"uid", "8"}});  // per entry: overrides the global value
  b.File("second", "");
  b.Pax({{"mtime", ""}});  // an empty value removes the keyword: the header's mtime
  b.File("third", "");
  b.Pax({{"uid", ""}}, 'g');  // removes the global record
  b.File("fourth", "");
  b.End();
  auto entries = ReadOk(b.str());
  ASSERT_EQ(entries.size(), 5u);
  EXPECT_EQ(entries[0].entry.uid, 0);
  EXPECT_EQ(entries[1].entry.uid, 7);
  EXPECT_EQ(entries[1].entry.mtime, (tar::Time{100, 250000000}));
  EXPECT_EQ(entries[2].entry.uid, 8);
  EXPECT_EQ(entries[3].entry.uid, 7);
  EXPECT_EQ(entries[3].entry.mtime, (tar::Time{1700000000, 0}));
  EXPECT_EQ(entries[4].entry.uid, 0);
  EXPECT_EQ(entries[4].entry.mtime, (tar::Time{100, 250000000}));
}

TEST(TarReaderTest, XattrsFromSchilyAndLibarchiveRecords) {
  std::string capability("\x01\x00\x00\x02\x00\x04\x00\x00", 8);
  TarBuilder b;
  b.Pax({{"SCHILY.xattr.user.plain", "value"},
         {"SCHILY.xattr.security.capability", capability},
         {"SCHILY.xattr.user.empty", ""},
         {"LIBARCHIVE.xattr.user.a%3Db", "YmluYXJ5AA"}});
  b.File("f", "x");
  b.End();
  auto entries = ReadOk(b.str());
  ASSERT_EQ(entries.size(), 1u);
  const auto& x = entries[0].entry.xattrs;
  ASSERT_EQ(x.size(), 4u);
  EXPECT_EQ(x.at("user.plain"), "value");
  EXPECT_EQ(x.at("security.capability"), capability);
  EXPECT_EQ(x.at("user.empty"), "");
  EXPECT_EQ(x.at("user.a=b"), std::string("binary\0", 7));
}

TEST(TarReaderTest, Base256NumericFields) {
  TarBuilder b;
  TarHeader h;
  h.name = "big-ids";
  h.magic = TarHeader::Magic::kGnu;
  h.base256_numbers = true;
  h.uid = 5000000000;
  h.gid = 70000;
  h.mtime = -100;
  b.Entry(h, "content");
  b.End();
  auto entries = ReadOk(b.str());
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].entry.uid, 5000000000);
  EXPECT_EQ(entries[0].entry.gid, 70000);
  EXPECT_EQ(entries[0].entry.mtime.seconds, -100);
  EXPECT_EQ(entries[0].content, "content");
}

TEST(TarReaderTest, SignedChecksumIsAccepted) {
  TarBuilder b;
  TarHeader h;
  h.name = "caf\xc3\xa9";  // bytes >= 0x80 make the signed and unsigned sums differ
  h.checksum = TarHeader::Checksum::kSigned;
  b.Entry(h, "x").End();
  auto entries = ReadOk(b.str());
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].entry.path, "caf\xc3\xa9");
}

TEST(TarReaderTest, BadChecksumIsDataLoss) {
  TarBuilder b;
  b.File("good", "1");
  TarHeader h;
  h.name = "bad";
  h.checksum = TarHeader::Checksum::kBad;
  b.Entry(h, "2").End();
  Status s = ReadError(b.str());
  EXPECT_EQ(s.code(), Code::kDataLoss);
  EXPECT_TRUE(Contains(s, "checksum mismatch")) << s.message();
  EXPECT_TRUE(Contains(s, "\"good\"")) << s.message();
}

TEST(TarReaderTest, UnreadContentIsSkipped) {
  TarBuilder b;
  b.File("a", std::string(5000, 'a'));
  b.File("b", "bee");
  b.End();
  auto source = NewStringSource(b.str());
  TarReader reader(*source);
  ASSERT_TRUE(*reader.Next());
  char buf[10];
  ASSERT_EQ(*reader.Read(buf, 10), 10u);  // read only part of "a"
  ASSERT_TRUE(*reader.Next());
  EXPECT_EQ(reader.entry().path, "b");
  ASSERT_EQ(*reader.Read(buf, 10), 3u);
  EXPECT_EQ(std::string(buf, 3), "bee");
  EXPECT_FALSE(*reader.Next());
  EXPECT_FALSE(*reader.Next());  // stays at the end
}

TEST(TarReaderTest, EndOfArchiveVariants) {
  TarBuilder b;
  b.File("a", "x");
  std::string no_marker = b.str();
  EXPECT_EQ(ReadOk(no_marker).size(), 1u);  // EOF at a header boundary, as Go accepts
  EXPECT_EQ(ReadOk(no_marker + std::string(512, '\0')).size(), 1u);  // one zero block
  std::string with_marker = TarBuilder(b).End().str();
  // What follows the marker is not read as entries.
  EXPECT_EQ(ReadOk(with_marker + "garbage after the end marker").size(), 1u);
  TarBuilder hidden;
  hidden.Raw(no_marker).Raw(std::string(512, '\0')).File("after-zero-block", "y");
  Status s = ReadError(hidden.str());
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
}

TEST(TarReaderTest, TruncatedArchivesAreDataLossNamingTheEntry) {
  TarBuilder b;
  b.File("first", "1");
  b.File("victim", std::string(3000, 'v'));
  b.End();
  const std::string& full = b.str();
  // Inside the content of "victim", inside its padding, inside the next header.
  for (size_t keep : {size_t{1024 + 512 + 100}, size_t{1024 + 512 + 3000 + 20},
                      size_t{1024 + 512 + 3072 + 100}}) {
    Status s = ReadError(full.substr(0, keep));
    EXPECT_EQ(s.code(), Code::kDataLoss) << keep;
    EXPECT_TRUE(Contains(s, "truncated tar archive")) << s.message();
    EXPECT_TRUE(Contains(s, "\"victim\"")) << keep << ": " << s.message();
  }
  // A pax header without its entry.
  TarBuilder pax;
  pax.Pax({{"path", "x"}});
  Status s = ReadError(pax.str());
  EXPECT_EQ(s.code(), Code::kDataLoss);
  EXPECT_TRUE(Contains(s, "truncated tar archive")) << s.message();
}

TEST(TarReaderTest, SizeBeyondTheStreamIsDataLoss) {
  TarBuilder b;
  TarHeader h;
  h.name = "liar";
  h.size = int64_t{1} << 40;
  b.Header(h).Content("only a little data");
  Status s = ReadError(b.str());
  EXPECT_EQ(s.code(), Code::kDataLoss);
  EXPECT_TRUE(Contains(s, "\"liar\"")) << s.message();
}

TEST(TarReaderTest, OversizePaxHeaderIsRefused) {
  TarBuilder b;
  b.Pax({{"comment", std::string((1 << 20) + 1, 'c')}});
  b.File("f", "x").End();
  Status s = ReadError(b.str());
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_TRUE(Contains(s, "more than the limit")) << s.message();
}

TEST(TarReaderTest, HugeHeaderSizeFieldIsRefusedWithoutAllocating) {
  TarBuilder b;
  TarHeader h;
  h.name = "PaxHeaders/x";
  h.typeflag = 'x';
  h.size = int64_t{1} << 50;
  b.Header(h);
  EXPECT_TRUE(ReadError(b.str()).IsInvalidArgument());
}

TEST(TarReaderTest, OverlongNamesAreRefused) {
  TarBuilder gnu;
  gnu.GnuLong(std::string(5000, 'n'));
  gnu.File("f", "").End();
  EXPECT_TRUE(ReadError(gnu.str()).IsInvalidArgument());
  TarBuilder pax;
  pax.Pax({{"path", std::string(4097, 'p')}});
  pax.File("f", "").End();
  EXPECT_TRUE(ReadError(pax.str()).IsInvalidArgument());
}

TEST(TarReaderTest, NulInNamesIsRefused) {
  TarBuilder pax;
  pax.Pax({{"path", std::string("evil\0name", 9)}});
  pax.File("f", "").End();
  Status s = ReadError(pax.str());
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_TRUE(Contains(s, "NUL")) << s.message();
  TarBuilder link;
  link.Pax({{"linkpath", std::string("a\0b", 3)}});
  link.Symlink("l", "t").End();
  EXPECT_TRUE(ReadError(link.str()).IsInvalidArgument());
  TarBuilder gnu;
  gnu.GnuLong(std::string("a\0b", 3));
  gnu.File("f", "").End();
  EXPECT_TRUE(ReadError(gnu.str()).IsInvalidArgument());
}

TEST(TarReaderTest, MalformedPaxAndNumbersAreRefused) {
  TarBuilder bad_record;
  TarHeader h;
  h.name = "PaxHeaders/x";
  h.typeflag = 'x';
  bad_record.Entry(h, "99 path=x\n").File("f", "").End();
  EXPECT_TRUE(ReadError(bad_record.str()).IsInvalidArgument());
  TarBuilder bad_size;
  bad_size.Pax({{"size", "-5"}}).File("f", "").End();
  EXPECT_TRUE(ReadError(bad_size.str()).IsInvalidArgument());
  TarBuilder negative;
  TarHeader n;
  n.name = "neg";
  n.magic = TarHeader::Magic::kGnu;
  n.base256_numbers = true;
  n.size = -1000;
  negative.Header(n).End();
  EXPECT_TRUE(ReadError(negative.str()).IsInvalidArgument());
}

// A sparse file's expected logical content: data at the segments, zeros elsewhere.
std::string Sparse(const std::vector<std::pair<int64_t, int64_t>>& segments, int64_t size,
                   std::string* stored) {
  std::string logical(static_cast<size_t>(size), '\0');
  stored->clear();
  char c = 'A';
  for (const auto& [offset, length] : segments) {
    for (int64_t i = 0; i < length; i++) {
      logical[static_cast<size_t>(offset + i)] = c;
      *stored += c;
    }
    c = c == 'Z' ? 'A' : static_cast<char>(c + 1);
  }
  return logical;
}

TEST(TarReaderTest, OldGnuSparseWithExtensionBlocks) {
  std::vector<std::pair<int64_t, int64_t>> segments;
  for (int i = 0; i < 30; i++) segments.push_back({i * 10000 + 100, 700});
  segments.push_back({400000, 0});  // GNU tar's marker for a trailing hole
  std::string stored;
  std::string logical = Sparse(segments, 400000, &stored);
  TarBuilder b;
  b.OldGnuSparse("sparse.img", segments, 400000, stored);
  b.File("after", "next");
  b.End();
  auto entries = ReadOk(b.str());
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_TRUE(entries[0].entry.sparse);
  EXPECT_EQ(entries[0].entry.size, 400000);
  EXPECT_EQ(entries[0].entry.sparse_map.size(), 31u);
  EXPECT_EQ(entries[0].content, logical);
  EXPECT_EQ(entries[1].content, "next");
}

TEST(TarReaderTest, ReadRunReportsHolesWithoutData) {
  std::vector<std::pair<int64_t, int64_t>> segments = {{0, 10}, {1 << 20, 5}};
  std::string stored;
  Sparse(segments, 3 << 20, &stored);
  TarBuilder b;
  b.OldGnuSparse("s", segments, 3 << 20, stored).End();
  auto source = NewStringSource(b.str());
  TarReader reader(*source);
  ASSERT_TRUE(*reader.Next());
  char buf[64];
  std::vector<TarDataRun> runs;
  for (;;) {
    auto run = reader.ReadRun(buf, sizeof buf);
    ASSERT_TRUE(run.ok()) << run.status().ToString();
    if (run->length == 0) break;
    runs.push_back(*run);
  }
  ASSERT_EQ(runs.size(), 4u);
  EXPECT_FALSE(runs[0].hole);
  EXPECT_EQ(runs[0].length, 10);
  EXPECT_TRUE(runs[1].hole);
  EXPECT_EQ(runs[1].offset, 10);
  EXPECT_EQ(runs[1].length, (1 << 20) - 10);
  EXPECT_FALSE(runs[2].hole);
  EXPECT_EQ(runs[2].offset, 1 << 20);
  EXPECT_TRUE(runs[3].hole);
  EXPECT_EQ(runs[3].offset + runs[3].length, 3 << 20);
}

TEST(TarReaderTest, PaxSparseFormats) {
  std::vector<std::pair<int64_t, int64_t>> segments = {{512, 100}, {5000, 3000}, {20000, 1}};
  std::string stored;
  std::string logical = Sparse(segments, 30000, &stored);

  TarBuilder v00;  // repeated offset/numbytes records
  std::vector<std::pair<std::string, std::string>> records = {{"GNU.sparse.size", "30000"},
                                                              {"GNU.sparse.numblocks", "3"}};
  for (const auto& [offset, length] : segments) {
    records.push_back({"GNU.sparse.offset", std::to_string(offset)});
    records.push_back({"GNU.sparse.numbytes", std::to_string(length)});
  }
  v00.Pax(records).File("v00", stored).End();

  TarBuilder v01;  // one map record, real name in GNU.sparse.name
  v01.Pax({{"GNU.sparse.major", "0"},
           {"GNU.sparse.minor", "1"},
           {"GNU.sparse.name", "v01"},
           {"GNU.sparse.size", "30000"},
           {"GNU.sparse.map", "512,100,5000,3000,20000,1"}});
  v01.File("GNUSparseFile.1/v01", stored).End();

  TarBuilder v10;  // map at the start of the content
  v10.PaxSparse10("dir/v10", segments, 30000, stored).End();

  for (const auto& [archive, name] : {std::pair{v00.str(), "v00"}, std::pair{v01.str(), "v01"},
                                      std::pair{v10.str(), "dir/v10"}}) {
    auto entries = ReadOk(archive);
    ASSERT_EQ(entries.size(), 1u) << name;
    EXPECT_EQ(entries[0].entry.path, name);
    EXPECT_TRUE(entries[0].entry.sparse) << name;
    EXPECT_EQ(entries[0].entry.size, 30000) << name;
    EXPECT_EQ(entries[0].content, logical) << name;
  }
}

TEST(TarReaderTest, InvalidSparseMapsAreRefused) {
  std::string stored(100, 'x');
  TarBuilder beyond;  // a segment past the real size
  beyond.OldGnuSparse("s", {{1000, 100}}, 500, stored).End();
  EXPECT_TRUE(ReadError(beyond.str()).IsInvalidArgument());
  TarBuilder overlap;
  overlap.OldGnuSparse("s", {{0, 60}, {50, 40}}, 500, stored).End();
  EXPECT_TRUE(ReadError(overlap.str()).IsInvalidArgument());
  TarBuilder short_data;  // the map covers more bytes than are stored
  short_data.OldGnuSparse("s", {{0, 100}, {200, 100}}, 500, stored).End();
  Status s = ReadError(short_data.str());
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_TRUE(Contains(s, "sparse map covers")) << s.message();
  TarBuilder too_many;
  std::string map = "100000\n";
  too_many.Pax(
      {{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"}, {"GNU.sparse.realsize", "1"}});
  too_many.File("s", map).End();
  EXPECT_TRUE(ReadError(too_many.str()).IsInvalidArgument());
  TarBuilder unknown_version;
  unknown_version.Pax({{"GNU.sparse.major", "2"}, {"GNU.sparse.minor", "0"}});
  unknown_version.File("s", "").End();
  EXPECT_TRUE(ReadError(unknown_version.str()).IsInvalidArgument());
}

// Archives written by GNU tar itself.
class GnuTarTest : public ::testing::Test {
 protected:
  void SetUp() override {
    src_ = dir_.Sub("src");
    ASSERT_EQ(testing::Run("mkdir -p " + src_), 0);
    long_dir_ = std::string(90, 'd') + "/" + std::string(90, 'e');
    long_name_ = long_dir_ + "/" + std::string(120, 'f') + ".txt";
    ASSERT_EQ(testing::Run("mkdir -p " + src_ + "/" + long_dir_), 0);
    testing::WriteFile(src_ + "/" + long_name_, "long name content");
    testing::WriteFile(src_ + "/small", "small file\n");
    // A sparse file: data at 0, 1 MiB and 3 MiB, 4 MiB in all.
    int fd = ::open((src_ + "/sparse").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    sparse_content_.assign(4 << 20, '\0');
    for (off_t at : {off_t{0}, off_t{1} << 20, off_t{3} << 20}) {
      std::string piece = testing::RandomBytes(8192, static_cast<uint32_t>(at));
      ASSERT_EQ(::pwrite(fd, piece.data(), piece.size(), at), 8192);
      sparse_content_.replace(static_cast<size_t>(at), piece.size(), piece);
    }
    ASSERT_EQ(::ftruncate(fd, 4 << 20), 0);
    ::close(fd);
    ASSERT_EQ(::setxattr((src_ + "/small").c_str(), "user.color", "blue", 4, 0), 0);
  }

  std::vector<ReadEntry> Archive(const std::string& flags) {
    std::string tar = dir_.Sub("out.tar");
    EXPECT_EQ(testing::Run("tar -C " + src_ + " " + flags + " -cf " + tar + " ."), 0) << flags;
    return ReadOk(testing::ReadFileOrEmpty(tar));
  }

  void ExpectTree(const std::vector<ReadEntry>& entries, bool xattrs) {
    std::map<std::string, const ReadEntry*> by_path;
    for (const auto& e : entries) by_path[e.entry.path] = &e;
    ASSERT_TRUE(by_path.count("./" + long_name_)) << "long name missing";
    EXPECT_EQ(by_path["./" + long_name_]->content, "long name content");
    ASSERT_TRUE(by_path.count("./sparse"));
    EXPECT_TRUE(by_path["./sparse"]->entry.sparse);
    EXPECT_EQ(by_path["./sparse"]->entry.size, 4 << 20);
    EXPECT_TRUE(by_path["./sparse"]->content == sparse_content_) << "sparse content differs";
    ASSERT_TRUE(by_path.count("./small"));
    EXPECT_EQ(by_path["./small"]->content, "small file\n");
    if (xattrs) {
      EXPECT_EQ(by_path["./small"]->entry.xattrs.count("user.color"), 1u);
      EXPECT_EQ(by_path["./small"]->entry.xattrs.at("user.color"), "blue");
    }
    ASSERT_TRUE(by_path.count("./" + long_dir_ + "/"));
    EXPECT_EQ(by_path["./" + long_dir_ + "/"]->entry.type, TarEntryType::kDirectory);
  }

  testing::TempDir dir_;
  std::string src_;
  std::string long_dir_;
  std::string long_name_;
  std::string sparse_content_;
};

TEST_F(GnuTarTest, PaxFormatWithXattrsAndSparse10) {
  ExpectTree(Archive("--format=pax --xattrs -S"), true);
}

TEST_F(GnuTarTest, PaxFormatSparse00And01) {
  ExpectTree(Archive("--format=pax -S --sparse-version=0.0"), false);
  ExpectTree(Archive("--format=pax -S --sparse-version=0.1"), false);
}

TEST_F(GnuTarTest, GnuFormatWithLongNamesAndOldSparse) {
  auto entries = Archive("--format=gnu -S");
  ExpectTree(entries, false);
  for (const auto& e : entries) {
    if (e.entry.path == "./sparse") {
      EXPECT_EQ(e.entry.typeflag, 'S');
    }
  }
}

TEST_F(GnuTarTest, UstarFormatWithPrefix) {
  // ustar cannot hold the 120-byte file name; keep to what it can.
  ASSERT_EQ(testing::Run("rm -rf " + src_ + "/" + std::string(90, 'd') + " " + src_ + "/sparse"),
            0);
  std::string dir = std::string(80, 'p') + "/" + std::string(60, 'q');
  ASSERT_EQ(testing::Run("mkdir -p " + src_ + "/" + dir), 0);
  testing::WriteFile(src_ + "/" + dir + "/file", "prefixed");
  auto entries = Archive("--format=ustar");
  bool found = false;
  for (const auto& e : entries) {
    if (e.entry.path == "./" + dir + "/file") {
      found = true;
      EXPECT_EQ(e.content, "prefixed");
    }
  }
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace strata::transfer
