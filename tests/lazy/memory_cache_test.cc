// lazy::MemoryCache: a sharded LRU of chunks.
#include "lazy/memory_cache.h"

#include <gtest/gtest.h>

namespace strata::lazy {
namespace {

MemoryCache::Chunk Bytes(size_t n, char fill) {
  return std::make_shared<const std::string>(n, fill);
}

TEST(MemoryCacheTest, LeastRecentlyUsedChunkGoesFirst) {
  MemoryCache cache(3 * 1024, 1024);  // one shard of three chunks
  cache.Insert(1, 0, Bytes(1024, 'a'));
  cache.Insert(1, 1, Bytes(1024, 'b'));
  cache.Insert(1, 2, Bytes(1024, 'c'));
  ASSERT_NE(cache.Lookup(1, 0), nullptr);  // 0 is now the most recent
  cache.Insert(2, 0, Bytes(1024, 'd'));
  EXPECT_EQ(cache.Lookup(1, 1), nullptr);
  EXPECT_EQ(*cache.Lookup(1, 0), std::string(1024, 'a'));
  EXPECT_NE(cache.Lookup(1, 2), nullptr);
  EXPECT_NE(cache.Lookup(2, 0), nullptr);
  EXPECT_EQ(cache.size_bytes(), 3 * 1024u);
}

TEST(MemoryCacheTest, StaysWithinItsCapacityAcrossShards) {
  const uint64_t chunk = 4096;
  MemoryCache cache(64 * chunk, chunk);
  for (uint64_t c = 0; c < 1000; c++) cache.Insert(c % 7, c, Bytes(chunk, 'x'));
  EXPECT_LE(cache.size_bytes(), 64 * chunk);
  EXPECT_GT(cache.size_bytes(), 0u);
}

TEST(MemoryCacheTest, EraseAndEraseBlob) {
  MemoryCache cache(16 * 1024, 1024);
  for (uint64_t c = 0; c < 4; c++) {
    cache.Insert(1, c, Bytes(1024, 'a'));
    cache.Insert(2, c, Bytes(1024, 'b'));
  }
  cache.Erase(1, 0);
  EXPECT_EQ(cache.Lookup(1, 0), nullptr);
  cache.EraseBlob(2);
  for (uint64_t c = 0; c < 4; c++) EXPECT_EQ(cache.Lookup(2, c), nullptr);
  EXPECT_NE(cache.Lookup(1, 3), nullptr);
  EXPECT_EQ(cache.size_bytes(), 3 * 1024u);
}

TEST(MemoryCacheTest, ZeroCapacityDisablesIt) {
  MemoryCache cache(0, 1024);
  EXPECT_FALSE(cache.enabled());
  cache.Insert(1, 0, Bytes(1024, 'a'));
  EXPECT_EQ(cache.Lookup(1, 0), nullptr);
}

}  // namespace
}  // namespace strata::lazy
