// The task log format: the CRI logging format kubelet and nerdctl read, one line per
// record: "<RFC3339Nano timestamp> <stdout|stderr> <F|P> <content>". F ends a line of
// the process's output; P is a part of a line whose rest follows in later records.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace strata::runtime {

struct CriLogRecord {
  int64_t unix_nanos = 0;
  bool is_stderr = false;
  bool partial = false;
  std::string content;  // the output itself: F records get their '\n' back
};

// Parses one line (without its '\n'). False for a malformed line.
bool ParseCriLogLine(std::string_view line, CriLogRecord* record);

}  // namespace strata::runtime
