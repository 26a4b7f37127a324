#include "core/filters.h"

#include <cctype>
#include <regex>

namespace strata::filters {

enum class Op { kPresent, kEqual, kNotEqual, kMatches };

struct Filter::Selector {
  std::vector<std::string> fieldpath;
  Op op = Op::kPresent;
  std::string value;
  std::optional<std::regex> regex;  // for kMatches; nullopt when the expression is invalid
};

namespace {

bool IsFieldChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }
bool IsOpChar(char c) { return c == '=' || c == '!' || c == '~'; }

class Parser {
 public:
  explicit Parser(const std::string& input) : in_(input) {}

  Result<std::vector<std::shared_ptr<const Filter::Selector>>> Parse() {
    std::vector<std::shared_ptr<const Filter::Selector>> selectors;
    SkipSpace();
    if (pos_ == in_.size()) return selectors;
    for (;;) {
      auto sel = std::make_shared<Filter::Selector>();
      RETURN_IF_ERROR(ParseSelector(*sel));
      selectors.push_back(std::move(sel));
      SkipSpace();
      if (pos_ == in_.size()) break;
      if (in_[pos_] != ',') return Error("expected a comma or end of input");
      pos_++;
      SkipSpace();
    }
    return selectors;
  }

 private:
  Status Error(const std::string& msg) const {
    size_t p = std::min(pos_, in_.size());
    std::string context = in_.substr(0, p) + ">|" + (p < in_.size() ? in_.substr(p, 1) : "") +
                          "|<" + (p + 1 < in_.size() ? in_.substr(p + 1) : "");
    return Status::InvalidArgument("filters: parse error: [" + context + "]: " + msg);
  }

  void SkipSpace() {
    while (pos_ < in_.size() && std::isspace(static_cast<unsigned char>(in_[pos_]))) pos_++;
  }

  // Reads a quoted string starting at in_[pos_] (the delimiter). For '"', Go-style
  // escapes are decoded; for regexp delimiters, only an escaped delimiter is.
  Result<std::string> ParseQuoted() {
    char delim = in_[pos_++];
    std::string out;
    while (pos_ < in_.size()) {
      char c = in_[pos_++];
      if (c == delim) return out;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= in_.size()) break;
      char e = in_[pos_++];
      if (e == delim) {
        out += e;
      } else if (delim != '"') {
        out += '\\';
        out += e;
      } else {
        switch (e) {
          case 'n':
            out += '\n';
            break;
          case 't':
            out += '\t';
            break;
          case 'r':
            out += '\r';
            break;
          case '\\':
            out += '\\';
            break;
          case '0':
            out += '\0';
            break;
          default:
            out += '\\';
            out += e;
            break;
        }
      }
    }
    return Error("unterminated quoted string");
  }

  Result<std::string> ParseField() {
    if (pos_ < in_.size() && in_[pos_] == '"') return ParseQuoted();
    if (pos_ < in_.size() && (in_[pos_] == '/' || in_[pos_] == '|')) {
      return Error("invalid quote encountered");
    }
    size_t start = pos_;
    while (pos_ < in_.size() && IsFieldChar(in_[pos_])) pos_++;
    if (start == pos_) return Error("expected field or quoted");
    return in_.substr(start, pos_ - start);
  }

  Status ParseSelector(Filter::Selector& sel) {
    for (;;) {
      ASSIGN_OR_RETURN(std::string field, ParseField());
      sel.fieldpath.push_back(std::move(field));
      if (pos_ < in_.size() && in_[pos_] == '.') {
        pos_++;
        continue;
      }
      break;
    }
    SkipSpace();
    if (pos_ == in_.size() || in_[pos_] == ',') return Status::Ok();
    if (!IsOpChar(in_[pos_])) return Error("expected an operator");
    size_t start = pos_;
    while (pos_ < in_.size() && IsOpChar(in_[pos_])) pos_++;
    std::string op = in_.substr(start, pos_ - start);
    if (op == "==") {
      sel.op = Op::kEqual;
    } else if (op == "!=") {
      sel.op = Op::kNotEqual;
    } else if (op == "~=") {
      sel.op = Op::kMatches;
    } else {
      pos_ = start;
      return Error("unsupported operator \"" + op + "\"");
    }
    SkipSpace();
    if (pos_ == in_.size()) return Error("expected value or quoted");
    char c = in_[pos_];
    if (c == '"') {
      ASSIGN_OR_RETURN(sel.value, ParseQuoted());
    } else if (c == '/' || c == '|') {
      if (sel.op != Op::kMatches) return Error("regexp quotes are only valid with ~=");
      ASSIGN_OR_RETURN(sel.value, ParseQuoted());
    } else if (c == ',' || c == '.') {
      return Error("expected value or quoted");
    } else {
      size_t vstart = pos_;
      while (pos_ < in_.size() && in_[pos_] != ',' &&
             !std::isspace(static_cast<unsigned char>(in_[pos_]))) {
        pos_++;
      }
      sel.value = in_.substr(vstart, pos_ - vstart);
    }
    if (sel.op == Op::kMatches) {
      try {
        sel.regex.emplace(sel.value, std::regex::ECMAScript);
      } catch (const std::regex_error&) {
        sel.regex.reset();  // as containerd: an invalid expression matches nothing
      }
    }
    return Status::Ok();
  }

  const std::string& in_;
  size_t pos_ = 0;
};

bool MatchSelector(const Filter::Selector& sel, const Adaptor& adaptor) {
  std::optional<std::string> value = adaptor.Field(sel.fieldpath);
  switch (sel.op) {
    case Op::kPresent:
      return value.has_value();
    case Op::kEqual:
      return value.has_value() && *value == sel.value;
    case Op::kNotEqual:
      return !value.has_value() || *value != sel.value;
    case Op::kMatches:
      return sel.regex.has_value() && std::regex_search(value.value_or(""), *sel.regex);
  }
  return false;
}

}  // namespace

Result<Filter> Filter::ParseAll(const std::vector<std::string>& filters) {
  Filter f;
  for (const auto& s : filters) {
    Parser p(s);
    ASSIGN_OR_RETURN(auto selectors, p.Parse());
    if (selectors.empty()) return Filter();  // an empty string matches everything
    f.any_.push_back(std::move(selectors));
  }
  return f;
}

bool Filter::Match(const Adaptor& adaptor) const {
  if (any_.empty()) return true;
  for (const auto& all : any_) {
    bool ok = true;
    for (const auto& sel : all) {
      if (!MatchSelector(*sel, adaptor)) {
        ok = false;
        break;
      }
    }
    if (ok) return true;
  }
  return false;
}

}  // namespace strata::filters
