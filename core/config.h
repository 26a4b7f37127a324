// stratad's configuration: embedded defaults, overridden by a TOML file, overridden by
// command-line flags. Every flag has a config key of the same name (dashes become
// underscores).
//
//   root = "/var/lib/strata"               # state: metadata, snapshots, content
//   address = "/run/strata/strata.sock"    # gRPC unix socket
//   log_level = "info"                     # trace|debug|info|warn|error
//   socket_mode = "0600"                   # octal permission bits of the socket
//   socket_group = ""                      # group name or gid owning the socket
//   background_cleanup = true              # remove directories of removed snapshots
//
//   [registry]
//   config_path = "/etc/strata/certs.d"    # hosts.toml directories (containerd layout)
//   docker_config = ""                     # credentials; "" = $DOCKER_CONFIG or ~/.docker
//   max_attempts = 5                       # per request, on 429/5xx/connection errors
//
//   [transfer]
//   snapshotter = "strata-images"          # snapshotter name `strata image pull` unpacks to
//   max_concurrent_downloads = 3
//
//   [image_verifier]                       # containerd 2.x bindir verifier protocol
//   bin_dir = ""                           # "" = no verification
//   max_verifiers = 10
//   per_verifier_timeout = "10s"           # "500ms", "10s", "1m"
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"

namespace strata {

struct DaemonConfig {
  std::string root = "/var/lib/strata";
  std::string address = "/run/strata/strata.sock";
  std::string log_level = "info";
  unsigned socket_mode = 0600;
  std::string socket_group;
  bool background_cleanup = true;

  std::string registry_config_path = "/etc/strata/certs.d";
  std::string registry_docker_config;
  int registry_max_attempts = 5;

  std::string transfer_snapshotter = "strata-images";
  int transfer_max_concurrent_downloads = 3;

  std::string verifier_bin_dir;
  int verifier_max_verifiers = 10;
  int64_t verifier_timeout_ms = 10000;
};

// Parses a duration such as "500ms", "10s", "2m", "1h" (or "1m30s") into milliseconds.
// InvalidArgument if malformed.
Result<int64_t> ParseDurationMs(const std::string& text);

// Reads `path` over the values already in `config`. InvalidArgument naming the file,
// line and key for syntax errors, unknown keys and values of the wrong type.
Status LoadConfigFile(const std::string& path, DaemonConfig& config);

// Parses an octal mode string such as "0660". InvalidArgument if malformed.
Result<unsigned> ParseOctalMode(const std::string& text);

}  // namespace strata
