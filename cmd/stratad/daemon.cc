#include "cmd/stratad/daemon.h"

#include <grp.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>
#include <thread>

#include "core/fs.h"
#include "core/lock_file.h"
#include "fuse/session_keeper.h"
#include "lazy/engine.h"
#include "lazy/fuse_metrics.h"
#include "lazy/metrics_endpoint.h"
#include "lazy/stargz/layer_source.h"
#include "metadata/store.h"
#include "registry/client.h"
#include "runtime-bridge/tasks.h"
#include "runtime-bridge/tasks_service.h"
#include "snapshotter/overlay.h"
#include "snapshotter/service.h"
#include "transfer/content_store.h"
#include "transfer/image_store.h"
#include "transfer/images_service.h"
#include "transfer/puller.h"

namespace strata {
namespace {

// True when something accepts connections on the unix socket `path`.
bool SocketIsServed(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  bool served = ::connect(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return served;
}

Status PrepareSocketPath(const std::string& path) {
  if (path.size() >= sizeof(sockaddr_un::sun_path)) {
    return Status::InvalidArgument("socket path too long (max " +
                                   std::to_string(sizeof(sockaddr_un::sun_path) - 1) +
                                   " bytes): " + path);
  }
  RETURN_IF_ERROR(fs::MakeDirs(fs::DirName(path), 0711));
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Status::FailedPrecondition(path + " exists and is not a socket");
    }
    if (SocketIsServed(path)) {
      return Status::FailedPrecondition("another server is listening on " + path);
    }
    if (::unlink(path.c_str()) != 0) return Status::FromErrno(errno, "remove stale socket " + path);
  }
  return Status::Ok();
}

Status SetSocketPermissions(const DaemonConfig& config) {
  if (!config.socket_group.empty()) {
    gid_t gid;
    char* end = nullptr;
    unsigned long numeric = std::strtoul(config.socket_group.c_str(), &end, 10);
    if (end != nullptr && *end == '\0') {
      gid = static_cast<gid_t>(numeric);
    } else {
      struct group* g = ::getgrnam(config.socket_group.c_str());
      if (g == nullptr) return Status::InvalidArgument("unknown group " + config.socket_group);
      gid = g->gr_gid;
    }
    if (::chown(config.address.c_str(), static_cast<uid_t>(-1), gid) != 0) {
      return Status::FromErrno(errno, "chown " + config.address);
    }
  }
  if (::chmod(config.address.c_str(), config.socket_mode) != 0) {
    return Status::FromErrno(errno, "chmod " + config.address);
  }
  return Status::Ok();
}

// The path of this binary, to start it in another mode (FUSE keeper, task shim).
std::string SelfExe() {
  char exe[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  std::string self = n > 0 ? std::string(exe, static_cast<size_t>(n)) : "/proc/self/exe";
  if (self.size() > 10 && self.compare(self.size() - 10, 10, " (deleted)") == 0) {
    self = "/proc/self/exe";  // upgraded under our feet: run the binary we are
  }
  return self;
}

// Lazy pulling: the engine, the formats it serves and the metrics endpoint.
struct LazyServices {
  std::unique_ptr<fuse::SessionKeeperClient> keeper;  // null: mounts end with the daemon
  std::unique_ptr<lazy::Engine> engine;
  std::unique_ptr<lazy::FuseMetrics> fuse_metrics;
  std::unique_ptr<lazy::stargz::StargzSource> stargz;
  std::unique_ptr<lazy::MetricsEndpoint> metrics;
};

Result<LazyServices> StartLazy(const DaemonConfig& config, registry::Client* registry,
                               snapshotter::Overlay* overlay) {
  LazyServices lazy;
  if (!config.lazy_enabled) return lazy;
  lazy::EngineOptions options;
  options.cache_dir =
      config.lazy_cache_dir.empty() ? config.root + "/cache" : config.lazy_cache_dir;
  options.chunk_size = config.lazy_chunk_size;
  options.max_connections = static_cast<size_t>(config.lazy_max_connections);
  options.read_deadline = std::chrono::milliseconds(config.lazy_read_deadline_ms);
  options.memory_cache_bytes = config.lazy_memory_cache_bytes;
  options.disk_cache_limit_bytes = config.lazy_disk_cache_limit_bytes;
  auto engine = lazy::Engine::Open(options, registry);
  if (!engine.ok()) return engine.status().WithContext("[lazy]");
  lazy.engine = std::move(*engine);
  lazy.fuse_metrics = std::make_unique<lazy::FuseMetrics>(*lazy.engine->metrics_registry());

  // Sessions kept by the keeper outlive this process; those of an earlier run are served
  // again (fuse/session_keeper.h).
  std::map<std::string, int> inherited;
  if (config.lazy_restart_grace_ms > 0) {
    std::string self = SelfExe();
    lazy.keeper = std::make_unique<fuse::SessionKeeperClient>(
        config.root + "/fuse-keeper.sock", std::vector<std::string>{self},
        std::chrono::milliseconds(config.lazy_restart_grace_ms));
    auto taken = lazy.keeper->TakeAll();
    if (taken.ok()) {
      inherited = std::move(*taken);
    } else {
      spdlog::warn("FUSE session keeper: {}", taken.status().ToString());
    }
    if (!inherited.empty())
      spdlog::info("{} lazy layer sessions outlived the last run", inherited.size());
  }

  lazy::stargz::SourceOptions stargz;
  stargz.keeper = lazy.keeper.get();
  stargz.prefetch = config.lazy_prefetch;
  stargz.background_fetch = config.lazy_background_fetch;
  stargz.mount.observer = lazy.fuse_metrics->observer();
  // Whiteouts and opaque directories as both privileged and "userxattr" overlays read them.
  stargz.open.tree.opaque_xattrs = {"trusted.overlay.opaque", "user.overlay.opaque"};
  lazy.stargz = std::make_unique<lazy::stargz::StargzSource>(lazy.engine.get(), registry, stargz);
  overlay->AddLayerSource(lazy.stargz.get());

  if (!config.lazy_metrics_address.empty()) {
    auto metrics =
        lazy::MetricsEndpoint::Start(config.lazy_metrics_address, lazy.engine->metrics_registry());
    if (!metrics.ok()) return metrics.status().WithContext("[lazy] metrics_address");
    lazy.metrics = std::move(*metrics);
    spdlog::info("lazy metrics at http://{}/metrics (port {})", config.lazy_metrics_address,
                 lazy.metrics->port());
  }
  // Layers mounted by an earlier run: sessions the keeper held are served again, dead
  // mounts of a crashed run are detached by the source's Mount (and those of removed
  // snapshots by the overlay's orphan cleanup).
  lazy.stargz->Inherit(std::move(inherited));
  ASSIGN_OR_RETURN(int restored, overlay->RestoreRemoteLayers());
  if (restored > 0) spdlog::info("serving {} lazy layers of the last run again", restored);
  lazy.stargz->DropUnclaimedSessions();
  return lazy;
}

}  // namespace

Status RunDaemon(const DaemonConfig& config) {
  RETURN_IF_ERROR(fs::MakeDirs(config.root, 0711).WithContext("root directory"));
  auto lock = LockFile::Acquire(config.root + "/stratad.lock");
  if (!lock.ok()) {
    return lock.status().WithContext("cannot start on root " + config.root);
  }
  ASSIGN_OR_RETURN(auto store, metadata::Store::Open(config.root + "/metadata"));
  snapshotter::OverlayOptions overlay_options;
  overlay_options.background_cleanup = config.background_cleanup;
  ASSIGN_OR_RETURN(auto overlay,
                   snapshotter::Overlay::Open(config.root, store.get(), overlay_options));

  // Transfer: registry client, content and image stores, pull pipeline.
  registry::ClientOptions registry_options;
  registry_options.hosts_dir = config.registry_config_path;
  registry_options.docker_config = config.registry_docker_config;
  registry_options.max_attempts = config.registry_max_attempts;
  registry_options.user_agent = std::string("strata/") + STRATA_VERSION;
  ASSIGN_OR_RETURN(auto registry, registry::Client::Create(registry_options));
  ASSIGN_OR_RETURN(auto content, transfer::ContentStore::Open(config.root, store.get()));
  auto images = transfer::ImageStore::Open(store.get());
  transfer::PullerOptions puller_options;
  puller_options.snapshotter_name = config.transfer_snapshotter;
  puller_options.max_concurrent_downloads = config.transfer_max_concurrent_downloads;
  puller_options.verifiers.bin_dir = config.verifier_bin_dir;
  puller_options.verifiers.max_verifiers = config.verifier_max_verifiers;
  puller_options.verifiers.per_verifier_timeout =
      std::chrono::milliseconds(config.verifier_timeout_ms);
  transfer::Puller puller(registry.get(), content.get(), images.get(), overlay.get(),
                          puller_options);
  ASSIGN_OR_RETURN(LazyServices lazy, StartLazy(config, registry.get(), overlay.get()));
  transfer::TransferServices transfer_deps;
  transfer_deps.registry = registry.get();
  transfer_deps.content = content.get();
  transfer_deps.images = images.get();
  transfer_deps.snapshots = overlay.get();
  transfer_deps.puller = &puller;
  transfer_deps.gc_snapshotters = {config.transfer_snapshotter};

  // Tasks (runtime-bridge): containers run by `strata run`.
  runtime::TaskManagerOptions task_options;
  task_options.root = config.root;
  task_options.snapshotter = config.transfer_snapshotter;
  task_options.default_runtime = config.runtime_default;
  task_options.shim_command = {SelfExe(), "--task-shim"};
  task_options.userns_auto_first = config.runtime_userns_auto_first;
  task_options.userns_auto_count = config.runtime_userns_auto_count;
  task_options.cgroup_parent = config.runtime_cgroup_parent;
  task_options.cdi_spec_dirs = config.runtime_cdi_spec_dirs;
  ASSIGN_OR_RETURN(auto tasks, runtime::TaskManager::Open(task_options, store.get(), overlay.get(),
                                                          images.get(), &puller));
  std::atomic<bool> stopping{false};
  std::thread task_ticker([&] {
    while (!stopping.load()) {
      tasks->Tick();
      for (int i = 0; i < 5 && !stopping.load(); i++) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
  });
  struct JoinTicker {
    std::atomic<bool>& stopping;
    std::thread& thread;
    ~JoinTicker() {
      stopping = true;
      if (thread.joinable()) thread.join();
    }
  } join_ticker{stopping, task_ticker};

  RETURN_IF_ERROR(PrepareSocketPath(config.address));
  auto snapshots = snapshotter::SnapshotsService::New(overlay.get());
  auto images_service = transfer::NewImagesService(transfer_deps);
  auto content_service = transfer::NewContentService(transfer_deps);
  auto tasks_service = runtime::NewTasksService(tasks.get());
  auto admin = snapshotter::NewAdminService(
      overlay.get(),
      {STRATA_VERSION, config.root, store->schema_version(), config.transfer_snapshotter});
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + config.address, grpc::InsecureServerCredentials());
  builder.SetMaxReceiveMessageSize(16 << 20);
  builder.SetMaxSendMessageSize(16 << 20);
  // The synchronous services' handlers (List, images, content, tasks) block on disk
  // and network; keep enough polling threads alive that gRPC does not create and
  // destroy one per call under load. Snapshot unary calls have their own loop.
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MIN_POLLERS, 2);
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, 64);
  snapshots->Register(builder);
  builder.RegisterService(admin.get());
  builder.RegisterService(images_service.get());
  builder.RegisterService(content_service.get());
  builder.RegisterService(tasks_service.get());
  // The socket is created with the process umask; tighten it before it is bound.
  mode_t old_umask = ::umask(0177);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ::umask(old_umask);
  if (!server) return Status::Unavailable("cannot listen on unix socket " + config.address);
  snapshots->Start();
  if (Status s = SetSocketPermissions(config); !s.ok()) {
    server->Shutdown();
    snapshots->Stop();
    return s;
  }
  spdlog::info("stratad {} serving on {} (root {})", STRATA_VERSION, config.address, config.root);

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  int sig = 0;
  while (sigwait(&signals, &sig) != 0) {
  }
  spdlog::info("received signal {}, shutting down", sig);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(10));
  snapshots->Stop();
  server->Wait();
  stopping = true;
  task_ticker.join();
  // The overlay unmounts its lazy layers, then the sources and the engine can go.
  RETURN_IF_ERROR(overlay->Close());
  if (lazy.keeper != nullptr && !lazy.stargz->Mounts().empty()) {
    // Hand over: the lazy layers stay mounted, their sessions held by the keeper, and
    // the next stratad serves them again. Exit without tearing them down; requests in
    // flight are sent again to the next daemon.
    overlay.reset();
    store.reset();
    ::unlink(config.address.c_str());
    spdlog::info("stratad stopped; {} lazy layers stay mounted for the next start",
                 lazy.stargz->Mounts().size());
    spdlog::default_logger()->flush();
    std::_Exit(0);
  }
  lazy.metrics.reset();
  lazy.stargz.reset();
  lazy.engine.reset();
  overlay.reset();
  store.reset();
  ::unlink(config.address.c_str());
  spdlog::info("stratad stopped");
  return Status::Ok();
}

}  // namespace strata
