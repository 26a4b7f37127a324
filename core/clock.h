#pragma once

#include <cstdint>

namespace strata {

// Wall-clock time in nanoseconds since the Unix epoch (CLOCK_REALTIME).
int64_t NowUnixNanos();

}  // namespace strata
