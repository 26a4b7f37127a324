// An exclusive advisory lock (flock) on a file, held for the object's lifetime.
#pragma once

#include <memory>
#include <string>

#include "core/status.h"

namespace strata {

class LockFile {
 public:
  // Creates `path` if needed and locks it without waiting. Returns FailedPrecondition
  // naming the holder's pid (read from the file) when another process holds it.
  static Result<std::unique_ptr<LockFile>> Acquire(const std::string& path);
  ~LockFile();
  LockFile(const LockFile&) = delete;
  LockFile& operator=(const LockFile&) = delete;

 private:
  LockFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_;
  std::string path_;
};

}  // namespace strata
