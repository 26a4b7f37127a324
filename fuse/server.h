// fuse::Server — serves a read-only fuse::Tree (fuse/tree.h) at a mount point through
// the libfuse3 low-level API, on a multithreaded loop of its own.
//
//   MemoryTree tree = ...;                        // or a lazy format's tree
//   MountOptions options;
//   options.subtype = "strata-stargz";            // "fuse.strata-stargz" in mountinfo
//   ASSIGN_OR_RETURN(auto server, Server::Mount(tree, "/var/lib/strata/snapshots/7/fs",
//                                               options));
//   ...                                           // the kernel reads the tree
//   RETURN_IF_ERROR(server->Unmount());           // or just destroy it
//
// The mount is read-only ("ro": every mutating call fails with EROFS). Trees are
// immutable, so the kernel is told to cache attributes, entries (negative ones too),
// symlink targets, directory listings and file pages for a long time (a day by
// default); a file's pages stay cached across opens.
//
// The server adds no state to the tree but the kernel's lookup counts (see
// LookupCount). It holds no global state: any number of servers can run in one
// process.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "core/status.h"
#include "fuse/tree.h"

struct fuse_session;

namespace strata::fuse {

// Called once per FUSE request with the operation's name ("lookup", "getattr",
// "read", ...) and the time from its arrival to its reply. Runs on the FUSE worker
// threads, so it must be thread-safe, quick and not throw; it is called until Unmount
// returns, so whatever it refers to must live that long.
using OpObserver = std::function<void(std::string_view op, std::chrono::nanoseconds elapsed)>;

// Whether directory listings carry attributes (FUSE_READDIRPLUS), which saves one
// lookup per entry for `ls -l` and overlayfs at the cost of a Tree::GetAttr per entry.
enum class ReaddirPlus {
  kAuto,    // the kernel decides per listing (libfuse's default)
  kAlways,  // every listing
  kNever,   // plain readdir only
};

struct MountOptions {
  // The mount's source and type as mountinfo shows them: "<fs_name> ... fuse.<subtype>".
  // Letters, digits and "._:@/+=-" only.
  std::string fs_name = "strata";
  std::string subtype = "strata";

  // Let users other than the mounter (containers) in; requires root or user_allow_other.
  bool allow_other = true;
  // The kernel checks permissions from the tree's mode bits; without it anyone may
  // read everything (access(2) is then answered from the mode bits, approximately).
  bool default_permissions = true;

  // How long the kernel may cache attributes, name lookups and failed lookups. Trees
  // do not change, so the defaults are long; zero disables a cache.
  std::chrono::duration<double> attr_timeout = std::chrono::hours(24);
  std::chrono::duration<double> entry_timeout = std::chrono::hours(24);
  std::chrono::duration<double> negative_timeout = std::chrono::hours(24);

  // Largest read request the kernel sends. libfuse 3.14 caps requests at 1 MiB
  // (256 pages); larger values are clamped.
  uint32_t max_read_bytes = 1u << 20;
  ReaddirPlus readdirplus = ReaddirPlus::kAuto;

  // Worker threads: at most max_threads requests are served at once (reads may block
  // on fetches); threads beyond max_idle_threads exit when idle.
  unsigned max_threads = 16;
  unsigned max_idle_threads = 4;
  // One /dev/fuse descriptor per worker thread (less contention on the device).
  bool clone_fd = true;
  // Asynchronous (readahead) requests the kernel keeps in flight; 0 keeps the
  // kernel's default (12).
  unsigned max_background = 0;

  // How long Mount waits for the kernel's INIT request to be answered.
  std::chrono::milliseconds init_timeout = std::chrono::seconds(10);
  // How long Unmount waits for the connection to end after a successful unmount
  // (it outlives the mount while copies in other mount namespaces hold it) before
  // aborting it.
  std::chrono::milliseconds unmount_grace = std::chrono::seconds(2);

  // Latency accounting; empty for none.
  OpObserver observer;
};

// What Unmount does when the mount is in use. umount(2) sees open files, current
// directories and mounts on top (EBUSY); it does not see an overlay using the mount as
// a lower layer (overlayfs holds a private clone of it) nor copies of the mount in
// other mount namespaces: then the unmount succeeds but the connection lives on.
enum class IfBusy {
  // Return FailedPrecondition and keep serving. When umount(2) said busy, nothing has
  // changed. When the connection outlived a successful unmount, the mount point is
  // free but the server keeps serving the detached mount's remaining users until
  // they let go (then it stops by itself) or Unmount is called again.
  kFail,
  // Detach the mount (MNT_DETACH) and abort the FUSE connection: whoever still uses
  // it gets ENOTCONN from then on, never a hang, and the tree is no longer called.
  kAbort,
};

struct MountState;  // fuse/operations.h

class Server {
 public:
  // Mounts `tree` at `mountpoint` (an existing directory) and starts serving it.
  // Returns once the kernel's INIT request has been answered, so the mount is usable.
  // `tree` must outlive the server. InvalidArgument for bad options, NotFound when
  // the mount point does not exist, Internal when libfuse or mount(2) fails (e.g. no
  // /dev/fuse, not root without allow_other rights), DeadlineExceeded when INIT does
  // not arrive within options.init_timeout (the mount is undone).
  static Result<std::unique_ptr<Server>> Mount(Tree& tree, const std::string& mountpoint,
                                               const MountOptions& options);

  // Serves `tree` again on an existing FUSE connection whose server went away:
  // `fuse_fd` is a /dev/fuse descriptor of the mount at `mountpoint` (an absolute path
  // without symlinks), kept alive meanwhile by a SessionKeeper (fuse/session_keeper.h).
  // The kernel's INIT was answered by the earlier server, so the session is
  // initialised from a synthesised INIT; then the kernel is asked to queue again the
  // requests the earlier server had read but not answered (FUSE_NOTIFY_RESEND, Linux
  // 6.9+; older kernels leave those waiting until their callers are interrupted). The
  // tree must number its inodes as the earlier tree did (trees built from the same
  // metadata do); lookup counts start from zero. Takes ownership of `fuse_fd`, also on
  // error. FailedPrecondition when no FUSE mount is at `mountpoint`.
  static Result<std::unique_ptr<Server>> Adopt(Tree& tree, const std::string& mountpoint,
                                               int fuse_fd, const MountOptions& options);

  // Unmounts as Unmount(IfBusy::kAbort) would; errors are logged.
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Stops serving and removes the mount; when this returns OK no FUSE request is in
  // flight and the tree will not be called again. Idempotent: OK when already
  // unmounted, also when someone else unmounted the directory meanwhile. When the
  // mount is busy: see IfBusy. Thread-safe, but not to be called from the observer or
  // a Tree method: it waits for them.
  Status Unmount(IfBusy if_busy = IfBusy::kAbort);

  const std::string& mountpoint() const { return mountpoint_; }
  // The mount's device number (st_dev of its root); its minor number names the
  // connection in /sys/fs/fuse/connections.
  dev_t device() const { return device_; }
  // The session's /dev/fuse descriptor (owned by the server; for a SessionKeeper).
  int fuse_fd() const;
  // False once Unmount succeeded or the connection ended on its own (the mount was
  // unmounted or aborted from outside).
  bool serving() const;

  // The kernel's lookup count of `ino` (its references to the inode: one per lookup
  // and per readdirplus entry, minus forgets). 0 for the root, which the kernel holds
  // without lookups. For tests and diagnostics.
  uint64_t LookupCount(Ino ino) const;
  // How many inodes the kernel currently holds references to.
  size_t InodesKnownToKernel() const;

 private:
  Server(std::string mountpoint, const MountOptions& options, std::unique_ptr<MountState> state);

  // Creates the libfuse session (session_) with the mount's options.
  Status CreateSession();
  // Creates the session, mounts it and serves it until INIT has been answered.
  Status Start();
  // Creates the session on `fuse_fd`, initialises it and serves it (see Adopt).
  Status StartAdopted(int fuse_fd);
  // The loop thread's body: serves requests until the connection ends.
  void RunLoop();
  // Waits up to `timeout` for RunLoop to return.
  bool WaitLoopDone(std::chrono::milliseconds timeout);
  // Ends the connection (users get ENOTCONN); logs when that fails.
  void AbortOrLog();

  const std::string mountpoint_;
  const MountOptions options_;
  std::unique_ptr<MountState> state_;
  ::fuse_session* session_ = nullptr;
  dev_t device_ = 0;

  std::mutex unmount_mu_;  // serialises Unmount calls
  std::thread loop_thread_;
  mutable std::mutex loop_mu_;
  std::condition_variable loop_cv_;
  bool loop_done_ = false;  // guarded by loop_mu_
  bool stopping_ = false;   // guarded by loop_mu_: Unmount began ending the session
  bool detached_ = false;   // guarded by loop_mu_: unmounted, serving remaining users
  bool unmounted_ = true;   // guarded by unmount_mu_; false while Start's mount stands
};

}  // namespace strata::fuse
