// lazy::FetchScheduler: priority order, per-priority limits, background pausing.
#include "lazy/fetch_scheduler.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <string>
#include <thread>

namespace strata::lazy {
namespace {

using std::chrono::milliseconds;

// A task body that blocks until `gate` is opened.
FetchScheduler::Task Blocking(std::shared_future<void> gate, std::function<void()> then = {}) {
  return {[gate, then] {
            gate.wait();
            if (then) then();
          },
          nullptr};
}

TEST(FetchSchedulerTest, OnDemandFirstThenPrefetchThenBackground) {
  FetchScheduler scheduler({.workers = 1, .prefetch = 1, .background = 1});
  std::promise<void> open;
  scheduler.Submit(Priority::kOnDemand, Blocking(open.get_future().share()));  // holds the worker
  std::mutex mu;
  std::string order;
  std::promise<void> all_ran;
  auto record = [&](char c) {
    return FetchScheduler::Task{[&, c] {
                                  std::lock_guard<std::mutex> lock(mu);
                                  order += c;
                                  if (order.size() == 4) all_ran.set_value();
                                },
                                nullptr};
  };
  scheduler.Submit(Priority::kBackground, record('b'));
  scheduler.Submit(Priority::kPrefetch, record('p'));
  scheduler.Submit(Priority::kOnDemand, record('o'));
  scheduler.Submit(Priority::kPrefetch, record('q'), /*front=*/true);
  open.set_value();
  ASSERT_EQ(all_ran.get_future().wait_for(milliseconds(5000)), std::future_status::ready);
  EXPECT_EQ(order, "oqpb");
}

TEST(FetchSchedulerTest, PrefetchConcurrencyIsBounded) {
  FetchScheduler scheduler({.workers = 4, .prefetch = 2, .background = 1});
  std::atomic<int> running{0}, peak{0}, finished{0};
  for (int i = 0; i < 8; i++) {
    scheduler.Submit(Priority::kPrefetch,
                     {[&] {
                        int now = ++running;
                        int seen = peak.load();
                        while (now > seen && !peak.compare_exchange_weak(seen, now)) {
                        }
                        std::this_thread::sleep_for(milliseconds(30));
                        running--;
                        finished++;
                      },
                      nullptr});
  }
  auto until = std::chrono::steady_clock::now() + milliseconds(5000);
  while (finished < 8 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_EQ(finished, 8);
  EXPECT_EQ(peak, 2);
}

TEST(FetchSchedulerTest, BackgroundWaitsWhileAReaderWaits) {
  FetchScheduler scheduler({.workers = 2, .prefetch = 1, .background = 1});
  scheduler.AddWaitingReader();
  std::promise<void> ran;
  scheduler.Submit(Priority::kBackground, {[&] { ran.set_value(); }, nullptr});
  auto future = ran.get_future();
  EXPECT_EQ(future.wait_for(milliseconds(300)), std::future_status::timeout);
  scheduler.RemoveWaitingReader();
  EXPECT_EQ(future.wait_for(milliseconds(5000)), std::future_status::ready);
}

TEST(FetchSchedulerTest, ShutdownCancelsQueuedTasks) {
  std::atomic<int> cancelled{0};
  {
    FetchScheduler scheduler({.workers = 1, .prefetch = 1, .background = 1});
    std::promise<void> open;
    std::shared_future<void> gate = open.get_future().share();
    scheduler.Submit(Priority::kOnDemand, Blocking(gate));
    for (int i = 0; i < 3; i++) {
      scheduler.Submit(Priority::kOnDemand, {[] {}, [&] { cancelled++; }});
    }
    std::thread opener([&] {
      std::this_thread::sleep_for(milliseconds(100));
      open.set_value();
    });
    scheduler.Shutdown();  // waits for the running task, cancels the queued ones
    opener.join();
    scheduler.Submit(Priority::kPrefetch, {[] {}, [&] { cancelled++; }});
  }
  EXPECT_EQ(cancelled, 4);
}

}  // namespace
}  // namespace strata::lazy
