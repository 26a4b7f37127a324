// Registry host configuration in containerd's format: for a registry name such as
// "docker.io" or "localhost:5000", the ordered list of endpoints to try (mirrors first,
// the upstream last), read from <config dir>/<host>/hosts.toml:
//
//   server = "https://registry-1.docker.io"      # upstream (optional)
//   [host."https://mirror.example.com"]
//     capabilities = ["pull", "resolve"]          # default: pull, resolve, push
//     ca = "ca.crt"                               # string or list; relative to the dir
//     client = [["client.cert", "client.key"]]    # string, list of strings or pairs
//     skip_verify = false
//     override_path = false                       # keep the URL path as is (no "/v2")
//     [host."https://mirror.example.com".header]
//       x-custom = "value"                        # string or list
//
// The directory is looked up as containerd does: "<host with :port as _port_>",
// then "<host>", then "_default". Mirrors keep the order of the file. Without a
// configuration the single endpoint is https://<host>/v2 (registry-1.docker.io for
// docker.io), and plain http with TLS verification off for loopback hosts.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/status.h"

namespace strata::registry {

enum Capability : unsigned {
  kCapabilityPull = 1,
  kCapabilityResolve = 2,
  kCapabilityPush = 4,
};

struct RegistryEndpoint {
  std::string scheme;  // "https" or "http"
  std::string host;    // "mirror.example.com:5000"
  std::string path;    // "/v2", or a configured path
  unsigned capabilities = kCapabilityPull | kCapabilityResolve | kCapabilityPush;
  std::vector<std::string> ca_files;                              // absolute paths
  std::vector<std::pair<std::string, std::string>> client_certs;  // (cert, key); key may be ""
  bool skip_verify = false;
  std::map<std::string, std::vector<std::string>> headers;

  // "https://host/v2"
  std::string BaseUrl() const { return scheme + "://" + host + path; }
};

// True for "localhost", "localhost:5000", 127.0.0.0/8 and ::1, with or without port.
bool IsLoopbackHost(const std::string& host);

// Endpoints for registry `host` given the hosts.toml directory root `config_dir`
// (empty: none configured). InvalidArgument naming the file for a malformed hosts.toml
// (containerd would log and ignore it; strata refuses rather than pull from the wrong
// place).
Result<std::vector<RegistryEndpoint>> ResolveEndpoints(const std::string& host,
                                                       const std::string& config_dir);

// Parses the text of one hosts.toml (for `host`, in directory `dir`). Exposed for tests.
Result<std::vector<RegistryEndpoint>> ParseHostsToml(const std::string& host,
                                                     const std::string& dir,
                                                     const std::string& text);

}  // namespace strata::registry
