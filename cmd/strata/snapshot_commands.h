// `strata snapshot ...`: the snapshot commands of the CLI.
#pragma once

#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <string>

namespace strata::cli {

// What every command needs: the channel to stratad and the snapshotter name to send.
struct Context {
  std::shared_ptr<grpc::Channel> channel;
  std::string snapshotter = "strata";
};

// Registers the snapshot subcommands. Each command's action is handed to `run`, which
// connects (filling ctx) and records the action's exit code.
void AddSnapshotCommands(CLI::App& app, Context& ctx,
                         std::function<void(std::function<int()>)> run);

}  // namespace strata::cli
