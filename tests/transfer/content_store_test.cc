// Specification of transfer::ContentStore: committing verified blobs, resumable
// ingests, ref locking, start-up recovery, labels and filters, deletion.
#include "transfer/content_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <set>
#include <thread>

#include "core/digest.h"
#include "core/fs.h"

namespace strata::transfer {
namespace {

using std::chrono::steady_clock;

std::string Hex(const std::string& digest) { return digest.substr(7); }

class ContentStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/strata-content-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    Reopen();
  }
  void TearDown() override {
    content_.reset();
    metadata_.reset();
    EXPECT_TRUE(fs::RemoveAll(root_).ok());
  }

  // Closes and opens metadata and content store again, as a daemon restart does.
  void Reopen(ContentStoreOptions options = {}) {
    content_.reset();
    metadata_.reset();
    auto md = metadata::Store::Open(root_ + "/metadata");
    ASSERT_TRUE(md.ok()) << md.status().ToString();
    metadata_ = std::move(md).value();
    auto cs = ContentStore::Open(root_, metadata_.get(), options);
    ASSERT_TRUE(cs.ok()) << cs.status().ToString();
    content_ = std::move(cs).value();
  }

  std::unique_ptr<ContentWriter> MustOpenWriter(const std::string& ref, const std::string& digest,
                                                int64_t size) {
    auto w = content_->OpenWriter(ref, digest, size);
    EXPECT_TRUE(w.ok()) << w.status().ToString();
    return w.ok() ? std::move(w).value() : nullptr;
  }

  // Writes and commits `data` under a ref of its own; returns its digest.
  std::string Put(const std::string& data, const Labels& labels = {}) {
    std::string digest = Sha256Digest(data);
    auto w = MustOpenWriter("put-" + digest, digest, static_cast<int64_t>(data.size()));
    if (!w) return digest;
    EXPECT_TRUE(w->Write(data.data(), data.size()).ok());
    auto info = w->Commit(labels);
    EXPECT_TRUE(info.ok()) << info.status().ToString();
    return digest;
  }

  std::string ReadAll(const std::string& digest) {
    auto reader = content_->OpenReader(digest);
    EXPECT_TRUE(reader.ok()) << reader.status().ToString();
    if (!reader.ok()) return "";
    std::string out(static_cast<size_t>((*reader)->Size()), '\0');
    auto n = (*reader)->ReadAt(out.data(), out.size(), 0);
    EXPECT_TRUE(n.ok());
    out.resize(n.ok() ? *n : 0);
    return out;
  }

  std::string BlobPath(const std::string& digest) {
    return root_ + "/content/blobs/sha256/" + Hex(digest);
  }
  std::vector<std::string> Ls(const std::string& dir) {
    auto names = fs::ListDir(dir);
    return names.ok() ? *names : std::vector<std::string>{};
  }
  std::string IngestDir() { return root_ + "/content/ingest"; }

  std::string root_;
  std::unique_ptr<metadata::Store> metadata_;
  std::unique_ptr<ContentStore> content_;
};

// ---- committing ---------------------------------------------------------------------

TEST_F(ContentStoreTest, CommittedBlobIsReadableAndRecordedWithLabels) {
  std::string data = "hello, layer";
  std::string digest = Sha256Digest(data);
  auto w = MustOpenWriter("ref-1", digest, static_cast<int64_t>(data.size()));
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->Offset(), 0);
  ASSERT_TRUE(w->Write(data.data(), 5).ok());
  ASSERT_TRUE(w->Write(data.data() + 5, data.size() - 5).ok());
  EXPECT_EQ(w->Offset(), static_cast<int64_t>(data.size()));
  auto committed = w->Commit({{"a", "1"}, {"empty", ""}});
  ASSERT_TRUE(committed.ok()) << committed.status().ToString();
  EXPECT_EQ(committed->digest, digest);

  auto info = content_->Info(digest);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->size_bytes, static_cast<int64_t>(data.size()));
  EXPECT_EQ(info->labels, (Labels{{"a", "1"}})) << "empty labels are dropped";
  EXPECT_GT(info->created_unix_nanos, 0);
  EXPECT_EQ(ReadAll(digest), data);
  struct stat st;
  ASSERT_EQ(::stat(BlobPath(digest).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0444u);
  EXPECT_TRUE(Ls(IngestDir()).empty()) << "the ingest is gone after commit";
}

TEST_F(ContentStoreTest, CommitWithoutExpectationsUsesTheComputedDigest) {
  auto w = MustOpenWriter("unknown", "", kUnknownSize);
  ASSERT_NE(w, nullptr);
  ASSERT_TRUE(w->Write("abc", 3).ok());
  auto info = w->Commit({});
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->digest, Sha256Digest("abc"));
  EXPECT_EQ(content_->Info(Sha256Digest("abc"))->size_bytes, 3);
}

TEST_F(ContentStoreTest, EmptyBlobCanBeCommitted) {
  std::string digest = Sha256Digest("");
  auto w = MustOpenWriter("empty", digest, 0);
  ASSERT_NE(w, nullptr);
  ASSERT_TRUE(w->Commit({}).ok());
  EXPECT_EQ(content_->Info(digest)->size_bytes, 0);
  EXPECT_EQ(ReadAll(digest), "");
}

TEST_F(ContentStoreTest, CommittedBlobSurvivesReopen) {
  std::string digest = Put("durable", {{"k", "v"}});
  Reopen();
  auto info = content_->Info(digest);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->labels, (Labels{{"k", "v"}}));
  EXPECT_EQ(ReadAll(digest), "durable");
}

// ---- resuming -------------------------------------------------------------------------

TEST_F(ContentStoreTest, DroppedWriterResumesAtItsOffsetAfterRestart) {
  std::string data(3 << 20, '\0');
  for (size_t i = 0; i < data.size(); i++) data[i] = static_cast<char>(i * 7 + i / 4096);
  std::string digest = Sha256Digest(data);
  const size_t half = data.size() / 2 + 123;
  {
    auto w = MustOpenWriter("layer-x", digest, static_cast<int64_t>(data.size()));
    ASSERT_NE(w, nullptr);
    ASSERT_TRUE(w->Write(data.data(), half).ok());
    // Dropped without Commit or Abort, like a killed download.
  }
  Reopen();
  auto w = MustOpenWriter("layer-x", digest, static_cast<int64_t>(data.size()));
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->Offset(), static_cast<int64_t>(half));
  ASSERT_TRUE(w->Write(data.data() + half, data.size() - half).ok());
  auto info = w->Commit({});
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->digest, digest);
  EXPECT_EQ(ReadAll(digest), data);
}

TEST_F(ContentStoreTest, ResumedDigestCoversTheBytesOnDiskNotThoseInMemory) {
  std::string data = "0123456789";
  std::string digest = Sha256Digest(data);
  {
    auto w = MustOpenWriter("r", digest, 10);
    ASSERT_NE(w, nullptr);
    ASSERT_TRUE(w->Write(data.data(), 5).ok());
  }
  // The partial file is damaged while no writer holds it.
  auto ingests = Ls(IngestDir());
  ASSERT_EQ(ingests.size(), 1u);
  std::ofstream(IngestDir() + "/" + ingests[0] + "/data", std::ios::in | std::ios::out) << "X";
  auto w = MustOpenWriter("r", digest, 10);
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->Offset(), 5);
  ASSERT_TRUE(w->Write(data.data() + 5, 5).ok());
  auto info = w->Commit({});
  EXPECT_EQ(info.status().code(), Code::kDataLoss) << info.status().ToString();
  EXPECT_NE(info.status().message().find("got " + Sha256Digest("X1234" + data.substr(5)) + "/10"),
            std::string::npos)
      << info.status().message();
}

TEST_F(ContentStoreTest, ReopeningWithAnotherExpectationStartsOver) {
  {
    auto w = MustOpenWriter("r", Sha256Digest("abcdef"), 6);
    ASSERT_NE(w, nullptr);
    ASSERT_TRUE(w->Write("abc", 3).ok());
  }
  auto w = MustOpenWriter("r", Sha256Digest("xyz"), 3);
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->Offset(), 0);
  ASSERT_TRUE(w->Write("xyz", 3).ok());
  EXPECT_TRUE(w->Commit({}).ok());
}

// ---- verification -------------------------------------------------------------------

TEST_F(ContentStoreTest, DigestMismatchIsDataLossAndLeavesNothing) {
  std::string expected = Sha256Digest("abc");
  auto w = MustOpenWriter("bad", expected, 3);
  ASSERT_NE(w, nullptr);
  ASSERT_TRUE(w->Write("abd", 3).ok());
  auto info = w->Commit({});
  ASSERT_EQ(info.status().code(), Code::kDataLoss);
  EXPECT_NE(info.status().message().find("blob " + expected + " does not match: got " +
                                         Sha256Digest("abd") + "/3"),
            std::string::npos)
      << info.status().message();
  EXPECT_TRUE(content_->Info(expected).status().IsNotFound());
  EXPECT_TRUE(content_->Info(Sha256Digest("abd")).status().IsNotFound());
  EXPECT_TRUE(Ls(IngestDir()).empty());
  EXPECT_TRUE(Ls(root_ + "/content/blobs/sha256").empty());
  auto again = MustOpenWriter("bad", expected, 3);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->Offset(), 0) << "the discarded ingest is not resumed";
}

TEST_F(ContentStoreTest, SizeMismatchIsDataLossAndLeavesNothing) {
  std::string expected = Sha256Digest("abcde");
  auto w = MustOpenWriter("short", expected, 5);
  ASSERT_NE(w, nullptr);
  ASSERT_TRUE(w->Write("abc", 3).ok());
  auto info = w->Commit({});
  ASSERT_EQ(info.status().code(), Code::kDataLoss);
  EXPECT_NE(info.status().message().find("got " + Sha256Digest("abc") + "/3"), std::string::npos)
      << info.status().message();
  EXPECT_TRUE(content_->List({})->empty());
  EXPECT_TRUE(Ls(IngestDir()).empty());
}

TEST_F(ContentStoreTest, WritingPastTheExpectedSizeIsRefusedAndChangesNothing) {
  auto w = MustOpenWriter("long", Sha256Digest("abc"), 3);
  ASSERT_NE(w, nullptr);
  ASSERT_TRUE(w->Write("ab", 2).ok());
  EXPECT_TRUE(w->Write("cd", 2).IsInvalidArgument());
  EXPECT_EQ(w->Offset(), 2);
  ASSERT_TRUE(w->Write("c", 1).ok());
  EXPECT_TRUE(w->Commit({}).ok());
}

TEST_F(ContentStoreTest, WriterIsFinishedAfterCommitOrAbort) {
  auto w = MustOpenWriter("once", "", kUnknownSize);
  ASSERT_NE(w, nullptr);
  ASSERT_TRUE(w->Abort().ok());
  EXPECT_TRUE(w->Write("x", 1).IsFailedPrecondition());
  EXPECT_TRUE(w->Commit({}).status().IsFailedPrecondition());
  EXPECT_TRUE(w->Abort().IsFailedPrecondition());
}

TEST_F(ContentStoreTest, InvalidWriterArgumentsAreRefused) {
  EXPECT_TRUE(content_->OpenWriter("", "", kUnknownSize).status().IsInvalidArgument());
  EXPECT_TRUE(content_->OpenWriter("r", "sha256:abc", 3).status().IsInvalidArgument());
  EXPECT_TRUE(
      content_->OpenWriter("r", "sha512:" + std::string(128, 'a'), 3).status().IsInvalidArgument());
  EXPECT_TRUE(content_->OpenWriter("r", "", -2).status().IsInvalidArgument());
  EXPECT_TRUE(content_->Info("not-a-digest").status().IsInvalidArgument());
}

// ---- existing content -------------------------------------------------------------

TEST_F(ContentStoreTest, OpenWriterForCommittedContentIsAlreadyExists) {
  std::string digest = Put("present");
  auto w = content_->OpenWriter("another-ref", digest, 7);
  EXPECT_TRUE(w.status().IsAlreadyExists()) << w.status().ToString();
  EXPECT_TRUE(Ls(IngestDir()).empty());
}

TEST_F(ContentStoreTest, CommitOfContentCommittedMeanwhileIsAlreadyExistsAndKeepsTheFirst) {
  std::string digest = Sha256Digest("same");
  auto first = MustOpenWriter("ref-a", digest, 4);
  auto second = MustOpenWriter("ref-b", digest, 4);
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  ASSERT_TRUE(first->Write("same", 4).ok());
  ASSERT_TRUE(second->Write("same", 4).ok());
  ASSERT_TRUE(first->Commit({{"from", "a"}}).ok());
  auto info = second->Commit({{"from", "b"}});
  EXPECT_TRUE(info.status().IsAlreadyExists()) << info.status().ToString();
  EXPECT_EQ(content_->Info(digest)->labels, (Labels{{"from", "a"}}));
  EXPECT_TRUE(Ls(IngestDir()).empty()) << "both ingests are done";
  EXPECT_EQ(ReadAll(digest), "same");
}

// ---- locking and waiting ------------------------------------------------------------

TEST_F(ContentStoreTest, SecondWriterForAHeldRefIsUnavailableLocked) {
  auto first = MustOpenWriter("layer", "", kUnknownSize);
  ASSERT_NE(first, nullptr);
  auto second = content_->OpenWriter("layer", "", kUnknownSize);
  EXPECT_EQ(second.status().code(), Code::kUnavailable);
  EXPECT_NE(second.status().message().find("locked"), std::string::npos);
  first.reset();
  EXPECT_TRUE(content_->OpenWriter("layer", "", kUnknownSize).ok()) << "released on drop";
}

TEST_F(ContentStoreTest, ConcurrentWritersOfOneRefGetOneWriterAndTheOthersSeeTheBlob) {
  const std::string data(1 << 20, 'z');
  const std::string digest = Sha256Digest(data);
  constexpr int kThreads = 8;
  std::atomic<int> writers{0};
  std::atomic<int> waited_ok{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&] {
      for (;;) {
        auto w = content_->OpenWriter("layer-" + digest, digest, static_cast<int64_t>(data.size()));
        if (w.ok()) {
          writers++;
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
          if (!(*w)->Write(data.data(), data.size()).ok() || !(*w)->Commit({}).ok()) failures++;
          return;
        }
        if (w.status().IsAlreadyExists()) {
          waited_ok++;
          return;
        }
        if (w.status().code() != Code::kUnavailable) {
          failures++;
          return;
        }
        Status s = content_->WaitForContent(digest, "layer-" + digest,
                                            steady_clock::now() + std::chrono::seconds(20));
        if (s.ok()) {
          waited_ok++;
          return;
        }
        if (s.code() != Code::kAborted) {
          failures++;
          return;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(writers.load(), 1) << "one download for one blob";
  EXPECT_EQ(waited_ok.load(), kThreads - 1);
  EXPECT_EQ(ReadAll(digest), data);
}

TEST_F(ContentStoreTest, WaitForContentIsAbortedWhenTheHolderGivesUpAndTheWaiterResumes) {
  std::string digest = Sha256Digest("abcdef");
  auto holder = MustOpenWriter("r", digest, 6);
  ASSERT_NE(holder, nullptr);
  ASSERT_TRUE(holder->Write("abc", 3).ok());
  std::thread dropper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    holder.reset();
  });
  Status s = content_->WaitForContent(digest, "r", steady_clock::now() + std::chrono::seconds(10));
  dropper.join();
  EXPECT_EQ(s.code(), Code::kAborted) << s.ToString();
  auto w = MustOpenWriter("r", digest, 6);
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->Offset(), 3);
}

TEST_F(ContentStoreTest, WaitForContentTimesOutWithDeadlineExceeded) {
  auto holder = MustOpenWriter("r", Sha256Digest("never"), 5);
  Status s = content_->WaitForContent(Sha256Digest("never"), "r",
                                      steady_clock::now() + std::chrono::milliseconds(100));
  EXPECT_EQ(s.code(), Code::kDeadlineExceeded) << s.ToString();
}

TEST_F(ContentStoreTest, WaitForContentReturnsAtOnceForCommittedContent) {
  std::string digest = Put("here");
  EXPECT_TRUE(content_->WaitForContent(digest, "", steady_clock::now()).ok());
}

// ---- ingests --------------------------------------------------------------------------

TEST_F(ContentStoreTest, IngestsAreListedByRefAndStoredUnderAHashOfIt) {
  const std::string odd_ref = std::string("../../etc/passwd\n\0x", 19);
  auto w = MustOpenWriter(odd_ref, Sha256Digest("abcd"), 4);
  ASSERT_NE(w, nullptr);
  ASSERT_TRUE(w->Write("ab", 2).ok());
  auto ingests = content_->ListIngests();
  ASSERT_TRUE(ingests.ok());
  ASSERT_EQ(ingests->size(), 1u);
  const IngestStatus& st = (*ingests)[0];
  EXPECT_EQ(st.ref, odd_ref);
  EXPECT_EQ(st.expected_digest, Sha256Digest("abcd"));
  EXPECT_EQ(st.expected_size_bytes, 4);
  EXPECT_EQ(st.offset_bytes, 2);
  EXPECT_TRUE(st.active);
  EXPECT_GT(st.started_unix_nanos, 0);
  EXPECT_EQ(Ls(IngestDir()), std::vector<std::string>{Hex(Sha256Digest(odd_ref))});
  EXPECT_FALSE(fs::Exists(root_ + "/etc"));
  w.reset();
  EXPECT_FALSE((*content_->ListIngests())[0].active);
}

TEST_F(ContentStoreTest, AbortDiscardsTheIngest) {
  auto w = MustOpenWriter("r", "", kUnknownSize);
  ASSERT_NE(w, nullptr);
  ASSERT_TRUE(w->Write("abc", 3).ok());
  ASSERT_TRUE(w->Abort().ok());
  EXPECT_TRUE(content_->ListIngests()->empty());
  EXPECT_EQ(MustOpenWriter("r", "", kUnknownSize)->Offset(), 0);
}

TEST_F(ContentStoreTest, AbortIngestRefusesAHeldRefAndRemovesAReleasedOne) {
  auto w = MustOpenWriter("r", "", kUnknownSize);
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(content_->AbortIngest("r").code(), Code::kUnavailable);
  w.reset();
  EXPECT_TRUE(content_->AbortIngest("r").ok());
  EXPECT_TRUE(content_->ListIngests()->empty());
  EXPECT_TRUE(content_->AbortIngest("r").IsNotFound());
}

// ---- recovery -------------------------------------------------------------------------

TEST_F(ContentStoreTest, RecoveryRecordsABlobFileWhoseNameIsItsDigest) {
  // A commit that crashed after the rename, before the record.
  std::string digest = Sha256Digest("orphan");
  ASSERT_TRUE(fs::WriteFileAtomic(BlobPath(digest), "orphan").ok());
  Reopen();
  auto info = content_->Info(digest);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->size_bytes, 6);
  EXPECT_EQ(ReadAll(digest), "orphan");
}

TEST_F(ContentStoreTest, RecoveryRemovesBlobFilesThatDoNotMatchTheirName) {
  std::string digest = Sha256Digest("claimed");
  ASSERT_TRUE(fs::WriteFileAtomic(BlobPath(digest), "different bytes").ok());
  ASSERT_TRUE(fs::WriteFileAtomic(root_ + "/content/blobs/sha256/not-a-digest", "x").ok());
  Reopen();
  EXPECT_TRUE(content_->Info(digest).status().IsNotFound());
  EXPECT_TRUE(Ls(root_ + "/content/blobs/sha256").empty());
}

TEST_F(ContentStoreTest, RecoveryDropsRecordsWhoseBlobIsMissing) {
  std::string kept = Put("kept");
  std::string lost = Put("lost");
  ASSERT_EQ(::unlink(BlobPath(lost).c_str()), 0);
  Reopen();
  EXPECT_TRUE(content_->Info(lost).status().IsNotFound());
  EXPECT_TRUE(content_->Info(kept).ok());
  EXPECT_EQ(content_->List({})->size(), 1u);
}

TEST_F(ContentStoreTest, RecoveryRemovesStaleIngestsAndKeepsRecentOnes) {
  {
    auto stale = MustOpenWriter("stale", "", kUnknownSize);
    auto fresh = MustOpenWriter("fresh", "", kUnknownSize);
    ASSERT_TRUE(stale->Write("old", 3).ok());
    ASSERT_TRUE(fresh->Write("new", 3).ok());
  }
  std::string stale_data = IngestDir() + "/" + Hex(Sha256Digest("stale")) + "/data";
  struct timeval two_days_ago[2];
  ::gettimeofday(&two_days_ago[0], nullptr);
  two_days_ago[0].tv_sec -= 2 * 24 * 3600;
  two_days_ago[1] = two_days_ago[0];
  ASSERT_EQ(::utimes(stale_data.c_str(), two_days_ago), 0);
  Reopen();  // default stale age: one day
  auto ingests = content_->ListIngests();
  ASSERT_TRUE(ingests.ok());
  ASSERT_EQ(ingests->size(), 1u);
  EXPECT_EQ((*ingests)[0].ref, "fresh");
  EXPECT_EQ((*ingests)[0].offset_bytes, 3);
}

TEST_F(ContentStoreTest, RemoveStaleIngestsSkipsIngestsHeldByAWriter) {
  auto held = MustOpenWriter("held", "", kUnknownSize);
  ASSERT_NE(held, nullptr);
  auto removed = content_->RemoveStaleIngests(std::chrono::seconds(0));
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, 0);
  held.reset();
  EXPECT_EQ(*content_->RemoveStaleIngests(std::chrono::seconds(0)), 1);
  EXPECT_TRUE(content_->ListIngests()->empty());
}

// ---- labels and filters ---------------------------------------------------------------

TEST_F(ContentStoreTest, UpdateLabelsFollowsFieldPaths) {
  std::string digest = Put("labelled", {{"a", "1"}, {"b", "2"}});
  auto one = content_->UpdateLabels(digest, {{"a", "10"}, {"c", "3"}}, {"labels.a"});
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  EXPECT_EQ(one->labels, (Labels{{"a", "10"}, {"b", "2"}})) << "only the named key changes";
  auto removed = content_->UpdateLabels(digest, {}, {"labels.b"});
  EXPECT_EQ(removed->labels, (Labels{{"a", "10"}})) << "absent from the update: deleted";
  auto all = content_->UpdateLabels(digest, {{"x", "y"}}, {"labels"});
  EXPECT_EQ(all->labels, (Labels{{"x", "y"}}));
  auto no_paths = content_->UpdateLabels(digest, {{"p", "q"}}, {});
  EXPECT_EQ(no_paths->labels, (Labels{{"p", "q"}}));
  EXPECT_GE(no_paths->updated_unix_nanos, no_paths->created_unix_nanos);
  EXPECT_EQ(content_->Info(digest)->labels, (Labels{{"p", "q"}}));
}

TEST_F(ContentStoreTest, UpdateLabelsRefusesOtherPathsAndUnknownDigests) {
  std::string digest = Put("x");
  EXPECT_TRUE(content_->UpdateLabels(digest, {}, {"size"}).status().IsInvalidArgument());
  EXPECT_TRUE(content_->UpdateLabels(digest, {{"k", std::string(5000, 'v')}}, {"labels.k"})
                  .status()
                  .IsInvalidArgument());
  EXPECT_TRUE(content_->UpdateLabels(Sha256Digest("absent"), {}, {"labels"}).status().IsNotFound());
}

TEST_F(ContentStoreTest, ListFiltersOnDigestSizeAndLabels) {
  std::string a = Put("aaaaa", {{"containerd.io/gc.root", "now"}, {"kind", "manifest"}});
  std::string b = Put("bb", {{"kind", "layer"}});
  std::string c = Put("ccccc");
  auto digests = [&](const std::vector<std::string>& filters) {
    auto infos = content_->List(filters);
    EXPECT_TRUE(infos.ok()) << infos.status().ToString();
    std::set<std::string> out;
    if (infos.ok()) {
      for (const auto& i : *infos) out.insert(i.digest);
    }
    return out;
  };
  EXPECT_EQ(digests({}), (std::set<std::string>{a, b, c}));
  EXPECT_EQ(digests({"digest==" + b}), (std::set<std::string>{b}));
  EXPECT_EQ(digests({"size==5"}), (std::set<std::string>{a, c}));
  EXPECT_EQ(digests({"labels.\"containerd.io/gc.root\""}), (std::set<std::string>{a}));
  EXPECT_EQ(digests({"labels.kind==layer"}), (std::set<std::string>{b}));
  EXPECT_EQ(digests({"labels.kind~=^man", "size==2"}), (std::set<std::string>{a, b}));
  EXPECT_EQ(digests({"size==5,labels.kind"}), (std::set<std::string>{a}));
  EXPECT_TRUE(content_->List({"labels.kind=="}).status().IsInvalidArgument());
}

// ---- reading and deleting -------------------------------------------------------------

TEST_F(ContentStoreTest, ReaderReadsAtAnyOffsetAndStopsAtTheEnd) {
  std::string digest = Put("0123456789");
  auto reader = content_->OpenReader(digest);
  ASSERT_TRUE(reader.ok());
  EXPECT_EQ((*reader)->Size(), 10);
  char buf[8];
  EXPECT_EQ(*(*reader)->ReadAt(buf, 4, 3), 4u);
  EXPECT_EQ(std::string(buf, 4), "3456");
  EXPECT_EQ(*(*reader)->ReadAt(buf, 8, 7), 3u);
  EXPECT_EQ(std::string(buf, 3), "789");
  EXPECT_EQ(*(*reader)->ReadAt(buf, 8, 10), 0u);
  EXPECT_TRUE(content_->OpenReader(Sha256Digest("absent")).status().IsNotFound());
}

TEST_F(ContentStoreTest, DeleteRemovesRecordAndFileButOpenReadersKeepReading) {
  std::string digest = Put("doomed");
  auto reader = content_->OpenReader(digest);
  ASSERT_TRUE(reader.ok());
  ASSERT_TRUE(content_->Delete(digest).ok());
  EXPECT_TRUE(content_->Info(digest).status().IsNotFound());
  EXPECT_FALSE(fs::Exists(BlobPath(digest)));
  char buf[6];
  EXPECT_EQ(*(*reader)->ReadAt(buf, 6, 0), 6u);
  EXPECT_EQ(std::string(buf, 6), "doomed");
  EXPECT_TRUE(content_->Delete(digest).IsNotFound());
  Reopen();
  EXPECT_TRUE(content_->Info(digest).status().IsNotFound());
}

TEST_F(ContentStoreTest, FreshContentIsProtectedUntilItsProtectionEnds) {
  std::string digest = Put("fresh");
  EXPECT_TRUE(content_->IsProtected(digest));
  EXPECT_TRUE(
      content_->Delete(digest, ContentStore::DeleteMode::kUnlessProtected).IsFailedPrecondition());
  EXPECT_TRUE(content_->Info(digest).ok());
  content_->Protect(digest, steady_clock::now() - std::chrono::seconds(1));
  EXPECT_FALSE(content_->IsProtected(digest));
  EXPECT_TRUE(content_->Delete(digest, ContentStore::DeleteMode::kUnlessProtected).ok());
}

TEST_F(ContentStoreTest, ExistingContentReportedToAWriterIsProtectedAgain) {
  Reopen({.fresh_protection = std::chrono::seconds(0)});
  std::string digest = Put("old");
  EXPECT_FALSE(content_->IsProtected(digest));
  Reopen();
  EXPECT_FALSE(content_->IsProtected(digest)) << "protection does not survive a restart";
  EXPECT_TRUE(content_->OpenWriter("pull-2", digest, 3).status().IsAlreadyExists());
  EXPECT_TRUE(content_->IsProtected(digest));
}

}  // namespace
}  // namespace strata::transfer
