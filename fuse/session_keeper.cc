#include "fuse/session_keeper.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

namespace strata::fuse {
namespace {

constexpr size_t kMaxMessage = 8192;

Result<sockaddr_un> AddressOf(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return Status::InvalidArgument("socket path too long: " + path);
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

// Sends one message, with `fd` attached unless it is -1.
bool SendMessage(int sock, const std::string& text, int fd) {
  iovec iov{const_cast<char*>(text.data()), text.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  }
  ssize_t n;
  do {
    n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  return n == static_cast<ssize_t>(text.size());
}

// Receives one message and the descriptor it carries (-1 if none). False at EOF or
// on an error.
bool ReceiveMessage(int sock, std::string* text, int* fd) {
  char buf[kMaxMessage];
  iovec iov{buf, sizeof(buf)};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  *fd = -1;
  if (n <= 0) return false;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      std::memcpy(fd, CMSG_DATA(c), sizeof(int));
    }
  }
  text->assign(buf, static_cast<size_t>(n));
  return true;
}

int ConnectTo(const std::string& path) {
  Result<sockaddr_un> addr = AddressOf(path);
  if (!addr.ok()) return -1;
  int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Starts `argv` detached: its own session, stdio on /dev/null, no other descriptor.
Status StartDetached(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t child = ::fork();
  if (child < 0) return Status::FromErrno(errno, "fork the FUSE session keeper");
  if (child == 0) {
    // Only async-signal-safe calls from here on.
    if (::setsid() < 0) ::_exit(127);
    pid_t grandchild = ::fork();
    if (grandchild != 0) ::_exit(grandchild < 0 ? 127 : 0);
    int null_fd = ::open("/dev/null", O_RDWR);
    if (null_fd >= 0) {
      ::dup2(null_fd, 0);
      ::dup2(null_fd, 1);
      ::dup2(null_fd, 2);
    }
    ::syscall(SYS_close_range, 3U, ~0U, 0U);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return Status::Internal("starting the FUSE session keeper " + argv[0] + " failed");
  }
  return Status::Ok();
}

// Binds the keeper's socket; false when another keeper answers there already.
int BindKeeperSocket(const std::string& path) {
  Result<sockaddr_un> addr = AddressOf(path);
  if (!addr.ok()) return -1;
  int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr)) != 0) {
    if (errno != EADDRINUSE) {
      ::close(fd);
      return -1;
    }
    int other = ConnectTo(path);
    if (other >= 0) {  // a live keeper: leave it be
      ::close(other);
      ::close(fd);
      return -1;
    }
    ::unlink(path.c_str());  // a dead keeper's socket
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr)) != 0) {
      ::close(fd);
      return -1;
    }
  }
  ::chmod(path.c_str(), 0600);
  if (::listen(fd, 4) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

int RunSessionKeeper(const std::string& socket_path, std::chrono::milliseconds grace) {
  ::signal(SIGPIPE, SIG_IGN);
  ::signal(SIGHUP, SIG_IGN);
  int listener = BindKeeperSocket(socket_path);
  if (listener < 0) return 1;
  std::map<std::string, int> kept;
  int client = -1;
  using Clock = std::chrono::steady_clock;
  Clock::time_point alone_since = Clock::now();  // no client connected since then
  const auto first_client_wait = std::chrono::seconds(10);

  while (true) {
    std::vector<pollfd> fds;
    fds.push_back({client >= 0 ? client : listener, POLLIN, 0});
    std::vector<std::string> order;
    for (const auto& [mountpoint, fd] : kept) {
      fds.push_back({fd, 0, 0});  // only errors: the connection ended
      order.push_back(mountpoint);
    }
    int timeout_ms = -1;
    if (client < 0) {
      auto limit = kept.empty() ? std::chrono::milliseconds(first_client_wait) : grace;
      auto left = limit - std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() -
                                                                                alone_since);
      if (left.count() <= 0) break;  // nobody came back in time
      timeout_ms = static_cast<int>(std::min<int64_t>(left.count(), 1000));
    }
    int n = ::poll(fds.data(), fds.size(), timeout_ms);
    if (n < 0 && errno != EINTR) break;
    for (size_t i = 1; i < fds.size(); i++) {
      if (fds[i].revents & (POLLERR | POLLHUP | POLLNVAL)) {
        ::close(kept[order[i - 1]]);
        kept.erase(order[i - 1]);
      }
    }
    if (client < 0 && (fds[0].revents & POLLIN)) {
      client = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      continue;
    }
    if (client >= 0 && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
      std::string request;
      int fd = -1;
      if (!ReceiveMessage(client, &request, &fd)) {
        ::close(client);
        client = -1;
        alone_since = Clock::now();
        if (kept.empty()) break;
        continue;
      }
      if (request.rfind("PUT ", 0) == 0) {
        if (fd < 0) {
          SendMessage(client, "ERR no descriptor", -1);
          continue;
        }
        std::string mountpoint = request.substr(4);
        auto it = kept.find(mountpoint);
        if (it != kept.end()) ::close(it->second);
        kept[mountpoint] = fd;
        SendMessage(client, "OK", -1);
      } else if (request.rfind("DEL ", 0) == 0) {
        if (fd >= 0) ::close(fd);
        auto it = kept.find(request.substr(4));
        if (it != kept.end()) {
          ::close(it->second);
          kept.erase(it);
        }
        SendMessage(client, "OK", -1);
      } else if (request == "GET") {
        if (fd >= 0) ::close(fd);
        for (const auto& [mountpoint, kept_fd] : kept) SendMessage(client, "FD " + mountpoint, kept_fd);
        SendMessage(client, "END", -1);
      } else {
        if (fd >= 0) ::close(fd);
        SendMessage(client, "ERR unknown request", -1);
      }
    }
    if (client < 0 && kept.empty() && Clock::now() - alone_since > first_client_wait) break;
  }
  // Closing the last copies ends the connections: their users get ENOTCONN.
  for (const auto& [mountpoint, fd] : kept) ::close(fd);
  if (client >= 0) ::close(client);
  ::close(listener);
  ::unlink(socket_path.c_str());
  return 0;
}

SessionKeeperClient::SessionKeeperClient(std::string socket_path,
                                         std::vector<std::string> keeper_command,
                                         std::chrono::milliseconds grace)
    : socket_path_(std::move(socket_path)), keeper_command_(std::move(keeper_command)), grace_(grace) {}

SessionKeeperClient::~SessionKeeperClient() {
  std::lock_guard<std::mutex> lock(mu_);
  DisconnectLocked();
}

void SessionKeeperClient::DisconnectLocked() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Status SessionKeeperClient::EnsureConnected(bool start) {
  if (fd_ >= 0) return Status::Ok();
  fd_ = ConnectTo(socket_path_);
  if (fd_ >= 0 || !start) {
    return fd_ >= 0 ? Status::Ok()
                    : Status::Unavailable("no FUSE session keeper at " + socket_path_);
  }
  std::vector<std::string> argv = keeper_command_;
  argv.push_back("--fuse-keeper");
  argv.push_back(socket_path_);
  argv.push_back(std::to_string(grace_.count()));
  RETURN_IF_ERROR(StartDetached(argv));
  for (int attempt = 0; attempt < 200 && fd_ < 0; attempt++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    fd_ = ConnectTo(socket_path_);
  }
  if (fd_ < 0) {
    return Status::Unavailable("the FUSE session keeper did not come up at " + socket_path_);
  }
  return Status::Ok();
}

Result<std::string> SessionKeeperClient::Exchange(const std::string& request, int pass_fd,
                                                  int* received_fd) {
  if (!SendMessage(fd_, request, pass_fd)) {
    int err = errno;
    DisconnectLocked();
    return Status::FromErrno(err, "FUSE session keeper at " + socket_path_);
  }
  std::string reply;
  int fd = -1;
  if (!ReceiveMessage(fd_, &reply, &fd)) {
    DisconnectLocked();
    return Status::Unavailable("the FUSE session keeper at " + socket_path_ + " went away");
  }
  if (received_fd != nullptr) {
    *received_fd = fd;
  } else if (fd >= 0) {
    ::close(fd);
  }
  return reply;
}

Status SessionKeeperClient::Put(const std::string& mountpoint, int fd) {
  std::lock_guard<std::mutex> lock(mu_);
  for (int attempt = 0; attempt < 2; attempt++) {  // once more after a keeper went away
    RETURN_IF_ERROR(EnsureConnected(/*start=*/true));
    Result<std::string> reply = Exchange("PUT " + mountpoint, fd, nullptr);
    if (!reply.ok()) continue;
    if (*reply != "OK") return Status::Internal("FUSE session keeper: " + *reply);
    return Status::Ok();
  }
  return Status::Unavailable("cannot hand the FUSE session of " + mountpoint +
                             " to the keeper at " + socket_path_);
}

Status SessionKeeperClient::Remove(const std::string& mountpoint) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!EnsureConnected(/*start=*/false).ok()) return Status::Ok();
  Result<std::string> reply = Exchange("DEL " + mountpoint, -1, nullptr);
  return reply.status();
}

Result<std::map<std::string, int>> SessionKeeperClient::TakeAll() {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, int> out;
  if (!EnsureConnected(/*start=*/false).ok()) return out;
  if (!SendMessage(fd_, "GET", -1)) {
    DisconnectLocked();
    return Status::Unavailable("the FUSE session keeper at " + socket_path_ + " went away");
  }
  while (true) {
    std::string reply;
    int fd = -1;
    if (!ReceiveMessage(fd_, &reply, &fd)) {
      for (auto& [_, f] : out) ::close(f);
      DisconnectLocked();
      return Status::Unavailable("the FUSE session keeper at " + socket_path_ + " went away");
    }
    if (reply == "END") break;
    if (reply.rfind("FD ", 0) == 0 && fd >= 0) {
      out[reply.substr(3)] = fd;
    } else if (fd >= 0) {
      ::close(fd);
    }
  }
  return out;
}

}  // namespace strata::fuse
