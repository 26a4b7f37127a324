#include "tests/support/local_registry.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "core/fs.h"
#include "core/subprocess.h"
#include "registry/http.h"

extern char** environ;

namespace strata::testing {

Result<int> FreeLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return Status::FromErrno(errno, "socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    int err = errno;
    ::close(fd);
    return Status::FromErrno(err, "bind 127.0.0.1:0");
  }
  ::close(fd);
  return static_cast<int>(ntohs(addr.sin_port));
}

Result<std::string> WriteDockerConfig(const std::string& dir, const std::string& host,
                                      const std::string& user, const std::string& password) {
  RETURN_IF_ERROR(fs::MakeDirs(dir, 0700));
  ASSIGN_OR_RETURN(ProcessResult b64,
                   RunProcess({"base64", "-w0"}, {.stdin_data = user + ":" + password}));
  std::string path = dir + "/config.json";
  RETURN_IF_ERROR(fs::WriteFileAtomic(
      path, "{\"auths\":{\"" + host + "\":{\"auth\":\"" + b64.stdout_data + "\"}}}\n", 0600));
  return path;
}

Result<std::unique_ptr<LocalRegistry>> LocalRegistry::Start(const LocalRegistryOptions& options) {
  std::unique_ptr<LocalRegistry> r(new LocalRegistry());
  char tmpl[] = "/tmp/strata-registry-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return Status::FromErrno(errno, "mkdtemp");
  r->dir_ = tmpl;
  ASSIGN_OR_RETURN(int port, FreeLoopbackPort());
  r->address_ = "127.0.0.1:" + std::to_string(port);

  std::string config =
      "version: 0.1\n"
      "log:\n  level: error\n  accesslog:\n    disabled: true\n"
      "storage:\n  filesystem:\n    rootdirectory: " +
      r->dir_ +
      "/data\n"
      "  delete:\n    enabled: true\n"
      "http:\n  addr: " +
      r->address_ + "\n";
  if (!options.htpasswd_user.empty()) {
    ASSIGN_OR_RETURN(ProcessResult hp, RunProcess({"htpasswd", "-Bbn", options.htpasswd_user,
                                                   options.htpasswd_password}));
    if (hp.exit_code != 0) return Status::Internal("htpasswd failed: " + hp.stderr_data);
    RETURN_IF_ERROR(fs::WriteFileAtomic(r->dir_ + "/htpasswd", hp.stdout_data));
    config += "auth:\n  htpasswd:\n    realm: strata-test\n    path: " + r->dir_ + "/htpasswd\n";
  }
  RETURN_IF_ERROR(fs::WriteFileAtomic(r->dir_ + "/config.yml", config));

  std::string log = r->dir_ + "/registry.log";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  std::string config_path = r->dir_ + "/config.yml";
  const char* argv[] = {"/usr/bin/docker-registry", "serve", config_path.c_str(), nullptr};
  int rc = posix_spawn(&r->pid_, argv[0], &actions, nullptr, const_cast<char**>(argv), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    r->pid_ = -1;
    return Status::FromErrno(rc, "start /usr/bin/docker-registry");
  }

  registry::HttpClient http("strata-test");
  for (int i = 0; i < 200; i++) {
    registry::HttpRequest req;
    req.url = "http://" + r->address_ + "/v2/";
    req.total_timeout = std::chrono::milliseconds(1000);
    auto resp = http.Do(req);
    if (resp.ok() && (resp->status == 200 || resp->status == 401)) return r;
    int status = 0;
    if (::waitpid(r->pid_, &status, WNOHANG) == r->pid_) {
      r->pid_ = -1;
      auto text = fs::ReadFile(log);
      return Status::Internal("docker-registry exited: " + (text.ok() ? *text : ""));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return Status::Unavailable("docker-registry did not answer on " + r->address_);
}

LocalRegistry::~LocalRegistry() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 50; i++) {
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
  }
  if (!dir_.empty()) (void)fs::RemoveAll(dir_);
}

}  // namespace strata::testing
