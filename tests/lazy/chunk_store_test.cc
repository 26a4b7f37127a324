// lazy::ChunkStore: the per-blob disk cache (sparse data file + persisted bitmap).
#include "lazy/chunk_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fs.h"

namespace strata::lazy {
namespace {

constexpr uint64_t kChunk = 64 << 10;

class ChunkStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/strata-chunk-store-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    dir_ = root_ + "/blob";
  }
  void TearDown() override { (void)fs::RemoveAll(root_); }

  std::unique_ptr<ChunkStore> OpenStore(std::optional<uint64_t> size) {
    auto store = ChunkStore::Open(dir_, kChunk, size);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    return store.ok() ? std::move(*store) : nullptr;
  }

  // Writes chunk `c` filled with byte `fill` and marks it present.
  static void Put(ChunkStore& store, uint64_t c, char fill) {
    std::string bytes(store.ChunkLength(c), fill);
    ASSERT_TRUE(store.Write(c * kChunk, bytes).ok());
    store.MarkPresent(c, 1);
  }

  std::string root_;
  std::string dir_;
};

TEST_F(ChunkStoreTest, PersistedChunksAreThereAfterReopen) {
  const uint64_t size = 5 * kChunk + 100;  // a short last chunk
  {
    auto store = OpenStore(size);
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(store->chunk_count(), 6u);
    Put(*store, 1, 'a');
    Put(*store, 5, 'z');
    EXPECT_EQ(store->CachedBytes(), kChunk + 100);
    ASSERT_TRUE(store->Persist().ok());
  }
  auto store = OpenStore(std::nullopt);  // size from the bitmap
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->blob_size(), size);
  EXPECT_EQ(store->PresentChunks(), (std::vector<uint64_t>{1, 5}));
  std::string got(100, '\0');
  auto read = store->ReadIfPresent(5, 0, got.size(), got.data());
  ASSERT_TRUE(read.ok() && *read);
  EXPECT_EQ(got, std::string(100, 'z'));
  read = store->ReadIfPresent(2, 0, 10, got.data());
  ASSERT_TRUE(read.ok());
  EXPECT_FALSE(*read);
}

TEST_F(ChunkStoreTest, BitsNotPersistedAreForgotten) {
  {
    auto store = OpenStore(4 * kChunk);
    Put(*store, 0, 'a');
    ASSERT_TRUE(store->Persist().ok());
    Put(*store, 1, 'b');  // no Persist: as if the process died here
  }
  auto store = OpenStore(4 * kChunk);
  EXPECT_EQ(store->PresentChunks(), std::vector<uint64_t>{0});
}

TEST_F(ChunkStoreTest, AnotherBlobSizeResetsTheCache) {
  {
    auto store = OpenStore(4 * kChunk);
    Put(*store, 0, 'a');
    ASSERT_TRUE(store->Persist().ok());
  }
  auto store = OpenStore(3 * kChunk);
  EXPECT_EQ(store->CachedBytes(), 0u);
  struct stat st;
  ASSERT_EQ(::stat((dir_ + "/data").c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 3 * kChunk);
}

TEST_F(ChunkStoreTest, DamagedBitmapWithoutKnownSizeIsNotFound) {
  {
    auto store = OpenStore(4 * kChunk);
    Put(*store, 0, 'a');
    ASSERT_TRUE(store->Persist().ok());
  }
  ASSERT_EQ(::truncate((dir_ + "/bitmap").c_str(), 50), 0);
  EXPECT_EQ(ChunkStore::Open(dir_, kChunk, std::nullopt).status().code(), Code::kNotFound);
  auto store = OpenStore(4 * kChunk);
  EXPECT_EQ(store->CachedBytes(), 0u);
}

TEST_F(ChunkStoreTest, ClearIsDurableAndPunchesHoles) {
  auto store = OpenStore(8 * kChunk);
  for (uint64_t c = 0; c < 8; c++) Put(*store, c, static_cast<char>('a' + c));
  ASSERT_TRUE(store->Persist().ok());
  struct stat before;
  ASSERT_EQ(::stat((dir_ + "/data").c_str(), &before), 0);

  uint64_t cleared = 0;
  ASSERT_TRUE(store->Clear({2, 3, 4, 9}, true, &cleared).ok());
  EXPECT_EQ(cleared, 3 * kChunk);
  EXPECT_EQ(store->CachedBytes(), 5 * kChunk);
  struct stat after;
  ASSERT_EQ(::stat((dir_ + "/data").c_str(), &after), 0);
  EXPECT_LE(after.st_blocks * 512, before.st_blocks * 512 - static_cast<int64_t>(3 * kChunk));

  store.reset();
  store = OpenStore(8 * kChunk);
  EXPECT_EQ(store->PresentChunks(), (std::vector<uint64_t>{0, 1, 5, 6, 7}));
}

TEST_F(ChunkStoreTest, RemoveDeletesTheFolder) {
  auto store = OpenStore(2 * kChunk);
  Put(*store, 0, 'a');
  uint64_t dropped = 0;
  ASSERT_TRUE(store->Remove(&dropped).ok());
  EXPECT_EQ(dropped, kChunk);
  EXPECT_FALSE(fs::Exists(dir_));
  EXPECT_EQ(store->Write(0, "x").code(), Code::kFailedPrecondition);
  char c;
  auto read = store->ReadIfPresent(0, 0, 1, &c);
  ASSERT_TRUE(read.ok());
  EXPECT_FALSE(*read);
}

}  // namespace
}  // namespace strata::lazy
