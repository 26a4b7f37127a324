// TaskManager: containers run from strata snapshots with an OCI runtime.
//
// A task is one container: an active snapshot on the image's top layer (its rootfs,
// mounted at <root>/tasks/<id>/rootfs, idmapped when it has a user namespace), an OCI
// bundle in <root>/tasks/<id> (config.json built from the image config), a supervisor
// process (shim.h) that holds its stdio and records its exit, and a record in the
// metadata store. Lifecycle:
//
//   Create   -> CREATED  (the runtime created the container; its process waits)
//   Start    -> RUNNING
//   (exit)   -> STOPPED  (seen from the shim's exit file; exit code kept)
//   Delete   -> gone     (runtime state, rootfs mount, snapshot, bundle, record)
//
// Tasks outlive stratad: shims run in their own sessions; at Open the manager reads
// the records back, finds exit files written while it was away and cleans up tasks a
// crash left half-created.
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "runtime-bridge/userns.h"

namespace strata::metadata {
class Store;
}
namespace strata::snapshotter {
class Overlay;
}
namespace strata::transfer {
class ImageStore;
class Puller;
}  // namespace strata::transfer

namespace strata::runtime {

enum class TaskState { kCreating, kCreated, kRunning, kStopped };
std::string_view TaskStateName(TaskState state);

struct TaskInfo {
  std::string id;
  std::string name;
  std::string image;
  TaskState state = TaskState::kCreating;
  std::vector<std::string> args;
  std::string runtime;
  std::string bundle;  // the task directory (attach socket, log)
  bool terminal = false;
  bool stdin_open = false;
  std::string uid_map;  // "C:H:L" or ""
  std::string gid_map;
  std::string remap_method;
  int pid = 0;
  int exit_code = 0;
  int64_t created_unix_nanos = 0;
  int64_t started_unix_nanos = 0;
  int64_t finished_unix_nanos = 0;
  bool auto_remove = false;
  std::string snapshot_key;
};

struct CreateOptions {
  std::string image;     // a name in the image store
  std::string platform;  // "" = this machine's
  std::string name;      // "" = generated
  std::optional<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::vector<std::string> env;      // KEY=VALUE
  std::vector<std::string> volumes;  // HOST:CONTAINER[:ro|rw]
  std::vector<std::string> devices;  // CDI names or host device paths
  std::string workdir;
  std::string user;  // USER[:GROUP]; "" = the image's
  bool readonly_rootfs = false;
  int64_t memory_bytes = 0;
  double cpus = 0;
  int64_t pids_limit = 0;
  std::string network = "none";  // none | host
  std::string hostname;
  std::string runtime;       // runc | crun | runsc | a path; "" = default
  std::string userns;        // "" | host | auto | C:H:L
  std::string remap_method;  // "" = best available; idmapped | metacopy-chown | chown
  bool terminal = false;
  bool stdin_open = false;
  bool auto_remove = false;
};

struct ExecOptions {
  std::vector<std::string> args;
  std::vector<std::string> env;
  std::string workdir;
  std::string user;
  bool terminal = false;
  bool stdin_open = false;
};

struct ExecInfo {
  std::string exec_id;
  std::string bundle;  // connect to `socket` in this directory
  std::string socket;
};

struct TaskManagerOptions {
  std::string root;                           // tasks live in <root>/tasks
  std::string snapshotter = "strata-images";  // where images are unpacked
  std::string default_runtime = "runc";
  std::vector<std::string> shim_command;  // argv prefix; the options JSON is appended
  uint32_t userns_auto_first = 1u << 30;  // --userns=auto hands out ranges of
  uint32_t userns_auto_count = 16384;     // 65536 ids from here, this many
  std::string cgroup_parent = "strata";
  std::vector<std::string> cdi_spec_dirs = {"/etc/cdi", "/var/run/cdi"};
};

class TaskManager {
 public:
  // All pointers must outlive the manager. Reads the task records and reconciles them
  // with what survived (see above).
  static Result<std::unique_ptr<TaskManager>> Open(const TaskManagerOptions& options,
                                                   metadata::Store* store,
                                                   snapshotter::Overlay* overlay,
                                                   transfer::ImageStore* images,
                                                   transfer::Puller* puller);
  ~TaskManager();

  // Creates a task (state CREATED). NotFound for an unknown image; AlreadyExists for a
  // name in use; InvalidArgument for bad options (named); FailedPrecondition with the
  // runtime's own message when it refuses the container. Nothing is left behind on
  // failure.
  Result<TaskInfo> Create(const CreateOptions& options);
  // Starts a CREATED task. FailedPrecondition in any other state.
  Result<TaskInfo> Start(const std::string& id_or_name);
  // NotFound for an unknown id/name. Ids may be abbreviated to a unique prefix.
  Result<TaskInfo> Get(const std::string& id_or_name);
  // Tasks in creation order; `all` includes stopped ones.
  Result<std::vector<TaskInfo>> List(bool all);
  // Sends `signal` to the task's process (all its processes with `all`).
  // FailedPrecondition when it is not running.
  Status Kill(const std::string& id_or_name, int signal, bool all);
  // Sends the image's stop signal (SIGTERM by default), waits up to `timeout_ms`, then
  // SIGKILL; returns the stopped task. A stopped task is returned as it is.
  Result<TaskInfo> Stop(const std::string& id_or_name, int64_t timeout_ms);
  // Waits until the task stops (at most `timeout_ms`, <0 = forever): DeadlineExceeded.
  Result<TaskInfo> Wait(const std::string& id_or_name, int64_t timeout_ms);
  // Removes a task. FailedPrecondition for a running task unless `force` (killed first).
  Result<TaskInfo> Delete(const std::string& id_or_name, bool force);
  // Prepares an exec in a running task; the process starts when a client attaches to
  // the returned socket.
  Result<ExecInfo> Exec(const std::string& id_or_name, const ExecOptions& options);

  // Removes stopped auto-remove tasks and reaps finished shims; call periodically.
  void Tick();

 private:
  class Impl;
  explicit TaskManager(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata::runtime
