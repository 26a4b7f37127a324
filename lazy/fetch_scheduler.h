// lazy::FetchScheduler — the worker threads that run the engine's fetches, and the
// order they take them in.
//
// Tasks wait in three FIFO queues. A free worker takes, in this order:
//   1. an on-demand task (a read is waiting for it): any worker may run one;
//   2. a prefetch task, while fewer than `prefetch` of them run;
//   3. a background task, while fewer than `background` of them run and no reader is
//      waiting (AddWaitingReader): background work pauses under read pressure.
// The number of workers bounds the requests in flight. A task that fetches a large
// range does one bounded piece and resubmits the rest, so the order is re-decided
// between pieces.
//
// Thread safety: all methods may be called concurrently, also from inside a task.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace strata::lazy {

enum class Priority { kOnDemand = 0, kPrefetch = 1, kBackground = 2 };
constexpr int kPriorityCount = 3;

// "on_demand", "prefetch", "background" (metric labels).
const char* PriorityName(Priority priority);

struct SchedulerLimits {
  size_t workers = 8;
  size_t prefetch = 4;
  size_t background = 2;
};

class FetchScheduler {
 public:
  struct Task {
    std::function<void()> run;
    // Called instead of `run` when the scheduler shuts down before the task started.
    std::function<void()> cancel;
  };

  explicit FetchScheduler(SchedulerLimits limits);
  // Shutdown().
  ~FetchScheduler();
  FetchScheduler(const FetchScheduler&) = delete;
  FetchScheduler& operator=(const FetchScheduler&) = delete;

  // Queues `task` at the back of its queue, or at the front (a continuation keeps its
  // place). After Shutdown the task is cancelled at once.
  void Submit(Priority priority, Task task, bool front = false);

  // A reader starts / stops waiting for a fetch.
  void AddWaitingReader();
  void RemoveWaitingReader();

  // Cancels queued tasks and waits for running ones. Idempotent; must not be called
  // from a task.
  void Shutdown();

 private:
  void WorkerLoop();
  // The queue a free worker should take from now, or -1. Caller holds mu_.
  int NextQueueLocked() const;

  const SchedulerLimits limits_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task> queues_[kPriorityCount];
  size_t running_[kPriorityCount] = {};
  size_t waiting_readers_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace strata::lazy
