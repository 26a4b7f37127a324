#include "runtime-bridge/tasks.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "core/clock.h"
#include "core/digest.h"
#include "core/fs.h"
#include "core/mount.h"
#include "core/subprocess.h"
#include "core/unique_fd.h"
#include "metadata/store.h"
#include "registry/reference.h"
#include "runtime-bridge/cdi.h"
#include "runtime-bridge/oci_spec.h"
#include "runtime-bridge/passwd.h"
#include "runtime-bridge/shim.h"
#include "runtime-bridge/task_record.pb.h"
#include "snapshotter/overlay.h"
#include "snapshotter/snapshotter.h"
#include "transfer/image_store.h"
#include "transfer/puller.h"

extern char** environ;

namespace strata::runtime {
namespace {

namespace pb = ::strata::runtime::v1;
using json = nlohmann::json;

constexpr char kLabelGcRoot[] = "containerd.io/gc.root";
constexpr char kLabelTask[] = "strata.io/task";
constexpr uint32_t kAutoRangeSize = 65536;

bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > 128) return false;
  if (!std::isalnum(static_cast<unsigned char>(name[0]))) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  });
}

bool ValidHostname(const std::string& name) {
  if (name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.';
  });
}

// The absolute path of runtime `name` ("runc", "crun", "runsc" or a path).
Result<std::string> ResolveRuntime(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    if (name[0] != '/') return Status::InvalidArgument("runtime path must be absolute: " + name);
    if (::access(name.c_str(), X_OK) != 0) {
      return Status::InvalidArgument("runtime " + name + " is not an executable file");
    }
    return name;
  }
  const char* path = std::getenv("PATH");
  std::string dirs =
      path != nullptr ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t colon = dirs.find(':', start);
    if (colon == std::string::npos) colon = dirs.size();
    std::string candidate = dirs.substr(start, colon - start) + "/" + name;
    if (colon > start && ::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = colon + 1;
  }
  for (const char* dir : {"/usr/sbin", "/usr/bin", "/sbin", "/bin"}) {
    std::string candidate = std::string(dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return Status::InvalidArgument("OCI runtime \"" + name + "\" not found in PATH");
}

TaskState FromProto(pb::TaskState s) {
  switch (s) {
    case pb::TASK_STATE_CREATED:
      return TaskState::kCreated;
    case pb::TASK_STATE_RUNNING:
      return TaskState::kRunning;
    case pb::TASK_STATE_STOPPED:
      return TaskState::kStopped;
    default:
      return TaskState::kCreating;
  }
}

TaskInfo ToInfo(const pb::TaskRecord& r) {
  TaskInfo t;
  t.id = r.id();
  t.name = r.name();
  t.image = r.image();
  t.state = FromProto(r.state());
  t.args.assign(r.args().begin(), r.args().end());
  t.runtime = r.runtime();
  t.bundle = r.bundle();
  t.terminal = r.terminal();
  t.stdin_open = r.stdin_open();
  t.uid_map = r.uid_map();
  t.gid_map = r.gid_map();
  t.remap_method = r.remap_method();
  t.pid = r.pid();
  t.exit_code = r.exit_code();
  t.created_unix_nanos = r.created_unix_nanos();
  t.started_unix_nanos = r.started_unix_nanos();
  t.finished_unix_nanos = r.finished_unix_nanos();
  t.auto_remove = r.auto_remove();
  t.snapshot_key = r.snapshot_key();
  return t;
}

bool ProcessAlive(int pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

// True when `pid` is still task `id`'s supervisor, not a process that reused its pid
// (after a reboot, say): its command line names the task's directory.
bool ShimAlive(int pid, const std::string& id) {
  if (!ProcessAlive(pid)) return false;
  auto cmdline = fs::ReadFile("/proc/" + std::to_string(pid) + "/cmdline");
  return cmdline.ok() && cmdline->find("--task-shim") != std::string::npos &&
         cmdline->find(id) != std::string::npos;
}

// True when `pid` is still the task's process: it lives in the task's cgroup.
bool TaskProcessAlive(int pid, const std::string& id) {
  if (!ProcessAlive(pid)) return false;
  auto cgroups = fs::ReadFile("/proc/" + std::to_string(pid) + "/cgroup");
  return cgroups.ok() && cgroups->find(id) != std::string::npos;
}

}  // namespace

std::string_view TaskStateName(TaskState state) {
  switch (state) {
    case TaskState::kCreating:
      return "creating";
    case TaskState::kCreated:
      return "created";
    case TaskState::kRunning:
      return "running";
    case TaskState::kStopped:
      return "stopped";
  }
  return "unknown";
}

class TaskManager::Impl {
 public:
  Impl(const TaskManagerOptions& options, metadata::Store* store, snapshotter::Overlay* overlay,
       transfer::ImageStore* images, transfer::Puller* puller)
      : o_(options), store_(store), overlay_(overlay), images_(images), puller_(puller) {}

  Status Load() {
    RETURN_IF_ERROR(fs::MakeDirs(TasksDir(), 0711));
    ASSIGN_OR_RETURN(auto rows, store_->LoadTasks());
    for (auto& [id, value] : rows) {
      pb::TaskRecord r;
      if (!r.ParseFromString(value)) {
        return Status::DataLoss("task record " + id + " in " + store_->path() + " is corrupt");
      }
      tasks_[id] = r;
    }
    std::vector<std::string> ids;
    for (auto& [id, r] : tasks_) ids.push_back(id);
    for (const auto& id : ids) {
      pb::TaskRecord r = tasks_[id];
      if (r.state() == pb::TASK_STATE_CREATING) {
        spdlog::warn("task {}: found half-created after a restart; removing it", id);
        Status s = Teardown(r);
        if (!s.ok()) spdlog::warn("task {}: cleanup: {}", id, s.ToString());
        continue;
      }
      (void)Refresh(id);
    }
    if (!tasks_.empty()) spdlog::info("{} tasks found from the last run", tasks_.size());
    return Status::Ok();
  }

  // ---- Create ----------------------------------------------------------------------

  Result<TaskInfo> Create(const CreateOptions& opt) {
    if (!opt.name.empty() && !ValidName(opt.name)) {
      return Status::InvalidArgument("invalid task name \"" + opt.name +
                                     "\": use [a-zA-Z0-9][a-zA-Z0-9_.-]* (at most 128)");
    }
    if (opt.network != "none" && opt.network != "host") {
      return Status::InvalidArgument("--net must be host or none, not \"" + opt.network + "\"");
    }
    if (!ValidHostname(opt.hostname)) {
      return Status::InvalidArgument("invalid hostname \"" + opt.hostname + "\"");
    }
    if (opt.memory_bytes < 0 || opt.cpus < 0 || opt.pids_limit < 0) {
      return Status::InvalidArgument("resource limits must not be negative");
    }
    if (!opt.workdir.empty() && opt.workdir[0] != '/') {
      return Status::InvalidArgument("working directory must be absolute: " + opt.workdir);
    }
    ASSIGN_OR_RETURN(UsernsRequest userns, ParseUsernsRequest(opt.userns));
    std::optional<RemapMethod> forced_method;
    if (!opt.remap_method.empty()) {
      ASSIGN_OR_RETURN(RemapMethod m, ParseRemapMethod(opt.remap_method));
      forced_method = m;
    }
    ASSIGN_OR_RETURN(std::string runtime,
                     ResolveRuntime(opt.runtime.empty() ? o_.default_runtime : opt.runtime));
    std::vector<BindMount> binds;
    for (const auto& v : opt.volumes) {
      ASSIGN_OR_RETURN(BindMount b, ParseBindMount(v));
      binds.push_back(b);
    }

    // The image: its config and top layer.
    std::string image_name = opt.image;
    if (auto ref = registry::ParseReference(opt.image); ref.ok()) image_name = ref->String();
    auto image = images_->Get(image_name);
    if (!image.ok()) {
      if (image.status().IsNotFound())
        return Status::NotFound("image " + opt.image + " is not pulled");
      return image.status();
    }
    ASSIGN_OR_RETURN(transfer::ImageLayout layout, puller_->Layout(*image, opt.platform));
    if (layout.chain_ids.empty())
      return Status::InvalidArgument("image " + image_name + " has no layers");
    ASSIGN_OR_RETURN(ImageConfig config, ParseImageConfig(layout.config_json));
    ASSIGN_OR_RETURN(std::vector<std::string> args, ProcessArgs(config, opt.entrypoint, opt.cmd));

    // Reserve the id, name and id range, durably, before touching anything else: a
    // crash from here on leaves a CREATING record that the next start cleans up.
    pb::TaskRecord r;
    r.set_id(RandomHex(32));
    r.set_name(opt.name.empty() ? r.id().substr(0, 12) : opt.name);
    r.set_image(image_name);
    r.set_state(pb::TASK_STATE_CREATING);
    r.set_runtime(runtime);
    r.set_runtime_root(o_.root + "/runtime/" + fs::BaseName(runtime));
    r.set_snapshotter(o_.snapshotter);
    r.set_snapshot_key("strata-task/" + r.id());
    r.set_bundle(TasksDir() + "/" + r.id());
    for (const auto& a : args) r.add_args(a);
    r.set_terminal(opt.terminal);
    r.set_stdin_open(opt.stdin_open);
    r.set_created_unix_nanos(NowUnixNanos());
    r.set_auto_remove(opt.auto_remove);
    r.set_network(opt.network);
    int stop_signal = SIGTERM;
    if (!config.stop_signal.empty()) {
      auto sig = ParseSignal(config.stop_signal);
      if (sig.ok()) stop_signal = *sig;
    }
    r.set_stop_signal(stop_signal);
    std::optional<IdMap> uid_map, gid_map;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [id, other] : tasks_) {
        if (other.name() == r.name()) {
          return Status::AlreadyExists("a task named \"" + r.name() + "\" exists (" +
                                       id.substr(0, 12) + "); remove it or choose another name");
        }
      }
      if (userns.mode == UsernsRequest::Mode::kAuto) {
        ASSIGN_OR_RETURN(IdMap m, AllocateRangeLocked());
        uid_map = gid_map = m;
        r.set_userns_auto(true);
      } else if (userns.mode == UsernsRequest::Mode::kExplicit) {
        uid_map = gid_map = userns.map;
      }
      if (uid_map) {
        r.set_uid_map(FormatIdMap(*uid_map));
        r.set_gid_map(FormatIdMap(*gid_map));
      }
      RETURN_IF_ERROR(PersistLocked(r));
      tasks_[r.id()] = r;
    }

    Status s = Build(r, opt, layout.chain_ids.back(), config, args, binds, uid_map, gid_map,
                     forced_method);
    if (!s.ok()) {
      Status cleanup = Teardown(r);
      if (!cleanup.ok())
        spdlog::warn("task {}: cleanup after failed create: {}", r.id(), cleanup.ToString());
      return s;
    }
    return ToInfo(r);
  }

  // Snapshot on the image's top layer `top_chain_id`, rootfs, config.json, shim.
  Status Build(pb::TaskRecord& r, const CreateOptions& opt, const std::string& top_chain_id,
               const ImageConfig& config, const std::vector<std::string>& args,
               const std::vector<BindMount>& binds, const std::optional<IdMap>& uid_map,
               const std::optional<IdMap>& gid_map, std::optional<RemapMethod> forced_method) {
    const std::string bundle = r.bundle();
    const std::string rootfs = bundle + "/rootfs";
    RETURN_IF_ERROR(fs::MakeDirs(bundle, 0711));
    RETURN_IF_ERROR(fs::MakeDirs(rootfs, 0755));
    RETURN_IF_ERROR(fs::MakeDirs(r.runtime_root(), 0700));

    auto snapshots = overlay_->ForName(r.snapshotter());
    snapshotter::Labels labels;
    const int64_t now = NowUnixNanos();
    labels[kLabelGcRoot] = std::to_string(now);
    labels[kLabelTask] = r.id();
    ASSIGN_OR_RETURN(std::vector<Mount> mounts,
                     snapshots->Prepare(r.snapshot_key(), top_chain_id, labels));
    if (uid_map) {
      RemapOptions remap;
      remap.uids = *uid_map;
      remap.gids = *gid_map;
      remap.scratch_dir = bundle + "/layers";
      remap.force = forced_method;
      auto start = std::chrono::steady_clock::now();
      ASSIGN_OR_RETURN(RemapMethod method, MountRemapped(mounts, rootfs, remap));
      ::rmdir(remap.scratch_dir.c_str());
      r.set_remap_method(std::string(RemapMethodName(method)));
      spdlog::info("task {}: rootfs for user namespace {} by {} in {} ms", r.id().substr(0, 12),
                   r.uid_map(), RemapMethodName(method),
                   std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::steady_clock::now() - start)
                       .count());
    } else {
      RETURN_IF_ERROR(MountAll(mounts, rootfs).WithContext("mount the rootfs"));
    }

    ASSIGN_OR_RETURN(ResolvedUser user,
                     ResolveUser(rootfs, opt.user.empty() ? config.user : opt.user));
    SpecOptions spec_options;
    spec_options.args = args;
    spec_options.hostname =
        opt.network == "host" ? "" : (opt.hostname.empty() ? r.id().substr(0, 12) : opt.hostname);
    ASSIGN_OR_RETURN(spec_options.env, ProcessEnv(config.env, opt.env, spec_options.hostname,
                                                  user.home, opt.terminal));
    spec_options.cwd = !opt.workdir.empty()         ? opt.workdir
                       : config.working_dir.empty() ? std::string("/")
                                                    : config.working_dir;
    spec_options.user = user;
    spec_options.terminal = opt.terminal;
    spec_options.readonly_rootfs = opt.readonly_rootfs;
    spec_options.network = opt.network;
    spec_options.uid_map = uid_map;
    spec_options.gid_map = gid_map;
    spec_options.binds = binds;
    spec_options.memory_bytes = opt.memory_bytes;
    spec_options.cpus = opt.cpus;
    spec_options.pids_limit = opt.pids_limit;
    spec_options.cgroups_path = "/" + o_.cgroup_parent + "/" + r.id();
    json spec = BuildSpec(spec_options);
    RETURN_IF_ERROR(ApplyDevices(opt.devices, spec));
    RETURN_IF_ERROR(fs::WriteFileAtomic(bundle + "/config.json", spec.dump(2) + "\n", 0600));

    ShimOptions shim;
    shim.dir = bundle;
    shim.container_id = r.id();
    shim.runtime = RuntimeArgv(r);
    shim.terminal = opt.terminal;
    shim.stdin_open = opt.stdin_open;
    ASSIGN_OR_RETURN(int pid, SpawnShim(shim, r));
    r.set_pid(pid);
    r.set_state(pb::TASK_STATE_CREATED);
    std::lock_guard<std::mutex> lock(mu_);
    RETURN_IF_ERROR(PersistLocked(r));
    tasks_[r.id()] = r;
    return Status::Ok();
  }

  Status ApplyDevices(const std::vector<std::string>& devices, json& spec) {
    std::vector<std::string> cdi_names;
    json edited = spec;
    for (const auto& d : devices) {
      if (IsCdiDeviceName(d)) {
        cdi_names.push_back(d);
      } else {
        RETURN_IF_ERROR(AddHostDevice(d, edited));
      }
    }
    if (!cdi_names.empty()) {
      ASSIGN_OR_RETURN(CdiRegistry registry, CdiRegistry::Load(o_.cdi_spec_dirs));
      RETURN_IF_ERROR(registry.Apply(cdi_names, edited));
    }
    spec = std::move(edited);
    return Status::Ok();
  }

  std::vector<std::string> RuntimeArgv(const pb::TaskRecord& r) const {
    std::vector<std::string> argv = {r.runtime(), "--root", r.runtime_root()};
    if (fs::BaseName(r.runtime()) == "runsc") {
      // gVisor builds the sandbox's network itself from its flags, not from the spec.
      argv.push_back(r.network() == "host" ? "--network=host" : "--network=none");
    }
    return argv;
  }

  // Starts a shim in its own session and waits for its status line; returns the pid it
  // reports (the container's process, or 0 for an exec waiting for its client).
  Result<int> SpawnShim(const ShimOptions& shim, pb::TaskRecord& r) {
    int status_pipe[2];
    if (::pipe2(status_pipe, O_CLOEXEC) != 0) return Status::FromErrno(errno, "pipe");
    UniqueFd status_read(status_pipe[0]), status_write(status_pipe[1]);
    std::vector<std::string> argv = o_.shim_command;
    argv.push_back(EncodeShimOptions(shim));
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    const std::string shim_log = shim.dir + "/shim.log";

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, shim_log.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                     0600);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    posix_spawn_file_actions_adddup2(&actions, status_write.get(), 3);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr,
                             POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid = 0;
    int rc = ::posix_spawn(&pid, cargv[0], &actions, &attr, cargv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) return Status::FromErrno(rc, "start the task supervisor " + argv[0]);
    status_write.Reset();
    if (shim.exec_id.empty()) r.set_shim_pid(pid);
    {
      std::lock_guard<std::mutex> lock(shims_mu_);
      shims_.insert(pid);
    }

    std::string line;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(3);
    while (line.find('\n') == std::string::npos) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        ::kill(pid, SIGKILL);
        return Status(Code::kDeadlineExceeded,
                      "the task supervisor did not report within 3 minutes");
      }
      struct pollfd p {
        status_read.get(), POLLIN, 0
      };
      int n = ::poll(&p, 1, static_cast<int>(left.count()));
      if (n < 0 && errno == EINTR) continue;
      char buf[4096];
      ssize_t got = ::read(status_read.get(), buf, sizeof buf);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) break;
      line.append(buf, static_cast<size_t>(got));
    }
    if (line.rfind("ok ", 0) == 0) return std::atoi(line.c_str() + 3);
    if (line.rfind("error ", 0) == 0) {
      std::string message = line.substr(6);
      while (!message.empty() && message.back() == '\n') message.pop_back();
      return Status::FailedPrecondition(fs::BaseName(r.runtime()) + ": " + message);
    }
    auto log = fs::ReadFile(shim_log);
    return Status::Internal("the task supervisor ended without a status" +
                            (log.ok() && !log->empty() ? ": " + *log : std::string()));
  }

  // ---- State -------------------------------------------------------------------------

  // Brings a CREATED/RUNNING record up to date with the shim's exit file. Returns the
  // current record.
  Result<pb::TaskRecord> Refresh(const std::string& id) {
    pb::TaskRecord r;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = tasks_.find(id);
      if (it == tasks_.end()) return Status::NotFound("task " + id + " does not exist");
      r = it->second;
    }
    if (r.state() != pb::TASK_STATE_CREATED && r.state() != pb::TASK_STATE_RUNNING) return r;
    auto exit = ReadExitFile(r.bundle(), "");
    if (exit.ok()) {
      r.set_state(pb::TASK_STATE_STOPPED);
      r.set_exit_code(exit->code);
      r.set_finished_unix_nanos(exit->unix_nanos);
    } else if (!ShimAlive(r.shim_pid(), r.id()) && !TaskProcessAlive(r.pid(), r.id())) {
      // Supervisor and process gone without an exit record (killed, or the machine
      // restarted): the exit code is unknown.
      r.set_state(pb::TASK_STATE_STOPPED);
      r.set_exit_code(255);
      r.set_finished_unix_nanos(NowUnixNanos());
    } else {
      return r;
    }
    std::lock_guard<std::mutex> lock(mu_);
    auto it = tasks_.find(id);
    if (it == tasks_.end()) return Status::NotFound("task " + id + " does not exist");
    if (it->second.state() == pb::TASK_STATE_STOPPED) return it->second;
    r.set_started_unix_nanos(it->second.started_unix_nanos());
    RETURN_IF_ERROR(PersistLocked(r));
    it->second = r;
    return r;
  }

  // The id of `id_or_name`: exact id, exact name, or unique id prefix.
  Result<std::string> Resolve(const std::string& id_or_name) {
    std::lock_guard<std::mutex> lock(mu_);
    if (tasks_.count(id_or_name)) return id_or_name;
    for (auto& [id, r] : tasks_) {
      if (r.name() == id_or_name) return id;
    }
    std::string found;
    if (!id_or_name.empty()) {
      for (auto& [id, r] : tasks_) {
        if (id.rfind(id_or_name, 0) == 0) {
          if (!found.empty()) {
            return Status::InvalidArgument("task id prefix \"" + id_or_name + "\" is ambiguous");
          }
          found = id;
        }
      }
    }
    if (found.empty()) return Status::NotFound("no such task: " + id_or_name);
    return found;
  }

  Result<TaskInfo> Start(const std::string& id_or_name) {
    ASSIGN_OR_RETURN(std::string id, Resolve(id_or_name));
    ASSIGN_OR_RETURN(pb::TaskRecord r, Refresh(id));
    if (r.state() != pb::TASK_STATE_CREATED) {
      return Status::FailedPrecondition("task " + r.name() + " is " +
                                        std::string(TaskStateName(FromProto(r.state()))) +
                                        ", not created");
    }
    std::vector<std::string> argv = RuntimeArgv(r);
    argv.insert(argv.end(), {"start", r.id()});
    ProcessOptions popts;
    popts.timeout_ms = 60000;
    ASSIGN_OR_RETURN(ProcessResult res, RunProcess(argv, popts));
    if (res.exit_code != 0) {
      return Status::FailedPrecondition(fs::BaseName(r.runtime()) + " start: " + Trimmed(res));
    }
    std::lock_guard<std::mutex> lock(mu_);
    auto it = tasks_.find(id);
    if (it == tasks_.end()) return Status::NotFound("task " + id + " was removed");
    if (it->second.state() == pb::TASK_STATE_CREATED) it->second.set_state(pb::TASK_STATE_RUNNING);
    it->second.set_started_unix_nanos(NowUnixNanos());
    RETURN_IF_ERROR(PersistLocked(it->second));
    return ToInfo(it->second);
  }

  static std::string Trimmed(const ProcessResult& res) {
    std::string s = res.stderr_data.empty() ? res.stdout_data : res.stderr_data;
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    if (s.empty()) s = "exit status " + std::to_string(res.exit_code);
    return s;
  }

  Result<TaskInfo> Get(const std::string& id_or_name) {
    ASSIGN_OR_RETURN(std::string id, Resolve(id_or_name));
    ASSIGN_OR_RETURN(pb::TaskRecord r, Refresh(id));
    return ToInfo(r);
  }

  Result<std::vector<TaskInfo>> List(bool all) {
    std::vector<std::string> ids;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [id, r] : tasks_) ids.push_back(id);
    }
    std::vector<TaskInfo> out;
    for (const auto& id : ids) {
      auto r = Refresh(id);
      if (!r.ok()) continue;  // removed meanwhile
      if (r->state() == pb::TASK_STATE_CREATING) continue;
      if (!all && r->state() == pb::TASK_STATE_STOPPED) continue;
      out.push_back(ToInfo(*r));
    }
    std::sort(out.begin(), out.end(), [](const TaskInfo& a, const TaskInfo& b) {
      return a.created_unix_nanos < b.created_unix_nanos;
    });
    return out;
  }

  Status KillRecord(const pb::TaskRecord& r, int signal, bool all) {
    std::vector<std::string> argv = RuntimeArgv(r);
    argv.push_back("kill");
    if (all) argv.push_back("--all");
    argv.push_back(r.id());
    argv.push_back(std::to_string(signal));
    ASSIGN_OR_RETURN(ProcessResult res, RunProcess(argv));
    if (res.exit_code != 0) {
      // The process may have exited between our look and the runtime's.
      if (ReadExitFile(r.bundle(), "").ok()) return Status::Ok();
      return Status::FailedPrecondition(fs::BaseName(r.runtime()) + " kill: " + Trimmed(res));
    }
    return Status::Ok();
  }

  Status Kill(const std::string& id_or_name, int signal, bool all) {
    ASSIGN_OR_RETURN(std::string id, Resolve(id_or_name));
    ASSIGN_OR_RETURN(pb::TaskRecord r, Refresh(id));
    if (r.state() != pb::TASK_STATE_RUNNING && r.state() != pb::TASK_STATE_CREATED) {
      return Status::FailedPrecondition("task " + r.name() + " is not running");
    }
    return KillRecord(r, signal, all);
  }

  Result<TaskInfo> Wait(const std::string& id_or_name, int64_t timeout_ms) {
    ASSIGN_OR_RETURN(std::string id, Resolve(id_or_name));
    const auto start = std::chrono::steady_clock::now();
    while (true) {
      ASSIGN_OR_RETURN(pb::TaskRecord r, Refresh(id));
      if (r.state() == pb::TASK_STATE_STOPPED) return ToInfo(r);
      if (timeout_ms >= 0 &&
          std::chrono::steady_clock::now() - start > std::chrono::milliseconds(timeout_ms)) {
        return Status(Code::kDeadlineExceeded, "task " + r.name() + " still running after " +
                                                   std::to_string(timeout_ms) + " ms");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  Result<TaskInfo> Stop(const std::string& id_or_name, int64_t timeout_ms) {
    ASSIGN_OR_RETURN(std::string id, Resolve(id_or_name));
    ASSIGN_OR_RETURN(pb::TaskRecord r, Refresh(id));
    if (r.state() == pb::TASK_STATE_STOPPED) return ToInfo(r);
    if (r.state() == pb::TASK_STATE_CREATING) {
      return Status::FailedPrecondition("task " + r.name() + " is being created");
    }
    Status s = KillRecord(r, r.stop_signal() > 0 ? r.stop_signal() : SIGTERM, false);
    if (!s.ok()) spdlog::warn("stop {}: {}", r.name(), s.ToString());
    auto waited = Wait(id, timeout_ms);
    if (waited.ok()) return waited;
    RETURN_IF_ERROR(KillRecord(r, SIGKILL, true));
    return Wait(id, 30000);
  }

  Result<TaskInfo> Delete(const std::string& id_or_name, bool force) {
    ASSIGN_OR_RETURN(std::string id, Resolve(id_or_name));
    ASSIGN_OR_RETURN(pb::TaskRecord r, Refresh(id));
    if (r.state() == pb::TASK_STATE_CREATING) {
      return Status::FailedPrecondition("task " + r.name() + " is being created");
    }
    if (r.state() != pb::TASK_STATE_STOPPED) {
      if (!force) {
        return Status::FailedPrecondition("task " + r.name() + " is " +
                                          std::string(TaskStateName(FromProto(r.state()))) +
                                          ": stop it first, or remove it with --force");
      }
      Status s = KillRecord(r, SIGKILL, true);
      if (!s.ok()) spdlog::warn("remove {}: kill: {}", r.name(), s.ToString());
      auto waited = Wait(id, 30000);
      if (waited.ok()) r = *Refresh(id);
    }
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (!tasks_.count(id)) return Status::NotFound("task " + id + " was removed");
      // Mark it so that a concurrent Delete or Tick does not start the same teardown;
      // a second caller waits for the first (`run --rm` and auto-remove race).
      if (deleting_.count(id)) {
        lock.unlock();
        for (int i = 0; i < 600; i++) {
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
          std::lock_guard<std::mutex> again(mu_);
          if (!tasks_.count(id)) return ToInfo(r);
          if (!deleting_.count(id)) break;  // the other removal failed: report as it stands
        }
        return Status::FailedPrecondition("task " + r.name() + " is being removed");
      }
      deleting_.insert(id);
    }
    Status s = Teardown(r);
    {
      std::lock_guard<std::mutex> lock(mu_);
      deleting_.erase(id);
    }
    if (!s.ok()) return s;
    return ToInfo(r);
  }

  // Undoes everything a task has: runtime state, mounts, snapshot, bundle, record.
  Status Teardown(const pb::TaskRecord& r) {
    std::vector<std::string> argv = RuntimeArgv(r);
    argv.insert(argv.end(), {"delete", "--force", r.id()});
    auto res = RunProcess(argv);
    if (res.ok() && res->exit_code != 0) {
      spdlog::debug("task {}: runtime delete: {}", r.id(), Trimmed(*res));
    }
    if (ShimAlive(r.shim_pid(), r.id())) {
      // The container is gone; the shim finishes on its own within seconds.
      for (int i = 0; i < 100 && ShimAlive(r.shim_pid(), r.id()); i++) {
        ReapShims();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
    const std::string rootfs = r.bundle() + "/rootfs";
    if (IsMountPoint(rootfs)) {
      Status s = Unmount(rootfs);
      if (!s.ok()) {
        spdlog::warn("task {}: rootfs busy ({}); detaching it", r.id(), s.ToString());
        RETURN_IF_ERROR(Unmount(rootfs, /*detach=*/true));
      }
    }
    // Leftover idmapped layer clones of a crash during Create.
    if (auto layers = fs::ListDir(r.bundle() + "/layers"); layers.ok()) {
      for (const auto& l : *layers) (void)Unmount(r.bundle() + "/layers/" + l, true);
    }
    auto snapshots = overlay_->ForName(r.snapshotter());
    Status removed = snapshots->Remove(r.snapshot_key());
    if (!removed.ok() && !removed.IsNotFound())
      return removed.WithContext("remove the task's snapshot");
    RETURN_IF_ERROR(fs::RemoveAll(r.bundle()).WithContext("remove the task's bundle"));
    std::lock_guard<std::mutex> lock(mu_);
    metadata::Batch batch;
    batch.DeleteTask(r.id());
    RETURN_IF_ERROR(store_->Commit(batch));
    tasks_.erase(r.id());
    return Status::Ok();
  }

  Result<ExecInfo> Exec(const std::string& id_or_name, const ExecOptions& opt) {
    ASSIGN_OR_RETURN(std::string id, Resolve(id_or_name));
    ASSIGN_OR_RETURN(pb::TaskRecord r, Refresh(id));
    if (r.state() != pb::TASK_STATE_RUNNING) {
      return Status::FailedPrecondition("task " + r.name() + " is not running");
    }
    if (opt.args.empty()) return Status::InvalidArgument("exec needs a command");
    if (!opt.workdir.empty() && opt.workdir[0] != '/') {
      return Status::InvalidArgument("working directory must be absolute: " + opt.workdir);
    }
    for (const auto& kv : opt.env) {
      if (kv.find('=') == std::string::npos || kv[0] == '=') {
        return Status::InvalidArgument("environment entry \"" + kv + "\" is not KEY=VALUE");
      }
    }
    ASSIGN_OR_RETURN(std::string text, fs::ReadFile(r.bundle() + "/config.json"));
    json spec = json::parse(text, nullptr, false);
    if (spec.is_discarded())
      return Status::DataLoss("config.json of task " + r.name() + " is corrupt");
    std::optional<ResolvedUser> user;
    if (!opt.user.empty()) {
      ASSIGN_OR_RETURN(ResolvedUser u, ResolveUser(r.bundle() + "/rootfs", opt.user));
      user = u;
    }
    ExecInfo info;
    info.exec_id = RandomHex(8);
    info.bundle = r.bundle();
    info.socket = AttachSocketName(info.exec_id);
    json process = ExecProcess(spec, opt.args, opt.env, opt.workdir, user, opt.terminal);
    RETURN_IF_ERROR(fs::WriteFileAtomic(r.bundle() + "/" + ExecSpecFileName(info.exec_id),
                                        process.dump(2) + "\n", 0600));
    ShimOptions shim;
    shim.dir = r.bundle();
    shim.container_id = r.id();
    shim.runtime = RuntimeArgv(r);
    shim.exec_id = info.exec_id;
    shim.terminal = opt.terminal;
    shim.stdin_open = opt.stdin_open;
    shim.log = false;
    auto spawned = SpawnShim(shim, r);
    if (!spawned.ok()) {
      ::unlink((r.bundle() + "/" + ExecSpecFileName(info.exec_id)).c_str());
      return spawned.status();
    }
    return info;
  }

  void ReapShims() {
    std::lock_guard<std::mutex> lock(shims_mu_);
    for (auto it = shims_.begin(); it != shims_.end();) {
      int status;
      pid_t got = ::waitpid(*it, &status, WNOHANG);
      if (got == *it || (got < 0 && errno == ECHILD)) {
        it = shims_.erase(it);
      } else {
        ++it;
      }
    }
  }

  void Tick() {
    ReapShims();
    std::vector<std::string> ids;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [id, r] : tasks_) {
        if (r.auto_remove() && !deleting_.count(id)) ids.push_back(id);
      }
    }
    for (const auto& id : ids) {
      auto r = Refresh(id);
      if (!r.ok() || r->state() != pb::TASK_STATE_STOPPED) continue;
      auto removed = Delete(id, false);
      if (!removed.ok() && !removed.status().IsNotFound()) {
        spdlog::warn("auto-remove of task {}: {}", id.substr(0, 12), removed.status().ToString());
      }
    }
  }

 private:
  std::string TasksDir() const { return o_.root + "/tasks"; }

  Status PersistLocked(const pb::TaskRecord& r) {
    metadata::Batch batch;
    batch.PutTask(r.id(), r.SerializeAsString());
    return store_->Commit(batch);
  }

  Result<IdMap> AllocateRangeLocked() {
    std::set<uint32_t> used;
    for (auto& [id, r] : tasks_) {
      if (!r.userns_auto()) continue;
      auto m = ParseIdMap(r.uid_map());
      if (m.ok()) used.insert(m->host_id);
    }
    for (uint32_t i = 0; i < o_.userns_auto_count; i++) {
      uint64_t host = uint64_t{o_.userns_auto_first} + uint64_t{i} * kAutoRangeSize;
      if (host + kAutoRangeSize > 0xffffffffull) break;
      if (!used.count(static_cast<uint32_t>(host))) {
        return IdMap{0, static_cast<uint32_t>(host), kAutoRangeSize};
      }
    }
    return Status(Code::kResourceExhausted, "no free id range for --userns=auto (" +
                                                std::to_string(o_.userns_auto_count) + " in use)");
  }

  TaskManagerOptions o_;
  metadata::Store* store_;
  snapshotter::Overlay* overlay_;
  transfer::ImageStore* images_;
  transfer::Puller* puller_;

  std::mutex mu_;
  std::map<std::string, pb::TaskRecord> tasks_;
  std::set<std::string> deleting_;

  std::mutex shims_mu_;
  std::set<pid_t> shims_;
};

TaskManager::TaskManager(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TaskManager::~TaskManager() = default;

Result<std::unique_ptr<TaskManager>> TaskManager::Open(const TaskManagerOptions& options,
                                                       metadata::Store* store,
                                                       snapshotter::Overlay* overlay,
                                                       transfer::ImageStore* images,
                                                       transfer::Puller* puller) {
  auto impl = std::make_unique<Impl>(options, store, overlay, images, puller);
  RETURN_IF_ERROR(impl->Load());
  return std::unique_ptr<TaskManager>(new TaskManager(std::move(impl)));
}

Result<TaskInfo> TaskManager::Create(const CreateOptions& o) { return impl_->Create(o); }
Result<TaskInfo> TaskManager::Start(const std::string& id) { return impl_->Start(id); }
Result<TaskInfo> TaskManager::Get(const std::string& id) { return impl_->Get(id); }
Result<std::vector<TaskInfo>> TaskManager::List(bool all) { return impl_->List(all); }
Status TaskManager::Kill(const std::string& id, int signal, bool all) {
  return impl_->Kill(id, signal, all);
}
Result<TaskInfo> TaskManager::Stop(const std::string& id, int64_t timeout_ms) {
  return impl_->Stop(id, timeout_ms);
}
Result<TaskInfo> TaskManager::Wait(const std::string& id, int64_t timeout_ms) {
  return impl_->Wait(id, timeout_ms);
}
Result<TaskInfo> TaskManager::Delete(const std::string& id, bool force) {
  return impl_->Delete(id, force);
}
Result<ExecInfo> TaskManager::Exec(const std::string& id, const ExecOptions& o) {
  return impl_->Exec(id, o);
}
void TaskManager::Tick() { impl_->Tick(); }

}  // namespace strata::runtime
