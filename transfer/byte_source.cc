#include "transfer/byte_source.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace strata::transfer {

namespace {

class FdSource : public ByteSource {
 public:
  FdSource(int fd, bool owned) : fd_(fd), owned_(owned) {}
  ~FdSource() override {
    if (owned_) ::close(fd_);
  }

  Result<size_t> Read(char* buf, size_t n) override {
    for (;;) {
      ssize_t got = ::read(fd_, buf, n);
      if (got >= 0) return static_cast<size_t>(got);
      if (errno != EINTR) return Status::FromErrno(errno, "read fd " + std::to_string(fd_));
    }
  }

 private:
  int fd_;
  bool owned_;
};

class StringSource : public ByteSource {
 public:
  explicit StringSource(std::string data) : data_(std::move(data)) {}

  Result<size_t> Read(char* buf, size_t n) override {
    size_t take = std::min(n, data_.size() - pos_);
    std::memcpy(buf, data_.data() + pos_, take);
    pos_ += take;
    return take;
  }

 private:
  std::string data_;
  size_t pos_ = 0;
};

class BorrowedSource : public ByteSource {
 public:
  explicit BorrowedSource(ByteSource& source) : source_(source) {}
  Result<size_t> Read(char* buf, size_t n) override { return source_.Read(buf, n); }

 private:
  ByteSource& source_;
};

}  // namespace

std::unique_ptr<ByteSource> NewFdSource(int fd, bool take_ownership) {
  return std::make_unique<FdSource>(fd, take_ownership);
}

Result<std::unique_ptr<ByteSource>> OpenFileSource(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "open " + path);
  return NewFdSource(fd, true);
}

std::unique_ptr<ByteSource> NewStringSource(std::string data) {
  return std::make_unique<StringSource>(std::move(data));
}

std::unique_ptr<ByteSource> BorrowSource(ByteSource& source) {
  return std::make_unique<BorrowedSource>(source);
}

Result<std::string> ReadAll(ByteSource& source, size_t max_bytes) {
  std::string out;
  char buf[64 * 1024];
  for (;;) {
    ASSIGN_OR_RETURN(size_t got, source.Read(buf, sizeof buf));
    if (got == 0) return out;
    if (out.size() + got > max_bytes) {
      return Status(Code::kResourceExhausted,
                    "stream is longer than " + std::to_string(max_bytes) + " bytes");
    }
    out.append(buf, got);
  }
}

Result<size_t> HashingSource::Read(char* buf, size_t n) {
  ASSIGN_OR_RETURN(size_t got, in_->Read(buf, n));
  sha_.Update(std::string_view(buf, got));
  bytes_ += got;
  return got;
}

}  // namespace strata::transfer
