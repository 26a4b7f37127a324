// stratad: the strata daemon. See `stratad --help` and docs/configuration.md.
#include <absl/synchronization/mutex.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "cmd/stratad/daemon.h"
#include "core/config.h"
#include "fuse/session_keeper.h"
#include "runtime-bridge/shim.h"

int main(int argc, char** argv) {
  // The FUSE session keeper (fuse/session_keeper.h) is this binary in another mode.
  if (argc == 4 && std::string(argv[1]) == "--fuse-keeper") {
    return strata::fuse::RunSessionKeeper(argv[2], std::chrono::milliseconds(std::atoll(argv[3])));
  }
  // A task's supervisor (runtime-bridge/shim.h) too; its status pipe is fd 3.
  if (argc == 3 && std::string(argv[1]) == "--task-shim") {
    auto options = strata::runtime::DecodeShimOptions(argv[2]);
    if (!options.ok()) {
      std::fprintf(stderr, "stratad --task-shim: %s\n", options.status().message().c_str());
      return 2;
    }
    return strata::runtime::RunShim(*options, 3);
  }
  // Debian builds Abseil with its debug default: every absl::Mutex operation (gRPC
  // takes several per call) also updates a global lock-order graph to detect
  // deadlocks, about 1-2% of the daemon's CPU in a snapshot cycle. Not for production.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // Block termination signals before any thread starts; RunDaemon waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  CLI::App app{"stratad: container snapshot and lazy-pull service"};
  std::string config_path, root, address, log_level, socket_mode, socket_group;
  std::string registry_config_path, verifier_bin_dir, metrics_address, default_runtime;
  bool no_lazy = false;
  bool no_background_cleanup = false;
  app.add_option("--config", config_path, "TOML configuration file");
  app.add_option("--root", root, "state directory (default /var/lib/strata)");
  app.add_option("--address", address, "gRPC unix socket (default /run/strata/strata.sock)");
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error (default info)");
  app.add_option("--socket-mode", socket_mode, "octal mode of the socket (default 0600)");
  app.add_option("--socket-group", socket_group, "group (name or gid) owning the socket");
  app.add_flag("--no-background-cleanup", no_background_cleanup,
               "leave directories of removed snapshots to Cleanup");
  app.add_option("--registry-config-path", registry_config_path,
                 "directory of hosts.toml files (default /etc/strata/certs.d)");
  app.add_option("--image-verifier-bin-dir", verifier_bin_dir,
                 "directory of image verifier plugins (default: none)");
  app.add_flag("--no-lazy", no_lazy, "unpack every layer; never serve layers lazily");
  app.add_option("--metrics-address", metrics_address,
                 "HOST:PORT of the lazy engine's Prometheus endpoint (default: none)");
  app.add_option("--default-runtime", default_runtime,
                 "OCI runtime of `strata run` without --runtime: runc, crun, runsc or a path");
  bool show_version = false;
  app.add_flag("--version", show_version, "print the version and exit");
  CLI11_PARSE(app, argc, argv);
  if (show_version) {
    std::cout << "stratad " << STRATA_VERSION << "\n";
    return 0;
  }

  strata::DaemonConfig config;
  if (!config_path.empty()) {
    strata::Status s = strata::LoadConfigFile(config_path, config);
    if (!s.ok()) {
      std::fprintf(stderr, "stratad: %s\n", s.message().c_str());
      return 2;
    }
  }
  if (!root.empty()) config.root = root;
  if (!address.empty()) config.address = address;
  if (!log_level.empty()) config.log_level = log_level;
  if (!socket_group.empty()) config.socket_group = socket_group;
  if (no_background_cleanup) config.background_cleanup = false;
  if (!registry_config_path.empty()) config.registry_config_path = registry_config_path;
  if (!verifier_bin_dir.empty()) config.verifier_bin_dir = verifier_bin_dir;
  if (!metrics_address.empty()) config.lazy_metrics_address = metrics_address;
  if (no_lazy) config.lazy_enabled = false;
  if (!default_runtime.empty()) config.runtime_default = default_runtime;
  if (!socket_mode.empty()) {
    auto mode = strata::ParseOctalMode(socket_mode);
    if (!mode.ok()) {
      std::fprintf(stderr, "stratad: --socket-mode: %s\n", mode.status().message().c_str());
      return 2;
    }
    config.socket_mode = *mode;
  }

  auto logger = spdlog::stderr_color_mt("stratad");
  spdlog::set_default_logger(logger);
  auto level = spdlog::level::from_str(config.log_level);
  if (level == spdlog::level::off && config.log_level != "off") {
    std::fprintf(stderr, "stratad: unknown log level \"%s\"\n", config.log_level.c_str());
    return 2;
  }
  spdlog::set_level(level);

  strata::Status s = strata::RunDaemon(config);
  if (!s.ok()) {
    spdlog::error("{}", s.message());
    return 1;
  }
  return 0;
}
