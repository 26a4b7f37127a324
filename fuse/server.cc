#include "fuse/server.h"

#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <linux/fuse.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "fuse/libfuse.h"
#include "fuse/mounts.h"
#include "fuse/operations.h"

namespace strata::fuse {
namespace {

// libfuse splits options at commas and treats backslashes as escapes; a name made of
// these characters passes through it and mountinfo unchanged.
bool IsPlainName(const std::string& name) {
  if (name.empty()) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              std::strchr("._:@/+=-", c) != nullptr;
    if (!ok) return false;
  }
  return true;
}

Status ValidateOptions(const MountOptions& options) {
  if (!IsPlainName(options.fs_name)) {
    return Status::InvalidArgument("FUSE fs_name \"" + options.fs_name +
                                   "\" must be letters, digits and ._:@/+=-");
  }
  if (!IsPlainName(options.subtype)) {
    return Status::InvalidArgument("FUSE subtype \"" + options.subtype +
                                   "\" must be letters, digits and ._:@/+=-");
  }
  if (options.max_read_bytes < 4096) {
    return Status::InvalidArgument("FUSE max_read_bytes must be at least 4096");
  }
  if (options.max_threads == 0) return Status::InvalidArgument("FUSE max_threads must be > 0");
  if (options.attr_timeout.count() < 0 || options.entry_timeout.count() < 0 ||
      options.negative_timeout.count() < 0) {
    return Status::InvalidArgument("FUSE cache timeouts must not be negative");
  }
  return Status::Ok();
}

// The -o string for fuse_session_new: mount(2) options and flags.
std::string MountOptionString(const MountOptions& options) {
  std::string out = "ro,fsname=" + options.fs_name + ",subtype=" + options.subtype +
                    ",max_read=" + std::to_string(options.max_read_bytes);
  if (options.allow_other) out += ",allow_other";
  if (options.default_permissions) out += ",default_permissions";
  return out;
}

// Whether any mount in this namespace still has `device`.
bool DeviceStillMounted(dev_t device) {
  Result<std::vector<MountInfoEntry>> mounts = ListFuseMounts("/");
  if (!mounts.ok()) return true;  // unknown: assume the worst
  for (const auto& m : *mounts) {
    if (m.device == device) return true;
  }
  return false;
}

// A request id the kernel never uses (its ids are even and count up from zero): the
// reply to the synthesised INIT goes to no request and is dropped by the kernel.
constexpr uint64_t kSyntheticInitUnique = ~uint64_t{0} - 1;
// FUSE_NOTIFY_RESEND (protocol 7.40, Linux 6.9): queue again every request a server
// read but did not answer. Newer than Debian 12's <linux/fuse.h>.
constexpr int32_t kNotifyResend = 7;

}  // namespace

Server::Server(std::string mountpoint, const MountOptions& options,
               std::unique_ptr<MountState> state)
    : mountpoint_(std::move(mountpoint)), options_(options), state_(std::move(state)) {}

Result<std::unique_ptr<Server>> Server::Mount(Tree& tree, const std::string& mountpoint,
                                              const MountOptions& options) {
  RETURN_IF_ERROR(ValidateOptions(options));
  char resolved[PATH_MAX];
  if (::realpath(mountpoint.c_str(), resolved) == nullptr) {
    return Status::FromErrno(errno, "FUSE mount point " + mountpoint);
  }
  struct stat st;
  if (::stat(resolved, &st) != 0) return Status::FromErrno(errno, "FUSE mount point " + mountpoint);
  if (!S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument("FUSE mount point " + mountpoint + " is not a directory");
  }
  auto state = std::make_unique<MountState>(tree, options, resolved);
  std::unique_ptr<Server> server(new Server(resolved, options, std::move(state)));
  RETURN_IF_ERROR(server->Start());
  return server;
}

Status Server::CreateSession() {
  std::string option_string = MountOptionString(options_);
  const char* argv[] = {"strata-fuse", "-o", option_string.c_str()};
  fuse_args args = FUSE_ARGS_INIT(3, const_cast<char**>(argv));
  session_ = fuse_session_new(&args, &Operations(), sizeof(fuse_lowlevel_ops), state_.get());
  fuse_opt_free_args(&args);
  if (session_ == nullptr) {
    return Status::Internal("FUSE session for " + mountpoint_ + " (" + option_string +
                            ") could not be created; libfuse says why on stderr");
  }
  return Status::Ok();
}

Status Server::Start() {
  RETURN_IF_ERROR(CreateSession());
  if (fuse_session_mount(session_, mountpoint_.c_str()) != 0) {
    fuse_session_destroy(session_);
    session_ = nullptr;
    return Status::Internal("mounting FUSE at " + mountpoint_ +
                            " failed; libfuse says why on stderr");
  }
  Result<std::optional<MountInfoEntry>> mounted = FindMount(mountpoint_);
  if (!mounted.ok() || !mounted->has_value() || !IsFuseType((*mounted)->fs_type)) {
    // Without the device number the connection could not be aborted later: give up
    // now. Closing the session's descriptor ends the connection.
    ::umount2(mountpoint_.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW);
    fuse_session_destroy(session_);
    session_ = nullptr;
    return Status::Internal("FUSE mount at " + mountpoint_ + " missing from mountinfo");
  }
  device_ = (*mounted)->device;
  unmounted_ = false;
  loop_thread_ = std::thread([this] { RunLoop(); });

  bool initialized;
  {
    std::unique_lock<std::mutex> lock(state_->init_mu);
    state_->init_cv.wait_for(lock, options_.init_timeout,
                             [&] { return state_->initialized || !serving(); });
    initialized = state_->initialized;
  }
  if (!initialized) {
    bool ended = !serving();
    Status undo = Unmount(IfBusy::kAbort);
    if (!undo.ok()) spdlog::error("fuse: undoing mount at {}: {}", mountpoint_, undo.ToString());
    if (ended) return Status::Internal("FUSE session at " + mountpoint_ + " ended before INIT");
    return Status(Code::kDeadlineExceeded, "FUSE INIT at " + mountpoint_ + " not answered within " +
                                               std::to_string(options_.init_timeout.count()) +
                                               " ms");
  }
  spdlog::debug("fuse: serving {} ({} fuse.{}, device 0:{})", mountpoint_, options_.fs_name,
                options_.subtype, minor(device_));
  return Status::Ok();
}

Result<std::unique_ptr<Server>> Server::Adopt(Tree& tree, const std::string& mountpoint,
                                              int fuse_fd, const MountOptions& options) {
  Status valid = ValidateOptions(options);
  // The mount point is not stat'ed: nobody serves it until this returns.
  Result<std::optional<MountInfoEntry>> mounted = FindMount(mountpoint);
  if (valid.ok() && (!mounted.ok() || !mounted->has_value() || !IsFuseType((*mounted)->fs_type))) {
    valid = Status::FailedPrecondition("no FUSE mount at " + mountpoint + " to serve again");
  }
  if (!valid.ok()) {
    ::close(fuse_fd);
    return valid;
  }
  auto state = std::make_unique<MountState>(tree, options, mountpoint);
  state->adopted = true;
  std::unique_ptr<Server> server(new Server(mountpoint, options, std::move(state)));
  server->device_ = (*mounted)->device;
  RETURN_IF_ERROR(server->StartAdopted(fuse_fd));
  return server;
}

Status Server::StartAdopted(int fuse_fd) {
  if (Status created = CreateSession(); !created.ok()) {
    ::close(fuse_fd);
    return created;
  }
  // libfuse takes "/dev/fd/N" as "serve this descriptor, mount nothing".
  const std::string device_path = "/dev/fd/" + std::to_string(fuse_fd);
  if (fuse_session_mount(session_, device_path.c_str()) != 0) {
    ::close(fuse_fd);
    fuse_session_destroy(session_);
    session_ = nullptr;
    return Status::Internal("FUSE session for " + mountpoint_ + " refused descriptor " +
                            std::to_string(fuse_fd));
  }

  // The INIT a kernel of this protocol version sends, so that libfuse (and Init) set
  // the session up; the reply goes nowhere.
  struct {
    fuse_in_header header;
    fuse_init_in init;
  } request{};
  request.header.len = sizeof(request);
  request.header.opcode = FUSE_INIT;
  request.header.unique = kSyntheticInitUnique;
  request.init.major = FUSE_KERNEL_VERSION;
  request.init.minor = FUSE_KERNEL_MINOR_VERSION;
  request.init.max_readahead = 128 << 10;
  request.init.flags = FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_DONT_MASK | FUSE_SPLICE_WRITE |
                       FUSE_SPLICE_MOVE | FUSE_SPLICE_READ | FUSE_AUTO_INVAL_DATA |
                       FUSE_DO_READDIRPLUS | FUSE_READDIRPLUS_AUTO | FUSE_ASYNC_DIO |
                       FUSE_PARALLEL_DIROPS | FUSE_MAX_PAGES | FUSE_CACHE_SYMLINKS |
                       FUSE_EXPLICIT_INVAL_DATA;
  fuse_buf buf{};
  buf.size = sizeof(request);
  buf.mem = &request;
  buf.fd = -1;
  fuse_session_process_buf(session_, &buf);
  {
    std::lock_guard<std::mutex> lock(state_->init_mu);
    if (!state_->initialized) {
      fuse_session_destroy(session_);
      session_ = nullptr;
      return Status::Internal("FUSE session for " + mountpoint_ + " did not initialise");
    }
  }
  unmounted_ = false;
  loop_thread_ = std::thread([this] { RunLoop(); });

  fuse_out_header resend{};
  resend.len = sizeof(resend);
  resend.error = kNotifyResend;
  resend.unique = 0;
  if (::write(fuse_session_fd(session_), &resend, sizeof(resend)) != sizeof(resend)) {
    spdlog::warn("fuse: {}: the kernel cannot resend requests left unanswered ({}); their "
                 "callers wait until interrupted",
                 mountpoint_, std::strerror(errno));
  }
  spdlog::info("fuse: serving {} again (device 0:{})", mountpoint_, minor(device_));
  return Status::Ok();
}

int Server::fuse_fd() const { return session_ != nullptr ? fuse_session_fd(session_) : -1; }

void Server::RunLoop() {
  fuse_loop_config* config = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(config, options_.clone_fd ? 1 : 0);
  fuse_loop_cfg_set_max_threads(config, options_.max_threads);
  fuse_loop_cfg_set_idle_threads(config, options_.max_idle_threads);
  int rc = fuse_session_loop_mt(session_, config);
  fuse_loop_cfg_destroy(config);

  bool expected;
  {
    std::lock_guard<std::mutex> lock(loop_mu_);
    loop_done_ = true;
    expected = stopping_ || detached_;
  }
  loop_cv_.notify_all();
  {
    std::lock_guard<std::mutex> lock(state_->init_mu);
    state_->init_cv.notify_all();
  }
  if (expected) return;
  if (rc == 0) {
    // The kernel ended the connection: unmounted (or aborted) from outside strata.
    spdlog::warn("fuse: {} was unmounted outside strata; no longer serving it", mountpoint_);
  } else {
    // The connection may still stand with nobody serving it: end it, so that its
    // users get errors instead of hanging.
    spdlog::error("fuse: serving {} failed ({}); aborting its connection", mountpoint_,
                  std::strerror(rc < 0 ? -rc : rc));
    AbortOrLog();
  }
}

bool Server::WaitLoopDone(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(loop_mu_);
  return loop_cv_.wait_for(lock, timeout, [&] { return loop_done_; });
}

void Server::AbortOrLog() {
  Status st = AbortConnection(device_);
  if (!st.ok()) {
    spdlog::error("fuse: cannot abort the connection of {}: {}", mountpoint_, st.ToString());
  }
}

bool Server::serving() const {
  std::lock_guard<std::mutex> lock(loop_mu_);
  return !loop_done_;
}

Status Server::Unmount(IfBusy if_busy) {
  std::lock_guard<std::mutex> guard(unmount_mu_);
  if (unmounted_) return Status::Ok();
  auto set_stopping = [this](bool value) {
    std::lock_guard<std::mutex> lock(loop_mu_);
    stopping_ = value;
  };
  set_stopping(true);

  bool abort_now = false;
  Result<std::optional<MountInfoEntry>> top = FindMount(mountpoint_);
  if (!top.ok()) {
    if (if_busy == IfBusy::kFail) {
      set_stopping(false);
      return top.status();
    }
    spdlog::warn("fuse: unmounting {}: {}; aborting its connection", mountpoint_,
                 top.status().ToString());
    abort_now = true;
  } else if (top->has_value() && (*top)->device == device_) {
    if (::umount2(mountpoint_.c_str(), UMOUNT_NOFOLLOW) != 0) {
      int err = errno;
      if (if_busy == IfBusy::kFail) {
        set_stopping(false);
        if (err == EBUSY) {
          return Status::FailedPrecondition(
              "FUSE mount " + mountpoint_ +
              " is busy (open files, working directories or mounts inside it)");
        }
        return Status::FromErrno(err, "unmount FUSE at " + mountpoint_);
      }
      spdlog::warn("fuse: cannot unmount {} ({}); detaching it and aborting its connection",
                   mountpoint_, std::strerror(err));
      if (::umount2(mountpoint_.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) != 0) {
        spdlog::warn("fuse: cannot detach {}: {}", mountpoint_, std::strerror(errno));
      }
      abort_now = true;
    }
  } else if (serving() && DeviceStillMounted(device_)) {
    // Still mounted, but not on top at its mount point: something is mounted over it.
    if (if_busy == IfBusy::kFail) {
      set_stopping(false);
      return Status::FailedPrecondition("FUSE mount " + mountpoint_ + " is mounted over");
    }
    spdlog::warn("fuse: {} is mounted over; aborting its connection", mountpoint_);
    abort_now = true;
  }

  if (abort_now) AbortOrLog();
  // After a plain unmount the kernel ends the connection itself, unless an overlay
  // (through its private clone of the mount) or another mount namespace still uses it.
  if (!WaitLoopDone(options_.unmount_grace)) {
    if (if_busy == IfBusy::kFail) {
      {
        std::lock_guard<std::mutex> lock(loop_mu_);
        stopping_ = false;
        detached_ = true;
      }
      return Status::FailedPrecondition(
          "FUSE mount " + mountpoint_ +
          " is unmounted but still in use (an overlay lower layer, or a copy in another "
          "mount namespace); still serving it until its users let go");
    }
    spdlog::warn("fuse: connection of {} outlived its unmount; aborting it", mountpoint_);
    AbortOrLog();
  }
  loop_thread_.join();  // no request is in flight after this
  fuse_session_destroy(session_);
  session_ = nullptr;
  unmounted_ = true;
  return Status::Ok();
}

Server::~Server() {
  Status st = Unmount(IfBusy::kAbort);
  if (!st.ok()) spdlog::error("fuse: unmounting {}: {}", mountpoint_, st.ToString());
}

uint64_t Server::LookupCount(Ino ino) const { return state_->lookups.Get(ino); }

size_t Server::InodesKnownToKernel() const { return state_->lookups.Size(); }

}  // namespace strata::fuse
