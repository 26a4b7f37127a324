// ByteSource: the pull interface every stage of layer unpacking reads through
// (download pipe -> decompressor -> hasher -> tar reader), and small sources over a
// file descriptor, a string and another source.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/digest.h"
#include "core/status.h"

namespace strata::transfer {

// A stream of bytes read front to back.
//
// Read copies up to `n` bytes into `buf` and returns how many it copied: at least 1
// while the stream has data (it may block until some arrives), 0 once the stream has
// ended and on every call after that. An error Status means the producer failed (a
// download broke, the data is corrupt); the stream is then unusable.
//
// A ByteSource is not thread-safe: one reader at a time.
class ByteSource {
 public:
  ByteSource() = default;
  virtual ~ByteSource() = default;
  ByteSource(const ByteSource&) = delete;
  ByteSource& operator=(const ByteSource&) = delete;

  virtual Result<size_t> Read(char* buf, size_t n) = 0;
};

// Reads from `fd` (a file, pipe or socket) until read(2) returns 0. Retries EINTR.
// Closes the fd on destruction when `take_ownership`.
std::unique_ptr<ByteSource> NewFdSource(int fd, bool take_ownership);

// Opens `path` read-only and reads it. NotFound if it does not exist.
Result<std::unique_ptr<ByteSource>> OpenFileSource(const std::string& path);

// Serves the bytes of `data`.
std::unique_ptr<ByteSource> NewStringSource(std::string data);

// Forwards to `source` without owning it; `source` must outlive the result. Lets a
// caller hand a source it keeps to a function that takes ownership of its input.
std::unique_ptr<ByteSource> BorrowSource(ByteSource& source);

// Reads `source` to its end into a string. ResourceExhausted if it holds more than
// `max_bytes`.
Result<std::string> ReadAll(ByteSource& source, size_t max_bytes = SIZE_MAX);

// Passes the bytes of another source through unchanged and computes the SHA-256 and
// the count of everything that went through.
class HashingSource : public ByteSource {
 public:
  explicit HashingSource(std::unique_ptr<ByteSource> in) : in_(std::move(in)) {}

  Result<size_t> Read(char* buf, size_t n) override;

  // Bytes read through this source so far.
  uint64_t bytes() const { return bytes_; }
  // "sha256:<hex>" of the bytes read so far. Call once, after the stream ended (a
  // second call, or a Read after it, is a programming error).
  std::string Digest() { return sha_.Digest(); }

 private:
  std::unique_ptr<ByteSource> in_;
  Sha256 sha_;
  uint64_t bytes_ = 0;
};

}  // namespace strata::transfer
