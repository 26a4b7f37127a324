// strata-test-fuse-mount DIR: serves a small MemoryTree at DIR in a process of its own,
// prints "ready" on stdout once mounted, and waits to be killed — the stale-mount
// tests kill it (SIGKILL, or SIGSTOP for a hung server) to leave a dead mount behind.
#include <unistd.h>

#include <cstdio>

#include "fuse/server.h"
#include "tests/fuse/memory_tree.h"

int main(int argc, char** argv) {
  using strata::fuse::kRootIno;
  using strata::fuse::MountOptions;
  using strata::fuse::Server;
  using strata::fuse::testing::MemoryTree;
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  MemoryTree tree;
  tree.AddFile(kRootIno, "file.txt", "served by a separate process\n");
  MountOptions options;
  options.fs_name = "strata-test-helper";
  options.subtype = "strata-test";
  auto server = Server::Mount(tree, argv[1], options);
  if (!server.ok()) {
    std::fprintf(stderr, "mount: %s\n", server.status().ToString().c_str());
    return 1;
  }
  std::printf("ready\n");
  std::fflush(stdout);
  for (;;) ::pause();
}
