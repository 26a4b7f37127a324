#include "cmd/strata/output.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <iostream>

#include "core/status.h"

#include "core/status.h"

namespace strata::cli {

void PrintTable(const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths(header.size(), 0);
  for (size_t i = 0; i < header.size(); i++) widths[i] = header[i].size();
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size() && i < widths.size(); i++) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  auto print_row = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t i = 0; i < row.size(); i++) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 3, ' ');
    }
    std::cout << line << "\n";
  };
  print_row(header);
  for (const auto& row : rows) print_row(row);
}

std::string FormatTime(int64_t seconds, int32_t nanos) {
  std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[96];
  std::snprintf(out, sizeof out, "%s.%09dZ", buf, nanos);
  return out;
}

std::string HumanBytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    u++;
  }
  char buf[32];
  if (u == 0) {
    std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(bytes));
  } else {
    std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  }
  return buf;
}

int Fail(const std::string& what, const grpc::Status& status) {
  std::string code(CodeName(static_cast<Code>(static_cast<int>(status.error_code()))));
  std::string msg = status.error_message();
  std::replace(msg.begin(), msg.end(), '\n', ' ');
  std::cerr << "strata: " << what << ": " << msg << " (" << code << ")\n";
  return 1;
}

int Fail(const std::string& message) {
  std::cerr << "strata: " << message << "\n";
  return 1;
}

}  // namespace strata::cli
