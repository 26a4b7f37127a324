#pragma once

#include <string>
#include <string_view>

namespace strata {

// Quotes client-supplied text for an error or log message: "..." with non-printable
// bytes as \xNN, cut to `max_bytes` with "..." appended. Keys may be megabytes long
// or hold NUL bytes; messages stay one readable line.
std::string Quote(std::string_view text, size_t max_bytes = 256);

}  // namespace strata
