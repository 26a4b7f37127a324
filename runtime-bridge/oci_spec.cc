#include "runtime-bridge/oci_spec.h"

#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstring>

namespace strata::runtime {
namespace {

using json = nlohmann::json;

constexpr char kDefaultPath[] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

std::vector<std::string> StringArray(const json& j, const char* key) {
  std::vector<std::string> out;
  auto it = j.find(key);
  if (it == j.end() || !it->is_array()) return out;
  for (const auto& v : *it) {
    if (v.is_string()) out.push_back(v.get<std::string>());
  }
  return out;
}

std::string EnvKey(const std::string& kv) { return kv.substr(0, kv.find('=')); }

// Sets KEY=VALUE `kv` in `env`: replaces the entry with the same KEY, else appends.
void SetEnv(std::vector<std::string>& env, const std::string& kv) {
  const std::string key = EnvKey(kv);
  auto it =
      std::find_if(env.begin(), env.end(), [&](const std::string& e) { return EnvKey(e) == key; });
  if (it != env.end()) {
    *it = kv;
  } else {
    env.push_back(kv);
  }
}

bool HasKey(const std::vector<std::string>& env, const std::string& key) {
  return std::any_of(env.begin(), env.end(),
                     [&](const std::string& kv) { return EnvKey(kv) == key; });
}

json Mount(const std::string& destination, const std::string& type, const std::string& source,
           std::vector<std::string> options) {
  return json{
      {"destination", destination}, {"type", type}, {"source", source}, {"options", options}};
}

json IdMapping(const IdMap& m) {
  return json{{"containerID", m.container_id}, {"hostID", m.host_id}, {"size", m.size}};
}

json User(const ResolvedUser& user) {
  json u{{"uid", user.uid}, {"gid", user.gid}};
  if (!user.additional_gids.empty()) u["additionalGids"] = user.additional_gids;
  return u;
}

}  // namespace

Result<ImageConfig> ParseImageConfig(const std::string& config_json) {
  json doc = json::parse(config_json, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return Status::InvalidArgument("image config is not a JSON object");
  }
  ImageConfig out;
  auto it = doc.find("config");
  if (it == doc.end() || it->is_null()) return out;
  if (!it->is_object()) return Status::InvalidArgument("image config: \"config\" is not an object");
  const json& c = *it;
  out.entrypoint = StringArray(c, "Entrypoint");
  out.cmd = StringArray(c, "Cmd");
  out.env = StringArray(c, "Env");
  if (auto w = c.find("WorkingDir"); w != c.end() && w->is_string()) out.working_dir = *w;
  if (auto u = c.find("User"); u != c.end() && u->is_string()) out.user = *u;
  if (auto s = c.find("StopSignal"); s != c.end() && s->is_string()) out.stop_signal = *s;
  return out;
}

Result<std::vector<std::string>> ProcessArgs(const ImageConfig& image,
                                             const std::optional<std::string>& entrypoint,
                                             const std::vector<std::string>& cmd) {
  std::vector<std::string> args;
  if (entrypoint) {
    if (!entrypoint->empty()) args.push_back(*entrypoint);
    args.insert(args.end(), cmd.begin(), cmd.end());
  } else {
    args = image.entrypoint;
    const auto& tail = cmd.empty() ? image.cmd : cmd;
    args.insert(args.end(), tail.begin(), tail.end());
  }
  if (args.empty()) {
    return Status::InvalidArgument(
        "no command: the image has no Entrypoint or Cmd and none was given");
  }
  return args;
}

Result<std::vector<std::string>> ProcessEnv(const std::vector<std::string>& image_env,
                                            const std::vector<std::string>& overrides,
                                            const std::string& hostname, const std::string& home,
                                            bool terminal) {
  std::vector<std::string> env;
  if (!HasKey(image_env, "PATH") && !HasKey(overrides, "PATH")) {
    env.push_back(std::string("PATH=") + kDefaultPath);
  }
  for (const auto& kv : image_env) {
    if (kv.find('=') == std::string::npos || kv[0] == '=') continue;  // ignore junk from the image
    SetEnv(env, kv);
  }
  for (const auto& kv : overrides) {
    if (kv.find('=') == std::string::npos || kv[0] == '=') {
      return Status::InvalidArgument("environment entry \"" + kv + "\" is not KEY=VALUE");
    }
    if (kv.find('\0') != std::string::npos) {
      return Status::InvalidArgument("environment entry contains a NUL byte");
    }
    SetEnv(env, kv);
  }
  if (!hostname.empty() && !HasKey(env, "HOSTNAME")) env.push_back("HOSTNAME=" + hostname);
  if (!HasKey(env, "HOME")) env.push_back("HOME=" + (home.empty() ? std::string("/") : home));
  if (terminal && !HasKey(env, "TERM")) env.push_back("TERM=xterm");
  return env;
}

Result<BindMount> ParseBindMount(const std::string& text) {
  BindMount b;
  size_t first = text.find(':');
  if (first == std::string::npos) {
    return Status::InvalidArgument("volume \"" + text + "\" is not HOST:CONTAINER[:ro|rw]");
  }
  b.host_path = text.substr(0, first);
  std::string rest = text.substr(first + 1);
  size_t second = rest.find(':');
  if (second != std::string::npos) {
    std::string mode = rest.substr(second + 1);
    rest.resize(second);
    if (mode == "ro") {
      b.readonly = true;
    } else if (mode != "rw") {
      return Status::InvalidArgument("volume \"" + text + "\": unknown mode \"" + mode +
                                     "\" (ro or rw)");
    }
  }
  b.container_path = rest;
  if (b.host_path.empty() || b.host_path[0] != '/') {
    return Status::InvalidArgument("volume \"" + text + "\": host path must be absolute");
  }
  if (b.container_path.empty() || b.container_path[0] != '/') {
    return Status::InvalidArgument("volume \"" + text + "\": container path must be absolute");
  }
  if (b.container_path == "/") {
    return Status::InvalidArgument("volume \"" + text + "\": cannot mount over the container's /");
  }
  struct stat st;
  if (::stat(b.host_path.c_str(), &st) != 0) {
    return Status::InvalidArgument("volume \"" + text + "\": host path " + b.host_path + ": " +
                                   std::strerror(errno));
  }
  return b;
}

Result<int> ParseSignal(const std::string& text) {
  int number = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (ec == std::errc() && end == text.data() + text.size() && !text.empty()) {
    if (number <= 0 || number >= NSIG) return Status::InvalidArgument("invalid signal " + text);
    return number;
  }
  std::string name;
  for (char c : text) name += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (name.rfind("SIG", 0) == 0) name = name.substr(3);
  struct Named {
    const char* name;
    int number;
  };
  static const Named kSignals[] = {
      {"HUP", SIGHUP},       {"INT", SIGINT},   {"QUIT", SIGQUIT},   {"ILL", SIGILL},
      {"TRAP", SIGTRAP},     {"ABRT", SIGABRT}, {"BUS", SIGBUS},     {"FPE", SIGFPE},
      {"KILL", SIGKILL},     {"USR1", SIGUSR1}, {"SEGV", SIGSEGV},   {"USR2", SIGUSR2},
      {"PIPE", SIGPIPE},     {"ALRM", SIGALRM}, {"TERM", SIGTERM},   {"CHLD", SIGCHLD},
      {"CONT", SIGCONT},     {"STOP", SIGSTOP}, {"TSTP", SIGTSTP},   {"TTIN", SIGTTIN},
      {"TTOU", SIGTTOU},     {"URG", SIGURG},   {"XCPU", SIGXCPU},   {"XFSZ", SIGXFSZ},
      {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH}, {"IO", SIGIO},
      {"PWR", SIGPWR},       {"SYS", SIGSYS},
  };
  for (const auto& s : kSignals) {
    if (name == s.name) return s.number;
  }
  return Status::InvalidArgument("unknown signal \"" + text + "\"");
}

const std::vector<std::string>& DefaultCapabilities() {
  static const std::vector<std::string> kCaps = {
      "CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",           "CAP_FOWNER",
      "CAP_MKNOD",   "CAP_NET_RAW",      "CAP_SETGID",           "CAP_SETUID",
      "CAP_SETFCAP", "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
      "CAP_KILL",    "CAP_AUDIT_WRITE",
  };
  return kCaps;
}

json BuildSpec(const SpecOptions& o) {
  const bool userns = o.uid_map.has_value();
  const bool host_network = o.network == "host";
  const auto& caps = DefaultCapabilities();

  json process{
      {"terminal", o.terminal},
      {"user", User(o.user)},
      {"args", o.args},
      {"env", o.env},
      {"cwd", o.cwd.empty() ? std::string("/") : o.cwd},
      {"capabilities", {{"bounding", caps}, {"effective", caps}, {"permitted", caps}}},
      {"rlimits", json::array({json{{"type", "RLIMIT_NOFILE"}, {"hard", 1024}, {"soft", 1024}}})},
      {"noNewPrivileges", false},
  };

  json mounts = json::array();
  mounts.push_back(Mount("/proc", "proc", "proc", {"nosuid", "noexec", "nodev"}));
  mounts.push_back(
      Mount("/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"}));
  mounts.push_back(
      Mount("/dev/pts", "devpts", "devpts",
            {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}));
  mounts.push_back(
      Mount("/dev/shm", "tmpfs", "shm", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}));
  mounts.push_back(Mount("/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"}));
  if (userns && host_network) {
    // sysfs can only be mounted by the owner of the network namespace.
    mounts.push_back(Mount("/sys", "none", "/sys", {"rbind", "nosuid", "noexec", "nodev", "ro"}));
  } else {
    mounts.push_back(Mount("/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", "ro"}));
    mounts.push_back(Mount("/sys/fs/cgroup", "cgroup", "cgroup",
                           {"nosuid", "noexec", "nodev", "relatime", "ro"}));
  }
  if (host_network) {
    for (const char* file : {"/etc/resolv.conf", "/etc/hosts"}) {
      struct stat st;
      if (::stat(file, &st) == 0) mounts.push_back(Mount(file, "bind", file, {"rbind", "ro"}));
    }
  }
  for (const auto& b : o.binds) {
    std::vector<std::string> options = {"rbind", "rprivate"};
    options.push_back(b.readonly ? "ro" : "rw");
    mounts.push_back(Mount(b.container_path, "bind", b.host_path, options));
  }

  json namespaces =
      json::array({json{{"type", "pid"}}, json{{"type", "ipc"}}, json{{"type", "mount"}}});
  if (!host_network) {
    namespaces.push_back(json{{"type", "uts"}});
    namespaces.push_back(json{{"type", "network"}});
  }
  if (userns) {
    namespaces.push_back(json{{"type", "user"}});
    namespaces.push_back(json{{"type", "cgroup"}});
  }

  json resources{{"devices", json::array({json{{"allow", false}, {"access", "rwm"}}})}};
  if (o.memory_bytes > 0) {
    resources["memory"] = json{{"limit", o.memory_bytes}};
  }
  if (o.cpus > 0) {
    const int64_t period = 100000;
    resources["cpu"] =
        json{{"period", period}, {"quota", static_cast<int64_t>(std::llround(o.cpus * period))}};
  }
  if (o.pids_limit > 0) resources["pids"] = json{{"limit", o.pids_limit}};

  json linux{
      {"namespaces", namespaces},
      {"resources", resources},
      {"maskedPaths",
       {"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
        "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
        "/sys/devices/virtual/powercap"}},
      {"readonlyPaths", {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}},
  };
  if (!o.cgroups_path.empty()) linux["cgroupsPath"] = o.cgroups_path;
  if (userns) {
    linux["uidMappings"] = json::array({IdMapping(*o.uid_map)});
    linux["gidMappings"] = json::array({IdMapping(o.gid_map ? *o.gid_map : *o.uid_map)});
  }

  json spec{
      {"ociVersion", "1.0.2"},
      {"process", process},
      {"root", {{"path", o.rootfs}, {"readonly", o.readonly_rootfs}}},
      {"mounts", mounts},
      {"linux", linux},
  };
  if (!host_network && !o.hostname.empty()) spec["hostname"] = o.hostname;
  return spec;
}

json ExecProcess(const json& spec, const std::vector<std::string>& args,
                 const std::vector<std::string>& env, const std::string& cwd,
                 const std::optional<ResolvedUser>& user, bool terminal) {
  json process = spec.value("process", json::object());
  process["args"] = args;
  process["terminal"] = terminal;
  std::vector<std::string> merged = process.value("env", std::vector<std::string>{});
  for (const auto& kv : env) SetEnv(merged, kv);
  if (terminal && !HasKey(merged, "TERM")) merged.push_back("TERM=xterm");
  process["env"] = merged;
  if (!cwd.empty()) process["cwd"] = cwd;
  if (user) process["user"] = User(*user);
  return process;
}

}  // namespace strata::runtime
