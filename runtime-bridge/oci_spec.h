// The OCI runtime spec (config.json) of a task, built from the image's config and the
// user's `strata run` options, with the defaults containerd and Docker give a
// container: namespaces, the usual /proc, /dev, /sys mounts, the default capability
// set, masked and read-only /proc paths, cgroup limits.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "runtime-bridge/passwd.h"
#include "runtime-bridge/userns.h"

namespace strata::runtime {

// The parts of an OCI image config (application/vnd.oci.image.config.v1+json,
// "config" object) a task uses.
struct ImageConfig {
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::vector<std::string> env;
  std::string working_dir;
  std::string user;
  std::string stop_signal;  // e.g. "SIGQUIT"; "" = SIGTERM
};

// InvalidArgument when `config_json` is not an image config document.
Result<ImageConfig> ParseImageConfig(const std::string& config_json);

// The process arguments, Docker's way: `--entrypoint` replaces the image's Entrypoint
// and drops its Cmd; arguments after the image name replace Cmd. InvalidArgument when
// nothing is left to run.
Result<std::vector<std::string>> ProcessArgs(const ImageConfig& image,
                                             const std::optional<std::string>& entrypoint,
                                             const std::vector<std::string>& cmd);

// The environment: the image's, then `overrides` (KEY=VALUE; a later KEY replaces an
// earlier one), plus PATH, HOSTNAME, HOME and (with a terminal) TERM when missing.
// InvalidArgument for an override without '=' or with an empty key.
Result<std::vector<std::string>> ProcessEnv(const std::vector<std::string>& image_env,
                                            const std::vector<std::string>& overrides,
                                            const std::string& hostname, const std::string& home,
                                            bool terminal);

struct BindMount {
  std::string host_path;       // absolute, existing
  std::string container_path;  // absolute
  bool readonly = false;
};

// Parses `-v HOST:CONTAINER[:ro|rw]`. InvalidArgument for relative paths, a missing
// host path, unknown modes.
Result<BindMount> ParseBindMount(const std::string& text);

// Parses a signal name ("SIGTERM", "TERM", "kill") or number; InvalidArgument otherwise.
Result<int> ParseSignal(const std::string& text);

struct SpecOptions {
  std::vector<std::string> args;
  std::vector<std::string> env;
  std::string cwd = "/";
  ResolvedUser user;
  bool terminal = false;
  std::string hostname;
  bool readonly_rootfs = false;
  std::string network = "none";  // "none": own namespace (loopback only); "host"
  std::optional<IdMap> uid_map;  // set: a user namespace with these mappings
  std::optional<IdMap> gid_map;
  std::vector<BindMount> binds;
  int64_t memory_bytes = 0;  // 0: no limit
  double cpus = 0;           // 0: no limit
  int64_t pids_limit = 0;    // 0: no limit
  std::string cgroups_path;  // e.g. "/strata/<id>"
  std::string rootfs = "rootfs";
};

// The complete config.json document.
nlohmann::json BuildSpec(const SpecOptions& options);

// The "process" object of `runc exec --process`: `spec`'s process with new args and
// optional env additions, cwd, user and terminal.
nlohmann::json ExecProcess(const nlohmann::json& spec, const std::vector<std::string>& args,
                           const std::vector<std::string>& env, const std::string& cwd,
                           const std::optional<ResolvedUser>& user, bool terminal);

// The default capability set (containerd's and Docker's), as OCI names.
const std::vector<std::string>& DefaultCapabilities();

}  // namespace strata::runtime
