// HTTP/1.1 on plain sockets, just enough for strata's test fixtures (the token server
// and the fault proxy): reading request and response heads, decoding bodies framed by
// Content-Length, chunked encoding or connection close, writing whole buffers, and
// loopback listeners that serve each connection on its own thread.
//
// Nothing here is meant for untrusted peers: limits exist only so that a confused
// client cannot make a fixture allocate without bound.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace strata::testtools {

bool EqualsIgnoreCase(std::string_view a, std::string_view b);
std::string_view TrimSpaces(std::string_view s);

// Header fields in arrival order; names compare case-insensitively and may repeat.
class HeaderList {
 public:
  void Add(std::string name, std::string value);
  // Replaces every field called `name` with one.
  void Set(const std::string& name, std::string value);
  void Remove(std::string_view name);
  // Value of the first field called `name`.
  std::optional<std::string> Get(std::string_view name) const;
  // True when a comma-separated field called `name` lists `token` (case-insensitive),
  // as in "Connection: keep-alive, close".
  bool HasToken(std::string_view name, std::string_view token) const;

  std::vector<std::pair<std::string, std::string>>& fields() { return fields_; }
  const std::vector<std::pair<std::string, std::string>>& fields() const { return fields_; }

  // "Name: value\r\n" for each field.
  std::string Serialize() const;

 private:
  std::vector<std::pair<std::string, std::string>> fields_;
};

struct RequestHead {
  std::string method;
  std::string target;  // origin form: path plus optional "?query"
  std::string version = "HTTP/1.1";
  HeaderList headers;

  std::string Path() const;   // target up to '?'
  std::string Query() const;  // target after '?', or ""
  std::string Serialize() const;
};

struct ResponseHead {
  std::string version = "HTTP/1.1";
  int status = 200;
  std::string reason;
  HeaderList headers;

  std::string Serialize() const;  // reason defaults to the standard phrase
};

// Buffered reading from a socket it does not own.
class SocketReader {
 public:
  explicit SocketReader(int fd) : fd_(fd) {}

  // One line without its line ending. False at end of stream, on a read error, or when
  // the line is longer than `max_bytes`.
  bool ReadLine(std::string* line, size_t max_bytes = 64 * 1024);
  // Up to `n` bytes, buffered ones first, otherwise one recv(). 0 at end of stream,
  // -1 on error.
  ssize_t ReadSome(char* out, size_t n);
  size_t buffered() const { return buffer_.size() - start_; }
  int fd() const { return fd_; }

 private:
  bool Fill();

  int fd_;
  std::string buffer_;
  size_t start_ = 0;
};

// False at the end of the stream, on a read error, or on a malformed or oversized head.
bool ReadRequestHead(SocketReader& reader, RequestHead* head);
bool ReadResponseHead(SocketReader& reader, ResponseHead* head);

// How a message body is delimited (RFC 9112 section 6.3).
struct BodyFraming {
  enum class Kind { kNone, kLength, kChunked, kUntilClose };
  Kind kind = Kind::kNone;
  uint64_t length = 0;  // for kLength
};
BodyFraming RequestBodyFraming(const RequestHead& head);
BodyFraming ResponseBodyFraming(std::string_view request_method, const ResponseHead& head);

// Decodes one message body from a SocketReader, leaving the reader at the next message.
class BodyReader {
 public:
  BodyReader(SocketReader* reader, BodyFraming framing) : reader_(reader), framing_(framing) {}

  // The next piece of body data, at most `n` bytes. 0 at the end of the body, -1 on a
  // read error, a premature end of stream or broken chunk framing.
  ssize_t Read(char* out, size_t n);
  bool finished() const { return finished_; }

 private:
  bool NextChunkHeader();

  SocketReader* reader_;
  BodyFraming framing_;
  uint64_t remaining_in_chunk_ = 0;
  uint64_t bytes_read_ = 0;
  bool finished_ = false;
};

// Reads a whole body of at most `max_bytes`. False on errors or when it is larger.
bool ReadWholeBody(SocketReader* reader, BodyFraming framing, size_t max_bytes, std::string* body);

// Writes everything (no SIGPIPE). False when the peer went away.
bool SendAll(int fd, std::string_view data);
// One piece of chunked transfer encoding; empty data gives the last chunk "0\r\n\r\n".
std::string EncodeChunk(std::string_view data);

struct HostPort {
  std::string host;
  int port = 0;
  std::string ToString() const { return host + ":" + std::to_string(port); }
};
// "127.0.0.1:5000" (IPv4 literal or "localhost"); nullopt when malformed.
std::optional<HostPort> ParseHostPort(std::string_view text);

// A listening TCP socket; `*bound` gets the real port (useful for port 0). -1 with
// `*error` on failure.
int ListenTcp(const HostPort& address, HostPort* bound, std::string* error);
int ConnectTcp(const HostPort& address, std::string* error);
// Sets SO_LINGER 0, so that closing the socket sends the peer a TCP reset rather than
// an orderly end of stream.
void SetResetOnClose(int fd);
// Accepts connections forever, running `handle(fd)` on a new detached thread for each;
// the socket is closed after `handle` returns.
void AcceptLoop(int listen_fd, std::function<void(int fd)> handle);

// Percent-decoding of a URL component; '+' becomes a space when `plus_is_space`.
std::string PercentDecode(std::string_view text, bool plus_is_space);
// "a=1&b=2" split and decoded as application/x-www-form-urlencoded.
std::vector<std::pair<std::string, std::string>> ParseFormEncoded(std::string_view text);

std::string ReasonPhrase(int status);

}  // namespace strata::testtools
