#include "transfer/pipe.h"

#include <algorithm>
#include <cstring>

namespace strata::transfer {

Pipe::Pipe(size_t capacity_bytes)
    : capacity_(std::max<size_t>(capacity_bytes, 1)), ring_(new char[capacity_]) {}

Status Pipe::Write(const char* data, size_t n) {
  std::unique_lock lock(mu_);
  while (n > 0) {
    // Wait for a good share of free space, not a byte: waking the writer for every
    // small read would make the threads take turns instead of running side by side.
    size_t wanted = std::min(n, std::max<size_t>(capacity_ / 4, 1));
    writable_.wait(lock,
                   [&] { return read_closed_ || write_closed_ || capacity_ - size_ >= wanted; });
    if (read_closed_) return read_status_;
    if (write_closed_) return Status::FailedPrecondition("write to a pipe closed for writing");
    // Copy into the free space, which may wrap around the end of the ring.
    size_t tail = (head_ + size_) % capacity_;
    size_t take = std::min(n, capacity_ - size_);
    size_t first = std::min(take, capacity_ - tail);
    std::memcpy(ring_.get() + tail, data, first);
    std::memcpy(ring_.get(), data + first, take - first);
    size_ += take;
    data += take;
    n -= take;
    readable_.notify_one();
  }
  return Status::Ok();
}

void Pipe::CloseWrite(Status status) {
  std::lock_guard lock(mu_);
  if (write_closed_) return;
  write_closed_ = true;
  write_status_ = std::move(status);
  readable_.notify_one();
  writable_.notify_one();
}

Result<size_t> Pipe::Read(char* buf, size_t n) {
  if (n == 0) return size_t{0};
  std::unique_lock lock(mu_);
  readable_.wait(lock, [&] { return read_closed_ || write_closed_ || size_ > 0; });
  if (read_closed_) return read_status_;
  if (size_ == 0) {
    if (!write_status_.ok()) return write_status_;
    return size_t{0};
  }
  size_t take = std::min(n, size_);
  size_t first = std::min(take, capacity_ - head_);
  std::memcpy(buf, ring_.get() + head_, first);
  std::memcpy(buf + first, ring_.get(), take - first);
  head_ = (head_ + take) % capacity_;
  size_ -= take;
  writable_.notify_one();
  return take;
}

void Pipe::CloseRead(Status reason) {
  std::lock_guard lock(mu_);
  if (read_closed_) return;
  read_closed_ = true;
  read_status_ = reason.ok() ? Status(Code::kCancelled, "pipe reader closed") : std::move(reason);
  size_ = 0;
  writable_.notify_one();
  readable_.notify_one();
}

}  // namespace strata::transfer
