// strata-test-token-server: the bearer-token endpoint of Docker's token authentication
// (distribution's docs/spec/auth/token.md and oauth.md), for end-to-end tests against
// Debian's docker-registry configured with
//
//   auth:
//     token: {realm: http://127.0.0.1:PORT/token, service: S, issuer: I,
//             rootcertbundle: CERT}
//
// GET /token?service=S&scope=repository:NAME:pull,push[&scope=...][&account=U]
//     [&offline_token=true]
//   HTTP basic credentials are checked against --user; a wrong password is answered
//   401. Without credentials the token grants nothing, or "pull" on repositories with
//   --anonymous-pull. Answer: {"token", "access_token", "expires_in", "issued_at"}, plus
//   "refresh_token" for an authenticated request with offline_token=true.
// POST /token (form body, OAuth2 as containerd sends it first)
//   grant_type=password (username, password) or grant_type=refresh_token
//   (refresh_token), with service, scope (space-separated), client_id, access_type.
//   Answer: {"access_token", "token", "scope", "expires_in", "issued_at"} plus
//   "refresh_token" for access_type=offline or a refresh grant. Bad credentials: 400
//   {"error": "invalid_grant"}. With --no-oauth, POST answers 404 so clients fall back
//   to GET (containerd does on 404).
//
// Each request is logged as one line: method, target, whether credentials were given
// (never a password or refresh token), the decoded scopes, the status and the grant.
#include <openssl/rand.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "tests/tools/http_wire.h"
#include "tests/tools/line_log.h"
#include "tests/tools/token_signer.h"

namespace strata::testtools {
namespace {

struct User {
  std::string password;
  std::set<std::string> actions;  // empty: whatever is asked
};

struct Options {
  HostPort listen{"127.0.0.1", 0};
  std::string issuer = "strata-test-token-server";
  std::string service = "strata-test-registry";
  std::map<std::string, User> users;
  bool anonymous_pull = false;
  int64_t expires_in_s = 300;
  int64_t backdate_s = 0;
  bool oauth = true;
};

struct Reply {
  int status = 200;
  nlohmann::json body;
  HeaderList headers;
};

// One requested scope, "type:name:action,action" (a name may itself hold colons, as in
// "repository:localhost:5000/a:pull", so the name is what lies between the first and
// the last colon).
struct Scope {
  std::string type, name;
  std::vector<std::string> actions;
};

std::optional<Scope> ParseScope(const std::string& text) {
  size_t first = text.find(':'), last = text.rfind(':');
  if (first == std::string::npos || first == last) return std::nullopt;
  Scope scope{text.substr(0, first), text.substr(first + 1, last - first - 1), {}};
  std::string_view actions = std::string_view(text).substr(last + 1);
  while (!actions.empty()) {
    size_t comma = actions.find(',');
    if (comma != 0) scope.actions.emplace_back(actions.substr(0, comma));
    if (comma == std::string_view::npos) break;
    actions.remove_prefix(comma + 1);
  }
  return scope;
}

std::string JoinActions(const std::vector<std::string>& actions) {
  std::string out;
  for (const std::string& a : actions) out += (out.empty() ? "" : ",") + a;
  return out;
}

std::string RandomHex(size_t bytes) {
  std::vector<unsigned char> raw(bytes);
  RAND_bytes(raw.data(), static_cast<int>(bytes));
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : raw) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

std::string Rfc3339(int64_t unix_seconds) {
  time_t t = static_cast<time_t>(unix_seconds);
  tm utc{};
  gmtime_r(&t, &utc);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

class TokenServer {
 public:
  TokenServer(Options options, std::unique_ptr<TokenSigner> signer, LineLog* log)
      : options_(std::move(options)), signer_(std::move(signer)), log_(log) {}

  // Serves one connection, request after request, until either side closes it.
  void ServeConnection(int fd);

 private:
  // What a log line says about a request, filled in while it is handled.
  struct Trace {
    std::string auth = "none";
    std::string user;
    std::vector<std::string> scopes;
    std::string granted;
  };

  Reply HandleGet(const RequestHead& request, Trace* trace);
  Reply HandlePost(const std::string& form, Trace* trace);
  // The token answer for `subject` (empty: anonymous) and the requested scopes.
  Reply Issue(const User* user, const std::string& subject, const std::vector<std::string>& scopes,
              bool oauth_shape, std::string refresh_token, Trace* trace);
  nlohmann::json Grant(const User* user, const std::vector<std::string>& scopes, Trace* trace);
  const User* CheckPassword(const std::string& name, const std::string& password) const;
  Reply ServiceMismatch(const std::string& service) const;

  Options options_;
  std::unique_ptr<TokenSigner> signer_;
  LineLog* log_;
  std::mutex mu_;
  std::map<std::string, std::string> refresh_tokens_;  // token -> user name
};

Reply ErrorReply(int status, const std::string& code, const std::string& message) {
  Reply reply;
  reply.status = status;
  reply.body = {{"errors", {{{"code", code}, {"message", message}}}}};
  return reply;
}

Reply OAuthError(int status, const std::string& error, const std::string& description) {
  Reply reply;
  reply.status = status;
  reply.body = {{"error", error}, {"error_description", description}};
  return reply;
}

const User* TokenServer::CheckPassword(const std::string& name, const std::string& password) const {
  auto it = options_.users.find(name);
  if (it == options_.users.end() || it->second.password != password) return nullptr;
  return &it->second;
}

Reply TokenServer::ServiceMismatch(const std::string& service) const {
  return ErrorReply(400, "INVALID_SERVICE",
                    "this server issues tokens for service \"" + options_.service + "\", not \"" +
                        service + "\"");
}

nlohmann::json TokenServer::Grant(const User* user, const std::vector<std::string>& scopes,
                                  Trace* trace) {
  nlohmann::json access = nlohmann::json::array();
  for (const std::string& text : scopes) {
    trace->scopes.push_back(text);
    std::optional<Scope> scope = ParseScope(text);
    if (!scope) continue;
    std::vector<std::string> allowed;
    for (const std::string& action : scope->actions) {
      bool ok;
      if (user) {
        ok = user->actions.empty() || user->actions.count(action) > 0;
      } else {
        ok = options_.anonymous_pull && scope->type == "repository" && action == "pull";
      }
      if (ok) allowed.push_back(action);
    }
    if (allowed.empty()) continue;
    access.push_back({{"type", scope->type}, {"name", scope->name}, {"actions", allowed}});
    trace->granted += (trace->granted.empty() ? "" : " ") + scope->type + ":" + scope->name + ":" +
                      JoinActions(allowed);
  }
  return access;
}

Reply TokenServer::Issue(const User* user, const std::string& subject,
                         const std::vector<std::string>& scopes, bool oauth_shape,
                         std::string refresh_token, Trace* trace) {
  nlohmann::json access = Grant(user, scopes, trace);
  int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  int64_t issued_at = now - options_.backdate_s;
  // distribution 2.8 wants "aud" as a single string (an array fails to parse).
  nlohmann::json claims = {{"iss", options_.issuer},  {"sub", subject},
                           {"aud", options_.service}, {"exp", issued_at + options_.expires_in_s},
                           {"nbf", issued_at},        {"iat", issued_at},
                           {"jti", RandomHex(16)},    {"access", access}};
  std::string token = signer_->Sign(claims);
  if (token.empty()) return ErrorReply(500, "UNKNOWN", "signing the token failed");

  Reply reply;
  reply.body = {{"token", token},
                {"access_token", token},
                {"expires_in", options_.expires_in_s},
                {"issued_at", Rfc3339(issued_at)}};
  if (oauth_shape) {
    std::string granted;
    for (const auto& entry : access) {
      granted += (granted.empty() ? "" : " ") + entry["type"].get<std::string>() + ":" +
                 entry["name"].get<std::string>() + ":" +
                 JoinActions(entry["actions"].get<std::vector<std::string>>());
    }
    reply.body["scope"] = granted;
  }
  if (!refresh_token.empty()) reply.body["refresh_token"] = refresh_token;
  return reply;
}

Reply TokenServer::HandleGet(const RequestHead& request, Trace* trace) {
  std::vector<std::string> scopes;
  std::string service;
  bool offline = false;
  for (const auto& [key, value] : ParseFormEncoded(request.Query())) {
    if (key == "scope") {
      // One parameter may carry several scopes separated by spaces.
      std::string_view rest = value;
      while (!rest.empty()) {
        size_t space = rest.find(' ');
        if (space != 0) scopes.emplace_back(rest.substr(0, space));
        if (space == std::string_view::npos) break;
        rest.remove_prefix(space + 1);
      }
    } else if (key == "service") {
      service = value;
    } else if (key == "offline_token") {
      offline = value == "true";
    }
  }
  if (!service.empty() && service != options_.service) return ServiceMismatch(service);

  const User* user = nullptr;
  std::string subject;
  if (auto authorization = request.headers.Get("Authorization")) {
    std::string_view value = TrimSpaces(*authorization);
    std::string decoded;
    size_t colon = std::string::npos;
    if (value.size() > 6 && EqualsIgnoreCase(value.substr(0, 6), "basic ") &&
        Base64Decode(TrimSpaces(value.substr(6)), &decoded)) {
      colon = decoded.find(':');
    }
    trace->auth = "basic";
    if (colon == std::string::npos) {
      trace->auth = "malformed";
      Reply reply = ErrorReply(401, "UNAUTHORIZED", "malformed Authorization header");
      reply.headers.Add("WWW-Authenticate", "Basic realm=\"" + options_.issuer + "\"");
      return reply;
    }
    subject = decoded.substr(0, colon);
    trace->user = subject;
    user = CheckPassword(subject, decoded.substr(colon + 1));
    if (!user) {
      Reply reply = ErrorReply(401, "UNAUTHORIZED", "wrong user name or password");
      reply.headers.Add("WWW-Authenticate", "Basic realm=\"" + options_.issuer + "\"");
      return reply;
    }
  }
  std::string refresh_token;
  if (offline && user) {
    refresh_token = RandomHex(24);
    std::lock_guard<std::mutex> lock(mu_);
    refresh_tokens_[refresh_token] = subject;
  }
  return Issue(user, subject, scopes, /*oauth_shape=*/false, refresh_token, trace);
}

Reply TokenServer::HandlePost(const std::string& form, Trace* trace) {
  std::map<std::string, std::string> fields;
  for (auto& [key, value] : ParseFormEncoded(form)) fields[key] = value;
  std::vector<std::string> scopes;
  std::string_view rest = fields["scope"];
  while (!rest.empty()) {
    size_t space = rest.find(' ');
    if (space != 0) scopes.emplace_back(rest.substr(0, space));
    if (space == std::string_view::npos) break;
    rest.remove_prefix(space + 1);
  }
  if (!fields["service"].empty() && fields["service"] != options_.service) {
    return ServiceMismatch(fields["service"]);
  }

  const std::string& grant_type = fields["grant_type"];
  std::string subject, refresh_token;
  if (grant_type == "password") {
    trace->auth = "password";
    subject = fields["username"];
    trace->user = subject;
    if (subject.empty()) return OAuthError(400, "invalid_request", "username is required");
    if (!CheckPassword(subject, fields["password"])) {
      return OAuthError(400, "invalid_grant", "wrong user name or password");
    }
    if (fields["access_type"] == "offline") {
      refresh_token = RandomHex(24);
      std::lock_guard<std::mutex> lock(mu_);
      refresh_tokens_[refresh_token] = subject;
    }
  } else if (grant_type == "refresh_token") {
    trace->auth = "refresh_token";
    refresh_token = fields["refresh_token"];
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = refresh_tokens_.find(refresh_token);
      if (it != refresh_tokens_.end()) subject = it->second;
    }
    trace->user = subject;
    if (subject.empty()) return OAuthError(400, "invalid_grant", "unknown refresh token");
  } else {
    return OAuthError(400, "unsupported_grant_type",
                      "grant_type must be password or refresh_token");
  }
  const User* user = &options_.users.at(subject);
  return Issue(user, subject, scopes, /*oauth_shape=*/true, refresh_token, trace);
}

void TokenServer::ServeConnection(int fd) {
  SocketReader reader(fd);
  for (;;) {
    RequestHead request;
    if (!ReadRequestHead(reader, &request)) return;
    std::string body;
    if (!ReadWholeBody(&reader, RequestBodyFraming(request), 64 * 1024, &body)) return;

    Trace trace;
    Reply reply;
    std::string path = request.Path();
    if (path != "/token") {
      reply = ErrorReply(404, "NOT_FOUND", "only /token is served here");
    } else if (request.method == "GET" || request.method == "HEAD") {
      reply = HandleGet(request, &trace);
    } else if (request.method == "POST" && options_.oauth) {
      reply = HandlePost(body, &trace);
    } else if (request.method == "POST") {
      reply = ErrorReply(404, "NOT_FOUND", "POST /token is disabled (--no-oauth); use GET");
    } else {
      reply = ErrorReply(405, "UNSUPPORTED", "use GET or POST");
    }

    std::string line = request.method + " " + request.target + " auth=" + trace.auth;
    if (!trace.user.empty()) line += " user=" + trace.user;
    for (const std::string& scope : trace.scopes) line += " scope=" + scope;
    line += " status=" + std::to_string(reply.status);
    if (reply.status == 200) line += " granted=" + (trace.granted.empty() ? "-" : trace.granted);
    log_->Write(line);

    bool close_after =
        request.headers.HasToken("Connection", "close") || request.version == "HTTP/1.0";
    std::string payload = reply.body.dump();
    ResponseHead response;
    response.status = reply.status;
    response.headers = reply.headers;
    response.headers.Add("Content-Type", "application/json");
    response.headers.Add("Cache-Control", "no-store");
    response.headers.Add("Content-Length", std::to_string(payload.size()));
    if (close_after) response.headers.Add("Connection", "close");
    std::string out = response.Serialize();
    if (request.method != "HEAD") out += payload;
    if (!SendAll(fd, out) || close_after) return;
  }
}

// "name:password" or "name:password:pull,push".
bool ParseUserFlag(const std::string& text, std::map<std::string, User>* users) {
  size_t colon = text.find(':');
  if (colon == std::string::npos || colon == 0) return false;
  std::string name = text.substr(0, colon), rest = text.substr(colon + 1);
  User user;
  size_t second = rest.find(':');
  user.password = rest.substr(0, second);
  if (second != std::string::npos) {
    std::optional<Scope> actions = ParseScope("x:y:" + rest.substr(second + 1));
    if (!actions || actions->actions.empty()) return false;
    user.actions.insert(actions->actions.begin(), actions->actions.end());
  }
  (*users)[name] = std::move(user);
  return true;
}

int Main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  CLI::App app{"strata-test-token-server: Docker registry bearer-token endpoint for tests"};
  Options options;
  std::string listen = "127.0.0.1:0", key_path, cert_path, log_path;
  std::vector<std::string> user_flags;
  bool no_oauth = false;
  app.add_option("--listen", listen,
                 "address to listen on; port 0 picks one (default 127.0.0.1:0)");
  app.add_option("--key", key_path, "PEM private key (EC or RSA); generated when absent")
      ->required();
  app.add_option("--cert", cert_path,
                 "PEM certificate of --key, then any intermediates (all go into x5c); "
                 "a self-signed one is generated with the key when both are absent")
      ->required();
  app.add_option("--issuer", options.issuer, "the iss claim (registry: auth.token.issuer)");
  app.add_option("--service", options.service, "the aud claim (registry: auth.token.service)");
  app.add_option("--user", user_flags,
                 "NAME:PASSWORD[:ACTIONS] accepted credentials, repeatable; ACTIONS (e.g. pull) "
                 "limits what the user is granted");
  app.add_flag("--anonymous-pull", options.anonymous_pull,
               "grant pull on repositories to requests without credentials");
  app.add_option("--expires-in", options.expires_in_s, "token lifetime in seconds (default 300)")
      ->check(CLI::PositiveNumber);
  app.add_option("--backdate", options.backdate_s,
                 "issue tokens as if the clock were this many seconds behind (iat, nbf, exp); "
                 "with a backdate past expires-in + 60 s the registry refuses them as expired");
  app.add_flag("--no-oauth", no_oauth, "answer POST /token with 404 (clients fall back to GET)");
  app.add_option("--log", log_path, "append one line per request to this file (default stderr)");
  CLI11_PARSE(app, argc, argv);
  options.oauth = !no_oauth;

  for (const std::string& flag : user_flags) {
    if (!ParseUserFlag(flag, &options.users)) {
      std::fprintf(stderr,
                   "strata-test-token-server: bad --user %s (want NAME:PASSWORD[:ACTIONS])\n",
                   flag.c_str());
      return 2;
    }
  }
  std::optional<HostPort> address = ParseHostPort(listen);
  if (!address) {
    std::fprintf(stderr, "strata-test-token-server: bad --listen %s\n", listen.c_str());
    return 2;
  }
  std::string error;
  LineLog log;
  if (!log.Open(log_path, &error)) {
    std::fprintf(stderr, "strata-test-token-server: %s\n", error.c_str());
    return 1;
  }
  std::unique_ptr<TokenSigner> signer = TokenSigner::LoadOrCreate(key_path, cert_path, &error);
  if (!signer) {
    std::fprintf(stderr, "strata-test-token-server: %s\n", error.c_str());
    return 1;
  }
  HostPort bound;
  int listen_fd = ListenTcp(*address, &bound, &error);
  if (listen_fd < 0) {
    std::fprintf(stderr, "strata-test-token-server: %s\n", error.c_str());
    return 1;
  }
  log.Write("signing with " + signer->algorithm() + " for service " + options.service +
            ", issuer " + options.issuer);
  std::printf("listening %s\n", bound.ToString().c_str());
  std::fflush(stdout);

  TokenServer server(std::move(options), std::move(signer), &log);
  AcceptLoop(listen_fd, [&server](int fd) { server.ServeConnection(fd); });
  std::fprintf(stderr, "strata-test-token-server: accept failed; exiting\n");
  std::_Exit(1);
}

}  // namespace
}  // namespace strata::testtools

int main(int argc, char** argv) { return strata::testtools::Main(argc, argv); }
