// The task supervisor ("shim"): one small process per container process, so that
// containers outlive stratad. It is the stratad binary in another mode
// (`stratad --task-shim JSON`), started by the task manager in a session of its own.
//
// The shim makes itself the child subreaper, runs `RUNTIME create` (a container's init)
// or `RUNTIME exec --detach` (an exec) with the process's stdio on pipes or a
// terminal it receives through --console-socket, and then:
//   - copies output into the task's log (CRI format: "<RFC3339Nano> <stream> <F|P> <text>",
//     what `strata logs` reads) and to every attached client (attach.h);
//   - feeds attached clients' input to the process's stdin, resizes its terminal;
//   - reaps the process, writes its exit code to a file in the task directory
//     atomically, tells attached clients and exits.
//
// Files in the task directory `dir` (names relative to it; sockets are bound through
// /proc/self/fd so long directory paths work):
//   init:  attach.sock, pid, exit ("<code> <unix nanos>\n"), log
//   exec:  exec-<id>.json (the process spec, written by the task manager),
//          exec-<id>.sock, exec-<id>.pid, exec-<id>.exit
#pragma once

#include <string>
#include <vector>

#include "core/status.h"

namespace strata::runtime {

struct ShimOptions {
  std::string dir;                   // the task's bundle directory
  std::string container_id;          // the runtime's container id
  std::vector<std::string> runtime;  // runtime argv prefix, e.g. {"/usr/sbin/runc", "--root", R}
  std::string exec_id;               // "" for the init process
  bool terminal = false;
  bool stdin_open = false;
  bool log = true;               // init: write the CRI log file
  int start_timeout_ms = 60000;  // exec: how long to wait for the client that starts it
};

std::string EncodeShimOptions(const ShimOptions& options);
Result<ShimOptions> DecodeShimOptions(const std::string& text);

// File names within the task directory.
std::string AttachSocketName(const std::string& exec_id);
std::string ExitFileName(const std::string& exec_id);
std::string PidFileName(const std::string& exec_id);
std::string ExecSpecFileName(const std::string& exec_id);
inline constexpr char kLogFileName[] = "log";

// Runs the shim; returns the process exit status. `status_fd` receives one line once
// the process is created ("ok <pid>\n") or could not be ("error <message>\n") and is
// closed. An exec waits for its first attached client before it starts the process,
// so the client sees all of its output; it reports "ok 0\n" when it listens.
int RunShim(const ShimOptions& options, int status_fd);

// Parses an exit file: the exit code and the exit time (unix nanos). NotFound while
// the process runs.
struct ExitRecord {
  int code = 0;
  int64_t unix_nanos = 0;
};
Result<ExitRecord> ReadExitFile(const std::string& dir, const std::string& exec_id);

}  // namespace strata::runtime
