// strata: the command-line client of stratad (a gRPC client on its unix socket).
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>

#include "cmd/strata/image_commands.h"
#include "cmd/strata/mount_commands.h"
#include "cmd/strata/output.h"
#include "cmd/strata/snapshot_commands.h"
#include "cmd/strata/task_commands.h"

int main(int argc, char** argv) {
  CLI::App app{"strata: client of the strata container storage service"};
  app.require_subcommand(1);
  std::string address = "/run/strata/strata.sock";
  if (const char* env = std::getenv("STRATA_ADDRESS"); env != nullptr && *env != '\0') {
    address = env;
  }
  strata::cli::Context ctx;
  app.add_option("--address,-a", address, "stratad socket (env STRATA_ADDRESS)")
      ->capture_default_str();
  app.add_option("--snapshotter", ctx.snapshotter, "snapshotter name sent in requests")
      ->capture_default_str();
  bool show_version = false;
  app.add_flag("--version", show_version, "print the version and exit");

  int exit_code = 0;
  auto run = [&](std::function<int()> action) {
    ctx.channel = grpc::CreateChannel("unix:" + address, grpc::InsecureChannelCredentials());
    if (!ctx.channel->WaitForConnected(std::chrono::system_clock::now() +
                                       std::chrono::seconds(5))) {
      exit_code = strata::cli::Fail("cannot connect to stratad at " + address +
                                    " (is it running? set --address or STRATA_ADDRESS)");
      return;
    }
    exit_code = action();
  };
  strata::cli::AddSnapshotCommands(app, ctx, run);
  strata::cli::AddImageCommands(app, ctx, run);
  strata::cli::AddMountCommands(app, ctx, run);
  strata::cli::AddTaskCommands(app, ctx, run);
  if (argc >= 2 && std::string(argv[1]) == "--version") {
    std::cout << "strata " << STRATA_VERSION << "\n";
    return 0;
  }
  // The container command of `run`/`exec` is not ours to parse (task_commands.h).
  std::vector<std::string> args(argv, argv + argc);
  strata::cli::SetContainerCommand(strata::cli::SplitContainerCommand(args));
  std::vector<std::string> reversed(args.rbegin(), args.rend() - 1);  // CLI11 wants them reversed
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return exit_code;
}
