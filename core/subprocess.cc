#include "core/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

extern char** environ;

namespace strata {
namespace {

int64_t MonotonicMs() {
  struct timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

struct Pipe {
  int read_fd = -1;
  int write_fd = -1;
  ~Pipe() {
    if (read_fd >= 0) ::close(read_fd);
    if (write_fd >= 0) ::close(write_fd);
  }
  Status Open() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return Status::FromErrno(errno, "pipe");
    read_fd = fds[0];
    write_fd = fds[1];
    return Status::Ok();
  }
};

void CloseFd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

}  // namespace

Result<ProcessResult> RunProcess(const std::vector<std::string>& argv,
                                 const ProcessOptions& options) {
  if (argv.empty()) return Status::InvalidArgument("no program to run");
  Pipe in, out, err;
  RETURN_IF_ERROR(in.Open());
  RETURN_IF_ERROR(out.Open());
  RETURN_IF_ERROR(err.Open());

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in.read_fd, 0);
  posix_spawn_file_actions_adddup2(&actions, out.write_fd, 1);
  posix_spawn_file_actions_adddup2(&actions, err.write_fd, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);  // the daemon blocks SIGTERM; the child must not
  posix_spawnattr_setsigdefault(&attr, &all);

  std::vector<char*> args;
  std::vector<std::string> copy = argv;
  for (auto& a : copy) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = ::posix_spawnp(&pid, copy[0].c_str(), &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    if (rc == ENOENT) return Status::NotFound("program " + argv[0] + " not found");
    return Status::FromErrno(rc, "start " + argv[0]);
  }
  CloseFd(in.read_fd);
  CloseFd(out.write_fd);
  CloseFd(err.write_fd);
  ::fcntl(in.write_fd, F_SETFL, O_NONBLOCK);

  // A helper that closes its stdin early makes our write fail with EPIPE; keep the
  // SIGPIPE that comes with it from ending this process (and drop it afterwards).
  sigset_t pipe_set, old_mask;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);
  bool sigpipe_was_blocked = sigismember(&old_mask, SIGPIPE) == 1;

  ProcessResult result;
  size_t written = 0;
  if (options.stdin_data.empty()) CloseFd(in.write_fd);
  const int64_t deadline = MonotonicMs() + options.timeout_ms;
  while (out.read_fd >= 0 || err.read_fd >= 0) {
    int64_t left = deadline - MonotonicMs();
    if (left <= 0) {
      result.timed_out = true;
      ::kill(-pid, SIGKILL);
      break;
    }
    struct pollfd fds[3];
    int n = 0;
    int out_i = -1, err_i = -1, in_i = -1;
    if (out.read_fd >= 0) fds[out_i = n++] = {out.read_fd, POLLIN, 0};
    if (err.read_fd >= 0) fds[err_i = n++] = {err.read_fd, POLLIN, 0};
    if (in.write_fd >= 0) fds[in_i = n++] = {in.write_fd, POLLOUT, 0};
    int ready = ::poll(fds, static_cast<nfds_t>(n), static_cast<int>(left));
    if (ready < 0 && errno != EINTR) break;
    auto drain = [&](int index, int& fd, std::string& sink) {
      if (index < 0 || !(fds[index].revents & (POLLIN | POLLHUP | POLLERR))) return;
      char buf[8192];
      ssize_t got = ::read(fd, buf, sizeof buf);
      if (got <= 0) {
        CloseFd(fd);
        return;
      }
      size_t room = options.max_output_bytes - std::min(sink.size(), options.max_output_bytes);
      sink.append(buf, std::min(room, static_cast<size_t>(got)));
    };
    drain(out_i, out.read_fd, result.stdout_data);
    drain(err_i, err.read_fd, result.stderr_data);
    if (in_i >= 0 && (fds[in_i].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t w = ::write(in.write_fd, options.stdin_data.data() + written,
                          options.stdin_data.size() - written);
      if (w < 0 && errno != EAGAIN) {
        CloseFd(in.write_fd);  // the helper closed its stdin
      } else if (w > 0) {
        written += static_cast<size_t>(w);
        if (written == options.stdin_data.size()) CloseFd(in.write_fd);
      }
    }
  }
  CloseFd(in.write_fd);
  if (!sigpipe_was_blocked) {
    struct timespec zero = {0, 0};
    while (sigtimedwait(&pipe_set, nullptr, &zero) == SIGPIPE) {
    }
    pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  }
  // Wait for the helper to exit (bounded by the deadline) without reaping it, so that
  // its process group id stays reserved while we kill what is left of the group.
  siginfo_t info{};
  for (;;) {
    info.si_pid = 0;
    if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0 &&
        errno != EINTR) {
      break;
    }
    if (info.si_pid == pid) break;
    if (MonotonicMs() >= deadline) {
      result.timed_out = true;
      break;
    }
    ::usleep(1000);
  }
  ::kill(-pid, SIGKILL);  // the helper if it is late, and its children in any case
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.signal = WTERMSIG(status);
  }
  return result;
}

}  // namespace strata
