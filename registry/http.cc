#include "registry/http.h"

#include <curl/curl.h>
#include <strings.h>

#include <algorithm>
#include <array>
#include <mutex>

namespace strata::registry {

bool HeaderLess::operator()(const std::string& a, const std::string& b) const {
  return strcasecmp(a.c_str(), b.c_str()) < 0;
}

std::string HeaderValue(const Headers& headers, const std::string& name) {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

namespace {

constexpr size_t kErrorBodyCap = 64 << 10;

std::once_flag global_init_once;

std::string Trim(std::string s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  size_t e = s.find_last_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, e - b + 1);
}

// State of one transfer, shared with curl's callbacks.
struct Transfer {
  const HttpRequest* request = nullptr;
  const BodySink* sink = nullptr;
  HttpResponse response;
  Status callback_error;  // set when a callback aborted the transfer
  size_t upload_offset = 0;

  // Called for each header line of every response (including redirects and 100s).
  void OnHeaderLine(std::string_view line) {
    if (line.rfind("HTTP/", 0) == 0) {
      // A new response starts (after a redirect or an interim 1xx).
      response.headers.clear();
      size_t sp = line.find(' ');
      response.status = sp == std::string_view::npos
                            ? 0
                            : std::strtol(std::string(line.substr(sp + 1, 3)).c_str(), nullptr, 10);
      return;
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return;
    response.headers.emplace(Trim(std::string(line.substr(0, colon))),
                             Trim(std::string(line.substr(colon + 1))));
  }

  // Returns false to abort.
  bool OnBody(const char* data, size_t n) {
    response.body_bytes += n;
    bool success = response.status >= 200 && response.status < 300;
    if (sink != nullptr && *sink && success) {
      Status s = (*sink)(response, data, n);
      if (!s.ok()) {
        callback_error = s;
        return false;
      }
      return true;
    }
    size_t cap = success ? SIZE_MAX : kErrorBodyCap;
    if (response.body.size() < cap) {
      response.body.append(data, std::min(n, cap - response.body.size()));
    }
    return true;
  }
};

size_t HeaderCallback(char* buffer, size_t size, size_t nitems, void* userdata) {
  auto* t = static_cast<Transfer*>(userdata);
  t->OnHeaderLine(std::string_view(buffer, size * nitems));
  return size * nitems;
}

size_t WriteCallback(char* ptr, size_t size, size_t nmemb, void* userdata) {
  auto* t = static_cast<Transfer*>(userdata);
  return t->OnBody(ptr, size * nmemb) ? size * nmemb : 0;
}

size_t ReadCallback(char* buffer, size_t size, size_t nitems, void* userdata) {
  auto* t = static_cast<Transfer*>(userdata);
  const HttpRequest& req = *t->request;
  size_t n = size * nitems;
  if (req.body_reader) {
    Result<size_t> got = req.body_reader(buffer, n);
    if (!got.ok()) {
      t->callback_error = got.status();
      return CURL_READFUNC_ABORT;
    }
    return *got;
  }
  size_t left = req.body.size() - t->upload_offset;
  size_t take = std::min(left, n);
  std::copy_n(req.body.data() + t->upload_offset, take, buffer);
  t->upload_offset += take;
  return take;
}

}  // namespace

struct HttpClient::Impl {
  std::string user_agent;
  CURLSH* share = nullptr;
  std::array<std::mutex, CURL_LOCK_DATA_LAST> share_locks;
  std::mutex pool_mu;
  std::vector<CURL*> idle;  // easy handles keep their own connections alive too

  static void Lock(CURL*, curl_lock_data data, curl_lock_access, void* userptr) {
    static_cast<Impl*>(userptr)->share_locks[data].lock();
  }
  static void Unlock(CURL*, curl_lock_data data, void* userptr) {
    static_cast<Impl*>(userptr)->share_locks[data].unlock();
  }

  CURL* Acquire() {
    {
      std::lock_guard<std::mutex> lock(pool_mu);
      if (!idle.empty()) {
        CURL* h = idle.back();
        idle.pop_back();
        curl_easy_reset(h);
        return h;
      }
    }
    return curl_easy_init();
  }
  void Release(CURL* h) {
    std::lock_guard<std::mutex> lock(pool_mu);
    if (idle.size() < 64) {
      idle.push_back(h);
    } else {
      curl_easy_cleanup(h);
    }
  }
};

HttpClient::HttpClient(std::string user_agent) : impl_(std::make_unique<Impl>()) {
  std::call_once(global_init_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  impl_->user_agent = std::move(user_agent);
  impl_->share = curl_share_init();
  curl_share_setopt(impl_->share, CURLSHOPT_LOCKFUNC, &Impl::Lock);
  curl_share_setopt(impl_->share, CURLSHOPT_UNLOCKFUNC, &Impl::Unlock);
  curl_share_setopt(impl_->share, CURLSHOPT_USERDATA, impl_.get());
  curl_share_setopt(impl_->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  curl_share_setopt(impl_->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  curl_share_setopt(impl_->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
}

HttpClient::~HttpClient() {
  for (CURL* h : impl_->idle) curl_easy_cleanup(h);
  curl_share_cleanup(impl_->share);
}

Result<HttpResponse> HttpClient::Do(const HttpRequest& request, const BodySink& sink) {
  CURL* h = impl_->Acquire();
  if (h == nullptr) return Status::Internal("curl_easy_init failed");

  Transfer t;
  t.request = &request;
  t.sink = &sink;

  curl_easy_setopt(h, CURLOPT_SHARE, impl_->share);
  curl_easy_setopt(h, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(h, CURLOPT_USERAGENT, impl_->user_agent.c_str());
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, request.follow_redirects ? 1L : 0L);
  curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 512L * 1024);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(request.connect_timeout.count()));
  if (request.total_timeout.count() > 0) {
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(request.total_timeout.count()));
  }
  if (request.stall_timeout.count() > 0) {
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, static_cast<long>(request.stall_bytes));
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME,
                     std::max(1L, static_cast<long>(request.stall_timeout.count() / 1000)));
  }

  // TLS.
  if (request.tls.skip_verify) {
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (!request.tls.ca_files.empty()) {
    // curl takes one CA bundle file; hosts.toml rarely lists more than one, and the
    // first is the one that matters for a private registry.
    curl_easy_setopt(h, CURLOPT_CAINFO, request.tls.ca_files.front().c_str());
  }
  if (!request.tls.client_certs.empty()) {
    const auto& [cert, key] = request.tls.client_certs.front();
    curl_easy_setopt(h, CURLOPT_SSLCERT, cert.c_str());
    if (!key.empty()) curl_easy_setopt(h, CURLOPT_SSLKEY, key.c_str());
  }

  // Method and body.
  bool has_body = !request.body.empty() || request.body_reader;
  if (request.method == "HEAD") {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else if (request.method == "GET") {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    if (has_body || request.method == "PUT" || request.method == "POST" ||
        request.method == "PATCH") {
      curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(h, CURLOPT_READFUNCTION, &ReadCallback);
      curl_easy_setopt(h, CURLOPT_READDATA, &t);
      int64_t size =
          request.body_reader ? request.body_size : static_cast<int64_t>(request.body.size());
      if (size >= 0) {
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(size));
      }
    }
  }

  curl_slist* header_list = nullptr;
  for (const auto& [name, value] : request.headers) {
    header_list = curl_slist_append(header_list, (name + ": " + value).c_str());
  }
  // curl adds "Expect: 100-continue" to large uploads; registries answer fine without
  // the extra round trip.
  if (has_body) header_list = curl_slist_append(header_list, "Expect:");
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, header_list);

  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, &HeaderCallback);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &WriteCallback);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
  char error_buffer[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error_buffer);

  CURLcode rc = curl_easy_perform(h);
  char* final_url = nullptr;
  if (curl_easy_getinfo(h, CURLINFO_EFFECTIVE_URL, &final_url) == CURLE_OK && final_url) {
    t.response.final_url = final_url;
  }
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, nullptr);
  curl_slist_free_all(header_list);

  if (rc != CURLE_OK) {
    // A broken connection must not go back to the pool with its state.
    curl_easy_cleanup(h);
    if (!t.callback_error.ok()) return t.callback_error;
    std::string what = request.method + " " + request.url + ": " +
                       (error_buffer[0] ? std::string(error_buffer) : curl_easy_strerror(rc));
    if (rc == CURLE_OPERATION_TIMEDOUT) return Status(Code::kDeadlineExceeded, what);
    return Status::Unavailable(what);
  }
  impl_->Release(h);
  return std::move(t.response);
}

}  // namespace strata::registry
