// FUSE sessions that outlive the daemon serving them.
//
// A FUSE mount stays usable only while someone holds its /dev/fuse descriptor: when the
// last holder closes it, the kernel aborts the connection, and every process using the
// mount — a container whose root filesystem has it as an overlay lower layer — gets
// ENOTCONN from then on, for good (mounting again does not help the overlay already
// built on the dead mount). So that a restart or a crash of stratad does not break
// running containers, a small keeper process holds a copy of each mount's descriptor:
//
//   stratad ──Put(mount point, fd)──► keeper          (after each mount)
//   stratad ──Remove(mount point)───► keeper          (after each unmount)
//   (stratad stops or dies: the keeper's copies keep the connections alive; requests
//    wait in the kernel's queue)
//   new stratad ──TakeAll()─────────► keeper          (at start: every fd, by mount point)
//   new stratad: fuse::Server::Adopt(tree, mount point, fd) serves them again.
//
// The keeper runs `<daemon binary> --fuse-keeper SOCKET GRACE_MS` (a mode of the
// daemon's own binary; see RunSessionKeeper), started on the first Put, in a session of
// its own with every other descriptor closed. It lives while it holds descriptors: it
// drops a descriptor whose connection ended (the mount was unmounted and nothing uses
// it), and exits when it holds none and no daemon is connected. When no daemon has been
// connected for GRACE_MS while it holds descriptors, it closes them all (their users
// get ENOTCONN rather than waiting forever) and exits.
//
// The protocol: SOCK_SEQPACKET messages on a unix socket, one client at a time.
//   "PUT <mount point>" with the descriptor (SCM_RIGHTS)   -> "OK" | "ERR <why>"
//   "DEL <mount point>"                                     -> "OK"
//   "GET"                       -> one "FD <mount point>" message with its descriptor
//                                  per kept session, then "END"
//
// Thread safety: a SessionKeeperClient serialises its calls.
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "core/status.h"

namespace strata::fuse {

// The keeper process's main loop (see above); returns its exit status.
int RunSessionKeeper(const std::string& socket_path, std::chrono::milliseconds grace);

class SessionKeeperClient {
 public:
  // A client of the keeper at `socket_path`. Nothing happens until a call: TakeAll
  // connects to a running keeper only; Put starts one when none runs, as
  // `keeper_command... --fuse-keeper socket_path grace_ms`.
  SessionKeeperClient(std::string socket_path, std::vector<std::string> keeper_command,
                      std::chrono::milliseconds grace);
  // Disconnects; the keeper goes on holding what it holds.
  ~SessionKeeperClient();
  SessionKeeperClient(const SessionKeeperClient&) = delete;
  SessionKeeperClient& operator=(const SessionKeeperClient&) = delete;

  // Gives the keeper a copy of `fd`, the FUSE descriptor of the mount at `mountpoint`
  // (replacing what it held for that mount point). Unavailable when no keeper can be
  // reached or started.
  Status Put(const std::string& mountpoint, int fd);
  // The keeper closes its copy for `mountpoint`. OK when it had none or none runs.
  Status Remove(const std::string& mountpoint);
  // Copies of every descriptor a running keeper holds, by mount point (the caller owns
  // and closes them; the keeper keeps its own). Empty when no keeper runs.
  Result<std::map<std::string, int>> TakeAll();

  const std::string& socket_path() const { return socket_path_; }

 private:
  // Connects if not connected (starting the keeper when `start`). Requires mu_.
  Status EnsureConnected(bool start);
  // Sends `request` (with `pass_fd` unless -1) and reads one reply. Requires mu_.
  Result<std::string> Exchange(const std::string& request, int pass_fd, int* received_fd);
  void DisconnectLocked();

  const std::string socket_path_;
  const std::vector<std::string> keeper_command_;
  const std::chrono::milliseconds grace_;
  std::mutex mu_;
  int fd_ = -1;
};

}  // namespace strata::fuse
