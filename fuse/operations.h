// The FUSE low-level request handlers behind fuse::Server: one function per request
// type (operations.cc), sharing one MountState through the session's userdata.
// Internal to fuse/.
#pragma once

#include <condition_variable>
#include <mutex>
#include <string>

#include "fuse/libfuse.h"
#include "fuse/lookup_counts.h"
#include "fuse/server.h"
#include "fuse/tree.h"

namespace strata::fuse {

// What every handler of one mount needs. Lives as long as the session.
struct MountState {
  MountState(Tree& tree, const MountOptions& options, std::string mountpoint)
      : tree(tree), options(options), mountpoint(std::move(mountpoint)) {}

  Tree& tree;
  const MountOptions options;
  const std::string mountpoint;  // for log messages
  LookupCounts lookups;
  // Serving a connection an earlier server started (Server::Adopt): the kernel holds
  // lookups this state never saw, so forgets of unknown inodes are expected.
  bool adopted = false;

  // Set once the kernel's INIT request has been answered.
  std::mutex init_mu;
  std::condition_variable init_cv;
  bool initialized = false;
};

// The handler table for fuse_session_new; the session's userdata must be a MountState.
const fuse_lowlevel_ops& Operations();

}  // namespace strata::fuse
