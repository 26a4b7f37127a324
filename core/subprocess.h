// Running a helper program (credential helpers, image verifier plugins): argv without a
// shell, data on stdin, stdout and stderr captured up to a cap, a deadline after which
// the helper's whole process group is killed.
#pragma once

#include <string>
#include <vector>

#include "core/status.h"

namespace strata {

struct ProcessResult {
  int exit_code = -1;      // exit status, or -1 when killed by a signal
  int signal = 0;          // the signal that ended it, or 0
  bool timed_out = false;  // killed because the deadline passed
  std::string stdout_data;
  std::string stderr_data;
};

struct ProcessOptions {
  std::string stdin_data;
  int timeout_ms = 10000;
  size_t max_output_bytes = 1 << 20;  // per stream; the rest is read and dropped
};

// Runs argv[0] (looked up in PATH when it has no slash) in a new process group.
// NotFound when the program does not exist; the process's own failures are reported
// in ProcessResult, not as errors. Thread-safe.
Result<ProcessResult> RunProcess(const std::vector<std::string>& argv,
                                 const ProcessOptions& options = {});

}  // namespace strata
