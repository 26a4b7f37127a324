#include "registry/reference.h"

#include <cctype>

#include "core/digest.h"
#include "core/quote.h"

namespace strata::registry {
namespace {

constexpr size_t kMaxNameLength = 255;
constexpr size_t kMaxTagLength = 128;

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool IsAlnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }

// component := [a-z0-9]+ (separator [a-z0-9]+)*, separator := "." | "_" | "__" | "-"+
bool ValidComponent(std::string_view c) {
  if (c.empty() || !IsLowerAlnum(c.front()) || !IsLowerAlnum(c.back())) return false;
  size_t i = 0;
  while (i < c.size()) {
    if (IsLowerAlnum(c[i])) {
      i++;
      continue;
    }
    size_t start = i;
    while (i < c.size() && !IsLowerAlnum(c[i])) i++;
    std::string_view sep = c.substr(start, i - start);
    bool dashes = sep.find_first_not_of('-') == std::string_view::npos;
    if (!(sep == "." || sep == "_" || sep == "__" || dashes)) return false;
  }
  return true;
}

// One DNS label: alphanumerics and inner dashes.
bool ValidLabel(std::string_view l) {
  if (l.empty() || !IsAlnum(l.front()) || !IsAlnum(l.back())) return false;
  for (char c : l) {
    if (!IsAlnum(c) && c != '-') return false;
  }
  return true;
}

bool ValidDomain(std::string_view d) {
  std::string_view host = d;
  if (!d.empty() && d.front() == '[') {  // [ipv6]:port
    size_t close = d.find(']');
    if (close == std::string_view::npos || close < 3) return false;
    for (char c : d.substr(1, close - 1)) {
      if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':') return false;
    }
    std::string_view rest = d.substr(close + 1);
    if (rest.empty()) return true;
    if (rest.front() != ':' || rest.size() == 1) return false;
    for (char c : rest.substr(1)) {
      if (!std::isdigit(static_cast<unsigned char>(c))) return false;
    }
    return true;
  }
  size_t colon = d.rfind(':');
  if (colon != std::string_view::npos) {
    std::string_view port = d.substr(colon + 1);
    if (port.empty()) return false;
    for (char c : port) {
      if (!std::isdigit(static_cast<unsigned char>(c))) return false;
    }
    host = d.substr(0, colon);
  }
  size_t start = 0;
  for (;;) {
    size_t dot = host.find('.', start);
    if (!ValidLabel(host.substr(start, dot == std::string_view::npos ? dot : dot - start))) {
      return false;
    }
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

bool ValidTag(std::string_view t) {
  if (t.empty() || t.size() > kMaxTagLength) return false;
  if (!(IsAlnum(t.front()) || t.front() == '_')) return false;
  for (char c : t) {
    if (!(IsAlnum(c) || c == '_' || c == '.' || c == '-')) return false;
  }
  return true;
}

Status Invalid(std::string_view text, const std::string& why) {
  return Status::InvalidArgument("invalid reference " + Quote(text) + ": " + why);
}

}  // namespace

std::string Reference::Name() const { return domain + "/" + repository; }

std::string Reference::String() const {
  std::string out = Name();
  if (!tag.empty()) out += ":" + tag;
  if (!digest.empty()) out += "@" + digest;
  return out;
}

Result<Reference> ParseReference(std::string_view text) {
  if (text.empty()) return Invalid(text, "empty");
  Reference ref;
  std::string_view rest = text;
  if (size_t at = rest.find('@'); at != std::string_view::npos) {
    ref.digest = std::string(rest.substr(at + 1));
    Status s = ValidateDigest(ref.digest);
    if (!s.ok()) return Invalid(text, s.message());
    rest = rest.substr(0, at);
  }
  size_t last_slash = rest.rfind('/');
  size_t colon = rest.rfind(':');
  if (colon != std::string_view::npos &&
      (last_slash == std::string_view::npos || colon > last_slash)) {
    ref.tag = std::string(rest.substr(colon + 1));
    if (!ValidTag(ref.tag)) {
      return Invalid(text, "tag " + Quote(ref.tag) +
                               " must be 1-128 of [A-Za-z0-9_.-], not starting with . or -");
    }
    rest = rest.substr(0, colon);
  }
  if (rest.empty()) return Invalid(text, "empty repository name");
  if (rest.size() > kMaxNameLength) {
    return Invalid(text,
                   "repository name longer than " + std::to_string(kMaxNameLength) + " characters");
  }

  std::string_view path = rest;
  size_t slash = rest.find('/');
  std::string_view first = rest.substr(0, slash);
  bool first_is_domain =
      slash != std::string_view::npos && (first.find_first_of(".:") != std::string_view::npos ||
                                          first == "localhost" || first.front() == '[');
  if (first_is_domain) {
    ref.domain = std::string(first);
    path = rest.substr(slash + 1);
    if (!ValidDomain(ref.domain)) return Invalid(text, "bad registry host " + Quote(ref.domain));
  } else {
    ref.domain = "docker.io";
  }
  if (ref.domain == "index.docker.io") ref.domain = "docker.io";
  ref.repository = std::string(path);
  if (ref.domain == "docker.io" && ref.repository.find('/') == std::string::npos) {
    ref.repository = "library/" + ref.repository;
  }
  for (char c : ref.repository) {
    if (c >= 'A' && c <= 'Z') return Invalid(text, "repository name must be lowercase");
  }
  size_t start = 0;
  for (;;) {
    size_t next = ref.repository.find('/', start);
    std::string_view component =
        std::string_view(ref.repository)
            .substr(start, next == std::string::npos ? std::string::npos : next - start);
    if (!ValidComponent(component)) {
      return Invalid(text, "bad path component " + Quote(component) +
                               " (lowercase letters and digits, joined by . _ __ or -)");
    }
    if (next == std::string::npos) break;
    start = next + 1;
  }
  if (ref.tag.empty() && ref.digest.empty()) ref.tag = "latest";
  return ref;
}

}  // namespace strata::registry
