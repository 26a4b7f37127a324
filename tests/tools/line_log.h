// A log of one line per event for the test fixtures, shared by all their threads.
#pragma once

#include <cstdio>
#include <mutex>
#include <string>

namespace strata::testtools {

class LineLog {
 public:
  // Appends to `path`, or writes to stderr when `path` is empty. False with `*error`
  // when the file cannot be opened.
  bool Open(const std::string& path, std::string* error);
  ~LineLog();

  // Writes "HH:MM:SS.mmm " + line + "\n" and flushes. Thread-safe.
  void Write(const std::string& line);

 private:
  std::mutex mu_;
  FILE* file_ = stderr;
};

}  // namespace strata::testtools
