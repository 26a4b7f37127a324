// Registry authentication: parsing `WWW-Authenticate` challenges and the Docker
// registry token flow (https://distribution.github.io/distribution/spec/auth/token/).
//
//   1. a request answered 401 carries `WWW-Authenticate: Bearer realm="…",service="…",
//      scope="repository:r:pull"` (or `Basic realm="…"`);
//   2. for Bearer, the client asks the realm for a token: GET realm?service=…&scope=…
//      with HTTP basic credentials when it has some (anonymous otherwise), or, holding
//      an OAuth2 refresh token (Docker's "identitytoken"), POST realm with
//      grant_type=refresh_token;
//   3. the token goes on the retried request as `Authorization: Bearer <token>` and is
//      cached until `expires_in` (default 60 s) runs out or the registry refuses it.
//
// Secrets (passwords, tokens) never appear in logs or error messages.
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "registry/credentials.h"
#include "registry/http.h"

namespace strata::registry {

struct AuthChallenge {
  std::string scheme;                         // lowercase: "bearer", "basic"
  std::map<std::string, std::string> params;  // realm, service, scope, error, ...
};

// Parses every challenge of a WWW-Authenticate header value (several may be
// comma-separated; parameter values may be quoted with backslash escapes). Unknown
// or malformed parts are skipped.
std::vector<AuthChallenge> ParseAuthChallenges(const std::string& header);

// "Basic base64(user:secret)".
std::string BasicAuthorization(const Credentials& credentials);

// Caches bearer tokens per (realm, service, scope) and basic credentials per host, and
// answers "which Authorization header goes on a request to this host for this scope".
// Thread-safe.
class Authorizer {
 public:
  using CredentialLookup =
      std::function<Result<std::optional<Credentials>>(const std::string& host)>;

  Authorizer(HttpClient* http, CredentialLookup lookup);

  // The Authorization header value to send to `host` for `scope`, from what earlier
  // challenges taught; "" when nothing is known (send anonymously first).
  std::string HeaderFor(const std::string& host, const std::string& scope);

  // Handles a 401 from `host` for a request needing `scope`: parses the challenge,
  // fetches a fresh token (Bearer) or prepares basic credentials (Basic). OK when the
  // request should be retried with HeaderFor(); Unauthenticated naming the host when
  // no credentials can satisfy the challenge or the token server refused them.
  Status OnUnauthorized(const std::string& host, const std::string& scope,
                        const std::string& www_authenticate, const TlsOptions& tls);

 private:
  struct Token {
    std::string value;
    std::chrono::steady_clock::time_point expires;
  };
  struct HostAuth {
    std::string scheme;  // "bearer" or "basic"
    std::string realm;
    std::string service;
    std::string basic;  // "Basic …" when scheme == basic
  };

  Result<Token> FetchToken(const std::string& host, const HostAuth& auth, const std::string& scope,
                           const TlsOptions& tls);

  HttpClient* http_;
  CredentialLookup lookup_;
  std::mutex mu_;
  std::map<std::string, HostAuth> hosts_;
  std::map<std::string, Token> tokens_;  // key: host '\n' scope
};

}  // namespace strata::registry
