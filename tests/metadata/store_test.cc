// Specification of metadata::Store: records round-trip, the children index, content
// and image tables, the schema version check, corruption handling and group commit.
#include "metadata/store.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "metadata/wal_file_system.h"

namespace strata::metadata {
namespace {

std::string BigEndian64(uint64_t v) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; i--) {
    out[static_cast<size_t>(i)] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  return out;
}

SnapshotRecord Record(const std::string& key, uint64_t id,
                      SnapshotKind kind = SnapshotKind::kActive, const std::string& parent = "") {
  SnapshotRecord r;
  r.key = key;
  r.id = id;
  r.kind = kind;
  r.parent = parent;
  r.created_unix_nanos = 1000 + static_cast<int64_t>(id);
  r.updated_unix_nanos = 2000 + static_cast<int64_t>(id);
  return r;
}

void ExpectSameRecord(const SnapshotRecord& a, const SnapshotRecord& b) {
  EXPECT_EQ(a.snapshotter, b.snapshotter);
  EXPECT_EQ(a.key, b.key);
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.parent, b.parent);
  EXPECT_EQ(a.labels, b.labels);
  EXPECT_EQ(a.created_unix_nanos, b.created_unix_nanos);
  EXPECT_EQ(a.updated_unix_nanos, b.updated_unix_nanos);
  EXPECT_EQ(a.usage_size_bytes, b.usage_size_bytes);
  EXPECT_EQ(a.usage_inodes, b.usage_inodes);
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/strata-store-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/metadata";
  }
  void TearDown() override {
    std::string cmd = "rm -rf '" + dir_ + "'";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  }

  std::unique_ptr<Store> OpenStore() {
    auto store = Store::Open(path_);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    if (!store.ok()) return nullptr;
    return std::move(store).value();
  }

  // Opens the database with RocksDB directly (every column family) and runs `fn`.
  void WithRawDb(const std::function<void(rocksdb::DB*, const std::vector<std::string>&,
                                          const std::vector<rocksdb::ColumnFamilyHandle*>&)>& fn) {
    rocksdb::DBOptions options;
    std::vector<std::string> families;
    ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(options, path_, &families).ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    for (const auto& f : families) descriptors.emplace_back(f, rocksdb::ColumnFamilyOptions());
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    rocksdb::Status s = rocksdb::DB::Open(options, path_, descriptors, &handles, &db);
    ASSERT_TRUE(s.ok()) << s.ToString();
    fn(db, families, handles);
    for (auto* h : handles) ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
    ASSERT_TRUE(db->Close().ok());
    delete db;
  }

  rocksdb::ColumnFamilyHandle* Family(const std::vector<std::string>& families,
                                      const std::vector<rocksdb::ColumnFamilyHandle*>& handles,
                                      const std::string& name) {
    auto it = std::find(families.begin(), families.end(), name);
    EXPECT_NE(it, families.end()) << "no column family " << name;
    return handles[static_cast<size_t>(it - families.begin())];
  }

  std::vector<std::string> FilesStartingWith(const std::string& prefix) {
    std::vector<std::string> out;
    DIR* d = ::opendir(path_.c_str());
    if (d == nullptr) return out;
    while (struct dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n.rfind(prefix, 0) == 0) out.push_back(path_ + "/" + n);
    }
    ::closedir(d);
    return out;
  }

  std::string dir_;
  std::string path_;
};

TEST_F(StoreTest, OpenCreatesStoreWithCurrentSchemaVersion) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->schema_version(), kSchemaVersion);
  EXPECT_EQ(store->path(), path_);
  EXPECT_TRUE(store->LoadSnapshots()->empty());
  EXPECT_TRUE(store->LoadChildren()->empty());
}

TEST_F(StoreTest, NewStoreHasNextSnapshotIdOne) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(*store->NextSnapshotId(), 1u);
}

TEST_F(StoreTest, RecordsRoundTripAcrossReopen) {
  SnapshotRecord committed = Record("ns/1/sha256:abc", 7, SnapshotKind::kCommitted);
  committed.labels = {{"containerd.io/gc.root", "2024"}, {"l", "v"}};
  committed.usage_size_bytes = 123456;
  committed.usage_inodes = 42;
  SnapshotRecord active = Record("ns/2/active", 8, SnapshotKind::kActive, committed.key);
  SnapshotRecord view = Record("ns/3/view", 9, SnapshotKind::kView, committed.key);
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    Batch b;
    b.PutSnapshot(committed);
    b.PutSnapshot(active);
    b.PutSnapshot(view);
    b.SetNextSnapshotId(10);
    ASSERT_TRUE(store->Commit(b).ok());
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto records = store->LoadSnapshots();
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->size(), 3u);
  std::map<std::string, SnapshotRecord> by_key;
  for (auto& r : *records) by_key[r.key] = r;
  ExpectSameRecord(by_key[committed.key], committed);
  ExpectSameRecord(by_key[active.key], active);
  ExpectSameRecord(by_key[view.key], view);
  ExpectSameRecord(*store->GetSnapshot("", active.key), active);
  EXPECT_EQ(*store->NextSnapshotId(), 10u);
}

TEST_F(StoreTest, KeysAndLabelsWithNulBytesRoundTripExactly) {
  SnapshotRecord r = Record(std::string("a\0b", 3), 1, SnapshotKind::kCommitted);
  r.labels[std::string("k\0x", 3)] = std::string("v\0y\0", 4);
  SnapshotRecord plain = Record("a", 2, SnapshotKind::kCommitted);
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    Batch b;
    b.PutSnapshot(r);
    b.PutSnapshot(plain);
    ASSERT_TRUE(store->Commit(b).ok());
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto got = store->GetSnapshot("", r.key);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ExpectSameRecord(*got, r);
  ExpectSameRecord(*store->GetSnapshot("", "a"), plain);
  EXPECT_EQ(store->LoadSnapshots()->size(), 2u);
}

TEST_F(StoreTest, GetUnknownSnapshotIsNotFound) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(store->GetSnapshot("", "missing").status().IsNotFound());
}

TEST_F(StoreTest, DeleteSnapshotRemovesRecord) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  Batch put;
  put.PutSnapshot(Record("k", 1));
  ASSERT_TRUE(store->Commit(put).ok());
  Batch del;
  del.DeleteSnapshot("", "k");
  ASSERT_TRUE(store->Commit(del).ok());
  EXPECT_TRUE(store->GetSnapshot("", "k").status().IsNotFound());
  EXPECT_TRUE(store->LoadSnapshots()->empty());
}

TEST_F(StoreTest, BatchIsAppliedAtomicallyInOrder) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  Batch b;
  b.PutSnapshot(Record("k", 1, SnapshotKind::kActive));
  b.DeleteSnapshot("", "k");
  b.PutSnapshot(Record("k", 2, SnapshotKind::kCommitted));  // commit: delete + put
  ASSERT_TRUE(store->Commit(b).ok());
  auto r = store->GetSnapshot("", "k");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->id, 2u);
  EXPECT_EQ(r->kind, SnapshotKind::kCommitted);
}

TEST_F(StoreTest, ChildrenIndexTracksAddAndRemove) {
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    Batch b;
    b.AddChild("", "p", "c1");
    b.AddChild("", "p", "c2");
    b.AddChild("", "q", "c3");
    ASSERT_TRUE(store->Commit(b).ok());
    Batch r;
    r.RemoveChild("", "p", "c1");
    ASSERT_TRUE(store->Commit(r).ok());
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto children = store->LoadChildren();
  ASSERT_TRUE(children.ok());
  std::set<std::pair<std::string, std::string>> got;
  for (const auto& link : *children) got.emplace(link.parent, link.child);
  std::set<std::pair<std::string, std::string>> want = {{"p", "c2"}, {"q", "c3"}};
  EXPECT_EQ(got, want);
}

TEST_F(StoreTest, ChildrenIndexKeepsAmbiguousSplitsApart) {
  // ("a", "bc") and ("ab", "c") concatenate to the same bytes; NUL bytes too.
  EXPECT_NE(ChildIndexKey("", "a", "bc"), ChildIndexKey("", "ab", "c"));
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  Batch b;
  b.AddChild("", "a", "bc");
  b.AddChild("", "ab", "c");
  b.AddChild("", std::string("x\0", 2), std::string("\0y", 2));
  ASSERT_TRUE(store->Commit(b).ok());
  auto children = store->LoadChildren();
  ASSERT_TRUE(children.ok());
  std::set<std::pair<std::string, std::string>> got;
  for (const auto& link : *children) got.emplace(link.parent, link.child);
  std::set<std::pair<std::string, std::string>> want = {
      {"a", "bc"}, {"ab", "c"}, {std::string("x\0", 2), std::string("\0y", 2)}};
  EXPECT_EQ(got, want);
}

TEST_F(StoreTest, NewerSchemaVersionIsFailedPreconditionNamingPath) {
  { ASSERT_NE(OpenStore(), nullptr); }
  WithRawDb([&](rocksdb::DB* db, const auto& families, const auto& handles) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    ASSERT_TRUE(db->Put(wo, Family(families, handles, "meta"), "schema_version",
                        BigEndian64(kSchemaVersion + 1))
                    .ok());
  });
  auto store = Store::Open(path_);
  ASSERT_FALSE(store.ok());
  EXPECT_TRUE(store.status().IsFailedPrecondition()) << store.status().ToString();
  EXPECT_NE(store.status().message().find(path_), std::string::npos) << store.status().message();
}

TEST_F(StoreTest, NewerSchemaWithExtraColumnFamilyIsStillFailedPrecondition) {
  { ASSERT_NE(OpenStore(), nullptr); }
  WithRawDb([&](rocksdb::DB* db, const auto& families, const auto& handles) {
    rocksdb::ColumnFamilyHandle* extra = nullptr;
    ASSERT_TRUE(
        db->CreateColumnFamily(rocksdb::ColumnFamilyOptions(), "future_table", &extra).ok());
    ASSERT_TRUE(db->DestroyColumnFamilyHandle(extra).ok());
    rocksdb::WriteOptions wo;
    wo.sync = true;
    ASSERT_TRUE(db->Put(wo, Family(families, handles, "meta"), "schema_version",
                        BigEndian64(kSchemaVersion + 5))
                    .ok());
  });
  auto store = Store::Open(path_);
  EXPECT_TRUE(store.status().IsFailedPrecondition()) << store.status().ToString();
}

TEST_F(StoreTest, CorruptSchemaVersionIsDataLoss) {
  { ASSERT_NE(OpenStore(), nullptr); }
  WithRawDb([&](rocksdb::DB* db, const auto& families, const auto& handles) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    ASSERT_TRUE(db->Put(wo, Family(families, handles, "meta"), "schema_version", "v1").ok());
  });
  auto store = Store::Open(path_);
  EXPECT_EQ(store.status().code(), Code::kDataLoss) << store.status().ToString();
  EXPECT_NE(store.status().message().find(path_), std::string::npos);
}

TEST_F(StoreTest, GarbageCurrentFileIsDataLossNamingPath) {
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    Batch b;
    b.PutSnapshot(Record("k", 1));
    ASSERT_TRUE(store->Commit(b).ok());
  }
  std::ofstream(path_ + "/CURRENT", std::ios::trunc) << "\x01\x02garbage\xff";
  auto store = Store::Open(path_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Code::kDataLoss) << store.status().ToString();
  EXPECT_NE(store.status().message().find(path_), std::string::npos) << store.status().message();
}

TEST_F(StoreTest, GarbageManifestIsDataLossNamingPath) {
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    Batch b;
    b.PutSnapshot(Record("k", 1));
    ASSERT_TRUE(store->Commit(b).ok());
  }
  auto manifests = FilesStartingWith("MANIFEST-");
  ASSERT_FALSE(manifests.empty());
  for (const auto& m : manifests) {
    std::ofstream(m, std::ios::trunc) << std::string(4096, '\xa5');
  }
  auto store = Store::Open(path_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Code::kDataLoss) << store.status().ToString();
  EXPECT_NE(store.status().message().find(path_), std::string::npos) << store.status().message();
}

TEST_F(StoreTest, UndecodableRecordIsDataLossNamingPathAndKey) {
  { ASSERT_NE(OpenStore(), nullptr); }
  WithRawDb([&](rocksdb::DB* db, const auto& families, const auto& handles) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    ASSERT_TRUE(db->Put(wo, Family(families, handles, "snapshots"), std::string(8, '\0') + "broken",
                        "\xff\xff\xff\xff")
                    .ok());
  });
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto records = store->LoadSnapshots();
  ASSERT_FALSE(records.ok());
  EXPECT_EQ(records.status().code(), Code::kDataLoss);
  EXPECT_NE(records.status().message().find(path_), std::string::npos);
  EXPECT_NE(records.status().message().find("broken"), std::string::npos);
  EXPECT_EQ(store->GetSnapshot("", "broken").status().code(), Code::kDataLoss);
}

TEST_F(StoreTest, SecondOpenOfSameStoreIsFailedPrecondition) {
  auto first = OpenStore();
  ASSERT_NE(first, nullptr);
  auto second = Store::Open(path_);
  ASSERT_FALSE(second.ok());
  EXPECT_TRUE(second.status().IsFailedPrecondition()) << second.status().ToString();
  EXPECT_NE(second.status().message().find(path_), std::string::npos);
}

TEST_F(StoreTest, TicketsGrowWithEachApply) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->LastTicket(), 0u);
  EXPECT_TRUE(store->WaitDurable(0).ok());
  uint64_t last = 0;
  for (int i = 0; i < 5; i++) {
    Batch b;
    b.PutSnapshot(Record("k" + std::to_string(i), static_cast<uint64_t>(i + 1)));
    auto ticket = store->Apply(b);
    ASSERT_TRUE(ticket.ok());
    EXPECT_GT(*ticket, last);
    EXPECT_EQ(store->LastTicket(), *ticket);
    last = *ticket;
  }
  EXPECT_TRUE(store->WaitDurable(last).ok());
}

TEST_F(StoreTest, AppliedBatchIsReadableBeforeItIsDurable) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  Batch b;
  b.PutSnapshot(Record("k", 1));
  auto ticket = store->Apply(b);
  ASSERT_TRUE(ticket.ok());
  EXPECT_TRUE(store->GetSnapshot("", "k").ok());
  EXPECT_TRUE(store->WaitDurable(*ticket).ok());
}

TEST_F(StoreTest, GroupCommitFromManyThreadsKeepsEveryBatch) {
  constexpr int kThreads = 16;
  constexpr int kPerThread = 100;
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    std::vector<std::thread> threads;
    std::vector<std::vector<uint64_t>> tickets(kThreads);
    std::atomic<int> failures{0};
    for (int t = 0; t < kThreads; t++) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; i++) {
          Batch b;
          uint64_t id = static_cast<uint64_t>(t * kPerThread + i + 1);
          b.PutSnapshot(Record("t" + std::to_string(t) + "/" + std::to_string(i), id));
          b.AddChild("", "parent-" + std::to_string(t), std::to_string(i));
          auto ticket = store->Apply(b);
          if (!ticket.ok() || !store->WaitDurable(*ticket).ok()) {
            failures++;
            continue;
          }
          tickets[static_cast<size_t>(t)].push_back(*ticket);
        }
      });
    }
    for (auto& th : threads) th.join();
    ASSERT_EQ(failures.load(), 0);
    std::set<uint64_t> all;
    for (const auto& per : tickets) {
      EXPECT_TRUE(std::is_sorted(per.begin(), per.end()));
      all.insert(per.begin(), per.end());
    }
    EXPECT_EQ(all.size(), static_cast<size_t>(kThreads * kPerThread)) << "tickets are unique";
    EXPECT_EQ(store->LastTicket(), static_cast<uint64_t>(kThreads * kPerThread));
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->LoadSnapshots()->size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_EQ(store->LoadChildren()->size(), static_cast<size_t>(kThreads * kPerThread));
}

TEST_F(StoreTest, ConcurrentCommitsOfOneKeyLeaveOneOfTheWrittenValues) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; t++) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; i++) {
        Batch b;
        b.PutSnapshot(Record("shared", static_cast<uint64_t>(t + 1)));
        EXPECT_TRUE(store->Commit(b).ok());
      }
    });
  }
  for (auto& th : threads) th.join();
  auto r = store->GetSnapshot("", "shared");
  ASSERT_TRUE(r.ok());
  EXPECT_GE(r->id, 1u);
  EXPECT_LE(r->id, 8u);
  EXPECT_EQ(r->created_unix_nanos, 1000 + static_cast<int64_t>(r->id));
}

TEST_F(StoreTest, SnapshotterNamesAreSeparateKeySpaces) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  SnapshotRecord a = Record("k", 1, SnapshotKind::kActive, "");
  a.snapshotter = "containerd";
  SnapshotRecord b = Record("k", 2, SnapshotKind::kCommitted, "");
  b.snapshotter = "strata";
  Batch batch;
  batch.PutSnapshot(a);
  batch.PutSnapshot(b);
  batch.AddChild("containerd", "p", "c");
  ASSERT_TRUE(store->Commit(batch).ok());
  EXPECT_EQ(store->GetSnapshot("containerd", "k")->id, 1u);
  EXPECT_EQ(store->GetSnapshot("strata", "k")->id, 2u);
  EXPECT_TRUE(store->GetSnapshot("", "k").status().IsNotFound());
  auto all = store->LoadSnapshots();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  auto children = store->LoadChildren();
  ASSERT_TRUE(children.ok());
  ASSERT_EQ(children->size(), 1u);
  EXPECT_EQ((*children)[0].snapshotter, "containerd");
  EXPECT_EQ((*children)[0].parent, "p");
  EXPECT_EQ((*children)[0].child, "c");
  EXPECT_NE(ChildIndexKey("a", "b", "c"), ChildIndexKey("ab", "", "c"));
}

ContentRecord Content(const std::string& hex_char, int64_t size) {
  ContentRecord r;
  r.digest = "sha256:" + std::string(64, hex_char[0]);
  r.size_bytes = size;
  r.created_unix_nanos = 100 + size;
  r.updated_unix_nanos = 200 + size;
  return r;
}

ImageRecord Image(const std::string& name, const std::string& digest) {
  ImageRecord r;
  r.name = name;
  r.target.media_type = "application/vnd.oci.image.index.v1+json";
  r.target.digest = digest;
  r.target.size_bytes = 321;
  r.created_unix_nanos = 11;
  r.updated_unix_nanos = 12;
  return r;
}

TEST_F(StoreTest, ContentRecordsRoundTripAcrossReopen) {
  ContentRecord a = Content("a", 10);
  a.labels = {{"containerd.io/gc.ref.content.l.0", "sha256:" + std::string(64, 'b')},
              {"containerd.io/gc.root", "2024-01-01T00:00:00Z"}};
  ContentRecord b = Content("b", 0);
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    Batch batch;
    batch.PutContent(a);
    batch.PutContent(b);
    ASSERT_TRUE(store->Commit(batch).ok());
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto got = store->GetContent(a.digest);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->digest, a.digest);
  EXPECT_EQ(got->size_bytes, 10);
  EXPECT_EQ(got->labels, a.labels);
  EXPECT_EQ(got->created_unix_nanos, a.created_unix_nanos);
  EXPECT_EQ(got->updated_unix_nanos, a.updated_unix_nanos);
  auto all = store->LoadContent();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].digest, a.digest) << "in digest order";
  EXPECT_EQ((*all)[1].digest, b.digest);
  EXPECT_EQ((*all)[1].size_bytes, 0);
  EXPECT_TRUE((*all)[1].labels.empty());
}

TEST_F(StoreTest, GetUnknownContentIsNotFoundNamingDigest) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto got = store->GetContent("sha256:" + std::string(64, 'c'));
  EXPECT_TRUE(got.status().IsNotFound());
  EXPECT_NE(got.status().message().find(std::string(64, 'c')), std::string::npos);
  EXPECT_TRUE(store->LoadContent()->empty());
}

TEST_F(StoreTest, DeleteContentRemovesOnlyThatRecord) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  Batch put;
  put.PutContent(Content("a", 1));
  put.PutContent(Content("b", 2));
  ASSERT_TRUE(store->Commit(put).ok());
  Batch del;
  del.DeleteContent(Content("a", 1).digest);
  ASSERT_TRUE(store->Commit(del).ok());
  EXPECT_TRUE(store->GetContent(Content("a", 1).digest).status().IsNotFound());
  auto all = store->LoadContent();
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].size_bytes, 2);
}

TEST_F(StoreTest, ImageRecordsRoundTripAcrossReopen) {
  ImageRecord image = Image("docker.io/library/busybox:latest", Content("a", 1).digest);
  image.target.annotations = {{"org.opencontainers.image.ref.name", "latest"}};
  image.labels = {{"containerd.io/gc.ref.content.extra", Content("b", 1).digest}};
  ImageRecord odd = Image(std::string("../../etc/passwd\0x", 18), Content("c", 1).digest);
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    Batch batch;
    batch.PutImage(image);
    batch.PutImage(odd);
    ASSERT_TRUE(store->Commit(batch).ok());
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto got = store->GetImage(image.name);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->name, image.name);
  EXPECT_EQ(got->target.media_type, image.target.media_type);
  EXPECT_EQ(got->target.digest, image.target.digest);
  EXPECT_EQ(got->target.size_bytes, 321);
  EXPECT_EQ(got->target.annotations, image.target.annotations);
  EXPECT_EQ(got->labels, image.labels);
  EXPECT_EQ(got->created_unix_nanos, 11);
  EXPECT_EQ(got->updated_unix_nanos, 12);
  auto weird = store->GetImage(odd.name);
  ASSERT_TRUE(weird.ok()) << "names are data, any bytes";
  EXPECT_EQ(weird->target.digest, odd.target.digest);
  auto all = store->LoadImages();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].name, odd.name) << "in name order";
  EXPECT_EQ((*all)[1].name, image.name);
}

TEST_F(StoreTest, DeleteImageRemovesRecord) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  Batch put;
  put.PutImage(Image("a", Content("a", 1).digest));
  ASSERT_TRUE(store->Commit(put).ok());
  Batch del;
  del.DeleteImage("a");
  ASSERT_TRUE(store->Commit(del).ok());
  EXPECT_TRUE(store->GetImage("a").status().IsNotFound());
  EXPECT_TRUE(store->LoadImages()->empty());
}

TEST_F(StoreTest, OneBatchSpansSnapshotsContentAndImages) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  Batch batch;
  batch.PutSnapshot(Record("k", 1));
  batch.PutContent(Content("a", 1));
  batch.PutImage(Image("img", Content("a", 1).digest));
  ASSERT_TRUE(store->Commit(batch).ok());
  EXPECT_TRUE(store->GetSnapshot("", "k").ok());
  EXPECT_TRUE(store->GetContent(Content("a", 1).digest).ok());
  EXPECT_TRUE(store->GetImage("img").ok());
}

TEST_F(StoreTest, StoreWrittenBeforeContentAndImagesGetsThemAtOpen) {
  // A schema-1 store from before the content and images tables: only meta, snapshots
  // and snapshot_children.
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    Batch b;
    b.PutSnapshot(Record("old", 3, SnapshotKind::kCommitted));
    b.SetNextSnapshotId(4);
    ASSERT_TRUE(store->Commit(b).ok());
  }
  WithRawDb([&](rocksdb::DB* db, const auto& families, const auto& handles) {
    ASSERT_TRUE(db->DropColumnFamily(Family(families, handles, "content")).ok());
    ASSERT_TRUE(db->DropColumnFamily(Family(families, handles, "images")).ok());
  });
  {
    std::vector<std::string> families;
    ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), path_, &families).ok());
    EXPECT_EQ(std::count(families.begin(), families.end(), "content"), 0);
    EXPECT_EQ(std::count(families.begin(), families.end(), "images"), 0);
  }
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(store->schema_version(), 1u);
    EXPECT_EQ(store->GetSnapshot("", "old")->id, 3u);
    EXPECT_EQ(*store->NextSnapshotId(), 4u);
    EXPECT_TRUE(store->LoadContent()->empty());
    EXPECT_TRUE(store->LoadImages()->empty());
    Batch b;
    b.PutContent(Content("a", 5));
    b.PutImage(Image("img", Content("a", 5).digest));
    ASSERT_TRUE(store->Commit(b).ok());
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->GetContent(Content("a", 5).digest)->size_bytes, 5);
  EXPECT_EQ(store->GetImage("img")->target.digest, Content("a", 5).digest);
}

TEST_F(StoreTest, UndecodableContentAndImageRecordsAreDataLossNamingKey) {
  { ASSERT_NE(OpenStore(), nullptr); }
  WithRawDb([&](rocksdb::DB* db, const auto& families, const auto& handles) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    ASSERT_TRUE(
        db->Put(wo, Family(families, handles, "content"), "sha256:broken", "\xff\xff\xff").ok());
    ASSERT_TRUE(db->Put(wo, Family(families, handles, "images"), "broken-image", "\xff\xff").ok());
  });
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto content = store->LoadContent();
  EXPECT_EQ(content.status().code(), Code::kDataLoss);
  EXPECT_NE(content.status().message().find("sha256:broken"), std::string::npos);
  EXPECT_EQ(store->GetContent("sha256:broken").status().code(), Code::kDataLoss);
  auto images = store->LoadImages();
  EXPECT_EQ(images.status().code(), Code::kDataLoss);
  EXPECT_NE(images.status().message().find("broken-image"), std::string::npos);
}

// ---- The write-ahead log grows in zero-filled chunks (wal_file_system.h) -------------

class WalTest : public StoreTest {
 protected:
  // Commits `n` snapshot records in a child process that then ends without closing the
  // store, as a killed daemon: its log keeps its zero-filled tail.
  void CommitThenDie(int n) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      auto store = Store::Open(path_);
      if (!store.ok()) ::_exit(1);
      for (int i = 1; i <= n; i++) {
        Batch b;
        b.PutSnapshot(Record("k" + std::to_string(i), static_cast<uint64_t>(i)));
        if (!(*store)->Commit(b).ok()) ::_exit(2);
      }
      ::_exit(0);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  }

  std::string OnlyLog() {
    auto logs = FilesWithSuffix(".log");
    EXPECT_EQ(logs.size(), 1u);
    return logs.empty() ? "" : logs[0];
  }

  std::vector<std::string> FilesWithSuffix(const std::string& suffix) {
    std::vector<std::string> out;
    for (const auto& f : FilesStartingWith("")) {
      if (f.size() > suffix.size() && f.ends_with(suffix)) out.push_back(f);
    }
    return out;
  }

  void ExpectRecords(Store& store, size_t n) {
    auto records = store.LoadSnapshots();
    ASSERT_TRUE(records.ok()) << records.status().ToString();
    ASSERT_EQ(records->size(), n);
    std::set<std::string> keys;
    for (const auto& r : *records) keys.insert(r.key);
    for (size_t i = 1; i <= n; i++) EXPECT_EQ(keys.count("k" + std::to_string(i)), 1u) << i;
  }
};

// The last non-zero byte of `data` plus one: where the log's records end.
size_t EndOfRecords(const std::string& data) {
  size_t end = data.size();
  while (end > 0 && data[end - 1] == '\0') end--;
  return end;
}

TEST_F(WalTest, LogOfAKilledWriterEndsInZeroFilledSpaceAndKeepsEveryRecord) {
  CommitThenDie(200);
  std::string log = OnlyLog();
  ASSERT_FALSE(log.empty());
  std::ifstream in(log, std::ios::binary);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(data.size(), 1u << 20) << "the log owns one zero-filled chunk";
  EXPECT_LT(EndOfRecords(data), data.size() / 2) << "200 small records fill little of it";

  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  ExpectRecords(*store, 200);
}

TEST_F(WalTest, TornRecordInTheZeroFilledTailLosesOnlyItself) {
  CommitThenDie(50);
  std::string log = OnlyLog();
  ASSERT_FALSE(log.empty());
  std::string data;
  {
    std::ifstream in(log, std::ios::binary);
    data.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  // A write cut short by a crash: the first bytes of a record header, no payload.
  size_t end = EndOfRecords(data);
  ASSERT_LT(end + 16, data.size());
  {
    std::fstream out(log, std::ios::binary | std::ios::in | std::ios::out);
    out.seekp(static_cast<std::streamoff>(end));
    out.write("\x12\x34\x56\x78\x40\x00\x01garbage", 14);
  }
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    ExpectRecords(*store, 50);
    Batch b;
    b.PutSnapshot(Record("k51", 51));
    ASSERT_TRUE(store->Commit(b).ok());
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  ExpectRecords(*store, 51);
}

TEST_F(WalTest, LogsGrowChunkByChunkAndCloseAtTheirLength) {
  std::string value(5000, 'v');
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    // About 1.5 MiB of records: more than one chunk.
    for (int i = 1; i <= 300; i++) {
      SnapshotRecord r = Record("k" + std::to_string(i), static_cast<uint64_t>(i));
      r.labels["big"] = value;
      Batch b;
      b.PutSnapshot(r);
      ASSERT_TRUE(store->Commit(b).ok());
    }
    std::string log = OnlyLog();
    struct stat st;
    ASSERT_EQ(::stat(log.c_str(), &st), 0);
    EXPECT_EQ(st.st_size, 2 << 20) << "two chunks while open";
  }
  // Closed: the unused tail is gone, and the records are all there.
  auto logs = FilesWithSuffix(".log");
  ASSERT_FALSE(logs.empty());
  for (const auto& log : logs) {
    struct stat st;
    ASSERT_EQ(::stat(log.c_str(), &st), 0);
    EXPECT_NE(st.st_size % (1 << 20), 0) << log << " kept its zero-filled tail";
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  ExpectRecords(*store, 300);
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

TEST_F(WalTest, TruncateCutsTheFileSoNoOlderRecordSurvivesBeyondTheEnd) {
  ASSERT_EQ(::mkdir(path_.c_str(), 0700), 0);
  auto fs = NewWalPreallocatingFileSystem(rocksdb::FileSystem::Default(), 64 << 10);
  std::unique_ptr<rocksdb::FSWritableFile> file;
  std::string log = path_ + "/000042.log";
  ASSERT_TRUE(fs->NewWritableFile(log, rocksdb::FileOptions(), &file, nullptr).ok());
  ASSERT_TRUE(file->Append("record-one|record-two", rocksdb::IOOptions(), nullptr).ok());
  ASSERT_TRUE(file->Sync(rocksdb::IOOptions(), nullptr).ok());
  EXPECT_EQ(ReadAll(log).size(), 64u << 10) << "written into a zero-filled chunk";
  ASSERT_TRUE(file->Truncate(11, rocksdb::IOOptions(), nullptr).ok());
  std::string after_truncate = ReadAll(log);
  EXPECT_EQ(after_truncate.find("record-two"), std::string::npos) << "cut from the file";
  ASSERT_TRUE(file->Append("three", rocksdb::IOOptions(), nullptr).ok());
  EXPECT_EQ(file->GetFileSize(rocksdb::IOOptions(), nullptr), 16u);
  std::string open_data = ReadAll(log);
  EXPECT_EQ(open_data.substr(0, 16), "record-one|three");
  EXPECT_EQ(open_data.find_first_not_of('\0', 16), std::string::npos) << "zeros after the end";
  ASSERT_TRUE(file->Close(rocksdb::IOOptions(), nullptr).ok());
  EXPECT_EQ(ReadAll(log), "record-one|three");

  // Other files are the wrapped file system's, written as they come.
  std::string other = path_ + "/MANIFEST-000001";
  ASSERT_TRUE(fs->NewWritableFile(other, rocksdb::FileOptions(), &file, nullptr).ok());
  ASSERT_TRUE(file->Append("manifest", rocksdb::IOOptions(), nullptr).ok());
  ASSERT_TRUE(file->Close(rocksdb::IOOptions(), nullptr).ok());
  EXPECT_EQ(ReadAll(other), "manifest");
}

}  // namespace
}  // namespace strata::metadata
