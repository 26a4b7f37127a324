#include "core/clock.h"

#include <time.h>

#include <cctype>
#include <cstdio>
#include <ctime>

namespace strata {

int64_t NowUnixNanos() {
  struct timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

std::optional<std::chrono::system_clock::time_point> ParseRfc3339(const std::string& text) {
  // YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)
  auto digits = [&](size_t pos, size_t n, int* out) {
    if (pos + n > text.size()) return false;
    int v = 0;
    for (size_t i = pos; i < pos + n; i++) {
      if (!std::isdigit(static_cast<unsigned char>(text[i]))) return false;
      v = v * 10 + (text[i] - '0');
    }
    *out = v;
    return true;
  };
  auto at = [&](size_t pos, char c) { return pos < text.size() && text[pos] == c; };
  int year, month, day, hour, minute, second;
  if (!digits(0, 4, &year) || !at(4, '-') || !digits(5, 2, &month) || !at(7, '-') ||
      !digits(8, 2, &day) || !(at(10, 'T') || at(10, 't')) || !digits(11, 2, &hour) ||
      !at(13, ':') || !digits(14, 2, &minute) || !at(16, ':') || !digits(17, 2, &second)) {
    return std::nullopt;
  }
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) {
    return std::nullopt;
  }
  size_t pos = 19;
  int64_t nanos = 0;
  if (at(pos, '.')) {
    pos++;
    size_t start = pos;
    int64_t scale = 100000000;
    while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos]))) {
      nanos += (text[pos] - '0') * scale;
      scale /= 10;
      pos++;
    }
    if (pos == start) return std::nullopt;
  }
  int offset_seconds = 0;
  if (at(pos, 'Z') || at(pos, 'z')) {
    pos++;
  } else if (at(pos, '+') || at(pos, '-')) {
    int sign = text[pos] == '-' ? -1 : 1;
    int oh, om;
    if (!digits(pos + 1, 2, &oh) || !at(pos + 3, ':') || !digits(pos + 4, 2, &om)) {
      return std::nullopt;
    }
    offset_seconds = sign * (oh * 3600 + om * 60);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != text.size()) return std::nullopt;
  struct tm tm = {};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  time_t utc = ::timegm(&tm);
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::seconds(utc - offset_seconds) + std::chrono::nanoseconds(nanos)));
}

std::string FormatRfc3339Nano(int64_t unix_nanos) {
  time_t secs = static_cast<time_t>(unix_nanos / 1000000000);
  struct tm tm;
  ::gmtime_r(&secs, &tm);
  char buf[64];
  size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%09lldZ",
                static_cast<long long>(unix_nanos % 1000000000));
  return buf;
}

}  // namespace strata
