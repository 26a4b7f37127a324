#include "runtime-bridge/cri_log.h"

#include <time.h>

#include <cstdio>
#include <cstring>

namespace strata::runtime {
namespace {

// "2026-11-29T12:00:00.123456789Z" -> unix nanos; false if malformed.
bool ParseTimestamp(std::string_view text, int64_t* nanos) {
  if (text.size() < 20 || text.back() != 'Z') return false;
  struct tm tm {};
  int year, month, day, hour, minute, second;
  std::string s(text);
  if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d", &year, &month, &day, &hour, &minute,
                  &second) != 6) {
    return false;
  }
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  int64_t fraction = 0;
  size_t dot = s.find('.');
  if (dot != std::string::npos) {
    int digits = 0;
    for (size_t i = dot + 1; i < s.size() - 1 && digits < 9; i++, digits++) {
      if (s[i] < '0' || s[i] > '9') return false;
      fraction = fraction * 10 + (s[i] - '0');
    }
    for (; digits < 9; digits++) fraction *= 10;
  }
  *nanos = static_cast<int64_t>(::timegm(&tm)) * 1000000000 + fraction;
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
