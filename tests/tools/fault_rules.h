// Fault rules of strata-test-fault-proxy: which requests get which fault.
//
// One rule per line ('#' starts a comment line; blank lines are skipped):
//
//   METHODS PATH-REGEX ACTION... [MODIFIER...]
//
//   METHODS     "*" or a comma-separated list such as "GET,HEAD"
//   PATH-REGEX  ECMAScript regex that must match the whole path (query excluded),
//               e.g. /v2/.*/blobs/sha256:.*
//   ACTION      status=CODE        answer CODE without asking upstream (JSON error body)
//               retry-after=SECS   with status: add "Retry-After: SECS"
//               reset              close the connection with a TCP RST, no answer
//               truncate=BYTES     send the head (full Content-Length) and BYTES of
//                                  body, then close the connection
//               stall=MS|forever   stop sending mid-body for MS milliseconds, or until
//                                  the client gives up
//               stall-after=BYTES  where the stall starts (default: half the body)
//               delay=MS           wait before forwarding the request
//               ignore-range       drop Range/If-Range so upstream answers 200 in full
//               redirect           answer a blob GET/HEAD with 307 to the proxy's
//                                  backend listener, which serves the same blob under
//                                  another path (a storage-backend redirect)
//               corrupt            flip one byte of the body
//               corrupt-at=OFFSET  which byte (default: the middle of the body)
//               rate=BYTES_PER_SEC throttle response bodies; every response matching
//                                  this rule shares one budget
//   MODIFIER    times=N   apply to the first N requests it fires for (default: every)
//               skip=N    let the first N matching requests through untouched
//               prob=P    fire with probability P (0..1), from the proxy's seed
//
// Every rule that fires for a request contributes its actions; where two rules set the
// same action the earlier rule wins. Example: "* .* rate=4000000" with
// "GET /v2/.*/blobs/.* status=500 times=1" throttles everything and fails the first
// blob GET.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace strata::testtools {

// A byte budget shared by the threads that send throttled bodies.
class RateLimiter {
 public:
  explicit RateLimiter(uint64_t bytes_per_second);
  // Blocks until `bytes` more bytes may go out at the configured average rate.
  // Thread-safe.
  void Acquire(size_t bytes);
  // A piece size that keeps the flow smooth (about 1/20 s of budget).
  size_t piece_bytes() const;
  uint64_t bytes_per_second() const { return bytes_per_second_; }

 private:
  uint64_t bytes_per_second_;
  std::mutex mu_;
  std::chrono::steady_clock::time_point next_free_{};
};

// What happens to one request: the merged actions of every rule that fired.
struct FaultPlan {
  static constexpr int64_t kForever = -1;

  int64_t delay_ms = 0;
  bool reset = false;
  int status = 0;  // 0: forward to upstream
  int64_t retry_after_s = -1;
  bool redirect = false;
  bool ignore_range = false;
  int64_t truncate_bytes = -1;
  int64_t stall_ms = 0;  // kForever or milliseconds; 0: none
  int64_t stall_after_bytes = -1;
  bool corrupt = false;
  int64_t corrupt_at = -1;
  std::shared_ptr<RateLimiter> rate;

  // Takes every action `other` sets that this plan does not.
  void MergeFrom(const FaultPlan& other);
  bool empty() const;
  // "status=500 retry-after=2", or "-" when empty.
  std::string Describe() const;
};

class FaultRuleSet {
 public:
  // Parses rules text (see the top of this file). nullptr with `*error` naming the line.
  // `seed` drives prob= decisions.
  static std::shared_ptr<FaultRuleSet> Parse(const std::string& text, uint64_t seed,
                                             std::string* error);
  static std::shared_ptr<FaultRuleSet> Empty();

  // Counts the request against every matching rule and returns the merged plan of
  // those that fire. Thread-safe; times= and skip= are exact under concurrency.
  FaultPlan Match(std::string_view method, const std::string& path);

  // The rules, one per line, as given.
  std::string Text() const;
  // [{"rule": TEXT, "matched": N, "applied": N}, ...]
  nlohmann::json Counters() const;
  size_t size() const { return rules_.size(); }

 private:
  struct Rule {
    std::string text;
    std::set<std::string> methods;  // empty: any
    std::regex path;
    FaultPlan actions;
    uint64_t times = 0;  // 0: unlimited
    uint64_t skip = 0;
    double probability = 1.0;
    uint64_t matched = 0;
    uint64_t applied = 0;
  };

  static bool ParseRule(const std::string& line, Rule* rule, std::string* error);

  mutable std::mutex mu_;
  std::vector<Rule> rules_;
  std::mt19937_64 random_;
};

}  // namespace strata::testtools
