#include "core/worker_pool.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <system_error>
#include <utility>

namespace strata {

WorkerPool::WorkerPool(std::string name, size_t max_threads)
    : name_(std::move(name)), max_threads_(max_threads == 0 ? 1 : max_threads) {}

WorkerPool::~WorkerPool() {
  // Tasks may submit tasks: let them all finish before threads_ stops changing.
  Drain();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void WorkerPool::Submit(std::function<void()> task) {
  std::unique_lock<std::mutex> lock(mu_);
  queue_.push_back(std::move(task));
  pending_++;
  if (idle_threads_ >= queue_.size()) {
    lock.unlock();
    work_cv_.notify_one();
    return;
  }
  if (threads_.size() >= max_threads_) return;  // a busy thread takes it later
  try {
    threads_.emplace_back([this] { Work(); });
  } catch (const std::system_error& e) {
    // No thread to be had (EAGAIN: a limit on threads or memory). The threads there
    // are take the task when they are free; with none at all, run it here.
    spdlog::warn("{}: cannot start a thread ({}), {} running", name_, e.what(), threads_.size());
    if (!threads_.empty()) return;
    std::function<void()> here = std::move(queue_.back());
    queue_.pop_back();
    RunUnlocked(std::move(here), lock);
    return;
  }
  std::string thread_name = name_.substr(0, 15);
  ::pthread_setname_np(threads_.back().native_handle(), thread_name.c_str());
}

size_t WorkerPool::Pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_;
}

void WorkerPool::Drain() {
  std::unique_lock<std::mutex> lock(mu_);
  idle_cv_.wait(lock, [&] { return pending_ == 0; });
}

void WorkerPool::Work() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    if (queue_.empty()) {
      if (stopping_) return;
      idle_threads_++;
      work_cv_.wait(lock, [&] { return !queue_.empty() || stopping_; });
      idle_threads_--;
      continue;
    }
    std::function<void()> task = std::move(queue_.front());
    queue_.pop_front();
    RunUnlocked(std::move(task), lock);
  }
}

void WorkerPool::RunUnlocked(std::function<void()> task, std::unique_lock<std::mutex>& lock) {
  lock.unlock();
  task();
  task = nullptr;  // whatever it holds goes before the task counts as finished
  lock.lock();
  if (--pending_ == 0) idle_cv_.notify_all();
}

}  // namespace strata
