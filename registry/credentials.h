// Registry credentials from Docker's config.json, as docker, nerdctl and containerd's
// CRI read them:
//   credHelpers  {"<host>": "<name>"}  -> run `docker-credential-<name> get`
//   credsStore   "<name>"              -> the same helper for every other host (auths
//                                          entries are then only placeholders)
//   auths        {"<host or URL>": {"auth": base64("user:pass")} | {"username","password"}
//                 | {"identitytoken"}}
// Docker Hub is looked up under "https://index.docker.io/v1/" (any key naming
// index.docker.io, docker.io or registry-1.docker.io matches). Secrets are never
// logged nor put in error messages.
#pragma once

#include <optional>
#include <string>

#include "core/status.h"

namespace strata::registry {

struct Credentials {
  std::string username;
  std::string secret;           // password, or the identity (refresh) token
  bool identity_token = false;  // secret is an OAuth2 refresh token ("<token>" user)
};

// $DOCKER_CONFIG/config.json, else $HOME/.docker/config.json.
std::string DefaultDockerConfigPath();

// Credentials for registry `host` ("docker.io", "localhost:5000") from the Docker
// config at `config_path`. nullopt when none are configured (or the file is absent).
// InvalidArgument naming the file for malformed JSON or base64; Unavailable naming
// the helper when a credential helper fails other than with "not found".
Result<std::optional<Credentials>> LookupCredentials(const std::string& host,
                                                     const std::string& config_path);

}  // namespace strata::registry
