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
#pragma once

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
};

// Reads `path` over the values already in `config`. InvalidArgument naming the file,
// line and key for syntax errors, unknown keys and values of the wrong type.
Status LoadConfigFile(const std::string& path, DaemonConfig& config);

// Parses an octal mode string such as "0660". InvalidArgument if malformed.
Result<unsigned> ParseOctalMode(const std::string& text);

}  // namespace strata
