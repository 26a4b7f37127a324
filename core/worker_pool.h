// WorkerPool: runs tasks on threads it starts as they are needed, up to a limit.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace strata {

// Runs each submitted task once, on one of its threads. A thread is started when a
// task arrives and every thread is busy, until `max_threads` exist; after that tasks
// wait in order. Threads stay for later tasks until the pool is destroyed. Meant for
// tasks that block (on a disk flush, on the network), where several must be able to
// wait at once.
//
// Thread-safe. If no thread can be started and none exists, Submit runs the task
// itself. The destructor waits for every task (Drain), then joins.
class WorkerPool {
 public:
  // `name` names the threads (cut to 15 bytes, the kernel's limit).
  WorkerPool(std::string name, size_t max_threads);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void Submit(std::function<void()> task);

  // Tasks submitted and not yet finished (waiting or running).
  size_t Pending() const;

  // Blocks until every task submitted so far, and any they submitted, has finished.
  void Drain();

 private:
  void Work();
  // Runs `task` with `lock` (on mu_) released, then counts it finished.
  void RunUnlocked(std::function<void()> task, std::unique_lock<std::mutex>& lock);

  const std::string name_;
  const size_t max_threads_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_;  // a task arrived, or the pool is stopping
  std::condition_variable idle_cv_;  // pending_ reached 0
  std::deque<std::function<void()>> queue_;
  std::vector<std::thread> threads_;
  size_t idle_threads_ = 0;
  size_t pending_ = 0;
  bool stopping_ = false;
};

}  // namespace strata
