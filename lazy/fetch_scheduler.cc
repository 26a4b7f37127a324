#include "lazy/fetch_scheduler.h"

#include <utility>

namespace strata::lazy {

const char* PriorityName(Priority priority) {
  switch (priority) {
    case Priority::kOnDemand:
      return "on_demand";
    case Priority::kPrefetch:
      return "prefetch";
    case Priority::kBackground:
      return "background";
  }
  return "unknown";
}

FetchScheduler::FetchScheduler(SchedulerLimits limits) : limits_(limits) {
  for (size_t i = 0; i < limits_.workers; i++) workers_.emplace_back([this] { WorkerLoop(); });
}

FetchScheduler::~FetchScheduler() { Shutdown(); }

void FetchScheduler::Submit(Priority priority, Task task, bool front) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_) {
      auto& queue = queues_[static_cast<int>(priority)];
      if (front) {
        queue.push_front(std::move(task));
      } else {
        queue.push_back(std::move(task));
      }
      cv_.notify_one();
      return;
    }
  }
  if (task.cancel) task.cancel();
}

void FetchScheduler::AddWaitingReader() {
  std::lock_guard<std::mutex> lock(mu_);
  waiting_readers_++;
}

void FetchScheduler::RemoveWaitingReader() {
  std::lock_guard<std::mutex> lock(mu_);
  if (--waiting_readers_ == 0 && !queues_[static_cast<int>(Priority::kBackground)].empty()) {
    cv_.notify_all();
  }
}

int FetchScheduler::NextQueueLocked() const {
  const int on_demand = static_cast<int>(Priority::kOnDemand);
  const int prefetch = static_cast<int>(Priority::kPrefetch);
  const int background = static_cast<int>(Priority::kBackground);
  if (!queues_[on_demand].empty()) return on_demand;
  if (!queues_[prefetch].empty() && running_[prefetch] < limits_.prefetch) return prefetch;
  if (!queues_[background].empty() && running_[background] < limits_.background &&
      waiting_readers_ == 0) {
    return background;
  }
  return -1;
}

void FetchScheduler::WorkerLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    int queue = -1;
    cv_.wait(lock, [&] { return stopping_ || (queue = NextQueueLocked()) >= 0; });
    if (stopping_) return;
    Task task = std::move(queues_[queue].front());
    queues_[queue].pop_front();
    running_[queue]++;
    lock.unlock();
    task.run();
    task = Task();  // release what the task holds before taking the lock again
    lock.lock();
    running_[queue]--;
    // A finished prefetch or background task may let a queued one of its kind start.
    cv_.notify_all();
  }
}

void FetchScheduler::Shutdown() {
  std::vector<Task> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && workers_.empty()) return;
    stopping_ = true;
    for (auto& queue : queues_) {
      for (auto& task : queue) dropped.push_back(std::move(task));
      queue.clear();
    }
  }
  cv_.notify_all();
  for (auto& task : dropped) {
    if (task.cancel) task.cancel();
  }
  for (auto& worker : workers_) worker.join();
  workers_.clear();
}

}  // namespace strata::lazy
