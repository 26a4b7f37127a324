// The attach protocol between a task's supervisor (shim.h) and a client (`strata run`,
// `strata exec`, `strata attach`): a stream of frames over the supervisor's unix
// socket, so one client can feed stdin, resize the terminal and receive stdout,
// stderr and the exit code.
//
// A frame is a 1-byte type, a 4-byte big-endian payload length and the payload (at
// most kMaxFramePayload bytes):
//
//   client -> shim   kStdin (bytes), kStdinClose, kResize (rows, cols: 2 x uint16 BE)
//   shim -> client   kStdout, kStderr (bytes), kExit (exit code: int32 BE; 128+N for a
//                    process killed by signal N), kError (a message: the process could
//                    not be started; kExit follows)
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"

namespace strata::runtime {

enum class FrameType : uint8_t {
  kStdin = 1,
  kStdinClose = 2,
  kResize = 3,
  kStdout = 4,
  kStderr = 5,
  kExit = 6,
  kError = 7,
};

inline constexpr size_t kMaxFramePayload = 1 << 20;
inline constexpr size_t kFrameHeaderBytes = 5;

std::string EncodeFrame(FrameType type, std::string_view payload);
std::string EncodeExitFrame(int32_t exit_code);
std::string EncodeResizeFrame(uint16_t rows, uint16_t cols);

struct Frame {
  FrameType type;
  std::string payload;
};

// Reassembles frames from a byte stream. Not thread-safe.
class FrameDecoder {
 public:
  void Append(const char* data, size_t size) { buffer_.append(data, size); }
  // Takes the next complete frame into `frame`: true when one was taken, false when
  // more bytes are needed. InvalidArgument for an unknown type or an oversized payload
  // (the stream cannot be resynchronised; drop the peer).
  Result<bool> Next(Frame* frame);

 private:
  std::string buffer_;
};

int32_t DecodeExitCode(const std::string& payload);
bool DecodeResize(const std::string& payload, uint16_t* rows, uint16_t* cols);

// Connects to the unix socket `name` in directory `dir` (through /proc/self/fd, so
// long paths work). Returns the connected fd.
Result<int> ConnectInDir(const std::string& dir, const std::string& name);

}  // namespace strata::runtime
