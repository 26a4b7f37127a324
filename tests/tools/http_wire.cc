#include "tests/tools/http_wire.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

namespace strata::testtools {
namespace {

constexpr size_t kMaxHeaderFields = 200;

char LowerAscii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Parses "Name: value" lines up to the empty line that ends a head.
bool ReadHeaderFields(SocketReader& reader, HeaderList* headers) {
  std::string line;
  for (size_t count = 0;; ++count) {
    if (count > kMaxHeaderFields || !reader.ReadLine(&line)) return false;
    if (line.empty()) return true;
    size_t colon = line.find(':');
    if (colon == std::string::npos || colon == 0) return false;
    headers->Add(std::string(TrimSpaces(std::string_view(line).substr(0, colon))),
                 std::string(TrimSpaces(std::string_view(line).substr(colon + 1))));
  }
}

bool ParseUnsigned(std::string_view text, uint64_t* value) {
  if (text.empty() || text.size() > 19) return false;
  uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  *value = v;
  return true;
}

bool IsChunked(const HeaderList& headers) {
  return headers.HasToken("Transfer-Encoding", "chunked");
}

}  // namespace

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (LowerAscii(a[i]) != LowerAscii(b[i])) return false;
  }
  return true;
}

std::string_view TrimSpaces(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// ---- HeaderList ---------------------------------------------------------------

void HeaderList::Add(std::string name, std::string value) {
  fields_.emplace_back(std::move(name), std::move(value));
}

void HeaderList::Set(const std::string& name, std::string value) {
  Remove(name);
  Add(name, std::move(value));
}

void HeaderList::Remove(std::string_view name) {
  std::erase_if(fields_, [&](const auto& field) { return EqualsIgnoreCase(field.first, name); });
}

std::optional<std::string> HeaderList::Get(std::string_view name) const {
  for (const auto& [field_name, value] : fields_) {
    if (EqualsIgnoreCase(field_name, name)) return value;
  }
  return std::nullopt;
}

bool HeaderList::HasToken(std::string_view name, std::string_view token) const {
  for (const auto& [field_name, value] : fields_) {
    if (!EqualsIgnoreCase(field_name, name)) continue;
    std::string_view rest = value;
    while (!rest.empty()) {
      size_t comma = rest.find(',');
      if (EqualsIgnoreCase(TrimSpaces(rest.substr(0, comma)), token)) return true;
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  return false;
}

std::string HeaderList::Serialize() const {
  std::string out;
  for (const auto& [name, value] : fields_) out += name + ": " + value + "\r\n";
  return out;
}

// ---- heads --------------------------------------------------------------------

std::string RequestHead::Path() const { return target.substr(0, target.find('?')); }

std::string RequestHead::Query() const {
  size_t mark = target.find('?');
  return mark == std::string::npos ? "" : target.substr(mark + 1);
}

std::string RequestHead::Serialize() const {
  return method + " " + target + " " + version + "\r\n" + headers.Serialize() + "\r\n";
}

std::string ResponseHead::Serialize() const {
  return version + " " + std::to_string(status) + " " +
         (reason.empty() ? ReasonPhrase(status) : reason) + "\r\n" + headers.Serialize() + "\r\n";
}

bool ReadRequestHead(SocketReader& reader, RequestHead* head) {
  std::string line;
  // Tolerate empty lines before a request (RFC 9112 section 2.2).
  do {
    if (!reader.ReadLine(&line)) return false;
  } while (line.empty());
  size_t first = line.find(' ');
  size_t last = line.rfind(' ');
  if (first == std::string::npos || first == last) return false;
  head->method = line.substr(0, first);
  head->target = line.substr(first + 1, last - first - 1);
  head->version = line.substr(last + 1);
  if (head->version.rfind("HTTP/1.", 0) != 0 || head->target.empty()) return false;
  return ReadHeaderFields(reader, &head->headers);
}

bool ReadResponseHead(SocketReader& reader, ResponseHead* head) {
  std::string line;
  if (!reader.ReadLine(&line)) return false;
  // "HTTP/1.1 200 OK"; the reason phrase may be empty or contain spaces.
  size_t first = line.find(' ');
  if (first == std::string::npos || line.rfind("HTTP/1.", 0) != 0) return false;
  head->version = line.substr(0, first);
  std::string_view rest = std::string_view(line).substr(first + 1);
  size_t space = rest.find(' ');
  uint64_t status = 0;
  if (!ParseUnsigned(rest.substr(0, space), &status) || status < 100 || status > 999) return false;
  head->status = static_cast<int>(status);
  head->reason = space == std::string_view::npos ? "" : std::string(rest.substr(space + 1));
  return ReadHeaderFields(reader, &head->headers);
}

BodyFraming RequestBodyFraming(const RequestHead& head) {
  BodyFraming framing;
  uint64_t length = 0;
  if (IsChunked(head.headers)) {
    framing.kind = BodyFraming::Kind::kChunked;
  } else if (auto value = head.headers.Get("Content-Length");
             value && ParseUnsigned(*value, &length)) {
    framing.kind = length > 0 ? BodyFraming::Kind::kLength : BodyFraming::Kind::kNone;
    framing.length = length;
  }
  return framing;
}

BodyFraming ResponseBodyFraming(std::string_view request_method, const ResponseHead& head) {
  BodyFraming framing;
  if (request_method == "HEAD" || head.status < 200 || head.status == 204 || head.status == 304) {
    return framing;
  }
  uint64_t length = 0;
  if (IsChunked(head.headers)) {
    framing.kind = BodyFraming::Kind::kChunked;
  } else if (auto value = head.headers.Get("Content-Length");
             value && ParseUnsigned(*value, &length)) {
    framing.kind = length > 0 ? BodyFraming::Kind::kLength : BodyFraming::Kind::kNone;
    framing.length = length;
  } else {
    framing.kind = BodyFraming::Kind::kUntilClose;
  }
  return framing;
}

// ---- SocketReader -------------------------------------------------------------

bool SocketReader::Fill() {
  // Drop consumed bytes first so the buffer holds at most one unread head or line.
  if (start_ > 0) {
    buffer_.erase(0, start_);
    start_ = 0;
  }
  char chunk[16 * 1024];
  ssize_t n;
  do {
    n = recv(fd_, chunk, sizeof(chunk), 0);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return false;
  buffer_.append(chunk, static_cast<size_t>(n));
  return true;
}

bool SocketReader::ReadLine(std::string* line, size_t max_bytes) {
  size_t searched = 0;  // unread bytes already known to hold no newline
  for (;;) {
    size_t newline = buffer_.find('\n', start_ + searched);
    if (newline != std::string::npos) {
      size_t end = newline;
      if (end > start_ && buffer_[end - 1] == '\r') --end;
      line->assign(buffer_, start_, end - start_);
      start_ = newline + 1;
      return true;
    }
    searched = buffered();
    if (searched > max_bytes) return false;
    if (!Fill()) return false;
  }
}

ssize_t SocketReader::ReadSome(char* out, size_t n) {
  if (buffered() == 0) {
    buffer_.clear();
    start_ = 0;
    ssize_t got;
    do {
      got = recv(fd_, out, n, 0);
    } while (got < 0 && errno == EINTR);
    return got;
  }
  size_t take = std::min(n, buffered());
  std::memcpy(out, buffer_.data() + start_, take);
  start_ += take;
  return static_cast<ssize_t>(take);
}

// ---- BodyReader ---------------------------------------------------------------

bool BodyReader::NextChunkHeader() {
  std::string line;
  if (!reader_->ReadLine(&line)) return false;
  // Chunk extensions (";name=value") are allowed and ignored.
  std::string_view size_text = TrimSpaces(std::string_view(line).substr(0, line.find(';')));
  if (size_text.empty() || size_text.size() > 15) return false;
  uint64_t size = 0;
  for (char c : size_text) {
    int digit = HexValue(c);
    if (digit < 0) return false;
    size = size * 16 + static_cast<uint64_t>(digit);
  }
  remaining_in_chunk_ = size;
  if (size == 0) {
    // Trailer fields, then the empty line that ends the message.
    do {
      if (!reader_->ReadLine(&line)) return false;
    } while (!line.empty());
    finished_ = true;
  }
  return true;
}

ssize_t BodyReader::Read(char* out, size_t n) {
  if (finished_ || n == 0) return 0;
  switch (framing_.kind) {
    case BodyFraming::Kind::kNone:
      finished_ = true;
      return 0;
    case BodyFraming::Kind::kLength: {
      uint64_t left = framing_.length - bytes_read_;
      ssize_t got = reader_->ReadSome(out, static_cast<size_t>(std::min<uint64_t>(n, left)));
      if (got <= 0) return -1;
      bytes_read_ += static_cast<uint64_t>(got);
      if (bytes_read_ == framing_.length) finished_ = true;
      return got;
    }
    case BodyFraming::Kind::kUntilClose: {
      ssize_t got = reader_->ReadSome(out, n);
      if (got == 0) finished_ = true;
      if (got > 0) bytes_read_ += static_cast<uint64_t>(got);
      return got;
    }
    case BodyFraming::Kind::kChunked: {
      if (remaining_in_chunk_ == 0) {
        if (!NextChunkHeader()) return -1;
        if (finished_) return 0;
      }
      ssize_t got =
          reader_->ReadSome(out, static_cast<size_t>(std::min<uint64_t>(n, remaining_in_chunk_)));
      if (got <= 0) return -1;
      remaining_in_chunk_ -= static_cast<uint64_t>(got);
      bytes_read_ += static_cast<uint64_t>(got);
      if (remaining_in_chunk_ == 0) {
        std::string crlf;
        if (!reader_->ReadLine(&crlf) || !crlf.empty()) return -1;
      }
      return got;
    }
  }
  return -1;
}

bool ReadWholeBody(SocketReader* reader, BodyFraming framing, size_t max_bytes, std::string* body) {
  BodyReader body_reader(reader, framing);
  char buf[16 * 1024];
  for (;;) {
    ssize_t n = body_reader.Read(buf, sizeof(buf));
    if (n < 0) return false;
    if (n == 0) return true;
    if (body->size() + static_cast<size_t>(n) > max_bytes) return false;
    body->append(buf, static_cast<size_t>(n));
  }
}

// ---- sockets ------------------------------------------------------------------

bool SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string EncodeChunk(std::string_view data) {
  char size[32];
  std::snprintf(size, sizeof(size), "%zx\r\n", data.size());
  std::string out = size;
  out.append(data);
  out += "\r\n";
  return out;
}

std::optional<HostPort> ParseHostPort(std::string_view text) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  uint64_t port = 0;
  if (!ParseUnsigned(text.substr(colon + 1), &port) || port > 65535) return std::nullopt;
  HostPort result{std::string(text.substr(0, colon)), static_cast<int>(port)};
  if (result.host == "localhost") result.host = "127.0.0.1";
  in_addr probe{};
  if (inet_pton(AF_INET, result.host.c_str(), &probe) != 1) return std::nullopt;
  return result;
}

namespace {
sockaddr_in ToSockaddr(const HostPort& address) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(address.port));
  inet_pton(AF_INET, address.host.c_str(), &sa.sin_addr);
  return sa;
}
}  // namespace

int ListenTcp(const HostPort& address, HostPort* bound, std::string* error) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = std::string("socket: ") + std::strerror(errno);
    return -1;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in sa = ToSockaddr(address);
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 || listen(fd, 128) != 0) {
    *error = "cannot listen on " + address.ToString() + ": " + std::strerror(errno);
    close(fd);
    return -1;
  }
  socklen_t len = sizeof(sa);
  getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  *bound = HostPort{address.host, ntohs(sa.sin_port)};
  return fd;
}

int ConnectTcp(const HostPort& address, std::string* error) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = std::string("socket: ") + std::strerror(errno);
    return -1;
  }
  sockaddr_in sa = ToSockaddr(address);
  int rc;
  do {
    rc = connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    *error = "cannot connect to " + address.ToString() + ": " + std::strerror(errno);
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

void SetResetOnClose(int fd) {
  linger hard{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
}

void AcceptLoop(int listen_fd, std::function<void(int fd)> handle) {
  for (;;) {
    int fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE) {
        if (errno == EMFILE || errno == ENFILE)
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        continue;
      }
      return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    std::thread([fd, handle] {
      handle(fd);
      close(fd);
    }).detach();
  }
}

// ---- text ---------------------------------------------------------------------

std::string PercentDecode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%' && i + 2 < text.size() && HexValue(text[i + 1]) >= 0 &&
        HexValue(text[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(text[i + 1]) * 16 + HexValue(text[i + 2])));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> ParseFormEncoded(std::string_view text) {
  std::vector<std::pair<std::string, std::string>> pairs;
  while (!text.empty()) {
    size_t amp = text.find('&');
    std::string_view item = text.substr(0, amp);
    if (!item.empty()) {
      size_t eq = item.find('=');
      pairs.emplace_back(
          PercentDecode(item.substr(0, eq), true),
          eq == std::string_view::npos ? "" : PercentDecode(item.substr(eq + 1), true));
    }
    if (amp == std::string_view::npos) break;
    text.remove_prefix(amp + 1);
  }
  return pairs;
}

std::string ReasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
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
    case 408:
      return "Request Timeout";
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
      return "Status " + std::to_string(status);
  }
}

}  // namespace strata::testtools
