// ChunkCache: bounded LRU of verified chunks with single-flight loading.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>

#include "lazy/stargz/chunk_cache.h"

namespace strata::lazy::stargz {
namespace {

ChunkCache::Loader Bytes(size_t n, std::atomic<int>* calls = nullptr) {
  return [n, calls]() -> Result<ChunkCache::Data> {
    if (calls) (*calls)++;
    return std::make_shared<const std::string>(n, 'x');
  };
}

TEST(StargzChunkCache, SecondGetIsServedFromMemory) {
  ChunkCache cache(1000);
  std::atomic<int> calls{0};
  ASSERT_TRUE(cache.GetOrLoad({1, 0, 100}, Bytes(100, &calls)).ok());
  ASSERT_TRUE(cache.GetOrLoad({1, 0, 100}, Bytes(100, &calls)).ok());
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(cache.size_bytes(), 100u);
}

TEST(StargzChunkCache, EvictsTheLeastRecentlyUsed) {
  ChunkCache cache(250);
  std::atomic<int> calls{0};
  ASSERT_TRUE(cache.GetOrLoad({1, 0, 100}, Bytes(100, &calls)).ok());
  ASSERT_TRUE(cache.GetOrLoad({2, 0, 100}, Bytes(100, &calls)).ok());
  ASSERT_TRUE(cache.GetOrLoad({1, 0, 100}, Bytes(100, &calls)).ok());  // 1 is now newest
  ASSERT_TRUE(cache.GetOrLoad({3, 0, 100}, Bytes(100, &calls)).ok());  // evicts 2
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(cache.size_bytes(), 200u);
  ASSERT_TRUE(cache.GetOrLoad({1, 0, 100}, Bytes(100, &calls)).ok());
  EXPECT_EQ(calls, 3);
  ASSERT_TRUE(cache.GetOrLoad({2, 0, 100}, Bytes(100, &calls)).ok());
  EXPECT_EQ(calls, 4);
}

TEST(StargzChunkCache, ChunkLargerThanTheCacheIsServedButNotKept) {
  ChunkCache cache(50);
  Result<ChunkCache::Data> data = cache.GetOrLoad({1, 0, 100}, Bytes(100));
  ASSERT_TRUE(data.ok());
  EXPECT_EQ((*data)->size(), 100u);
  EXPECT_EQ(cache.size_bytes(), 0u);
}

TEST(StargzChunkCache, ErrorsAreNotCached) {
  ChunkCache cache(1000);
  Result<ChunkCache::Data> failed =
      cache.GetOrLoad({1, 0, 1}, [] { return Result<ChunkCache::Data>(Status::DataLoss("bad")); });
  EXPECT_EQ(failed.status().code(), Code::kDataLoss);
  std::atomic<int> calls{0};
  EXPECT_TRUE(cache.GetOrLoad({1, 0, 1}, Bytes(1, &calls)).ok());
  EXPECT_EQ(calls, 1);
}

TEST(StargzChunkCache, ConcurrentMissesRunOneLoader) {
  ChunkCache cache(1000);
  std::atomic<int> calls{0};
  auto slow = [&]() -> Result<ChunkCache::Data> {
    calls++;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return std::make_shared<const std::string>("chunk");
  };
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; i++) {
    threads.emplace_back([&] {
      Result<ChunkCache::Data> data = cache.GetOrLoad({7, 0, 5}, slow);
      if (data.ok() && **data == "chunk") ok++;
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(ok, 8);
  EXPECT_EQ(calls, 1);
}

TEST(StargzChunkCache, ALoaderThatThrowsFailsEveryWaiter) {
  ChunkCache cache(1000);
  Result<ChunkCache::Data> data = cache.GetOrLoad(
      {1, 0, 1}, []() -> Result<ChunkCache::Data> { throw std::runtime_error("boom"); });
  EXPECT_EQ(data.status().code(), Code::kInternal);
  EXPECT_TRUE(cache.GetOrLoad({1, 0, 1}, Bytes(1)).ok());
}

}  // namespace
}  // namespace strata::lazy::stargz
