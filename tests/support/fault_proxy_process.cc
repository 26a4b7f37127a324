#include "tests/support/fault_proxy_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/fs.h"
#include "registry/http.h"

extern char** environ;

namespace strata::testing {

Result<std::unique_ptr<FaultProxyProcess>> FaultProxyProcess::Start(const std::string& binary,
                                                                    const std::string& upstream,
                                                                    const std::string& log_dir) {
  std::unique_ptr<FaultProxyProcess> p(new FaultProxyProcess());
  p->log_path_ = log_dir + "/fault-proxy.log";
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return Status::FromErrno(errno, "pipe");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  std::vector<std::string> args = {binary,        "--upstream", upstream,    "--listen",
                                   "127.0.0.1:0", "--log",      p->log_path_};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int rc = posix_spawn(&p->pid_, binary.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  if (rc != 0) {
    ::close(out[0]);
    p->pid_ = -1;
    return Status::FromErrno(rc, "start " + binary);
  }
  // First line: "listening HOST:PORT".
  std::string line;
  char c;
  while (::read(out[0], &c, 1) == 1 && c != '\n') line += c;
  ::close(out[0]);
  const std::string prefix = "listening ";
  if (line.rfind(prefix, 0) != 0) return Status::Internal("fault proxy said: " + line);
  p->address_ = line.substr(prefix.size());
  return p;
}

FaultProxyProcess::~FaultProxyProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
}

Status FaultProxyProcess::SetRules(const std::string& rules) {
  registry::HttpClient http("strata-test");
  registry::HttpRequest req;
  req.method = rules.empty() ? "DELETE" : "POST";
  req.url = "http://" + address_ + "/__fault/rules";
  req.body = rules;
  ASSIGN_OR_RETURN(registry::HttpResponse resp, http.Do(req));
  if (resp.status != 200) {
    return Status::InvalidArgument("fault proxy refused rules (HTTP " +
                                   std::to_string(resp.status) + "): " + resp.body);
  }
  return Status::Ok();
}

std::string FaultProxyProcess::Log() const {
  auto text = fs::ReadFile(log_path_);
  return text.ok() ? *text : "";
}

}  // namespace strata::testing
