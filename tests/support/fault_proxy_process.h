// FaultProxyProcess: strata-test-fault-proxy (tests/tools) started in front of a
// registry for a test, with its rules replaceable at run time. Stopped by pid when
// destroyed.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "core/status.h"

namespace strata::testing {

class FaultProxyProcess {
 public:
  // Starts `binary` (the strata-test-fault-proxy path) in front of `upstream`
  // ("127.0.0.1:PORT"), logging to a file under `log_dir`.
  static Result<std::unique_ptr<FaultProxyProcess>> Start(const std::string& binary,
                                                          const std::string& upstream,
                                                          const std::string& log_dir);
  ~FaultProxyProcess();
  FaultProxyProcess(const FaultProxyProcess&) = delete;
  FaultProxyProcess& operator=(const FaultProxyProcess&) = delete;

  // "127.0.0.1:PORT": what clients talk to.
  const std::string& address() const { return address_; }
  // Replaces the rules (one per line; "" clears them). InvalidArgument if the proxy
  // rejects them.
  Status SetRules(const std::string& rules);
  // The proxy's request log so far.
  std::string Log() const;

 private:
  FaultProxyProcess() = default;
  std::string address_;
  std::string log_path_;
  pid_t pid_ = -1;
};

}  // namespace strata::testing
