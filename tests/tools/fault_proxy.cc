// strata-test-fault-proxy: an HTTP/1.1 reverse proxy for one upstream registry that
// injects faults chosen by rules (see fault_rules.h for the rule language).
//
//   strata-test-fault-proxy --upstream 127.0.0.1:5000 [--listen 127.0.0.1:0]
//       [--backend-listen 127.0.0.1:0] [--rule RULE]... [--rules-file FILE]
//       [--seed N] [--keep-host] [--log FILE]
//
// stdout, line 1: "listening HOST:PORT" (the proxy); line 2: "backend HOST:PORT" (the
// listener that `redirect` sends clients to).
//
// Forwarding: one upstream connection per client connection, kept alive on both sides;
// request and response bodies are streamed with their framing (Content-Length, chunked,
// or until close for responses). Host is set to the upstream address (as nginx does)
// unless --keep-host, and Location headers pointing at the upstream are rewritten to
// point at the address the client used. "Expect: 100-continue" is answered by the proxy.
//
// Control, on the main listener (never forwarded, never counted):
//   GET /__fault/rules                the active rules, one per line
//   POST|PUT /__fault/rules           replace them with the body (rules text)
//   DELETE /__fault/rules             remove all rules
//   GET /__fault/stats                JSON counters (see Stats::ToJson)
//   POST|DELETE /__fault/stats        zero the counters
// With --rules-file the file is read again whenever its content changes (checked on
// every request) and then replaces the active rules; write it atomically (rename).
//
// The log (--log FILE, default stderr) has one line per request: connection, listener,
// method, target, status, body bytes sent, and the faults applied.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/tools/fault_rules.h"
#include "tests/tools/http_wire.h"
#include "tests/tools/line_log.h"

namespace strata::testtools {
namespace {

enum class Listener { kFront, kBackend };

const char* ListenerName(Listener listener) {
  return listener == Listener::kFront ? "front" : "backend";
}

// Counters behind GET /__fault/stats.
class Stats {
 public:
  void Begin(const std::string& method, const std::string& path) {
    std::lock_guard<std::mutex> lock(mu_);
    ++requests_;
    PathStats& p = paths_[path];
    ++p.requests;
    ++p.methods[method];
  }

  void Finish(const std::string& path, int status, uint64_t bytes_sent, uint64_t bytes_received,
              const FaultPlan& plan) {
    std::lock_guard<std::mutex> lock(mu_);
    bytes_sent_ += bytes_sent;
    bytes_received_ += bytes_received;
    PathStats& p = paths_[path];
    p.bytes_sent += bytes_sent;
    p.bytes_received += bytes_received;
    ++p.statuses[status == 0 ? "none" : std::to_string(status)];
    if (!plan.empty()) {
      std::istringstream words(plan.Describe());
      std::string word;
      while (words >> word) ++faults_[word.substr(0, word.find('='))];
    }
  }

  void Reset() {
    std::lock_guard<std::mutex> lock(mu_);
    requests_ = bytes_sent_ = bytes_received_ = 0;
    paths_.clear();
    faults_.clear();
  }

  // {"requests", "bytes_sent", "bytes_received", "faults": {"status": N, ...},
  //  "paths": {PATH: {"requests", "bytes_sent", "bytes_received",
  //                   "methods": {"GET": N}, "statuses": {"200": N}}}}
  // bytes_* count body bytes between the proxy and its clients.
  nlohmann::json ToJson() {
    std::lock_guard<std::mutex> lock(mu_);
    nlohmann::json paths = nlohmann::json::object();
    for (const auto& [path, p] : paths_) {
      paths[path] = {{"requests", p.requests},
                     {"bytes_sent", p.bytes_sent},
                     {"bytes_received", p.bytes_received},
                     {"methods", p.methods},
                     {"statuses", p.statuses}};
    }
    return {{"requests", requests_},
            {"bytes_sent", bytes_sent_},
            {"bytes_received", bytes_received_},
            {"faults", faults_},
            {"paths", paths}};
  }

 private:
  struct PathStats {
    uint64_t requests = 0, bytes_sent = 0, bytes_received = 0;
    std::map<std::string, uint64_t> methods, statuses;
  };
  std::mutex mu_;
  uint64_t requests_ = 0, bytes_sent_ = 0, bytes_received_ = 0;
  std::map<std::string, PathStats> paths_;
  std::map<std::string, uint64_t> faults_;
};

// The proxy's connection to the upstream registry, reopened when it goes away.
struct UpstreamConnection {
  int fd = -1;
  std::unique_ptr<SocketReader> reader;
  bool reused = false;  // carried an earlier exchange

  void Close() {
    if (fd >= 0) close(fd);
    fd = -1;
    reader.reset();
    reused = false;
  }
  ~UpstreamConnection() { Close(); }

  // False with `*error` when upstream cannot be reached.
  bool Ensure(const HostPort& upstream, std::string* error) {
    if (fd >= 0) {
      // An idle connection that is readable has been closed (or is confused): drop it.
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 0) != 0) Close();
    }
    if (fd >= 0) {
      reused = true;
      return true;
    }
    fd = ConnectTcp(upstream, error);
    if (fd < 0) return false;
    reader = std::make_unique<SocketReader>(fd);
    reused = false;
    return true;
  }
};

// Where a redirected blob request goes: the backend listener serves
// /storage/<ticket>/<digest> by fetching the original target with the original
// credentials, as a storage backend serves a pre-signed URL.
struct Ticket {
  std::string upstream_target;
  std::optional<std::string> authorization;
};

struct Config {
  HostPort upstream;
  HostPort front;
  HostPort backend;
  bool keep_host = false;
  std::string rules_file;
  uint64_t seed = 1;
};

// What the log line and the stats say about one exchange.
struct Outcome {
  int status = 0;
  uint64_t body_sent = 0;
  uint64_t body_received = 0;
  std::string note;  // e.g. "truncated", "client went away"
};

class FaultProxy {
 public:
  FaultProxy(Config config, std::shared_ptr<FaultRuleSet> rules, LineLog* log)
      : config_(std::move(config)), log_(log), rules_(std::move(rules)) {}

  // Serves one client connection until either side closes it.
  void Serve(int fd, Listener listener);

 private:
  // Returns whether the client connection stays open.
  bool HandleRequest(int fd, SocketReader& client, UpstreamConnection& upstream,
                     RequestHead& request, Listener listener, uint64_t connection_id);
  bool HandleAdmin(int fd, SocketReader& client, const RequestHead& request);
  // Sends a response made here (fault, redirect, error). Drains the request body first
  // unless the client waits for "100 Continue", in which case the connection closes.
  bool AnswerLocally(int fd, SocketReader& client, const RequestHead& request, int status,
                     HeaderList headers, const std::string& body, Outcome* outcome);
  // Streams the response body to the client applying the plan's body faults. False when
  // the connection cannot be reused (truncated, stalled forever, peer gone).
  bool RelayBody(int fd, BodyReader& body, bool chunked, const BodyFraming& framing,
                 const FaultPlan& plan, Outcome* outcome);
  std::shared_ptr<FaultRuleSet> CurrentRules();
  void ReplaceRules(std::shared_ptr<FaultRuleSet> rules);
  std::string NewTicket(Ticket ticket);
  std::optional<Ticket> FindTicket(const std::string& id);

  Config config_;
  LineLog* log_;
  Stats stats_;
  std::atomic<uint64_t> next_connection_id_{1};

  std::mutex rules_mu_;
  std::shared_ptr<FaultRuleSet> rules_;
  std::string rules_file_content_;  // last content read from --rules-file

  std::mutex tickets_mu_;
  std::map<std::string, Ticket> tickets_;
  std::mt19937_64 ticket_random_{std::random_device{}()};
};

bool IsHopByHop(const std::string& name) {
  for (const char* hop :
       {"Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Upgrade", "Expect"}) {
    if (EqualsIgnoreCase(name, hop)) return true;
  }
  return false;
}

void RemoveHopByHop(HeaderList& headers) {
  // Fields named in Connection are hop-by-hop too.
  std::vector<std::string> named;
  for (const auto& [name, value] : headers.fields()) {
    if (!EqualsIgnoreCase(name, "Connection")) continue;
    std::istringstream tokens(value);
    std::string token;
    while (std::getline(tokens, token, ',')) named.emplace_back(TrimSpaces(token));
  }
  std::erase_if(headers.fields(), [&named](const auto& field) {
    if (IsHopByHop(field.first)) return true;
    for (const std::string& n : named) {
      if (EqualsIgnoreCase(field.first, n)) return true;
    }
    return false;
  });
}

std::string ErrorBody(int status, const std::string& message) {
  std::string code = "UNKNOWN";
  if (status == 401) code = "UNAUTHORIZED";
  if (status == 403) code = "DENIED";
  if (status == 404) code = "NOT_FOUND";
  if (status == 429) code = "TOOMANYREQUESTS";
  if (status == 502 || status == 503) code = "UNAVAILABLE";
  nlohmann::json body = {{"errors", {{{"code", code}, {"message", message}}}}};
  return body.dump();
}

// Waits until the client closes its side (or the proxy exits): a stall that never ends.
void WaitForClientToLeave(int fd) {
  for (;;) {
    pollfd p{fd, POLLIN | POLLRDHUP, 1000};
    int rc = poll(&p, 1, 1000);
    if (rc < 0 && errno != EINTR) return;
    if (rc > 0) {
      if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) return;
      char byte;
      ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) return;
      // A pipelined request is waiting; it will never be served. Keep waiting.
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
}

// ---- rules ----------------------------------------------------------------------

std::shared_ptr<FaultRuleSet> FaultProxy::CurrentRules() {
  std::lock_guard<std::mutex> lock(rules_mu_);
  if (!config_.rules_file.empty()) {
    std::ifstream in(config_.rules_file);
    if (in) {
      std::stringstream content;
      content << in.rdbuf();
      if (content.str() != rules_file_content_) {
        rules_file_content_ = content.str();
        std::string error;
        auto parsed = FaultRuleSet::Parse(rules_file_content_, config_.seed, &error);
        if (parsed) {
          rules_ = parsed;
          log_->Write("rules from " + config_.rules_file + ": " + std::to_string(parsed->size()) +
                      " rule(s)");
        } else {
          log_->Write("ignoring " + config_.rules_file + ": " + error);
        }
      }
    }
  }
  return rules_;
}

void FaultProxy::ReplaceRules(std::shared_ptr<FaultRuleSet> rules) {
  std::lock_guard<std::mutex> lock(rules_mu_);
  rules_ = std::move(rules);
}

std::string FaultProxy::NewTicket(Ticket ticket) {
  std::lock_guard<std::mutex> lock(tickets_mu_);
  if (tickets_.size() > 100000) tickets_.clear();  // a test never gets near this
  char id[17];
  std::snprintf(id, sizeof(id), "%016llx", static_cast<unsigned long long>(ticket_random_()));
  tickets_[id] = std::move(ticket);
  return id;
}

std::optional<Ticket> FaultProxy::FindTicket(const std::string& id) {
  std::lock_guard<std::mutex> lock(tickets_mu_);
  auto it = tickets_.find(id);
  if (it == tickets_.end()) return std::nullopt;
  return it->second;
}

// ---- admin ----------------------------------------------------------------------

bool FaultProxy::HandleAdmin(int fd, SocketReader& client, const RequestHead& request) {
  std::string body;
  if (!ReadWholeBody(&client, RequestBodyFraming(request), 1 << 20, &body)) return false;
  std::string path = request.Path();
  int status = 200;
  std::string answer, type = "application/json";
  if (path == "/__fault/rules" && request.method == "GET") {
    answer = CurrentRules()->Text();
    type = "text/plain";
  } else if (path == "/__fault/rules" && (request.method == "POST" || request.method == "PUT")) {
    std::string error;
    auto parsed = FaultRuleSet::Parse(body, config_.seed, &error);
    if (parsed) {
      ReplaceRules(parsed);
      log_->Write("rules replaced through /__fault/rules: " + std::to_string(parsed->size()) +
                  " rule(s)");
      answer = nlohmann::json{{"rules", parsed->size()}}.dump();
    } else {
      status = 400;
      answer = nlohmann::json{{"error", error}}.dump();
    }
  } else if (path == "/__fault/rules" && request.method == "DELETE") {
    ReplaceRules(FaultRuleSet::Empty());
    log_->Write("rules cleared through /__fault/rules");
    answer = nlohmann::json{{"rules", 0}}.dump();
  } else if (path == "/__fault/stats" && request.method == "GET") {
    nlohmann::json stats = stats_.ToJson();
    stats["rules"] = CurrentRules()->Counters();
    stats["upstream"] = config_.upstream.ToString();
    stats["backend"] = config_.backend.ToString();
    answer = stats.dump(2);
  } else if (path == "/__fault/stats" && (request.method == "POST" || request.method == "DELETE")) {
    stats_.Reset();
    answer = "{}";
  } else {
    status = 404;
    answer =
        nlohmann::json{{"error", "unknown control endpoint " + request.method + " " + path}}.dump();
  }
  ResponseHead response;
  response.status = status;
  response.headers.Add("Content-Type", type);
  response.headers.Add("Content-Length", std::to_string(answer.size()));
  return SendAll(fd, response.Serialize() + (request.method == "HEAD" ? "" : answer));
}

// ---- forwarding -----------------------------------------------------------------

bool FaultProxy::AnswerLocally(int fd, SocketReader& client, const RequestHead& request, int status,
                               HeaderList headers, const std::string& body, Outcome* outcome) {
  BodyFraming framing = RequestBodyFraming(request);
  bool keep_open = true;
  if (framing.kind != BodyFraming::Kind::kNone) {
    if (request.headers.HasToken("Expect", "100-continue")) {
      // The client has not sent the body and may never; do not wait for it.
      keep_open = false;
    } else {
      BodyReader drain(&client, framing);
      char buf[16 * 1024];
      ssize_t n;
      while ((n = drain.Read(buf, sizeof(buf))) > 0) outcome->body_received += n;
      if (n < 0) return false;
    }
  }
  ResponseHead response;
  response.status = status;
  response.headers = std::move(headers);
  if (!body.empty()) response.headers.Add("Content-Type", "application/json");
  response.headers.Add("Content-Length", std::to_string(body.size()));
  if (!keep_open) response.headers.Add("Connection", "close");
  std::string out = response.Serialize();
  if (request.method != "HEAD") {
    out += body;
    outcome->body_sent = body.size();
  }
  outcome->status = status;
  return SendAll(fd, out) && keep_open;
}

bool FaultProxy::RelayBody(int fd, BodyReader& body, bool chunked, const BodyFraming& framing,
                           const FaultPlan& plan, Outcome* outcome) {
  bool length_known = framing.kind == BodyFraming::Kind::kLength;
  uint64_t half = length_known ? framing.length / 2 : 0;
  int64_t truncate_at = plan.truncate_bytes;
  int64_t stall_at = -1;
  if (plan.stall_ms != 0) {
    stall_at = plan.stall_after_bytes >= 0 ? plan.stall_after_bytes : static_cast<int64_t>(half);
  }
  int64_t corrupt_at = -1;
  if (plan.corrupt) {
    corrupt_at = plan.corrupt_at >= 0 ? plan.corrupt_at : static_cast<int64_t>(half);
  }
  size_t piece = plan.rate ? plan.rate->piece_bytes() : 64 * 1024;

  std::vector<char> buf(piece);
  auto sent = [&] { return static_cast<int64_t>(outcome->body_sent); };
  for (;;) {
    ssize_t n = body.Read(buf.data(), buf.size());
    if (n < 0) {
      outcome->note = "upstream body broke off";
      return false;
    }
    if (n == 0) break;
    if (corrupt_at >= sent() && corrupt_at < sent() + n) {
      buf[static_cast<size_t>(corrupt_at - sent())] ^= 0x5a;
      outcome->note = "corrupted byte " + std::to_string(corrupt_at);
    }
    std::string_view data(buf.data(), static_cast<size_t>(n));
    while (!data.empty()) {
      if (truncate_at >= 0 && sent() >= truncate_at) {
        outcome->note = "truncated after " + std::to_string(sent()) + " body bytes";
        return false;
      }
      if (stall_at >= 0 && sent() >= stall_at) {
        if (plan.stall_ms == FaultPlan::kForever) {
          log_->Write("stalling forever after " + std::to_string(sent()) + " body bytes");
          WaitForClientToLeave(fd);
          outcome->note = "stalled forever after " + std::to_string(sent()) + " body bytes";
          return false;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(plan.stall_ms));
        stall_at = -1;
      }
      size_t take = data.size();
      if (truncate_at >= 0) {
        take = std::min<size_t>(take, static_cast<size_t>(truncate_at - sent()));
      }
      if (stall_at >= 0) take = std::min<size_t>(take, static_cast<size_t>(stall_at - sent()));
      if (take == 0) continue;
      if (plan.rate) plan.rate->Acquire(take);
      std::string_view part = data.substr(0, take);
      if (!(chunked ? SendAll(fd, EncodeChunk(part)) : SendAll(fd, part))) {
        outcome->note = "client went away";
        return false;
      }
      outcome->body_sent += take;
      data.remove_prefix(take);
    }
  }
  if (chunked && truncate_at >= 0 && sent() >= truncate_at) {
    // Cut exactly at the end of a chunked body: withhold the last chunk all the same.
    outcome->note = "truncated after " + std::to_string(sent()) + " body bytes";
    return false;
  }
  if (chunked && !SendAll(fd, EncodeChunk(""))) return false;
  return true;
}

bool FaultProxy::HandleRequest(int fd, SocketReader& client, UpstreamConnection& upstream,
                               RequestHead& request, Listener listener, uint64_t connection_id) {
  const std::string path = request.Path();
  const std::string target_seen = request.target;
  const std::string client_host = request.headers.Get("Host").value_or(
      listener == Listener::kFront ? config_.front.ToString() : config_.backend.ToString());
  FaultPlan plan = CurrentRules()->Match(request.method, path);
  if (listener == Listener::kBackend) plan.redirect = false;
  stats_.Begin(request.method, path);
  Outcome outcome;
  bool keep_open = true;

  auto finish = [&](bool keep) {
    stats_.Finish(path, outcome.status, outcome.body_sent, outcome.body_received, plan);
    std::string line = "c" + std::to_string(connection_id) + " " + ListenerName(listener) + " " +
                       request.method + " " + target_seen + " -> " +
                       (outcome.status ? std::to_string(outcome.status) : "none") +
                       " body=" + std::to_string(outcome.body_sent) + " fault=" + plan.Describe();
    if (!outcome.note.empty()) line += " (" + outcome.note + ")";
    log_->Write(line);
    return keep;
  };

  if (listener == Listener::kBackend) {
    // /storage/<ticket>/<digest>
    static const std::regex kStoragePath("/storage/([0-9a-f]+)/[^/]+");
    std::smatch m;
    std::optional<Ticket> ticket;
    if (std::regex_match(path, m, kStoragePath)) ticket = FindTicket(m[1].str());
    if (!ticket) {
      keep_open = AnswerLocally(fd, client, request, 404, {},
                                ErrorBody(404, "no such storage object"), &outcome);
      return finish(keep_open);
    }
    request.target = ticket->upstream_target;
    if (ticket->authorization) request.headers.Set("Authorization", *ticket->authorization);
  }

  if (plan.delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(plan.delay_ms));
  if (plan.reset) {
    SetResetOnClose(fd);
    outcome.note = "connection reset";
    return finish(false);
  }
  if (plan.status != 0) {
    HeaderList headers;
    if (plan.retry_after_s >= 0) headers.Add("Retry-After", std::to_string(plan.retry_after_s));
    keep_open =
        AnswerLocally(fd, client, request, plan.status, std::move(headers),
                      ErrorBody(plan.status, "injected by strata-test-fault-proxy"), &outcome);
    return finish(keep_open);
  }
  if (plan.redirect) {
    static const std::regex kBlobPath("/v2/.+/blobs/([A-Za-z0-9_+.-]+:[A-Za-z0-9=_-]+)");
    std::smatch m;
    if ((request.method == "GET" || request.method == "HEAD") &&
        std::regex_match(path, m, kBlobPath)) {
      std::string id = NewTicket({request.target, request.headers.Get("Authorization")});
      HeaderList headers;
      headers.Add("Location",
                  "http://" + config_.backend.ToString() + "/storage/" + id + "/" + m[1].str());
      keep_open = AnswerLocally(fd, client, request, 307, std::move(headers), "", &outcome);
      return finish(keep_open);
    }
    outcome.note = "redirect applies to blob GET/HEAD only";
  }
  if (plan.ignore_range) {
    request.headers.Remove("Range");
    request.headers.Remove("If-Range");
  }

  // Forward the request head, retrying once on a fresh connection when a reused one
  // turns out to be dead (only while no body has been sent).
  const BodyFraming request_framing = RequestBodyFraming(request);
  const bool has_body = request_framing.kind != BodyFraming::Kind::kNone;
  const bool expects_continue = request.headers.HasToken("Expect", "100-continue");
  RemoveHopByHop(request.headers);
  if (!config_.keep_host) request.headers.Set("Host", config_.upstream.ToString());
  const std::string head = request.Serialize();

  ResponseHead response;
  for (int attempt = 0;; ++attempt) {
    std::string error;
    if (!upstream.Ensure(config_.upstream, &error)) {
      outcome.note = error;
      keep_open = AnswerLocally(fd, client, request, 502, {}, ErrorBody(502, error), &outcome);
      return finish(keep_open);
    }
    bool reused = upstream.reused;
    if (!SendAll(upstream.fd, head)) {
      upstream.Close();
      if (reused && attempt == 0) continue;
      outcome.note = "cannot send to upstream";
      keep_open =
          AnswerLocally(fd, client, request, 502, {}, ErrorBody(502, outcome.note), &outcome);
      return finish(keep_open);
    }
    if (has_body) {
      if (expects_continue && !SendAll(fd, "HTTP/1.1 100 Continue\r\n\r\n")) return finish(false);
      BodyReader body(&client, request_framing);
      bool chunked = request_framing.kind == BodyFraming::Kind::kChunked;
      char buf[64 * 1024];
      for (;;) {
        ssize_t n = body.Read(buf, sizeof(buf));
        if (n < 0) {
          outcome.note = "client request body broke off";
          upstream.Close();
          return finish(false);
        }
        bool ok = n == 0 ? (!chunked || SendAll(upstream.fd, EncodeChunk("")))
                         : SendAll(upstream.fd, chunked ? EncodeChunk({buf, size_t(n)})
                                                        : std::string_view(buf, size_t(n)));
        if (!ok) {
          outcome.note = "upstream went away during the request body";
          upstream.Close();
          return finish(false);
        }
        if (n == 0) break;
        outcome.body_received += static_cast<uint64_t>(n);
      }
    }
    bool got_head;
    do {
      got_head = ReadResponseHead(*upstream.reader, &response);
      // Interim answers (100 Continue, 103) are for us, not the client: we sent the body.
    } while (got_head && response.status >= 100 && response.status < 200);
    if (got_head) break;
    upstream.Close();
    if (reused && attempt == 0 && !has_body) continue;
    outcome.note = "no response from upstream";
    if (has_body) return finish(false);
    keep_open = AnswerLocally(fd, client, request, 502, {}, ErrorBody(502, outcome.note), &outcome);
    return finish(keep_open);
  }

  // Relay the response.
  outcome.status = response.status;
  const BodyFraming response_framing = ResponseBodyFraming(request.method, response);
  const bool upstream_closes = response.headers.HasToken("Connection", "close") ||
                               response.version == "HTTP/1.0" ||
                               response_framing.kind == BodyFraming::Kind::kUntilClose;
  RemoveHopByHop(response.headers);
  if (auto location = response.headers.Get("Location")) {
    const std::string upstream_prefix = "http://" + config_.upstream.ToString();
    if (location->rfind(upstream_prefix, 0) == 0 && (location->size() == upstream_prefix.size() ||
                                                     (*location)[upstream_prefix.size()] == '/')) {
      response.headers.Set("Location",
                           "http://" + client_host + location->substr(upstream_prefix.size()));
    }
  }
  const bool client_closes = response_framing.kind == BodyFraming::Kind::kUntilClose;
  if (client_closes) response.headers.Add("Connection", "close");
  if (!SendAll(fd, response.Serialize())) {
    upstream.Close();
    outcome.note = "client went away";
    return finish(false);
  }
  BodyReader body(upstream.reader.get(), response_framing);
  bool body_ok = RelayBody(fd, body, response_framing.kind == BodyFraming::Kind::kChunked,
                           response_framing, plan, &outcome);
  if (!body_ok || upstream_closes || !body.finished()) upstream.Close();
  return finish(body_ok && !client_closes);
}

void FaultProxy::Serve(int fd, Listener listener) {
  uint64_t connection_id = next_connection_id_++;
  SocketReader client(fd);
  UpstreamConnection upstream;
  for (;;) {
    RequestHead request;
    if (!ReadRequestHead(client, &request)) return;
    bool client_closes =
        request.headers.HasToken("Connection", "close") || request.version == "HTTP/1.0";
    bool keep_open;
    if (listener == Listener::kFront && request.Path().rfind("/__fault/", 0) == 0) {
      keep_open = HandleAdmin(fd, client, request);
    } else {
      keep_open = HandleRequest(fd, client, upstream, request, listener, connection_id);
    }
    if (!keep_open || client_closes) return;
  }
}

int Main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  CLI::App app{"strata-test-fault-proxy: fault-injecting HTTP/1.1 reverse proxy for tests"};
  std::string listen = "127.0.0.1:0", backend_listen = "127.0.0.1:0", upstream, log_path;
  std::vector<std::string> rule_flags;
  Config config;
  app.add_option("--upstream", upstream, "registry address HOST:PORT")->required();
  app.add_option("--listen", listen, "proxy address; port 0 picks one (default 127.0.0.1:0)");
  app.add_option("--backend-listen", backend_listen,
                 "address of the redirect target listener (default 127.0.0.1:0)");
  app.add_option("--rule", rule_flags, "a fault rule (see fault_rules.h), repeatable");
  app.add_option("--rules-file", config.rules_file,
                 "rules text, re-read whenever its content changes; replaces the active rules");
  app.add_option("--seed", config.seed, "seed for prob= rules (default 1)");
  app.add_flag("--keep-host", config.keep_host,
               "forward the client's Host header instead of the upstream address");
  app.add_option("--log", log_path, "append one line per request to this file (default stderr)");
  CLI11_PARSE(app, argc, argv);

  std::optional<HostPort> front = ParseHostPort(listen), backend = ParseHostPort(backend_listen),
                          up = ParseHostPort(upstream);
  if (!front || !backend || !up) {
    std::fprintf(stderr, "strata-test-fault-proxy: addresses must be IPv4 HOST:PORT\n");
    return 2;
  }
  config.upstream = *up;
  std::string rules_text;
  for (const std::string& rule : rule_flags) rules_text += rule + "\n";
  std::string error;
  std::shared_ptr<FaultRuleSet> rules = FaultRuleSet::Parse(rules_text, config.seed, &error);
  if (!rules) {
    std::fprintf(stderr, "strata-test-fault-proxy: %s\n", error.c_str());
    return 2;
  }
  LineLog log;
  if (!log.Open(log_path, &error)) {
    std::fprintf(stderr, "strata-test-fault-proxy: %s\n", error.c_str());
    return 1;
  }
  int front_fd = ListenTcp(*front, &config.front, &error);
  int backend_fd = front_fd < 0 ? -1 : ListenTcp(*backend, &config.backend, &error);
  if (front_fd < 0 || backend_fd < 0) {
    std::fprintf(stderr, "strata-test-fault-proxy: %s\n", error.c_str());
    return 1;
  }
  log.Write("proxy " + config.front.ToString() + " -> " + config.upstream.ToString() +
            ", backend " + config.backend.ToString() + ", " + std::to_string(rules->size()) +
            " rule(s)");
  std::printf("listening %s\nbackend %s\n", config.front.ToString().c_str(),
              config.backend.ToString().c_str());
  std::fflush(stdout);

  FaultProxy proxy(config, rules, &log);
  std::thread backend_thread(
      [&] { AcceptLoop(backend_fd, [&proxy](int fd) { proxy.Serve(fd, Listener::kBackend); }); });
  AcceptLoop(front_fd, [&proxy](int fd) { proxy.Serve(fd, Listener::kFront); });
  std::fprintf(stderr, "strata-test-fault-proxy: accept failed; exiting\n");
  std::_Exit(1);
}

}  // namespace
}  // namespace strata::testtools

int main(int argc, char** argv) { return strata::testtools::Main(argc, argv); }
