#include "registry/auth.h"

#include <curl/curl.h>
#include <openssl/evp.h>

#include <cctype>
#include <nlohmann/json.hpp>

#include "core/quote.h"

namespace strata::registry {
namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string UrlEncode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string Base64(const std::string& in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

// Token lifetime when the server does not say; the spec's default.
constexpr int kDefaultTokenSeconds = 60;

}  // namespace

std::vector<AuthChallenge> ParseAuthChallenges(const std::string& header) {
  std::vector<AuthChallenge> out;
  size_t i = 0;
  const size_t n = header.size();
  auto skip_space = [&] {
    while (i < n && (header[i] == ' ' || header[i] == '\t' || header[i] == ',')) i++;
  };
  auto read_token = [&] {
    size_t b = i;
    while (i < n && header[i] != ' ' && header[i] != '\t' && header[i] != ',' && header[i] != '=') {
      i++;
    }
    return header.substr(b, i - b);
  };
  while (true) {
    skip_space();
    if (i >= n) break;
    AuthChallenge challenge;
    challenge.scheme = Lower(read_token());
    if (challenge.scheme.empty()) {
      i++;
      continue;
    }
    // Parameters: name=value pairs separated by commas, until the next scheme (a token
    // not followed by '=').
    while (true) {
      size_t save = i;
      skip_space();
      if (i >= n) break;
      std::string name = read_token();
      while (i < n && (header[i] == ' ' || header[i] == '\t')) i++;
      if (name.empty() || i >= n || header[i] != '=') {
        i = save;  // the start of another challenge
        break;
      }
      i++;  // '='
      while (i < n && (header[i] == ' ' || header[i] == '\t')) i++;
      std::string value;
      if (i < n && header[i] == '"') {
        i++;
        while (i < n && header[i] != '"') {
          if (header[i] == '\\' && i + 1 < n) i++;
          value += header[i++];
        }
        if (i < n) i++;  // closing quote
      } else {
        size_t b = i;
        while (i < n && header[i] != ',' && header[i] != ' ') i++;
        value = header.substr(b, i - b);
      }
      challenge.params[Lower(name)] = value;
    }
    out.push_back(std::move(challenge));
  }
  return out;
}

std::string BasicAuthorization(const Credentials& credentials) {
  return "Basic " + Base64(credentials.username + ":" + credentials.secret);
}

Authorizer::Authorizer(HttpClient* http, CredentialLookup lookup)
    : http_(http), lookup_(std::move(lookup)) {}

std::string Authorizer::HeaderFor(const std::string& host, const std::string& scope) {
  std::lock_guard<std::mutex> lock(mu_);
  auto h = hosts_.find(host);
  if (h == hosts_.end()) return "";
  if (h->second.scheme == "basic") return h->second.basic;
  auto t = tokens_.find(host + "\n" + scope);
  if (t == tokens_.end() || t->second.expires <= std::chrono::steady_clock::now()) return "";
  return "Bearer " + t->second.value;
}

Status Authorizer::OnUnauthorized(const std::string& host, const std::string& scope,
                                  const std::string& www_authenticate, const TlsOptions& tls) {
  std::vector<AuthChallenge> challenges = ParseAuthChallenges(www_authenticate);
  const AuthChallenge* chosen = nullptr;
  for (const auto& c : challenges) {
    if (c.scheme == "bearer" && c.params.count("realm")) {
      chosen = &c;
      break;
    }
  }
  if (chosen == nullptr) {
    for (const auto& c : challenges) {
      if (c.scheme == "basic") chosen = &c;
    }
  }
  if (chosen == nullptr) {
    return Status(Code::kUnauthenticated,
                  "registry " + host + " asked for authentication with an unsupported scheme (" +
                      (www_authenticate.empty() ? "no WWW-Authenticate header" : www_authenticate) +
                      ")");
  }

  HostAuth auth;
  auth.scheme = chosen->scheme;
  if (auth.scheme == "basic") {
    ASSIGN_OR_RETURN(std::optional<Credentials> creds, lookup_(host));
    if (!creds || creds->identity_token) {
      return Status(
          Code::kUnauthenticated,
          "registry " + host +
              " requires a username and password (none configured; "
              "add them to the Docker config.json with `docker login` or a credential helper)");
    }
    auth.basic = BasicAuthorization(*creds);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = hosts_.find(host);
    if (it != hosts_.end() && it->second.scheme == "basic" && it->second.basic == auth.basic) {
      // The same credentials were already refused.
      return Status(Code::kUnauthenticated,
                    "registry " + host + " refused the configured credentials");
    }
    hosts_[host] = std::move(auth);
    return Status::Ok();
  }

  auth.realm = chosen->params.at("realm");
  auto service = chosen->params.find("service");
  if (service != chosen->params.end()) auth.service = service->second;
  std::string wanted_scope = scope;
  auto challenge_scope = chosen->params.find("scope");
  if (challenge_scope != chosen->params.end() && !challenge_scope->second.empty() &&
      challenge_scope->second != scope) {
    // The registry names the scope it wants (e.g. a cross-repository mount needs two).
    wanted_scope = scope.empty() ? challenge_scope->second : scope + " " + challenge_scope->second;
  }
  ASSIGN_OR_RETURN(Token token, FetchToken(host, auth, wanted_scope, tls));
  std::lock_guard<std::mutex> lock(mu_);
  hosts_[host] = std::move(auth);
  tokens_[host + "\n" + scope] = std::move(token);
  return Status::Ok();
}

Result<Authorizer::Token> Authorizer::FetchToken(const std::string& host, const HostAuth& auth,
                                                 const std::string& scope, const TlsOptions& tls) {
  ASSIGN_OR_RETURN(std::optional<Credentials> creds, lookup_(host));
  // Scopes are space-separated in our key; each goes in its own `scope` parameter.
  std::vector<std::string> scopes;
  for (size_t b = 0; b < scope.size();) {
    size_t e = scope.find(' ', b);
    if (e == std::string::npos) e = scope.size();
    if (e > b) scopes.push_back(scope.substr(b, e - b));
    b = e + 1;
  }

  HttpRequest req;
  req.tls = tls;
  req.total_timeout = std::chrono::seconds(30);
  req.headers.emplace("Accept", "application/json");
  if (creds && creds->identity_token) {
    req.method = "POST";
    req.url = auth.realm;
    req.headers.emplace("Content-Type", "application/x-www-form-urlencoded");
    std::string form =
        "grant_type=refresh_token&client_id=strata&refresh_token=" + UrlEncode(creds->secret);
    if (!auth.service.empty()) form += "&service=" + UrlEncode(auth.service);
    for (const auto& s : scopes) form += "&scope=" + UrlEncode(s);
    req.body = form;
  } else {
    std::string url = auth.realm;
    char sep = url.find('?') == std::string::npos ? '?' : '&';
    if (!auth.service.empty()) {
      url += sep + std::string("service=") + UrlEncode(auth.service);
      sep = '&';
    }
    for (const auto& s : scopes) {
      url += sep + std::string("scope=") + UrlEncode(s);
      sep = '&';
    }
    req.url = url;
    if (creds) req.headers.emplace("Authorization", BasicAuthorization(*creds));
  }

  ASSIGN_OR_RETURN(HttpResponse resp, http_->Do(req));
  if (resp.status == 401 || resp.status == 403) {
    return Status(Code::kUnauthenticated,
                  "token server " + auth.realm + " refused " +
                      (creds ? "the configured credentials" : "anonymous access") + " for " + host +
                      " (HTTP " + std::to_string(resp.status) + ")");
  }
  if (resp.status != 200) {
    return Status::Unavailable("token server " + auth.realm + " for " + host + " answered HTTP " +
                               std::to_string(resp.status));
  }
  nlohmann::json body = nlohmann::json::parse(resp.body, nullptr, /*allow_exceptions=*/false);
  if (!body.is_object()) {
    return Status::Unavailable("token server " + auth.realm + " for " + host +
                               " sent a response that is not a JSON object");
  }
  Token token;
  for (const char* field : {"token", "access_token"}) {
    auto it = body.find(field);
    if (it != body.end() && it->is_string() && !it->get<std::string>().empty()) {
      token.value = it->get<std::string>();
      break;
    }
  }
  if (token.value.empty()) {
    return Status::Unavailable("token server " + auth.realm + " for " + host + " sent no token");
  }
  int seconds = kDefaultTokenSeconds;
  auto exp = body.find("expires_in");
  if (exp != body.end() && exp->is_number_integer() && exp->get<int64_t>() > 0) {
    seconds = static_cast<int>(std::min<int64_t>(exp->get<int64_t>(), 86400));
  }
  // Renew a little early so a token does not expire in flight.
  token.expires = std::chrono::steady_clock::now() + std::chrono::seconds(seconds) -
                  std::chrono::seconds(std::min(seconds / 10, 10));
  return token;
}

}  // namespace strata::registry
