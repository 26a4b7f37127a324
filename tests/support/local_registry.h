// LocalRegistry: Debian's docker-registry (distribution 2.8) started on 127.0.0.1 with
// a free port and storage in a fresh temporary directory, for tests that need a real
// registry. Stopped (by pid) and its directory removed when the object is destroyed.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "core/status.h"

namespace strata::testing {

struct LocalRegistryOptions {
  // When set, the registry requires HTTP basic auth with this user and password
  // (an htpasswd file made with `htpasswd -Bbn`).
  std::string htpasswd_user;
  std::string htpasswd_password;
};

class LocalRegistry {
 public:
  // Starts the registry and waits until /v2/ answers (up to 20 s).
  static Result<std::unique_ptr<LocalRegistry>> Start(const LocalRegistryOptions& options = {});
  ~LocalRegistry();
  LocalRegistry(const LocalRegistry&) = delete;
  LocalRegistry& operator=(const LocalRegistry&) = delete;

  // "127.0.0.1:PORT"
  const std::string& address() const { return address_; }
  const std::string& dir() const { return dir_; }
  pid_t pid() const { return pid_; }

 private:
  LocalRegistry() = default;
  std::string address_;
  std::string dir_;
  pid_t pid_ = -1;
};

// A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
Result<int> FreeLoopbackPort();

// Writes a Docker config.json under `dir` with basic credentials for `host`;
// returns its path.
Result<std::string> WriteDockerConfig(const std::string& dir, const std::string& host,
                                      const std::string& user, const std::string& password);

}  // namespace strata::testing
