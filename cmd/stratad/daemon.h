// The stratad process: wires metadata, snapshotter and gRPC services together, serves
// until SIGTERM/SIGINT, then shuts down cleanly.
#pragma once

#include "core/config.h"
#include "core/status.h"

namespace strata {

// Runs the daemon with `config` until a termination signal arrives. SIGTERM and
// SIGINT must already be blocked in the calling thread (so every thread inherits
// the mask). Returns a non-OK status when start-up fails.
Status RunDaemon(const DaemonConfig& config);

}  // namespace strata
