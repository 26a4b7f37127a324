// `strata image pull|push|ls|inspect|tag|rm` and `strata content ls|rm|gc`: clients of
// stratad's strata.images.v1 Images and Content services.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

#include "cmd/strata/snapshot_commands.h"

namespace strata::cli {

void AddImageCommands(CLI::App& app, Context& ctx, std::function<void(std::function<int()>)> run);

}  // namespace strata::cli
