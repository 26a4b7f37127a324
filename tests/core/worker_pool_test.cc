#include "core/worker_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace strata {
namespace {

// Blocks callers until Open() is called.
class Gate {
 public:
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    waiting_++;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
  }
  // Waits (up to 10 s) until `n` callers are blocked in Wait.
  bool WaitForWaiters(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return waiting_ >= n; });
  }
  int Waiters() {
    std::lock_guard<std::mutex> lock(mu_);
    return waiting_;
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int waiting_ = 0;
  bool open_ = false;
};

TEST(WorkerPoolTest, BlockedTasksRunAtOnceUpToTheLimit) {
  WorkerPool pool("test-pool", 4);
  Gate gate;
  std::atomic<int> done{0};
  for (int i = 0; i < 6; i++) {
    pool.Submit([&] {
      gate.Wait();
      done++;
    });
  }
  // Four threads block together; the other two tasks wait for a thread.
  ASSERT_TRUE(gate.WaitForWaiters(4));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(gate.Waiters(), 4);
  EXPECT_EQ(pool.Pending(), 6u);
  gate.Open();
  pool.Drain();
  EXPECT_EQ(done.load(), 6);
  EXPECT_EQ(pool.Pending(), 0u);
}

TEST(WorkerPoolTest, NeverRunsMoreThanTheLimitAtOnce) {
  WorkerPool pool("test-pool", 3);
  std::atomic<int> running{0};
  std::atomic<int> most{0};
  for (int i = 0; i < 40; i++) {
    pool.Submit([&] {
      int now = ++running;
      int seen = most.load();
      while (now > seen && !most.compare_exchange_weak(seen, now)) {
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      running--;
    });
  }
  pool.Drain();
  EXPECT_LE(most.load(), 3);
  EXPECT_GE(most.load(), 2);  // tasks that sleep did overlap
}

TEST(WorkerPoolTest, TasksNamedThreadsAndIdleThreadsAreReused) {
  WorkerPool pool("test-pool-with-a-long-name", 8);
  std::mutex mu;
  std::set<std::thread::id> threads;
  std::set<std::string> names;
  for (int i = 0; i < 20; i++) {
    pool.Submit([&] {
      char name[16] = {};
      pthread_getname_np(pthread_self(), name, sizeof(name));
      std::lock_guard<std::mutex> lock(mu);
      threads.insert(std::this_thread::get_id());
      names.insert(name);
    });
    pool.Drain();  // one at a time: an idle thread exists for every next task
  }
  EXPECT_EQ(threads.size(), 1u);
  EXPECT_EQ(names, std::set<std::string>{"test-pool-with-"});
}

TEST(WorkerPoolTest, DestructorRunsTasksAlreadySubmitted) {
  std::atomic<int> done{0};
  {
    WorkerPool pool("test-pool", 2);
    for (int i = 0; i < 10; i++) {
      pool.Submit([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        done++;
      });
    }
  }
  EXPECT_EQ(done.load(), 10);
}

TEST(WorkerPoolTest, DrainWaitsForTasksThatTasksSubmit) {
  WorkerPool pool("test-pool", 2);
  std::atomic<int> done{0};
  pool.Submit([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    pool.Submit([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      done++;
    });
    done++;
  });
  pool.Drain();
  EXPECT_EQ(done.load(), 2);
}

}  // namespace
}  // namespace strata
