#include "runtime-bridge/cri_log.h"

#include <chrono>

#include "core/clock.h"

namespace strata::runtime {
namespace {

bool ParseTimestamp(std::string_view text, int64_t* nanos) {
  auto t = ParseRfc3339(std::string(text));
  if (!t) return false;
  *nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(t->time_since_epoch()).count();
  return true;
}

}  // namespace

bool ParseCriLogLine(std::string_view line, CriLogRecord* record) {
  size_t a = line.find(' ');
  if (a == std::string_view::npos) return false;
  size_t b = line.find(' ', a + 1);
  if (b == std::string_view::npos) return false;
  std::string_view stream = line.substr(a + 1, b - a - 1);
  if (stream != "stdout" && stream != "stderr") return false;
  std::string_view tag = line.substr(b + 1, 1);
  if (tag != "F" && tag != "P") return false;
  if (!ParseTimestamp(line.substr(0, a), &record->unix_nanos)) return false;
  record->is_stderr = stream == "stderr";
  record->partial = tag == "P";
  record->content = b + 3 <= line.size() ? std::string(line.substr(b + 3)) : std::string();
  if (!record->partial) record->content += '\n';
  return true;
}

}  // namespace strata::runtime
