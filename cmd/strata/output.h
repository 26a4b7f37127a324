// Output helpers for the strata CLI: aligned tables for people, JSON for scripts,
// one-line errors.
#pragma once

#include <grpcpp/grpcpp.h>

#include <string>
#include <vector>

namespace strata::cli {

// Prints rows under `header`, columns padded to their widest cell.
void PrintTable(const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows);

// Formats Unix nanoseconds as RFC 3339 UTC with nanoseconds.
std::string FormatTime(int64_t seconds, int32_t nanos);

// Formats a byte count as "12.3 MiB".
std::string HumanBytes(int64_t bytes);

// Prints "strata: <what>: <message>" on stderr and returns the exit code to use (1).
int Fail(const std::string& what, const grpc::Status& status);
int Fail(const std::string& message);

}  // namespace strata::cli
