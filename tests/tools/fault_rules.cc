#include "tests/tools/fault_rules.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <sstream>
#include <thread>

namespace strata::testtools {
namespace {

bool ParseInt(std::string_view text, int64_t min_value, int64_t* value) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < min_value) return false;
  *value = v;
  return true;
}

std::vector<std::string> SplitWords(const std::string& line) {
  std::vector<std::string> words;
  std::istringstream in(line);
  std::string word;
  while (in >> word) words.push_back(word);
  return words;
}

}  // namespace

// ---- RateLimiter ----------------------------------------------------------------

RateLimiter::RateLimiter(uint64_t bytes_per_second) : bytes_per_second_(bytes_per_second) {}

void RateLimiter::Acquire(size_t bytes) {
  auto cost =
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(
          static_cast<double>(bytes) / static_cast<double>(bytes_per_second_)));
  std::chrono::steady_clock::time_point until;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Idle time earns no credit: a burst after a pause is throttled like the rest.
    next_free_ = std::max(next_free_, std::chrono::steady_clock::now()) + cost;
    until = next_free_;
  }
  std::this_thread::sleep_until(until);
}

size_t RateLimiter::piece_bytes() const {
  return static_cast<size_t>(std::clamp<uint64_t>(bytes_per_second_ / 20, 512, 64 * 1024));
}

// ---- FaultPlan ------------------------------------------------------------------

void FaultPlan::MergeFrom(const FaultPlan& other) {
  if (delay_ms == 0) delay_ms = other.delay_ms;
  reset = reset || other.reset;
  if (status == 0) {
    status = other.status;
    retry_after_s = other.retry_after_s;
  }
  redirect = redirect || other.redirect;
  ignore_range = ignore_range || other.ignore_range;
  if (truncate_bytes < 0) truncate_bytes = other.truncate_bytes;
  if (stall_ms == 0) {
    stall_ms = other.stall_ms;
    stall_after_bytes = other.stall_after_bytes;
  }
  if (!corrupt) {
    corrupt = other.corrupt;
    corrupt_at = other.corrupt_at;
  }
  if (!rate) rate = other.rate;
}

bool FaultPlan::empty() const { return Describe() == "-"; }

std::string FaultPlan::Describe() const {
  std::string out;
  auto add = [&out](const std::string& item) { out += (out.empty() ? "" : " ") + item; };
  if (delay_ms > 0) add("delay=" + std::to_string(delay_ms));
  if (reset) add("reset");
  if (status != 0) add("status=" + std::to_string(status));
  if (retry_after_s >= 0) add("retry-after=" + std::to_string(retry_after_s));
  if (redirect) add("redirect");
  if (ignore_range) add("ignore-range");
  if (truncate_bytes >= 0) add("truncate=" + std::to_string(truncate_bytes));
  if (stall_ms != 0) {
    add("stall=" + (stall_ms == kForever ? std::string("forever") : std::to_string(stall_ms)));
  }
  if (stall_after_bytes >= 0) add("stall-after=" + std::to_string(stall_after_bytes));
  if (corrupt) add("corrupt");
  if (corrupt_at >= 0) add("corrupt-at=" + std::to_string(corrupt_at));
  if (rate) add("rate=" + std::to_string(rate->bytes_per_second()));
  return out.empty() ? "-" : out;
}

// ---- FaultRuleSet ---------------------------------------------------------------

bool FaultRuleSet::ParseRule(const std::string& line, Rule* rule, std::string* error) {
  std::vector<std::string> words = SplitWords(line);
  if (words.size() < 3) {
    *error = "want METHODS PATH-REGEX ACTION...";
    return false;
  }
  rule->text = words[0];
  for (size_t i = 1; i < words.size(); ++i) rule->text += " " + words[i];
  if (words[0] != "*") {
    std::string_view methods = words[0];
    while (!methods.empty()) {
      size_t comma = methods.find(',');
      if (comma != 0) rule->methods.emplace(methods.substr(0, comma));
      if (comma == std::string_view::npos) break;
      methods.remove_prefix(comma + 1);
    }
  }
  try {
    rule->path = std::regex(words[1], std::regex::ECMAScript | std::regex::optimize);
  } catch (const std::regex_error& e) {
    *error = "bad path regex \"" + words[1] + "\": " + e.what();
    return false;
  }

  FaultPlan& plan = rule->actions;
  for (size_t i = 2; i < words.size(); ++i) {
    const std::string& word = words[i];
    size_t eq = word.find('=');
    std::string key = word.substr(0, eq);
    std::string value = eq == std::string::npos ? "" : word.substr(eq + 1);
    bool has_value = eq != std::string::npos;
    int64_t number = 0;
    bool ok = true;
    if (key == "reset" || key == "redirect" || key == "ignore-range" || key == "corrupt") {
      ok = !has_value;
      if (key == "reset") plan.reset = true;
      if (key == "redirect") plan.redirect = true;
      if (key == "ignore-range") plan.ignore_range = true;
      if (key == "corrupt") plan.corrupt = true;
    } else if (key == "status") {
      ok = ParseInt(value, 100, &number) && number <= 599;
      plan.status = static_cast<int>(number);
    } else if (key == "retry-after") {
      ok = ParseInt(value, 0, &plan.retry_after_s);
    } else if (key == "truncate") {
      ok = ParseInt(value, 0, &plan.truncate_bytes);
    } else if (key == "stall") {
      if (value == "forever") {
        plan.stall_ms = FaultPlan::kForever;
      } else {
        ok = ParseInt(value, 1, &plan.stall_ms);
      }
    } else if (key == "stall-after") {
      ok = ParseInt(value, 0, &plan.stall_after_bytes);
    } else if (key == "delay") {
      ok = ParseInt(value, 0, &plan.delay_ms);
    } else if (key == "corrupt-at") {
      ok = ParseInt(value, 0, &plan.corrupt_at);
      plan.corrupt = true;
    } else if (key == "rate") {
      ok = ParseInt(value, 1, &number);
      if (ok) plan.rate = std::make_shared<RateLimiter>(static_cast<uint64_t>(number));
    } else if (key == "times") {
      ok = ParseInt(value, 1, &number);
      rule->times = static_cast<uint64_t>(number);
    } else if (key == "skip") {
      ok = ParseInt(value, 0, &number);
      rule->skip = static_cast<uint64_t>(number);
    } else if (key == "prob") {
      char* end = nullptr;
      rule->probability = std::strtod(value.c_str(), &end);
      ok = has_value && end && *end == '\0' && rule->probability >= 0 && rule->probability <= 1;
    } else {
      *error = "unknown action \"" + key + "\"";
      return false;
    }
    if (!ok) {
      *error = "bad value in \"" + word + "\"";
      return false;
    }
  }
  if (plan.retry_after_s >= 0 && plan.status == 0) {
    *error = "retry-after needs status=";
    return false;
  }
  if (plan.stall_after_bytes >= 0 && plan.stall_ms == 0) {
    *error = "stall-after needs stall=";
    return false;
  }
  if (plan.empty()) {
    *error = "a rule needs at least one action";
    return false;
  }
  return true;
}

std::shared_ptr<FaultRuleSet> FaultRuleSet::Parse(const std::string& text, uint64_t seed,
                                                  std::string* error) {
  auto set = std::make_shared<FaultRuleSet>();
  set->random_.seed(seed);
  std::istringstream in(text);
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    std::string_view trimmed = line;
    while (!trimmed.empty() && std::isspace(static_cast<unsigned char>(trimmed.front()))) {
      trimmed.remove_prefix(1);
    }
    if (trimmed.empty() || trimmed.front() == '#') continue;
    Rule rule;
    std::string why;
    if (!ParseRule(line, &rule, &why)) {
      *error = "rule line " + std::to_string(number) + " (" + line + "): " + why;
      return nullptr;
    }
    set->rules_.push_back(std::move(rule));
  }
  return set;
}

std::shared_ptr<FaultRuleSet> FaultRuleSet::Empty() { return std::make_shared<FaultRuleSet>(); }

FaultPlan FaultRuleSet::Match(std::string_view method, const std::string& path) {
  FaultPlan plan;
  std::lock_guard<std::mutex> lock(mu_);
  for (Rule& rule : rules_) {
    if (!rule.methods.empty() && rule.methods.count(std::string(method)) == 0) continue;
    if (!std::regex_match(path, rule.path)) continue;
    ++rule.matched;
    if (rule.matched <= rule.skip) continue;
    if (rule.times > 0 && rule.applied >= rule.times) continue;
    if (rule.probability < 1.0 &&
        std::uniform_real_distribution<double>(0.0, 1.0)(random_) >= rule.probability) {
      continue;
    }
    ++rule.applied;
    plan.MergeFrom(rule.actions);
  }
  return plan;
}

std::string FaultRuleSet::Text() const {
  std::string out;
  for (const Rule& rule : rules_) out += rule.text + "\n";
  return out;
}

nlohmann::json FaultRuleSet::Counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  nlohmann::json out = nlohmann::json::array();
  for (const Rule& rule : rules_) {
    out.push_back({{"rule", rule.text}, {"matched", rule.matched}, {"applied", rule.applied}});
  }
  return out;
}

}  // namespace strata::testtools
