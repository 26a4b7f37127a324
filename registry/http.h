// A small HTTP client over libcurl, shaped for registry traffic: one request at a time
// per call, bodies either collected or streamed to a callback, uploads from memory or
// from a callback. Connections, DNS answers and TLS sessions are shared between calls
// (a curl share handle plus a pool of easy handles), so consecutive requests to one
// registry reuse a warm connection; HTTP/2 is used where the server offers it over TLS.
//
// Redirects are followed (at most 10). curl does not send an Authorization header to a
// host other than the one it was given for, so a registry's redirect to blob storage
// does not leak the registry token.
//
// No retries here: HttpClient reports what happened; registry::Client decides.
// Thread safety: an HttpClient is safe for concurrent use from many threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace strata::registry {

// Header names compared case-insensitively; a name may repeat.
struct HeaderLess {
  bool operator()(const std::string& a, const std::string& b) const;
};
using Headers = std::multimap<std::string, std::string, HeaderLess>;

// First value of header `name`, or "".
std::string HeaderValue(const Headers& headers, const std::string& name);

struct TlsOptions {
  std::vector<std::string> ca_files;                              // extra trusted CAs
  std::vector<std::pair<std::string, std::string>> client_certs;  // (cert, key)
  bool skip_verify = false;
};

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  Headers headers;
  TlsOptions tls;
  // Body to send (PUT/PATCH/POST). When `body_reader` is set it is called for pieces of
  // the body instead (returns bytes written to buf, 0 at the end) and `body_size` must
  // be the total, or -1 for chunked transfer encoding.
  std::string body;
  std::function<Result<size_t>(char* buf, size_t n)> body_reader;
  int64_t body_size = -1;

  std::chrono::milliseconds connect_timeout{10000};
  // The whole request, headers and body, must finish within this (0: no limit).
  std::chrono::milliseconds total_timeout{0};
  // Abort when the transfer moves fewer than `stall_bytes` bytes per second for
  // `stall_timeout` (a stalled connection or body). 0 disables.
  std::chrono::milliseconds stall_timeout{30000};
  int64_t stall_bytes = 1;
  bool follow_redirects = true;
};

struct HttpResponse {
  long status = 0;
  Headers headers;
  std::string body;       // when no sink was given
  std::string final_url;  // after redirects
  uint64_t body_bytes = 0;
};

// Called with each piece of the response body of a 2xx answer, after the status and
// headers are known (the response is passed so the sink can check Content-Range). A
// non-OK status aborts the transfer; the request then returns that status. Bodies of
// non-2xx answers are collected into HttpResponse::body (capped at 64 KiB) instead.
using BodySink = std::function<Status(const HttpResponse& head, const char* data, size_t n)>;

class HttpClient {
 public:
  // `user_agent` goes on every request.
  explicit HttpClient(std::string user_agent);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Performs `request`. Any HTTP status is a successful Result (the caller judges it);
  // errors are transport failures: Unavailable "<method> <url>: <curl error>" for
  // connection, TLS and I/O failures, DeadlineExceeded for timeouts and stalls, or the
  // status a sink/body_reader returned.
  Result<HttpResponse> Do(const HttpRequest& request, const BodySink& sink = nullptr);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata::registry
