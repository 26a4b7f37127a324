// `strata run|ps|logs|stop|kill|rm|exec|wait`: clients of stratad's strata.tasks.v1 Tasks
// service. run and exec attach to the task's supervisor socket (runtime-bridge/attach.h)
// for stdin, output, terminal size and the exit code, so they run as root on the
// daemon's host, like `strata mount`.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

#include "cmd/strata/snapshot_commands.h"

namespace strata::cli {

void AddTaskCommands(CLI::App& app, Context& ctx, std::function<void(std::function<int()>)> run);

// `strata run [OPTIONS] IMAGE [COMMAND...]` and `strata exec [OPTIONS] TASK COMMAND...`:
// the container's command may contain options of its own (`sh -c ...`), which must not
// be parsed as ours. Removes everything after the image/task argument from `args` (the
// whole command line) and returns it. `args` is left unchanged for other commands.
std::vector<std::string> SplitContainerCommand(std::vector<std::string>& args);
// Hands the split-off command to the run/exec actions.
void SetContainerCommand(std::vector<std::string> command);

}  // namespace strata::cli
