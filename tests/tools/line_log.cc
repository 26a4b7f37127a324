#include "tests/tools/line_log.h"

#include <sys/time.h>

#include <cerrno>
#include <cstring>
#include <ctime>

namespace strata::testtools {

bool LineLog::Open(const std::string& path, std::string* error) {
  if (path.empty()) return true;
  FILE* file = std::fopen(path.c_str(), "ae");
  if (!file) {
    *error = "cannot open " + path + ": " + std::strerror(errno);
    return false;
  }
  file_ = file;
  return true;
}

LineLog::~LineLog() {
  if (file_ != stderr) std::fclose(file_);
}

void LineLog::Write(const std::string& line) {
  timeval now{};
  gettimeofday(&now, nullptr);
  tm local{};
  localtime_r(&now.tv_sec, &local);
  char stamp[32];
  std::snprintf(stamp, sizeof(stamp), "%02d:%02d:%02d.%03ld ", local.tm_hour, local.tm_min,
                local.tm_sec, static_cast<long>(now.tv_usec / 1000));
  std::lock_guard<std::mutex> lock(mu_);
  std::fputs(stamp, file_);
  std::fputs(line.c_str(), file_);
  std::fputc('\n', file_);
  std::fflush(file_);
}

}  // namespace strata::testtools
