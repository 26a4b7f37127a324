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
//
//   [lazy]                                 # lazy pulling (eStargz layers over FUSE)
//   enabled = true                         # serve remote-snapshot Prepares lazily
//   cache_dir = ""                         # "" = <root>/cache
//   chunk_size = "1MiB"                    # fetch and cache granularity
//   max_connections = 8                    # registry requests in flight
//   read_deadline = "30s"                  # a read waits this long, then EIO
//   memory_cache = "64MiB"                 # recently read chunks in memory
//   disk_cache_limit = "0"                 # "0" = unlimited, else e.g. "20GiB"
//   prefetch = true                        # fetch landmark-prioritised files at mount
//   background_fetch = true                # then the rest of each layer
//   metrics_address = ""                   # e.g. "127.0.0.1:9100"; "" = no endpoint
//   restart_grace = "5m"                   # lazy mounts outlive stratad this long; "0s":
//                                          # unmounted when stratad stops
#pragma once

#include <cstdint>
#include <string>
#include <vector>

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

  bool lazy_enabled = true;
  std::string lazy_cache_dir;  // "" = <root>/cache
  uint64_t lazy_chunk_size = 1 << 20;
  int lazy_max_connections = 8;
  int64_t lazy_read_deadline_ms = 30000;
  uint64_t lazy_memory_cache_bytes = 64 << 20;
  uint64_t lazy_disk_cache_limit_bytes = 0;
  bool lazy_prefetch = true;
  bool lazy_background_fetch = true;
  std::string lazy_metrics_address;
  int64_t lazy_restart_grace_ms = 300000;

  // [runtime]: tasks run by `strata run`.
  std::string runtime_default = "runc";
  std::string runtime_cgroup_parent = "strata";
  uint32_t runtime_userns_auto_first = 1u << 30;  // --userns=auto ranges of 65536 ids
  uint32_t runtime_userns_auto_count = 16384;
  std::vector<std::string> runtime_cdi_spec_dirs = {"/etc/cdi", "/var/run/cdi"};
};

// Parses a duration such as "500ms", "10s", "2m", "1h" (or "1m30s") into milliseconds.
// InvalidArgument if malformed.
Result<int64_t> ParseDurationMs(const std::string& text);

// Parses a byte size: a number with an optional unit B, K/KiB, M/MiB, G/GiB, T/TiB
// (powers of 1024; KB/MB/GB/TB are powers of 1000). InvalidArgument if malformed.
Result<uint64_t> ParseByteSize(const std::string& text);

// Reads `path` over the values already in `config`. InvalidArgument naming the file,
// line and key for syntax errors, unknown keys and values of the wrong type.
Status LoadConfigFile(const std::string& path, DaemonConfig& config);

// Parses an octal mode string such as "0660". InvalidArgument if malformed.
Result<unsigned> ParseOctalMode(const std::string& text);

}  // namespace strata
