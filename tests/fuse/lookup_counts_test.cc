#include "fuse/lookup_counts.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace strata::fuse {
namespace {

TEST(LookupCountsTest, AddsAndForgetsPerInode) {
  LookupCounts counts;
  counts.Add(5);
  counts.Add(5, 2);
  counts.Add(21);  // same shard as 5
  EXPECT_EQ(counts.Get(5), 3u);
  EXPECT_EQ(counts.Get(21), 1u);
  EXPECT_EQ(counts.Size(), 2u);
  EXPECT_TRUE(counts.Forget(5, 2));
  EXPECT_EQ(counts.Get(5), 1u);
  EXPECT_TRUE(counts.Forget(5, 1));
  EXPECT_EQ(counts.Get(5), 0u);
  EXPECT_EQ(counts.Size(), 1u);
}

TEST(LookupCountsTest, ForgettingMoreThanAddedStopsAtZeroAndSaysSo) {
  LookupCounts counts;
  counts.Add(7, 2);
  EXPECT_FALSE(counts.Forget(7, 3));
  EXPECT_EQ(counts.Get(7), 0u);
  EXPECT_FALSE(counts.Forget(8, 1));
  EXPECT_TRUE(counts.Forget(8, 0));
  EXPECT_EQ(counts.Size(), 0u);
}

TEST(LookupCountsTest, ConcurrentAddsAndForgetsBalance) {
  LookupCounts counts;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; t++) {
    threads.emplace_back([&counts] {
      for (int i = 0; i < 10000; i++) {
        counts.Add(static_cast<Ino>(i % 100 + 2));
        counts.Forget(static_cast<Ino>(i % 100 + 2), 1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(counts.Size(), 0u);
}

}  // namespace
}  // namespace strata::fuse
