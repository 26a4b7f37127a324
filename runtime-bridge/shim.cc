#include "runtime-bridge/shim.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

#include "core/clock.h"
#include "core/fs.h"
#include "core/unique_fd.h"
#include "runtime-bridge/attach.h"

namespace strata::runtime {
namespace {

using json = nlohmann::json;

std::string Prefixed(const std::string& exec_id, const std::string& init_name,
                     const std::string& suffix) {
  return exec_id.empty() ? init_name : "exec-" + exec_id + suffix;
}

void ReportStatus(int& status_fd, const std::string& line) {
  if (status_fd < 0) return;
  std::string text = line + "\n";
  (void)!::write(status_fd, text.data(), text.size());
  ::close(status_fd);
  status_fd = -1;
}

Result<int> ListenInDir(int dir_fd, const std::string& name) {
  std::string path = "/proc/self/fd/" + std::to_string(dir_fd) + "/" + name;
  ::unlink(path.c_str());
  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return Status::InvalidArgument("socket name too long");
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Status::FromErrno(errno, "socket");
  // The socket file takes this mode when bound: never reachable by others, not even
  // for a moment (the container's stdio goes through it).
  ::fchmod(fd.get(), 0600);
  if (::bind(fd.get(), reinterpret_cast<struct sockaddr*>(&addr), sizeof addr) != 0) {
    return Status::FromErrno(errno, "bind " + name);
  }
  if (::listen(fd.get(), 16) != 0) return Status::FromErrno(errno, "listen " + name);
  return fd.Release();
}

// Receives the terminal master a runtime sends over --console-socket.
Result<int> ReceiveFd(int conn) {
  char data[256];
  struct iovec iov {
    data, sizeof data
  };
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  struct msghdr msg {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Status::FromErrno(errno, "receive the terminal");
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
      return fd;
    }
  }
  return Status::Internal("the runtime sent no terminal over the console socket");
}

int ExitCodeOf(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 255;
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

// The process's output streams and the open terminal or stdin pipe.
struct Streams {
  UniqueFd out;  // stdout pipe, or the terminal master
  UniqueFd err;  // stderr pipe (no terminal)
  UniqueFd in;   // stdin pipe write end, or a dup of the master (terminal)
  std::string in_pending;
  bool close_in_after_pending = false;
};

class Shim {
 public:
  Shim(const ShimOptions& options, int status_fd) : o_(options), status_fd_(status_fd) {}

  int Run() {
    ::prctl(PR_SET_CHILD_SUBREAPER, 1);
    ::signal(SIGPIPE, SIG_IGN);
    ::signal(SIGTERM, SIG_IGN);
    ::signal(SIGINT, SIG_IGN);
    ::signal(SIGHUP, SIG_IGN);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    ::sigprocmask(SIG_BLOCK, &chld, nullptr);
    sigfd_.Reset(::signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK));

    // Not close-on-exec: the runtime reaches the console socket through it.
    dir_fd_.Reset(::open(o_.dir.c_str(), O_PATH | O_DIRECTORY));
    if (!dir_fd_.valid())
      return Fail("open task directory " + o_.dir + ": " + std::strerror(errno));
    auto listener = ListenInDir(dir_fd_.get(), AttachSocketName(o_.exec_id));
    if (!listener.ok()) return Fail(listener.status().message());
    listen_fd_.Reset(*listener);
    if (o_.log && o_.exec_id.empty()) {
      log_fd_.Reset(
          ::openat(dir_fd_.get(), kLogFileName, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
    }

    if (!o_.exec_id.empty()) {
      // An exec starts once its client is attached, so the client sees everything.
      ReportStatus(status_fd_, "ok 0");
      struct pollfd p {
        listen_fd_.get(), POLLIN, 0
      };
      int n;
      do {
        n = ::poll(&p, 1, o_.start_timeout_ms);
      } while (n < 0 && errno == EINTR);
      if (n <= 0) return Finish(-1, "no client attached to start the exec");
      AcceptClient();
    }

    std::string error;
    if (!Create(&error)) {
      if (o_.exec_id.empty()) return Fail(error);
      Broadcast(EncodeFrame(FrameType::kError, error));
      return Finish(126, error);
    }
    ReportStatus(status_fd_, "ok " + std::to_string(pid_));
    Loop();
    return Finish(exit_code_, "");
  }

 private:
  int Fail(const std::string& message) {
    ReportStatus(status_fd_, "error " + message);
    CleanupFiles(/*keep_exit=*/false);
    return 1;
  }

  // Starts the runtime and waits for it to create the process. Output the runtime
  // writes while doing so is kept for the error message.
  bool Create(std::string* error) {
    int out[2] = {-1, -1}, err[2] = {-1, -1}, in[2] = {-1, -1};
    UniqueFd console_listen;
    std::string console_path;
    if (o_.terminal) {
      std::string name = Prefixed(o_.exec_id, "console.sock", ".console");
      auto l = ListenInDir(dir_fd_.get(), name);
      if (!l.ok()) {
        *error = l.status().message();
        return false;
      }
      console_listen.Reset(*l);
      console_path = "/proc/self/fd/" + std::to_string(dir_fd_.get()) + "/" + name;
      console_name_ = name;
    }
    // Pipes: the process's stdio (no terminal), or the runtime's own output (terminal).
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
      *error = std::string("pipe: ") + std::strerror(errno);
      return false;
    }
    if (!o_.terminal && o_.stdin_open && ::pipe2(in, O_CLOEXEC) != 0) {
      *error = std::string("pipe: ") + std::strerror(errno);
      return false;
    }
    std::vector<std::string> argv = o_.runtime;
    const std::string pid_file = o_.dir + "/" + PidFileName(o_.exec_id);
    if (o_.exec_id.empty()) {
      argv.insert(argv.end(), {"create", "--bundle", o_.dir, "--pid-file", pid_file});
    } else {
      argv.insert(argv.end(), {"exec", "--process", o_.dir + "/" + ExecSpecFileName(o_.exec_id),
                               "--detach", "--pid-file", pid_file});
    }
    if (o_.terminal) argv.insert(argv.end(), {"--console-socket", console_path});
    argv.push_back(o_.container_id);
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);

    pid_t runtime = ::fork();
    if (runtime < 0) {
      *error = std::string("fork: ") + std::strerror(errno);
      return false;
    }
    if (runtime == 0) {
      int devnull = ::open("/dev/null", O_RDWR);
      ::dup2(in[0] >= 0 ? in[0] : devnull, 0);
      ::dup2(out[1], 1);
      ::dup2(err[1], 2);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::signal(SIGPIPE, SIG_DFL);
      ::execvp(cargv[0], cargv.data());
      std::string msg = std::string("cannot run ") + cargv[0] + ": " + std::strerror(errno) + "\n";
      (void)!::write(2, msg.data(), msg.size());
      ::_exit(127);
    }
    ::close(out[1]);
    ::close(err[1]);
    if (in[0] >= 0) ::close(in[0]);
    UniqueFd out_r(out[0]), err_r(err[0]), in_w(in[1]);

    // Wait for the runtime, collecting its output and (terminal) the master.
    std::string startup_output;
    UniqueFd master;
    int runtime_status = 0;
    bool runtime_done = false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(2);
    while (!runtime_done) {
      std::vector<struct pollfd> fds;
      fds.push_back({sigfd_.get(), POLLIN, 0});
      if (console_listen.valid()) fds.push_back({console_listen.get(), POLLIN, 0});
      int n = ::poll(fds.data(), fds.size(), 200);
      if (n < 0 && errno != EINTR) break;
      if (console_listen.valid() && fds.size() > 1 && (fds[1].revents & POLLIN)) {
        UniqueFd conn(::accept4(console_listen.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (conn.valid()) {
          auto fd = ReceiveFd(conn.get());
          if (fd.ok()) master.Reset(*fd);
        }
      }
      DrainSignals();
      for (auto it = reaped_.begin(); it != reaped_.end(); ++it) {
        if (it->first == runtime) {
          runtime_status = it->second;
          runtime_done = true;
          reaped_.erase(it);
          break;
        }
      }
      if (!runtime_done && std::chrono::steady_clock::now() > deadline) {
        ::kill(runtime, SIGKILL);
      }
    }
    if (console_listen.valid()) {
      console_listen.Reset();
      ::unlinkat(dir_fd_.get(), console_name_.c_str(), 0);
    }
    // With no terminal the pipes are the process's stdio: read only what is already
    // there (the runtime's complaints), never wait for EOF.
    ReadAvailable(out_r.get(), &startup_output);
    ReadAvailable(err_r.get(), &startup_output);
    if (ExitCodeOf(runtime_status) != 0) {
      std::string what = Trim(startup_output);
      *error = what.empty() ? o_.runtime[0] + " failed with exit status " +
                                  std::to_string(ExitCodeOf(runtime_status))
                            : what;
      return false;
    }
    auto pid_text = fs::ReadFile(pid_file);
    pid_ = pid_text.ok() ? std::atoi(pid_text->c_str()) : 0;
    if (pid_ <= 0) {
      *error = "the runtime wrote no pid file";
      return false;
    }
    if (o_.terminal) {
      if (!master.valid()) {
        *error = "the runtime sent no terminal";
        return false;
      }
      s_.in.Reset(::fcntl(master.get(), F_DUPFD_CLOEXEC, 0));
      s_.out = std::move(master);
    } else {
      if (!startup_output.empty()) Output(FrameType::kStdout, startup_output);
      s_.out = std::move(out_r);
      s_.err = std::move(err_r);
      s_.in = std::move(in_w);
    }
    for (int fd : {s_.out.get(), s_.err.get(), s_.in.get()}) {
      if (fd >= 0) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    }
    // The process may already be gone (reaped while we waited for the runtime).
    for (auto& [pid, status] : reaped_) {
      if (pid == pid_) {
        exited_ = true;
        exit_code_ = ExitCodeOf(status);
        exit_time_ = std::chrono::steady_clock::now();
      }
    }
    return true;
  }

  static void ReadAvailable(int fd, std::string* out) {
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    char buf[4096];
    while (out->size() < 65536) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) break;
      out->append(buf, static_cast<size_t>(n));
    }
  }

  void DrainSignals() {
    struct signalfd_siginfo info;
    while (::read(sigfd_.get(), &info, sizeof info) == sizeof info) {
    }
    while (true) {
      int status;
      pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid <= 0) break;
      if (pid == pid_ && pid_ > 0) {
        exited_ = true;
        exit_code_ = ExitCodeOf(status);
        exit_time_ = std::chrono::steady_clock::now();
      } else {
        reaped_.emplace_back(pid, status);
        if (reaped_.size() > 64) reaped_.erase(reaped_.begin());
      }
    }
  }

  void AcceptClient() {
    int fd = ::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return;
    struct timeval tv {
      5, 0
    };  // a client that stops reading is dropped, not waited for
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    clients_.emplace(fd, FrameDecoder());
  }

  void DropClient(int fd) {
    clients_.erase(fd);
    ::close(fd);
  }

  void Broadcast(const std::string& frame) {
    std::vector<int> gone;
    for (auto& [fd, decoder] : clients_) {
      if (!fs::WriteAll(fd, frame, "attach client").ok()) gone.push_back(fd);
    }
    for (int fd : gone) DropClient(fd);
  }

  // One chunk of output: to the log and to the clients.
  void Output(FrameType stream, const std::string& data) {
    if (log_fd_.valid()) {
      const std::string ts = FormatRfc3339Nano(NowUnixNanos());
      const char* name = stream == FrameType::kStderr ? "stderr" : "stdout";
      std::string lines;
      size_t start = 0;
      while (start < data.size()) {
        size_t nl = data.find('\n', start);
        bool full = nl != std::string::npos;
        size_t end = full ? nl : data.size();
        lines += ts + " " + name + (full ? " F " : " P ");
        lines.append(data, start, end - start);
        lines += "\n";
        start = end + 1;
      }
      (void)!::write(log_fd_.get(), lines.data(), lines.size());
    }
    Broadcast(EncodeFrame(stream, data));
  }

  void HandleClientInput(int fd) {
    char buf[65536];
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) {
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
      DropClient(fd);
      return;
    }
    auto& decoder = clients_[fd];
    decoder.Append(buf, static_cast<size_t>(n));
    Frame frame;
    while (true) {
      auto next = decoder.Next(&frame);
      if (!next.ok()) {
        DropClient(fd);
        return;
      }
      if (!*next) break;
      switch (frame.type) {
        case FrameType::kStdin:
          if (s_.in.valid()) s_.in_pending += frame.payload;
          break;
        case FrameType::kStdinClose:
          if (o_.terminal) {
            s_.in_pending += '\x04';  // end of input on a terminal: ^D
          } else {
            s_.close_in_after_pending = true;
          }
          break;
        case FrameType::kResize: {
          uint16_t rows, cols;
          if (o_.terminal && DecodeResize(frame.payload, &rows, &cols)) {
            struct winsize ws {};
            ws.ws_row = rows;
            ws.ws_col = cols;
            ::ioctl(s_.out.get(), TIOCSWINSZ, &ws);
          }
          break;
        }
        default:
          break;  // clients send nothing else
      }
    }
    FlushStdin();
  }

  void FlushStdin() {
    while (s_.in.valid() && !s_.in_pending.empty()) {
      ssize_t n = ::write(s_.in.get(), s_.in_pending.data(), s_.in_pending.size());
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        s_.in_pending.clear();  // the process closed its stdin
        s_.in.Reset();
        return;
      }
      s_.in_pending.erase(0, static_cast<size_t>(n));
    }
    if (s_.close_in_after_pending && s_.in_pending.empty() && !o_.terminal) s_.in.Reset();
  }

  // Reads one output stream; false at its end.
  bool PumpOutput(UniqueFd& fd, FrameType stream) {
    char buf[65536];
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n > 0) {
      Output(stream, std::string(buf, static_cast<size_t>(n)));
      return true;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
    fd.Reset();  // EOF, or EIO from a terminal whose last holder closed it
    if (o_.terminal) s_.in.Reset();
    return false;
  }

  void Loop() {
    while (true) {
      bool outputs_open = s_.out.valid() || s_.err.valid();
      if (exited_) {
        // Output written just before the exit is still in the pipes; a process that
        // handed its stdio to a daemon outside the pid namespace cannot hold us long.
        if (!outputs_open) return;
        if (std::chrono::steady_clock::now() - exit_time_ > std::chrono::seconds(2)) return;
      }
      std::vector<struct pollfd> fds;
      fds.push_back({sigfd_.get(), POLLIN, 0});
      fds.push_back({listen_fd_.get(), POLLIN, 0});
      size_t out_index = fds.size();
      fds.push_back({s_.out.get(), POLLIN, 0});
      size_t err_index = fds.size();
      fds.push_back({s_.err.get(), POLLIN, 0});
      size_t in_index = fds.size();
      fds.push_back({s_.in.get(), static_cast<short>(s_.in_pending.empty() ? 0 : POLLOUT), 0});
      size_t client_index = fds.size();
      for (auto& [fd, decoder] : clients_) fds.push_back({fd, POLLIN, 0});
      int n = ::poll(fds.data(), fds.size(), exited_ ? 100 : -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (fds[0].revents) DrainSignals();
      if (fds[1].revents & POLLIN) AcceptClient();
      if (fds[out_index].revents) PumpOutput(s_.out, FrameType::kStdout);
      if (fds[err_index].revents) PumpOutput(s_.err, FrameType::kStderr);
      if (fds[in_index].revents & (POLLOUT | POLLERR)) FlushStdin();
      for (size_t i = client_index; i < fds.size(); i++) {
        if (fds[i].revents) HandleClientInput(fds[i].fd);
      }
    }
  }

  int Finish(int code, const std::string& error) {
    if (code >= 0) {
      std::string record = std::to_string(code) + " " + std::to_string(NowUnixNanos()) + "\n";
      (void)fs::WriteFileAtomic(o_.dir + "/" + ExitFileName(o_.exec_id), record, 0644);
    }
    Broadcast(EncodeExitFrame(code >= 0 ? code : 255));
    for (auto& [fd, decoder] : clients_) {
      ::shutdown(fd, SHUT_WR);
      ::close(fd);
    }
    clients_.clear();
    CleanupFiles(/*keep_exit=*/true);
    return error.empty() ? 0 : 1;
  }

  void CleanupFiles(bool keep_exit) {
    ::unlinkat(dir_fd_.get(), AttachSocketName(o_.exec_id).c_str(), 0);
    if (!o_.exec_id.empty()) {
      ::unlinkat(dir_fd_.get(), ExecSpecFileName(o_.exec_id).c_str(), 0);
      ::unlinkat(dir_fd_.get(), PidFileName(o_.exec_id).c_str(), 0);
      if (!keep_exit) ::unlinkat(dir_fd_.get(), ExitFileName(o_.exec_id).c_str(), 0);
    }
  }

  const ShimOptions& o_;
  int status_fd_;
  UniqueFd sigfd_, dir_fd_, listen_fd_, log_fd_;
  std::string console_name_;
  Streams s_;
  std::map<int, FrameDecoder> clients_;
  std::vector<std::pair<pid_t, int>> reaped_;
  pid_t pid_ = 0;
  bool exited_ = false;
  int exit_code_ = 255;
  std::chrono::steady_clock::time_point exit_time_;
};

}  // namespace

std::string AttachSocketName(const std::string& exec_id) {
  return Prefixed(exec_id, "attach.sock", ".sock");
}
std::string ExitFileName(const std::string& exec_id) { return Prefixed(exec_id, "exit", ".exit"); }
std::string PidFileName(const std::string& exec_id) { return Prefixed(exec_id, "pid", ".pid"); }
std::string ExecSpecFileName(const std::string& exec_id) { return "exec-" + exec_id + ".json"; }

std::string EncodeShimOptions(const ShimOptions& o) {
  return json{{"dir", o.dir},         {"id", o.container_id},
              {"runtime", o.runtime}, {"exec", o.exec_id},
              {"tty", o.terminal},    {"stdin", o.stdin_open},
              {"log", o.log},         {"start_timeout_ms", o.start_timeout_ms}}
      .dump();
}

Result<ShimOptions> DecodeShimOptions(const std::string& text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return Status::InvalidArgument("shim options are not JSON");
  ShimOptions o;
  try {
    o.dir = j.at("dir").get<std::string>();
    o.container_id = j.at("id").get<std::string>();
    o.runtime = j.at("runtime").get<std::vector<std::string>>();
    o.exec_id = j.value("exec", "");
    o.terminal = j.value("tty", false);
    o.stdin_open = j.value("stdin", false);
    o.log = j.value("log", true);
    o.start_timeout_ms = j.value("start_timeout_ms", 60000);
  } catch (const json::exception& e) {
    return Status::InvalidArgument(std::string("shim options: ") + e.what());
  }
  if (o.runtime.empty()) return Status::InvalidArgument("shim options: no runtime");
  return o;
}

int RunShim(const ShimOptions& options, int status_fd) {
  Shim shim(options, status_fd);
  return shim.Run();
}

Result<ExitRecord> ReadExitFile(const std::string& dir, const std::string& exec_id) {
  auto text = fs::ReadFile(dir + "/" + ExitFileName(exec_id));
  if (!text.ok()) return text.status();
  ExitRecord r;
  long long code = 0, nanos = 0;
  if (std::sscanf(text->c_str(), "%lld %lld", &code, &nanos) < 1) {
    return Status::DataLoss("exit file of " + dir + " is corrupt");
  }
  r.code = static_cast<int>(code);
  r.unix_nanos = nanos;
  return r;
}

}  // namespace strata::runtime
