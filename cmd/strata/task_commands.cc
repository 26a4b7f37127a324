#include "cmd/strata/task_commands.h"

#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "cmd/strata/output.h"
#include "cmd/strata/progress.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/fs.h"
#include "core/unique_fd.h"
#include "runtime-bridge/attach.h"
#include "runtime-bridge/oci_spec.h"
#include "strata/images/v1/images.grpc.pb.h"
#include "strata/tasks/v1/tasks.grpc.pb.h"

namespace strata::cli {
namespace {

namespace images = ::strata::images::v1;
namespace tasks = ::strata::tasks::v1;
using runtime::FrameType;

// The command split off the command line by SplitContainerCommand.
std::vector<std::string>& ContainerCommand() {
  static std::vector<std::string> command;
  return command;
}

std::string StateText(const tasks::Task& t) {
  const int64_t now = NowUnixNanos();
  auto ago = [&](int64_t then) {
    int64_t secs = then > 0 ? (now - then) / 1000000000 : 0;
    if (secs < 1) return std::string("less than a second");
    if (secs < 60) return std::to_string(secs) + (secs == 1 ? " second" : " seconds");
    if (secs < 3600) return std::to_string(secs / 60) + (secs / 60 == 1 ? " minute" : " minutes");
    if (secs < 86400) return std::to_string(secs / 3600) + (secs / 3600 == 1 ? " hour" : " hours");
    return std::to_string(secs / 86400) + (secs / 86400 == 1 ? " day" : " days");
  };
  switch (t.state()) {
    case tasks::TASK_STATE_CREATED:
      return "Created";
    case tasks::TASK_STATE_RUNNING:
      return "Up " + ago(t.started_unix_nanos());
    case tasks::TASK_STATE_STOPPED:
      return "Exited (" + std::to_string(t.exit_code()) + ") " + ago(t.finished_unix_nanos()) +
             " ago";
    default:
      return "Unknown";
  }
}

std::string StateName(tasks::TaskState s) {
  switch (s) {
    case tasks::TASK_STATE_CREATED:
      return "created";
    case tasks::TASK_STATE_RUNNING:
      return "running";
    case tasks::TASK_STATE_STOPPED:
      return "stopped";
    default:
      return "unknown";
  }
}

nlohmann::json TaskJson(const tasks::Task& t) {
  return nlohmann::json{
      {"id", t.id()},
      {"name", t.name()},
      {"image", t.image()},
      {"state", StateName(t.state())},
      {"args", std::vector<std::string>(t.args().begin(), t.args().end())},
      {"runtime", t.runtime()},
      {"pid", t.pid()},
      {"exit_code", t.exit_code()},
      {"created",
       FormatTime(t.created_unix_nanos() / 1000000000, t.created_unix_nanos() % 1000000000)},
      {"uid_map", t.uid_map()},
      {"gid_map", t.gid_map()},
      {"rootfs_remap", t.rootfs_remap()},
      {"bundle", t.bundle()},
      {"snapshot_key", t.snapshot_key()},
  };
}

std::string Command(const tasks::Task& t) {
  std::string out;
  for (const auto& a : t.args()) {
    if (!out.empty()) out += " ";
    out += a;
  }
  if (out.size() > 30) out = out.substr(0, 27) + "...";
  return "\"" + out + "\"";
}

// Docker-style sizes: "64m", "1g", "512k", "1073741824".
std::optional<int64_t> ParseMemory(std::string text) {
  if (text.empty()) return std::nullopt;
  if (std::isalpha(static_cast<unsigned char>(text.back()))) {
    char unit = static_cast<char>(std::toupper(static_cast<unsigned char>(text.back())));
    text.pop_back();
    if (unit != 'B') text += unit;
  }
  auto v = ParseByteSize(text);
  if (!v.ok()) return std::nullopt;
  return static_cast<int64_t>(*v);
}

// Restores the terminal's mode when it goes out of scope.
class RawTerminal {
 public:
  explicit RawTerminal(bool enable) {
    if (!enable || !::isatty(0) || ::tcgetattr(0, &saved_) != 0) return;
    struct termios raw = saved_;
    ::cfmakeraw(&raw);
    if (::tcsetattr(0, TCSANOW, &raw) == 0) active_ = true;
  }
  ~RawTerminal() {
    if (active_) ::tcsetattr(0, TCSANOW, &saved_);
  }

 private:
  struct termios saved_ {};
  bool active_ = false;
};

// Output and frames; a failed write (closed stdout, the supervisor gone) ends nothing
// here: the relay notices the closed socket, and the exit code still counts.
void WriteAll(int fd, std::string_view data) { (void)fs::WriteAll(fd, data, "write"); }

std::string ResizeFrame() {
  struct winsize ws {};
  if (::ioctl(1, TIOCGWINSZ, &ws) != 0 && ::ioctl(0, TIOCGWINSZ, &ws) != 0) return "";
  return runtime::EncodeResizeFrame(ws.ws_row, ws.ws_col);
}

// Relays this process's stdio to and from an attach socket until the process exits.
// Returns its exit code, or -1 when the connection ended without one.
int Relay(int sock, bool stdin_open, bool terminal, const std::function<void(int)>& forward) {
  RawTerminal raw(terminal && stdin_open);
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGWINCH, SIGINT, SIGTERM, SIGHUP, SIGQUIT}) sigaddset(&signals, s);
  sigset_t old;
  ::sigprocmask(SIG_BLOCK, &signals, &old);
  UniqueFd sigfd(::signalfd(-1, &signals, SFD_CLOEXEC));
  if (terminal) {
    std::string resize = ResizeFrame();
    if (!resize.empty()) WriteAll(sock, resize);
  }
  runtime::FrameDecoder decoder;
  bool stdin_done = !stdin_open;
  int code = -1;
  bool done = false;
  while (!done) {
    struct pollfd fds[3] = {
        {sock, POLLIN, 0}, {sigfd.get(), POLLIN, 0}, {stdin_done ? -1 : 0, POLLIN, 0}};
    int n = ::poll(fds, 3, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents & POLLIN) {
      struct signalfd_siginfo info;
      if (::read(sigfd.get(), &info, sizeof info) == sizeof info) {
        if (info.ssi_signo == SIGWINCH) {
          if (terminal) {
            std::string resize = ResizeFrame();
            if (!resize.empty()) WriteAll(sock, resize);
          }
        } else {
          forward(static_cast<int>(info.ssi_signo));
        }
      }
    }
    if (fds[2].revents & (POLLIN | POLLHUP | POLLERR)) {
      char buf[32768];
      ssize_t got = ::read(0, buf, sizeof buf);
      if (got > 0) {
        WriteAll(sock, runtime::EncodeFrame(FrameType::kStdin,
                                            std::string_view(buf, static_cast<size_t>(got))));
      } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
        WriteAll(sock, runtime::EncodeFrame(FrameType::kStdinClose, ""));
        stdin_done = true;
      }
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      char buf[65536];
      ssize_t got = ::read(sock, buf, sizeof buf);
      if (got <= 0) {
        if (got < 0 && errno == EINTR) continue;
        break;
      }
      decoder.Append(buf, static_cast<size_t>(got));
      runtime::Frame frame;
      while (true) {
        auto next = decoder.Next(&frame);
        if (!next.ok() || !*next) break;
        if (frame.type == FrameType::kStdout) {
          WriteAll(1, frame.payload);
        } else if (frame.type == FrameType::kStderr) {
          WriteAll(2, frame.payload);
        } else if (frame.type == FrameType::kError) {
          WriteAll(2, "strata: " + frame.payload + (terminal ? "\r\n" : "\n"));
        } else if (frame.type == FrameType::kExit) {
          code = runtime::DecodeExitCode(frame.payload);
          done = true;
        }
      }
    }
  }
  sigfd.Reset();
  ::sigprocmask(SIG_SETMASK, &old, nullptr);
  return code;
}

// The image's name in the store, pulling it first when it is missing (or always).
grpc::Status EnsureImage(Context& ctx, const std::string& ref, const std::string& platform,
                         const std::string& policy, bool quiet, std::string* name) {
  auto stub = images::Images::NewStub(ctx.channel);
  if (policy != "always") {
    grpc::ClientContext cctx;
    images::InspectImageRequest req;
    req.set_name(ref);
    req.set_platform(platform);
    images::InspectImageResponse resp;
    grpc::Status st = stub->Inspect(&cctx, req, &resp);
    if (st.ok()) {
      *name = resp.image().name();
      return st;
    }
    if (st.error_code() != grpc::StatusCode::NOT_FOUND || policy == "never") return st;
  }
  grpc::ClientContext cctx;
  images::PullRequest pull;
  pull.set_reference(ref);
  pull.set_platform(platform);
  auto reader = stub->Pull(&cctx, pull);
  images::PullProgress last;
  grpc::Status st = Follow(reader, quiet || !::isatty(2), &last);
  if (st.ok()) *name = last.image().name();
  return st;
}

std::vector<std::string> ReadEnvFile(const std::string& path, std::string* error) {
  std::vector<std::string> out;
  std::ifstream in(path);
  if (!in) {
    *error = "cannot read env file " + path;
    return out;
  }
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#') continue;
    line = line.substr(start);
    if (line.find('=') == std::string::npos) {
      // Docker: a bare name takes the value from this environment.
      const char* v = std::getenv(line.c_str());
      if (v == nullptr) continue;
      line += "=" + std::string(v);
    }
    out.push_back(line);
  }
  return out;
}

// Runs `fn` on each task reference; prints the name on success (Docker style).
int ForEachTask(const std::vector<std::string>& refs, const std::string& verb,
                const std::function<grpc::Status(const std::string&)>& fn) {
  int rc = 0;
  for (const auto& ref : refs) {
    grpc::Status st = fn(ref);
    if (!st.ok()) {
      rc = Fail(verb + " " + ref, st);
    } else {
      std::cout << ref << "\n";
    }
  }
  return rc;
}

}  // namespace

void SetContainerCommand(std::vector<std::string> command) {
  ContainerCommand() = std::move(command);
}

std::vector<std::string> SplitContainerCommand(std::vector<std::string>& args) {
  static const std::set<std::string> kGlobalValues = {"--address", "-a", "--snapshotter"};
  static const std::set<std::string> kValues = {
      "--name",       "-e",         "--env",          "--env-file", "-v",
      "--volume",     "-w",         "--workdir",      "-u",         "--user",
      "--entrypoint", "-m",         "--memory",       "--cpus",     "--pids-limit",
      "--net",        "--network",  "--hostname",     "--runtime",  "--userns",
      "--device",     "--platform", "--rootfs-remap", "--pull"};
  size_t i = 1;
  while (i < args.size() && !args[i].empty() && args[i][0] == '-') {
    if (kGlobalValues.count(args[i])) i++;
    i++;
  }
  if (i >= args.size() || (args[i] != "run" && args[i] != "exec")) return {};
  for (size_t j = i + 1; j < args.size(); j++) {
    const std::string& a = args[j];
    if (a == "--") {
      // `--` ends our options: the next word is the image/task.
      args.erase(args.begin() + static_cast<long>(j));
      if (j >= args.size()) return {};
    } else if (!a.empty() && a[0] == '-' && a != "-") {
      if (kValues.count(a)) j++;
      continue;
    }
    std::vector<std::string> command(args.begin() + static_cast<long>(j) + 1, args.end());
    args.resize(j + 1);
    return command;
  }
  return {};
}

void AddTaskCommands(CLI::App& app, Context& ctx, std::function<void(std::function<int()>)> run) {
  auto stub = [&ctx] { return tasks::Tasks::NewStub(ctx.channel); };

  // run
  {
    auto* cmd = app.add_subcommand("run", "run a command in a new container from an image");
    struct RunFlags {
      std::string image, name, workdir, user, entrypoint, memory,
          net = "none", hostname, runtime, userns, platform, remap, pull = "missing";
      std::vector<std::string> env, env_files, volumes, devices;
      bool rm = false, detach = false, interactive = false, tty = false, read_only = false,
           quiet = false, has_entrypoint = false;
      double cpus = 0;
      int64_t pids = 0;
    };
    auto f = std::make_shared<RunFlags>();
    cmd->add_option("image", f->image, "image reference (pulled when missing)")->required();
    cmd->add_option("--name", f->name, "name of the task");
    cmd->add_flag("--rm", f->rm, "remove the task when it exits");
    cmd->add_flag("-d,--detach", f->detach, "run in the background and print the task id");
    cmd->add_flag("-i,--interactive", f->interactive, "keep stdin open");
    cmd->add_flag("-t,--tty", f->tty, "allocate a terminal");
    cmd->add_option("-e,--env", f->env, "set an environment variable (KEY=VALUE)");
    cmd->add_option("--env-file", f->env_files, "read environment variables from a file");
    cmd->add_option("-v,--volume", f->volumes, "bind mount HOST:CONTAINER[:ro|rw]");
    cmd->add_option("-w,--workdir", f->workdir, "working directory inside the container");
    cmd->add_option("-u,--user", f->user, "USER[:GROUP] (names from the image's /etc/passwd)");
    cmd->add_option("--entrypoint", f->entrypoint, "replace the image's entrypoint");
    cmd->add_flag("--read-only", f->read_only, "mount the root filesystem read-only");
    cmd->add_option("-m,--memory", f->memory, "memory limit (e.g. 64m, 1g)");
    cmd->add_option("--cpus", f->cpus, "CPU limit (e.g. 0.5)");
    cmd->add_option("--pids-limit", f->pids, "maximum number of processes");
    cmd->add_option("--net,--network", f->net, "none (default: loopback only) or host");
    cmd->add_option("--hostname", f->hostname, "container host name");
    cmd->add_option("--runtime", f->runtime, "runc, crun, runsc or a path (default: the daemon's)");
    cmd->add_option("--userns", f->userns, "host (default), auto, or CONTAINER:HOST:LENGTH");
    cmd->add_option("--rootfs-remap", f->remap,
                    "with --userns: idmapped, metacopy-chown or chown (default: best available)");
    cmd->add_option("--device", f->devices,
                    "CDI device (vendor.com/class=name) or host device path");
    cmd->add_option("--platform", f->platform, "os/arch[/variant] of the image");
    cmd->add_option("--pull", f->pull, "missing (default), always or never");
    cmd->add_flag("-q,--quiet", f->quiet, "no pull progress");
    cmd->callback([=, &ctx] {
      f->has_entrypoint = cmd->count("--entrypoint") > 0;
      run([=, &ctx]() -> int {
        if (f->pull != "missing" && f->pull != "always" && f->pull != "never") {
          return Fail("run: --pull must be missing, always or never");
        }
        std::string name;
        grpc::Status st = EnsureImage(ctx, f->image, f->platform, f->pull, f->quiet, &name);
        if (!st.ok()) return Fail("run: image " + f->image, st);

        tasks::CreateTaskRequest req;
        req.set_image(name);
        req.set_platform(f->platform);
        req.set_name(f->name);
        if (f->has_entrypoint) {
          req.set_has_entrypoint(true);
          req.set_entrypoint(f->entrypoint);
        }
        for (const auto& a : ContainerCommand()) req.add_cmd(a);
        for (const auto& file : f->env_files) {
          std::string error;
          auto entries = ReadEnvFile(file, &error);
          if (!error.empty()) return Fail("run: " + error);
          for (const auto& e : entries) req.add_env(e);
        }
        for (const auto& e : f->env) {
          if (e.find('=') == std::string::npos) {
            const char* v = std::getenv(e.c_str());
            if (v != nullptr) req.add_env(e + "=" + v);
            continue;
          }
          req.add_env(e);
        }
        for (const auto& v : f->volumes) req.add_volumes(v);
        for (const auto& d : f->devices) req.add_devices(d);
        req.set_workdir(f->workdir);
        req.set_user(f->user);
        req.set_read_only(f->read_only);
        if (!f->memory.empty()) {
          auto bytes = ParseMemory(f->memory);
          if (!bytes) return Fail("run: --memory \"" + f->memory + "\" is not a size such as 64m");
          req.set_memory_bytes(*bytes);
        }
        req.set_cpus(f->cpus);
        req.set_pids_limit(f->pids);
        req.set_network(f->net);
        req.set_hostname(f->hostname);
        req.set_runtime(f->runtime);
        req.set_userns(f->userns);
        req.set_rootfs_remap(f->remap);
        req.set_terminal(f->tty);
        req.set_stdin_open(f->interactive);
        req.set_auto_remove(f->rm);

        auto tasks_stub = stub();
        tasks::Task task;
        {
          grpc::ClientContext cctx;
          st = tasks_stub->Create(&cctx, req, &task);
          if (!st.ok()) return Fail("run", st);
        }
        UniqueFd sock;
        if (!f->detach) {
          auto fd = runtime::ConnectInDir(task.bundle(), "attach.sock");
          if (!fd.ok()) {
            grpc::ClientContext cctx;
            tasks::DeleteTaskRequest del;
            del.set_id(task.id());
            del.set_force(true);
            tasks::Task ignored;
            (void)tasks_stub->Delete(&cctx, del, &ignored);
            return Fail("run: attach to " + task.name() + ": " + fd.status().message());
          }
          sock.Reset(*fd);
        }
        {
          grpc::ClientContext cctx;
          tasks::TaskRef ref;
          ref.set_id(task.id());
          st = tasks_stub->Start(&cctx, ref, &task);
          if (!st.ok()) return Fail("run: start " + task.name(), st);
        }
        if (f->detach) {
          std::cout << task.id() << "\n";
          return 0;
        }
        const std::string id = task.id();
        auto forward = [&ctx, id](int sig) {
          auto s = tasks::Tasks::NewStub(ctx.channel);
          grpc::ClientContext cctx;
          tasks::KillTaskRequest kill;
          kill.set_id(id);
          kill.set_signal(sig);
          tasks::Task ignored;
          (void)s->Kill(&cctx, kill, &ignored);
        };
        int code = Relay(sock.get(), f->interactive, f->tty, forward);
        sock.Reset();
        if (code < 0) {
          grpc::ClientContext cctx;
          tasks::WaitTaskRequest wait;
          wait.set_id(id);
          tasks::Task waited;
          st = tasks_stub->Wait(&cctx, wait, &waited);
          code = st.ok() ? waited.exit_code() : 255;
        }
        if (f->rm) {
          grpc::ClientContext cctx;
          tasks::DeleteTaskRequest del;
          del.set_id(id);
          tasks::Task ignored;
          st = tasks_stub->Delete(&cctx, del, &ignored);
          if (!st.ok() && st.error_code() != grpc::StatusCode::NOT_FOUND)
            Fail("run: remove " + id, st);
        }
        return code;
      });
    });
  }

  // exec
  {
    auto* cmd = app.add_subcommand("exec", "run a command in a running task");
    struct ExecFlags {
      std::string task, workdir, user;
      std::vector<std::string> env;
      bool interactive = false, tty = false, detach = false;
    };
    auto f = std::make_shared<ExecFlags>();
    cmd->add_option("task", f->task, "task id, id prefix or name")->required();
    cmd->add_flag("-i,--interactive", f->interactive, "keep stdin open");
    cmd->add_flag("-t,--tty", f->tty, "allocate a terminal");
    cmd->add_flag("-d,--detach", f->detach, "start the command and return");
    cmd->add_option("-e,--env", f->env, "set an environment variable (KEY=VALUE)");
    cmd->add_option("-w,--workdir", f->workdir, "working directory");
    cmd->add_option("-u,--user", f->user, "USER[:GROUP]");
    cmd->callback([=, &ctx] {
      run([=, &ctx]() -> int {
        if (ContainerCommand().empty()) return Fail("exec: no command given");
        tasks::ExecTaskRequest req;
        req.set_id(f->task);
        for (const auto& a : ContainerCommand()) req.add_args(a);
        for (const auto& e : f->env) req.add_env(e);
        req.set_workdir(f->workdir);
        req.set_user(f->user);
        req.set_terminal(f->tty);
        req.set_stdin_open(f->interactive && !f->detach);
        auto tasks_stub = stub();
        tasks::ExecTaskResponse resp;
        {
          grpc::ClientContext cctx;
          grpc::Status st = tasks_stub->Exec(&cctx, req, &resp);
          if (!st.ok()) return Fail("exec", st);
        }
        auto fd = runtime::ConnectInDir(resp.bundle(), resp.socket());
        if (!fd.ok()) return Fail("exec: attach: " + fd.status().message());
        UniqueFd sock(*fd);
        if (f->detach) return 0;    // connecting started it; it runs on without us
        auto forward = [](int) {};  // signals reach an exec through its terminal or not at all
        int code = Relay(sock.get(), f->interactive, f->tty, forward);
        return code < 0 ? 255 : code;
      });
    });
  }

  // ps
  {
    auto* cmd = app.add_subcommand("ps", "list tasks");
    auto all = std::make_shared<bool>(false);
    auto quiet = std::make_shared<bool>(false);
    auto as_json = std::make_shared<bool>(false);
    cmd->add_flag("-a,--all", *all, "include stopped tasks");
    cmd->add_flag("-q,--quiet", *quiet, "only ids");
    cmd->add_flag("--json", *as_json, "JSON output");
    cmd->callback([=, &ctx] {
      run([=, &ctx]() -> int {
        grpc::ClientContext cctx;
        tasks::ListTasksRequest req;
        req.set_all(*all);
        tasks::ListTasksResponse resp;
        grpc::Status st = stub()->List(&cctx, req, &resp);
        if (!st.ok()) return Fail("ps", st);
        if (*as_json) {
          nlohmann::json out = nlohmann::json::array();
          for (const auto& t : resp.tasks()) out.push_back(TaskJson(t));
          std::cout << out.dump(2) << "\n";
          return 0;
        }
        if (*quiet) {
          for (const auto& t : resp.tasks()) std::cout << t.id().substr(0, 12) << "\n";
          return 0;
        }
        std::vector<std::vector<std::string>> rows;
        for (const auto& t : resp.tasks()) {
          std::string runtime_name = t.runtime().substr(t.runtime().rfind('/') + 1);
          rows.push_back({t.id().substr(0, 12), t.name(), t.image(), Command(t), StateText(t),
                          runtime_name, t.uid_map().empty() ? "host" : t.uid_map()});
        }
        PrintTable({"ID", "NAME", "IMAGE", "COMMAND", "STATUS", "RUNTIME", "USERNS"}, rows);
        return 0;
      });
    });
  }

  // logs
  {
    auto* cmd = app.add_subcommand("logs", "print a task's output");
    auto task = std::make_shared<std::string>();
    auto follow = std::make_shared<bool>(false);
    auto timestamps = std::make_shared<bool>(false);
    auto tail = std::make_shared<int64_t>(0);
    cmd->add_option("task", *task, "task id, id prefix or name")->required();
    cmd->add_flag("-f,--follow", *follow, "keep printing output until the task stops");
    cmd->add_flag("-t,--timestamps", *timestamps, "prefix each record with its time");
    cmd->add_option("--tail", *tail, "only the last N records");
    cmd->callback([=, &ctx] {
      run([=, &ctx]() -> int {
        grpc::ClientContext cctx;
        tasks::LogsRequest req;
        req.set_id(*task);
        req.set_follow(*follow);
        req.set_tail(*tail);
        auto reader = stub()->Logs(&cctx, req);
        tasks::LogChunk chunk;
        while (reader->Read(&chunk)) {
          std::string data = chunk.data();
          if (*timestamps) {
            data = FormatTime(chunk.unix_nanos() / 1000000000, chunk.unix_nanos() % 1000000000) +
                   " " + data;
          }
          WriteAll(chunk.stream() == tasks::LogChunk::STDERR ? 2 : 1, data);
        }
        grpc::Status st = reader->Finish();
        if (!st.ok()) return Fail("logs " + *task, st);
        return 0;
      });
    });
  }

  // stop
  {
    auto* cmd = app.add_subcommand("stop", "stop running tasks (stop signal, then SIGKILL)");
    auto refs = std::make_shared<std::vector<std::string>>();
    auto timeout = std::make_shared<int64_t>(10);
    cmd->add_option("tasks", *refs, "task ids, id prefixes or names")->required();
    cmd->add_option("-t,--time", *timeout, "seconds to wait before SIGKILL (default 10)");
    cmd->callback([=, &ctx] {
      run([=, &ctx]() -> int {
        return ForEachTask(*refs, "stop", [&](const std::string& ref) {
          grpc::ClientContext cctx;
          tasks::StopTaskRequest req;
          req.set_id(ref);
          req.set_timeout_ms(*timeout <= 0 ? 1 : *timeout * 1000);
          tasks::Task t;
          return stub()->Stop(&cctx, req, &t);
        });
      });
    });
  }

  // kill
  {
    auto* cmd = app.add_subcommand("kill", "send a signal to running tasks");
    auto refs = std::make_shared<std::vector<std::string>>();
    auto signal_name = std::make_shared<std::string>("KILL");
    auto all = std::make_shared<bool>(false);
    cmd->add_option("tasks", *refs, "task ids, id prefixes or names")->required();
    cmd->add_option("-s,--signal", *signal_name, "signal name or number (default KILL)");
    cmd->add_flag("--all", *all, "signal every process of the task, not only its first");
    cmd->callback([=, &ctx] {
      run([=, &ctx]() -> int {
        auto sig = runtime::ParseSignal(*signal_name);
        if (!sig.ok()) return Fail("kill: " + sig.status().message());
        return ForEachTask(*refs, "kill", [&](const std::string& ref) {
          grpc::ClientContext cctx;
          tasks::KillTaskRequest req;
          req.set_id(ref);
          req.set_signal(*sig);
          req.set_all(*all);
          tasks::Task t;
          return stub()->Kill(&cctx, req, &t);
        });
      });
    });
  }

  // rm
  {
    auto* cmd = app.add_subcommand("rm", "remove tasks (their rootfs changes and logs go too)");
    auto refs = std::make_shared<std::vector<std::string>>();
    auto force = std::make_shared<bool>(false);
    cmd->add_option("tasks", *refs, "task ids, id prefixes or names")->required();
    cmd->add_flag("-f,--force", *force, "kill running tasks first");
    cmd->callback([=, &ctx] {
      run([=, &ctx]() -> int {
        return ForEachTask(*refs, "rm", [&](const std::string& ref) {
          grpc::ClientContext cctx;
          tasks::DeleteTaskRequest req;
          req.set_id(ref);
          req.set_force(*force);
          tasks::Task t;
          return stub()->Delete(&cctx, req, &t);
        });
      });
    });
  }

  // wait
  {
    auto* cmd = app.add_subcommand("wait", "wait for tasks to stop and print their exit codes");
    auto refs = std::make_shared<std::vector<std::string>>();
    cmd->add_option("tasks", *refs, "task ids, id prefixes or names")->required();
    cmd->callback([=, &ctx] {
      run([=, &ctx]() -> int {
        int rc = 0;
        for (const auto& ref : *refs) {
          grpc::ClientContext cctx;
          tasks::WaitTaskRequest req;
          req.set_id(ref);
          tasks::Task t;
          grpc::Status st = stub()->Wait(&cctx, req, &t);
          if (!st.ok()) {
            rc = Fail("wait " + ref, st);
            continue;
          }
          std::cout << t.exit_code() << "\n";
        }
        return rc;
      });
    });
  }
}

}  // namespace strata::cli
