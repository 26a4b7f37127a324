#include "runtime-bridge/attach.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/unique_fd.h"

namespace strata::runtime {
namespace {

void PutU32(std::string& out, uint32_t v) {
  out.push_back(static_cast<char>(v >> 24));
  out.push_back(static_cast<char>(v >> 16));
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v));
}

uint32_t GetU32(const char* p) {
  auto b = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
}

}  // namespace

std::string EncodeFrame(FrameType type, std::string_view payload) {
  std::string out;
  out.reserve(kFrameHeaderBytes + payload.size());
  out.push_back(static_cast<char>(type));
  PutU32(out, static_cast<uint32_t>(payload.size()));
  out.append(payload);
  return out;
}

std::string EncodeExitFrame(int32_t exit_code) {
  std::string payload;
  PutU32(payload, static_cast<uint32_t>(exit_code));
  return EncodeFrame(FrameType::kExit, payload);
}

std::string EncodeResizeFrame(uint16_t rows, uint16_t cols) {
  std::string payload;
  PutU32(payload, (uint32_t{rows} << 16) | cols);
  return EncodeFrame(FrameType::kResize, payload);
}

int32_t DecodeExitCode(const std::string& payload) {
  if (payload.size() != 4) return -1;
  return static_cast<int32_t>(GetU32(payload.data()));
}

bool DecodeResize(const std::string& payload, uint16_t* rows, uint16_t* cols) {
  if (payload.size() != 4) return false;
  uint32_t v = GetU32(payload.data());
  *rows = static_cast<uint16_t>(v >> 16);
  *cols = static_cast<uint16_t>(v & 0xffff);
  return true;
}

Result<bool> FrameDecoder::Next(Frame* frame) {
  if (buffer_.size() < kFrameHeaderBytes) return false;
  uint8_t type = static_cast<uint8_t>(buffer_[0]);
  if (type < static_cast<uint8_t>(FrameType::kStdin) ||
      type > static_cast<uint8_t>(FrameType::kError)) {
    return Status::InvalidArgument("attach stream: unknown frame type " + std::to_string(type));
  }
  uint32_t size = GetU32(buffer_.data() + 1);
  if (size > kMaxFramePayload) {
    return Status::InvalidArgument("attach stream: frame of " + std::to_string(size) +
                                   " bytes is larger than the limit");
  }
  if (buffer_.size() < kFrameHeaderBytes + size) return false;
  frame->type = static_cast<FrameType>(type);
  frame->payload.assign(buffer_, kFrameHeaderBytes, size);
  buffer_.erase(0, kFrameHeaderBytes + size);
  return true;
}

Result<int> ConnectInDir(const std::string& dir, const std::string& name) {
  UniqueFd dir_fd(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd.valid()) return Status::FromErrno(errno, "open " + dir);
  std::string path = "/proc/self/fd/" + std::to_string(dir_fd.get()) + "/" + name;
  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path)
    return Status::InvalidArgument("socket name too long: " + name);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Status::FromErrno(errno, "socket");
  if (::connect(fd.get(), reinterpret_cast<struct sockaddr*>(&addr), sizeof addr) != 0) {
    return Status::FromErrno(errno, "connect to " + dir + "/" + name);
  }
  return fd.Release();
}

}  // namespace strata::runtime
