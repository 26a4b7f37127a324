// `strata mount REF DIR` and `strata umount DIR`: look inside any image without
// running it. mount pulls the image (lazily where its layers allow: an eStargz image
// is mounted after fetching its manifest, config and TOCs), makes a read-only view of
// its top layer in the daemon's image snapshotter and mounts that view at DIR; umount
// unmounts DIR and removes the view. The CLI mounts in its own mount namespace, so it
// must run as root on the daemon's host.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

#include "cmd/strata/snapshot_commands.h"

namespace strata::cli {

void AddMountCommands(CLI::App& app, Context& ctx, std::function<void(std::function<int()>)> run);

// The snapshot key of the view `strata mount` keeps for mount point `dir` (absolute).
std::string MountViewKey(const std::string& dir);

}  // namespace strata::cli
