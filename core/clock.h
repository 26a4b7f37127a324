#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace strata {

// Wall-clock time in nanoseconds since the Unix epoch (CLOCK_REALTIME).
int64_t NowUnixNanos();

// Parses an RFC 3339 time ("2024-05-01T12:00:00Z", "…T12:00:00.5+02:00"); nullopt if
// it does not parse.
std::optional<std::chrono::system_clock::time_point> ParseRfc3339(const std::string& text);

// Unix nanoseconds as RFC 3339 in UTC with nine fraction digits
// ("2026-11-29T12:00:00.000000001Z", the CRI log's timestamps).
std::string FormatRfc3339Nano(int64_t unix_nanos);

}  // namespace strata
