// Pipe: a bounded in-memory byte queue between one producer thread (a download, a
// decompressor) and one consumer thread that reads it as a ByteSource (an unpacker).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

#include "core/status.h"
#include "transfer/byte_source.h"

namespace strata::transfer {

// Holds at most `capacity_bytes` bytes; a writer that would overfill it waits for the
// reader. Either side can close it:
//
//   producer                         consumer
//   Write(...) ... Write(...)        Read(...) until 0 or an error
//   CloseWrite(Status::Ok())   ->    Read returns 0 once the buffered bytes are read
//   CloseWrite(error)          ->    Read returns `error` once the buffered bytes are read
//   Write returns `reason`     <-    CloseRead(reason): the consumer gave up; buffered
//                                    bytes are dropped and waiting writers wake up
//
// Thread-safe for one producer and one consumer running at the same time (several
// producers would interleave their bytes arbitrarily). The Pipe must outlive both.
class Pipe : public ByteSource {
 public:
  explicit Pipe(size_t capacity_bytes);

  // Appends `n` bytes, waiting while the pipe is full (a write larger than the capacity
  // goes through in pieces). Returns the consumer's reason once CloseRead was called,
  // FailedPrecondition after CloseWrite; then no byte of this call is guaranteed to
  // have been delivered.
  Status Write(const char* data, size_t n);

  // Ends the stream: OK for a clean end, otherwise the producer's error, which the
  // consumer receives after the bytes already written. Later calls are ignored.
  void CloseWrite(Status status);

  // Waits until bytes are available or the writer closed, then copies up to `n`.
  // After CloseRead, returns the reason given there.
  Result<size_t> Read(char* buf, size_t n) override;

  // Tells the producer the consumer stopped reading; a non-OK `reason` is what Write
  // returns from now on (an OK one is replaced by Cancelled). Later calls are ignored.
  void CloseRead(Status reason);

 private:
  std::mutex mu_;
  std::condition_variable readable_;
  std::condition_variable writable_;
  size_t capacity_;
  // Not zero-filled: a pull makes several multi-MiB pipes per layer.
  std::unique_ptr<char[]> ring_;
  size_t head_ = 0;  // index of the oldest buffered byte
  size_t size_ = 0;  // buffered bytes
  bool write_closed_ = false;
  Status write_status_;
  bool read_closed_ = false;
  Status read_status_;
};

}  // namespace strata::transfer
