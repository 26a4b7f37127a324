#include "registry/client.h"

#include <strings.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "core/digest.h"
#include "core/quote.h"

namespace strata::registry {
namespace {

constexpr uint64_t kMaxManifestBytes = 4 << 20;

std::string Scope(const Reference& ref, bool push) {
  return "repository:" + ref.repository + (push ? ":pull,push" : ":pull");
}

std::string ObjectUrl(const RegistryEndpoint& ep, const Reference& ref, const std::string& kind,
                      const std::string& object) {
  return ep.BaseUrl() + "/" + ref.repository + "/" + kind + "/" + object;
}

TlsOptions TlsFor(const RegistryEndpoint& ep) {
  TlsOptions tls;
  tls.ca_files = ep.ca_files;
  tls.client_certs = ep.client_certs;
  tls.skip_verify = ep.skip_verify;
  return tls;
}

std::string StatusText(long status) {
  switch (status) {
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 416:
      return "Range Not Satisfiable";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "";
  }
}

bool Retryable(long status) {
  return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 ||
         status == 504;
}

// The registry's own explanation from an error body ({"errors":[{"code","message"}]}).
std::string RegistryErrorDetail(const std::string& body) {
  nlohmann::json doc = nlohmann::json::parse(body, nullptr, false);
  if (!doc.is_object() || !doc.contains("errors") || !doc["errors"].is_array()) return "";
  std::string out;
  for (const auto& e : doc["errors"]) {
    if (!e.is_object()) continue;
    std::string code = e.value("code", "");
    std::string message = e.value("message", "");
    if (!out.empty()) out += "; ";
    out += code;
    if (!message.empty()) out += (code.empty() ? "" : ": ") + message;
  }
  return out;
}

// Turns a final non-success HTTP answer into a Status naming everything a user needs.
Status HttpFailure(const std::string& what, const Reference& ref, const HttpRequest& req,
                   const HttpResponse& resp, int attempts) {
  Code code = Code::kUnknown;
  switch (resp.status) {
    case 401:
      code = Code::kUnauthenticated;
      break;
    case 403:
      code = Code::kPermissionDenied;
      break;
    case 404:
      code = Code::kNotFound;
      break;
    case 400:
    case 405:
    case 416:
      code = Code::kFailedPrecondition;
      break;
    default:
      code = Retryable(resp.status) ? Code::kUnavailable : Code::kUnknown;
  }
  std::string msg =
      what + ": " + req.method + " " + req.url + ": HTTP " + std::to_string(resp.status);
  std::string text = StatusText(resp.status);
  if (!text.empty()) msg += " " + text;
  std::string detail = RegistryErrorDetail(resp.body);
  if (!detail.empty()) msg += " (" + detail + ")";
  msg += " [registry " + ref.domain + ", repository " + ref.repository + "]";
  if (attempts > 1) msg += " after " + std::to_string(attempts) + " attempts";
  return Status(code, msg);
}

// Retry-After: delta seconds or an HTTP-date. Returns -1 when absent or unparsable.
int64_t RetryAfterMs(const Headers& headers) {
  std::string v = HeaderValue(headers, "Retry-After");
  if (v.empty()) return -1;
  if (v.find_first_not_of("0123456789") == std::string::npos && v.size() < 10) {
    return std::stoll(v) * 1000;
  }
  tm t{};
  if (strptime(v.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &t) != nullptr) {
    int64_t when = static_cast<int64_t>(timegm(&t));
    int64_t now = static_cast<int64_t>(std::time(nullptr));
    return std::max<int64_t>(0, when - now) * 1000;
  }
  return -1;
}

std::string ContentTypeBase(const Headers& headers) {
  std::string ct = HeaderValue(headers, "Content-Type");
  size_t semi = ct.find(';');
  if (semi != std::string::npos) ct = ct.substr(0, semi);
  while (!ct.empty() && ct.back() == ' ') ct.pop_back();
  return ct;
}

// Parses "bytes START-END/TOTAL" (TOTAL may be "*").
bool ParseContentRange(const std::string& value, uint64_t* start, uint64_t* end) {
  unsigned long long s = 0, e = 0;
  if (std::sscanf(value.c_str(), "bytes %llu-%llu", &s, &e) != 2 || e < s) return false;
  *start = s;
  *end = e;
  return true;
}

// A piece of a blob returned by a range request.
struct Segment {
  uint64_t start = 0;
  std::string data;
};

// Splits a multipart/byteranges body into its parts. False if it is malformed.
bool ParseMultipart(const std::string& body, const std::string& boundary,
                    std::vector<Segment>* out) {
  const std::string delim = "--" + boundary;
  size_t pos = body.find(delim);
  while (pos != std::string::npos) {
    pos += delim.size();
    if (body.compare(pos, 2, "--") == 0) return true;  // closing delimiter
    size_t headers_end = body.find("\r\n\r\n", pos);
    if (headers_end == std::string::npos) return false;
    std::string part_headers = body.substr(pos, headers_end - pos);
    uint64_t start = 0, end = 0;
    bool found = false;
    for (size_t b = 0; b < part_headers.size();) {
      size_t e = part_headers.find("\r\n", b);
      if (e == std::string::npos) e = part_headers.size();
      std::string line = part_headers.substr(b, e - b);
      size_t colon = line.find(':');
      if (colon != std::string::npos && strncasecmp(line.c_str(), "content-range", colon) == 0 &&
          colon == strlen("content-range")) {
        std::string v = line.substr(colon + 1);
        v.erase(0, v.find_first_not_of(' '));
        found = ParseContentRange(v, &start, &end);
      }
      b = e + 2;
    }
    if (!found) return false;
    size_t data_start = headers_end + 4;
    uint64_t len = end - start + 1;
    if (data_start + len > body.size()) return false;
    out->push_back({start, body.substr(data_start, len)});
    pos = body.find(delim, data_start + len);
  }
  return false;  // no closing delimiter
}

}  // namespace

// One logical request against one endpoint, with auth and retries.
class Client::Call {
 public:
  Call(Client* client, const RegistryEndpoint& ep, const Reference& ref, std::string scope)
      : client_(client), ep_(ep), ref_(ref), scope_(std::move(scope)) {}

  // Runs `req` until it gets an answer that is not retryable, or attempts run out
  // (the last answer is then returned for the caller to turn into an error). Transport
  // errors that persist are returned as errors naming the registry. `before_attempt`
  // may adjust the request before each try (e.g. a Range to resume).
  Result<HttpResponse> Run(HttpRequest req, const BodySink& sink = nullptr,
                           const std::function<void(HttpRequest&)>& before_attempt = nullptr) {
    req.tls = TlsFor(ep_);
    for (const auto& [name, values] : ep_.headers) {
      for (const auto& v : values) req.headers.emplace(name, v);
    }
    const ClientOptions& o = client_->options_;
    bool reauthenticated = false;
    for (attempts_ = 1;; attempts_++) {
      if (before_attempt) before_attempt(req);
      req.headers.erase("Authorization");
      std::string authorization = client_->auth_->HeaderFor(ep_.host, scope_);
      if (!authorization.empty()) req.headers.emplace("Authorization", authorization);
      client_->stats_.requests++;
      Result<HttpResponse> resp = client_->http_->Do(req, sink);

      int64_t wait_ms = -1;
      if (!resp.ok()) {
        Code code = resp.status().code();
        if (code != Code::kUnavailable && code != Code::kDeadlineExceeded) return resp.status();
        if (attempts_ >= o.max_attempts) {
          return Status(code, resp.status().message() + " [registry " + ref_.domain +
                                  ", repository " + ref_.repository + "] after " +
                                  std::to_string(attempts_) + " attempts");
        }
      } else if (resp->status == 401 && !reauthenticated) {
        reauthenticated = true;
        RETURN_IF_ERROR(client_->auth_->OnUnauthorized(
            ep_.host, scope_, HeaderValue(resp->headers, "WWW-Authenticate"), req.tls));
        attempts_--;  // the challenge round trip is not a failed attempt
        continue;
      } else if (Retryable(resp->status) && attempts_ < o.max_attempts) {
        wait_ms = RetryAfterMs(resp->headers);
        if (wait_ms >= 0) wait_ms = std::min<int64_t>(wait_ms, o.max_retry_after.count());
      } else {
        return resp;
      }
      if (wait_ms < 0) wait_ms = Backoff();
      client_->stats_.retries++;
      std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
    }
  }

  int attempts() const { return attempts_; }

 private:
  // Exponential backoff with full jitter: uniform in [0, min(max, initial * 2^n)].
  int64_t Backoff() {
    const ClientOptions& o = client_->options_;
    int64_t cap = o.initial_backoff.count();
    for (int i = 1; i < attempts_ && cap < o.max_backoff.count(); i++) cap *= 2;
    cap = std::min<int64_t>(cap, o.max_backoff.count());
    thread_local std::mt19937_64 rng{std::random_device{}()};
    return std::uniform_int_distribution<int64_t>(cap / 4, std::max<int64_t>(cap / 4, cap))(rng);
  }

  Client* client_;
  const RegistryEndpoint& ep_;
  const Reference& ref_;
  std::string scope_;
  int attempts_ = 0;
};

Client::Client(ClientOptions options) : options_(std::move(options)) {}
Client::~Client() = default;

Result<std::unique_ptr<Client>> Client::Create(ClientOptions options) {
  if (options.docker_config.empty()) options.docker_config = DefaultDockerConfigPath();
  if (options.max_attempts < 1) options.max_attempts = 1;
  std::unique_ptr<Client> client(new Client(std::move(options)));
  client->http_ = std::make_unique<HttpClient>(client->options_.user_agent);
  std::string config = client->options_.docker_config;
  client->auth_ = std::make_unique<Authorizer>(
      client->http_.get(),
      [config](const std::string& host) { return LookupCredentials(host, config); });
  return client;
}

Result<std::vector<RegistryEndpoint>> Client::EndpointsFor(const Reference& ref,
                                                           unsigned capability) {
  ASSIGN_OR_RETURN(std::vector<RegistryEndpoint> all,
                   ResolveEndpoints(ref.domain, options_.hosts_dir));
  std::vector<RegistryEndpoint> out;
  for (auto& ep : all) {
    if (ep.capabilities & capability) out.push_back(std::move(ep));
  }
  if (out.empty()) {
    return Status::FailedPrecondition("no endpoint of registry " + ref.domain +
                                      " has the capability to " +
                                      (capability == kCapabilityPush      ? "push"
                                       : capability == kCapabilityResolve ? "resolve"
                                                                          : "pull") +
                                      " (check hosts.toml)");
  }
  return out;
}

Result<Descriptor> Client::Resolve(const Reference& ref) {
  ASSIGN_OR_RETURN(auto endpoints, EndpointsFor(ref, kCapabilityResolve));
  Status last;
  for (const auto& ep : endpoints) {
    Call call(this, ep, ref, Scope(ref, false));
    HttpRequest req;
    req.method = "HEAD";
    req.url = ObjectUrl(ep, ref, "manifests", ref.Object());
    req.headers.emplace("Accept", ManifestAcceptHeader());
    req.total_timeout = options_.request_timeout;
    Result<HttpResponse> resp = call.Run(req);
    if (resp.ok() && resp->status == 200) {
      Descriptor d;
      d.media_type = ContentTypeBase(resp->headers);
      d.digest = HeaderValue(resp->headers, "Docker-Content-Digest");
      std::string length = HeaderValue(resp->headers, "Content-Length");
      d.size = length.empty() ? 0 : std::strtoll(length.c_str(), nullptr, 10);
      if (!ref.digest.empty()) d.digest = ref.digest;
      if (!d.digest.empty() && ValidateDigest(d.digest).ok() && d.size > 0 &&
          (IsIndexMediaType(d.media_type) || IsManifestMediaType(d.media_type))) {
        return d;
      }
    }
    if (resp.ok() && resp->status != 200 && resp->status != 405 && resp->status != 400) {
      last = HttpFailure("resolve " + ref.String(), ref, req, *resp, call.attempts());
      continue;
    }
    if (!resp.ok()) {
      last = resp.status().WithContext("resolve " + ref.String());
      continue;
    }
    // HEAD was not enough (no digest header, or HEAD not allowed): GET the document.
    req.method = "GET";
    Call get(this, ep, ref, Scope(ref, false));
    Result<HttpResponse> full = get.Run(req);
    if (!full.ok()) {
      last = full.status().WithContext("resolve " + ref.String());
      continue;
    }
    if (full->status != 200) {
      last = HttpFailure("resolve " + ref.String(), ref, req, *full, get.attempts());
      continue;
    }
    if (full->body.size() > kMaxManifestBytes) {
      return Status(Code::kResourceExhausted,
                    "resolve " + ref.String() + ": manifest larger than 4 MiB");
    }
    Descriptor d;
    d.digest = Sha256Digest(full->body);
    if (!ref.digest.empty() && d.digest != ref.digest) {
      return Status::DataLoss("resolve " + ref.String() + ": registry " + ep.host +
                              " returned a manifest with digest " + d.digest);
    }
    d.size = static_cast<int64_t>(full->body.size());
    d.media_type = ContentTypeBase(full->headers);
    if (!IsIndexMediaType(d.media_type) && !IsManifestMediaType(d.media_type)) {
      ASSIGN_OR_RETURN(d.media_type, DetectMediaType(full->body));
    }
    return d;
  }
  return last;
}

Result<std::string> Client::FetchManifest(const Reference& ref, const Descriptor& desc) {
  if (desc.size > static_cast<int64_t>(kMaxManifestBytes)) {
    return Status(Code::kResourceExhausted,
                  "manifest " + desc.digest + " of " + ref.Name() + " is larger than 4 MiB");
  }
  ASSIGN_OR_RETURN(auto endpoints, EndpointsFor(ref, kCapabilityPull));
  Status last;
  for (const auto& ep : endpoints) {
    Call call(this, ep, ref, Scope(ref, false));
    HttpRequest req;
    req.url = ObjectUrl(ep, ref, "manifests", desc.digest);
    req.headers.emplace("Accept", ManifestAcceptHeader());
    req.total_timeout = options_.request_timeout;
    Result<HttpResponse> resp = call.Run(req);
    if (!resp.ok()) {
      last = resp.status().WithContext("fetch manifest " + desc.digest);
      continue;
    }
    if (resp->status != 200) {
      last = HttpFailure("fetch manifest " + desc.digest, ref, req, *resp, call.attempts());
      continue;
    }
    std::string got = Sha256Digest(resp->body);
    if (got != desc.digest ||
        (desc.size > 0 && resp->body.size() != static_cast<uint64_t>(desc.size))) {
      last = Status::DataLoss("manifest " + desc.digest + " from " + ep.host + "/" +
                              ref.repository + " does not match its digest (got " + got + ", " +
                              std::to_string(resp->body.size()) + " bytes)");
      continue;
    }
    return std::move(resp->body);
  }
  return last;
}

Status Client::FetchBlob(const Reference& ref, const Descriptor& desc, uint64_t offset,
                         const BlobSink& sink) {
  ASSIGN_OR_RETURN(auto endpoints, EndpointsFor(ref, kCapabilityPull));
  const std::string what = "fetch blob " + desc.digest;
  uint64_t position = offset;  // next byte the sink expects
  Status last;
  for (const auto& ep : endpoints) {
    // Restarts within one endpoint when a 2xx body ends early without a transport
    // error (a proxy closing a chunked body): bounded like transport retries.
    for (int restart = 0; restart < options_.max_attempts; restart++) {
      Call call(this, ep, ref, Scope(ref, false));
      HttpRequest req;
      req.url = ObjectUrl(ep, ref, "blobs", desc.digest);
      req.stall_timeout = options_.stall_timeout;
      uint64_t skip = 0;        // bytes of a 200 answer to drop (server ignored Range)
      bool first_piece = true;  // per attempt
      Status sink_error;
      bool first_attempt = true;
      auto before = [&](HttpRequest& r) {
        r.headers.erase("Range");
        if (position > 0) r.headers.emplace("Range", "bytes=" + std::to_string(position) + "-");
        if (!first_attempt && position > offset) stats_.resumed_downloads++;
        first_attempt = false;
        first_piece = true;
        skip = 0;
      };
      auto body = [&](const HttpResponse& head, const char* data, size_t n) -> Status {
        if (first_piece) {
          first_piece = false;
          if (head.status == 206) {
            uint64_t start = 0, end = 0;
            if (!ParseContentRange(HeaderValue(head.headers, "Content-Range"), &start, &end) ||
                start != position) {
              sink_error = Status::DataLoss(what +
                                            ": registry sent a range starting elsewhere "
                                            "than requested (" +
                                            std::to_string(position) + ")");
              return Status(Code::kCancelled, "sink");
            }
          } else {
            skip = position;  // a full body: drop what the sink already has
          }
        }
        if (skip > 0) {
          size_t drop = static_cast<size_t>(std::min<uint64_t>(skip, n));
          skip -= drop;
          data += drop;
          n -= drop;
          if (n == 0) return Status::Ok();
        }
        Status s = sink(data, n);
        if (!s.ok()) {
          sink_error = s;
          return Status(Code::kCancelled, "sink");
        }
        position += n;
        stats_.blob_bytes += n;
        return Status::Ok();
      };
      Result<HttpResponse> resp = call.Run(req, body, before);
      if (!sink_error.ok()) return sink_error;
      if (!resp.ok()) {
        last = resp.status().WithContext(what);
        break;  // retries exhausted on this endpoint
      }
      if (resp->status == 416 && desc.size > 0 && position == static_cast<uint64_t>(desc.size)) {
        return Status::Ok();  // nothing left to fetch
      }
      if (resp->status != 200 && resp->status != 206) {
        last = HttpFailure(what, ref, req, *resp, call.attempts());
        break;
      }
      if (desc.size <= 0 || position >= static_cast<uint64_t>(desc.size)) {
        if (desc.size > 0 && position > static_cast<uint64_t>(desc.size)) {
          return Status::DataLoss(what + ": registry sent more than the descriptor's " +
                                  std::to_string(desc.size) + " bytes");
        }
        return Status::Ok();
      }
      last =
          Status::Unavailable(what + ": body ended at byte " + std::to_string(position) + " of " +
                              std::to_string(desc.size) + " [registry " + ep.host + "]");
      stats_.retries++;
    }
  }
  return last;
}

Result<std::string> Client::FetchBlobBytes(const Reference& ref, const Descriptor& desc,
                                           uint64_t max_size) {
  if (desc.size > 0 && static_cast<uint64_t>(desc.size) > max_size) {
    return Status(Code::kResourceExhausted,
                  "blob " + desc.digest + " is " + std::to_string(desc.size) +
                      " bytes, over the limit of " + std::to_string(max_size));
  }
  std::string out;
  RETURN_IF_ERROR(FetchBlob(ref, desc, 0, [&](const char* data, size_t n) {
    if (out.size() + n > max_size) {
      return Status(Code::kResourceExhausted,
                    "blob " + desc.digest + " exceeds the limit of " + std::to_string(max_size));
    }
    out.append(data, n);
    return Status::Ok();
  }));
  std::string got = Sha256Digest(out);
  if (got != desc.digest) {
    return Status::DataLoss("blob " + desc.digest + " of " + ref.Name() +
                            " does not match its digest (got " + got + ")");
  }
  return out;
}

Result<std::string> Client::ReadRange(const Reference& ref, const std::string& digest,
                                      ByteRange range) {
  if (range.length == 0) return std::string();
  ASSIGN_OR_RETURN(auto endpoints, EndpointsFor(ref, kCapabilityPull));
  const std::string what = "read blob " + digest + " range " + std::to_string(range.offset) + "+" +
                           std::to_string(range.length);
  Status last;
  for (const auto& ep : endpoints) {
    Call call(this, ep, ref, Scope(ref, false));
    HttpRequest req;
    req.url = ObjectUrl(ep, ref, "blobs", digest);
    req.stall_timeout = options_.stall_timeout;
    req.headers.emplace("Range", "bytes=" + std::to_string(range.offset) + "-" +
                                     std::to_string(range.offset + range.length - 1));
    std::string out;
    uint64_t position = 0;  // offset in the blob of the next byte received
    bool first_piece = true;
    bool done = false;
    Status bad;
    auto before = [&](HttpRequest&) {
      out.clear();
      first_piece = true;
      done = false;
    };
    auto body = [&](const HttpResponse& head, const char* data, size_t n) -> Status {
      if (first_piece) {
        first_piece = false;
        position = 0;
        if (head.status == 206) {
          uint64_t start = 0, end = 0;
          if (!ParseContentRange(HeaderValue(head.headers, "Content-Range"), &start, &end) ||
              start > range.offset) {
            bad = Status::DataLoss(what + ": registry answered a different range");
            return Status(Code::kCancelled, "range");
          }
          position = start;
        }
      }
      uint64_t end = range.offset + range.length;
      uint64_t piece_end = position + n;
      if (piece_end > range.offset && position < end) {
        uint64_t from = std::max(position, range.offset);
        uint64_t to = std::min(piece_end, end);
        out.append(data + (from - position), to - from);
      }
      position = piece_end;
      stats_.blob_bytes += n;
      if (position >= end) {
        done = true;  // a server that ignored the Range: stop reading the rest
        return Status(Code::kCancelled, "done");
      }
      return Status::Ok();
    };
    Result<HttpResponse> resp = call.Run(req, body, before);
    if (!bad.ok()) return bad;
    if (done || (resp.ok() && (resp->status == 206 || resp->status == 200))) return out;
    if (!resp.ok()) {
      last = resp.status().WithContext(what);
      continue;
    }
    if (resp->status == 416) return std::string();  // entirely past the end
    last = HttpFailure(what, ref, req, *resp, call.attempts());
  }
  return last;
}

Result<std::vector<std::string>> Client::ReadRanges(const Reference& ref, const std::string& digest,
                                                    const std::vector<ByteRange>& ranges) {
  std::vector<std::string> out(ranges.size());
  std::vector<size_t> todo;  // indexes not yet served
  for (size_t i = 0; i < ranges.size(); i++) {
    if (ranges[i].length > 0) todo.push_back(i);
  }
  bool multirange = todo.size() > 1;
  if (multirange) {
    std::lock_guard<std::mutex> lock(no_multirange_mu_);
    multirange = std::find(no_multirange_hosts_.begin(), no_multirange_hosts_.end(), ref.domain) ==
                 no_multirange_hosts_.end();
  }
  if (multirange) {
    ASSIGN_OR_RETURN(auto endpoints, EndpointsFor(ref, kCapabilityPull));
    const RegistryEndpoint& ep = endpoints.front();
    std::vector<size_t> remaining;
    for (size_t b = 0; b < todo.size(); b += options_.max_ranges_per_request) {
      std::vector<size_t> batch(
          todo.begin() + static_cast<ptrdiff_t>(b),
          todo.begin() +
              static_cast<ptrdiff_t>(std::min(todo.size(), b + options_.max_ranges_per_request)));
      std::string header = "bytes=";
      uint64_t max_end = 0;
      for (size_t k = 0; k < batch.size(); k++) {
        const ByteRange& r = ranges[batch[k]];
        if (k > 0) header += ",";
        header += std::to_string(r.offset) + "-" + std::to_string(r.offset + r.length - 1);
        max_end = std::max(max_end, r.offset + r.length);
      }
      Call call(this, ep, ref, Scope(ref, false));
      HttpRequest req;
      req.url = ObjectUrl(ep, ref, "blobs", digest);
      req.stall_timeout = options_.stall_timeout;
      req.headers.emplace("Range", header);
      std::string body;
      bool full_body = false;
      auto before = [&](HttpRequest&) { body.clear(); };
      auto sink = [&](const HttpResponse& head, const char* data, size_t n) -> Status {
        full_body = head.status == 200;
        body.append(data, n);
        stats_.blob_bytes += n;
        if (full_body && body.size() >= max_end) return Status(Code::kCancelled, "done");
        return Status::Ok();
      };
      Result<HttpResponse> resp = call.Run(req, sink, before);
      std::vector<Segment> segments;
      bool is_multipart = false;
      if (full_body) {
        segments.push_back({0, std::move(body)});
      } else if (resp.ok() && resp->status == 206) {
        std::string ct = HeaderValue(resp->headers, "Content-Type");
        size_t bpos = ct.find("boundary=");
        if (ct.rfind("multipart/byteranges", 0) == 0 && bpos != std::string::npos) {
          std::string boundary = ct.substr(bpos + 9);
          if (!boundary.empty() && boundary.front() == '"') {
            boundary = boundary.substr(1, boundary.find('"', 1) - 1);
          }
          is_multipart = ParseMultipart(body, boundary, &segments);
          if (!is_multipart) {
            return Status::DataLoss("read blob " + digest +
                                    ": malformed multipart/byteranges "
                                    "answer from " +
                                    ep.host);
          }
        } else {
          uint64_t start = 0, end = 0;
          if (ParseContentRange(HeaderValue(resp->headers, "Content-Range"), &start, &end)) {
            segments.push_back({start, std::move(body)});
          }
        }
      } else if (resp.ok() && resp->status != 200) {
        return HttpFailure("read blob " + digest + " ranges", ref, req, *resp, call.attempts());
      } else if (!resp.ok() && !full_body) {
        return resp.status().WithContext("read blob " + digest + " ranges");
      }
      if (!is_multipart && batch.size() > 1) {
        std::lock_guard<std::mutex> lock(no_multirange_mu_);
        no_multirange_hosts_.push_back(ref.domain);
      }
      for (size_t idx : batch) {
        const ByteRange& r = ranges[idx];
        bool served = false;
        for (const auto& seg : segments) {
          if (r.offset >= seg.start && r.offset < seg.start + seg.data.size()) {
            uint64_t avail = seg.start + seg.data.size() - r.offset;
            if (avail >= r.length) {
              out[idx] = seg.data.substr(r.offset - seg.start, r.length);
              served = true;
              break;
            }
          }
        }
        if (!served) remaining.push_back(idx);
      }
    }
    todo = std::move(remaining);
  }
  for (size_t idx : todo) {
    ASSIGN_OR_RETURN(out[idx], ReadRange(ref, digest, ranges[idx]));
  }
  return out;
}

Result<uint64_t> Client::BlobSize(const Reference& ref, const std::string& digest) {
  ASSIGN_OR_RETURN(auto endpoints, EndpointsFor(ref, kCapabilityPull));
  const std::string what = "stat blob " + digest;
  Status last;
  for (const auto& ep : endpoints) {
    Call call(this, ep, ref, Scope(ref, false));
    HttpRequest req;
    req.method = "HEAD";
    req.url = ObjectUrl(ep, ref, "blobs", digest);
    req.total_timeout = options_.request_timeout;
    Result<HttpResponse> resp = call.Run(req);
    if (!resp.ok()) {
      last = resp.status().WithContext(what);
      continue;
    }
    if (resp->status != 200) {
      last = HttpFailure(what, ref, req, *resp, call.attempts());
      continue;
    }
    std::string length = HeaderValue(resp->headers, "Content-Length");
    char* end = nullptr;
    unsigned long long size = std::strtoull(length.c_str(), &end, 10);
    if (length.empty() || end == nullptr || *end != '\0') {
      last = Status::Unavailable(what + ": registry " + ep.host + " sent no Content-Length");
      continue;
    }
    return static_cast<uint64_t>(size);
  }
  return last;
}

Result<bool> Client::HasBlob(const Reference& ref, const std::string& digest) {
  ASSIGN_OR_RETURN(auto endpoints, EndpointsFor(ref, kCapabilityPush));
  const RegistryEndpoint& ep = endpoints.front();
  Call call(this, ep, ref, Scope(ref, true));
  HttpRequest req;
  req.method = "HEAD";
  req.url = ObjectUrl(ep, ref, "blobs", digest);
  req.total_timeout = options_.request_timeout;
  ASSIGN_OR_RETURN(HttpResponse resp, call.Run(req));
  if (resp.status == 200) return true;
  if (resp.status == 404) return false;
  return HttpFailure("check blob " + digest, ref, req, resp, call.attempts());
}

namespace {

// Resolves an upload Location (absolute, or relative to the endpoint) and appends a
// query parameter.
std::string UploadUrl(const RegistryEndpoint& ep, const std::string& location,
                      const std::string& query) {
  std::string url = location;
  if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0) {
    url = ep.scheme + "://" + ep.host + (url.empty() || url[0] != '/' ? "/" : "") + url;
  }
  if (!query.empty()) url += (url.find('?') == std::string::npos ? "?" : "&") + query;
  return url;
}

}  // namespace

Status Client::PushBlob(const Reference& ref, const Descriptor& desc, const BlobReader& reader,
                        const PushBlobOptions& options) {
  ASSIGN_OR_RETURN(bool exists, HasBlob(ref, desc.digest));
  if (exists) return Status::Ok();
  ASSIGN_OR_RETURN(auto endpoints, EndpointsFor(ref, kCapabilityPush));
  const RegistryEndpoint& ep = endpoints.front();
  std::string scope = Scope(ref, true);
  if (!options.mount_from.empty()) scope += " repository:" + options.mount_from + ":pull";
  const std::string what = "push blob " + desc.digest;
  const uint64_t size = static_cast<uint64_t>(desc.size);

  // Start (or mount).
  HttpRequest start;
  start.method = "POST";
  start.url = ep.BaseUrl() + "/" + ref.repository + "/blobs/uploads/";
  if (!options.mount_from.empty()) {
    start.url += "?mount=" + desc.digest + "&from=" + options.mount_from;
  }
  start.total_timeout = options_.request_timeout;
  start.headers.emplace("Content-Length", "0");
  Call start_call(this, ep, ref, scope);
  ASSIGN_OR_RETURN(HttpResponse started, start_call.Run(start));
  if (started.status == 201) return Status::Ok();  // mounted
  if (started.status != 202) return HttpFailure(what, ref, start, started, start_call.attempts());
  std::string location = HeaderValue(started.headers, "Location");
  if (location.empty()) {
    return Status::Unavailable(what + ": registry " + ep.host + " sent no upload location");
  }

  auto body_from = [&](uint64_t begin, uint64_t end, HttpRequest& req) {
    auto cursor = std::make_shared<uint64_t>(begin);
    req.body_size = static_cast<int64_t>(end - begin);
    req.body_reader = [cursor, end, &reader](char* buf, size_t n) -> Result<size_t> {
      size_t want = static_cast<size_t>(std::min<uint64_t>(n, end - *cursor));
      if (want == 0) return size_t{0};
      ASSIGN_OR_RETURN(size_t got, reader(*cursor, buf, want));
      if (got == 0) return Status::DataLoss("blob source ended early");
      *cursor += got;
      return got;
    };
    return cursor;
  };

  if (options.chunk_size > 0) {
    for (uint64_t off = 0; off < size; off += options.chunk_size) {
      uint64_t end = std::min(size, off + options.chunk_size);
      HttpRequest patch;
      patch.method = "PATCH";
      patch.url = UploadUrl(ep, location, "");
      patch.headers.emplace("Content-Type", "application/octet-stream");
      patch.headers.emplace("Content-Range", std::to_string(off) + "-" + std::to_string(end - 1));
      auto cursor = body_from(off, end, patch);
      Call call(this, ep, ref, scope);
      ASSIGN_OR_RETURN(HttpResponse resp,
                       call.Run(patch, nullptr, [&](HttpRequest&) { *cursor = off; }));
      if (resp.status != 202) return HttpFailure(what, ref, patch, resp, call.attempts());
      std::string next = HeaderValue(resp.headers, "Location");
      if (!next.empty()) location = next;
    }
    HttpRequest put;
    put.method = "PUT";
    put.url = UploadUrl(ep, location, "digest=" + desc.digest);
    put.headers.emplace("Content-Length", "0");
    put.total_timeout = options_.request_timeout;
    Call call(this, ep, ref, scope);
    ASSIGN_OR_RETURN(HttpResponse resp, call.Run(put));
    if (resp.status != 201) return HttpFailure(what, ref, put, resp, call.attempts());
    return Status::Ok();
  }

  HttpRequest put;
  put.method = "PUT";
  put.url = UploadUrl(ep, location, "digest=" + desc.digest);
  put.headers.emplace("Content-Type", "application/octet-stream");
  auto cursor = body_from(0, size, put);
  Call call(this, ep, ref, scope);
  ASSIGN_OR_RETURN(HttpResponse resp, call.Run(put, nullptr, [&](HttpRequest&) { *cursor = 0; }));
  if (resp.status != 201) return HttpFailure(what, ref, put, resp, call.attempts());
  return Status::Ok();
}

Result<std::string> Client::PushManifest(const Reference& ref, const std::string& media_type,
                                         const std::string& body) {
  ASSIGN_OR_RETURN(auto endpoints, EndpointsFor(ref, kCapabilityPush));
  const RegistryEndpoint& ep = endpoints.front();
  Call call(this, ep, ref, Scope(ref, true));
  HttpRequest req;
  req.method = "PUT";
  req.url = ObjectUrl(ep, ref, "manifests", ref.tag.empty() ? ref.digest : ref.tag);
  req.headers.emplace("Content-Type", media_type);
  req.body = body;
  req.total_timeout = options_.request_timeout;
  ASSIGN_OR_RETURN(HttpResponse resp, call.Run(req));
  if (resp.status != 201 && resp.status != 200) {
    return HttpFailure("push manifest " + ref.String(), ref, req, resp, call.attempts());
  }
  std::string digest = HeaderValue(resp.headers, "Docker-Content-Digest");
  return digest.empty() ? Sha256Digest(body) : digest;
}

}  // namespace strata::registry
