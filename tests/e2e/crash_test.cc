// Crash safety: stratad is killed with SIGKILL at random instants while clients stream
// Prepare/Commit/Remove at it, then restarted, many times. After every restart:
//  - every acknowledged change is there (nothing acknowledged is lost);
//  - changes in flight at the kill are either fully there or fully absent;
//  - metadata and directories agree (Admin.Check finds nothing, no orphans remain).
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "strata/admin/v1/admin.grpc.pb.h"

namespace {

namespace pb = ::containerd::services::snapshots::v1;
namespace admin = ::strata::admin::v1;

std::string g_stratad;

struct Expected {
  pb::Kind kind;
  std::string parent;
};

// What one client believes: acknowledged state plus at most one operation whose reply
// never came (the daemon died under it).
struct ClientModel {
  std::map<std::string, Expected> snapshots;
  struct Pending {
    enum Op { kPrepare, kCommit, kRemove } op = kPrepare;
    std::string key, name, parent;
    pb::Kind removed_kind = pb::UNKNOWN;
  };
  std::optional<Pending> pending;
};

bool SocketAccepts(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  bool ok = ::connect(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

class Daemon {
 public:
  Daemon(std::string root, std::string socket)
      : root_(std::move(root)), socket_(std::move(socket)) {}

  void Start() {
    // posix_spawn, not fork: gRPC's fork handlers must not run in this client process.
    std::string log = root_ + ".log";
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    std::vector<std::string> command = {g_stratad, "--root",      root_, "--address",
                                        socket_,   "--log-level", "warn"};
    std::vector<char*> argv;
    for (auto& a : command) argv.push_back(a.data());
    argv.push_back(nullptr);
    int rc = ::posix_spawn(&pid_, g_stratad.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ASSERT_EQ(rc, 0) << "cannot start " << g_stratad;
    for (int i = 0; i < 100; i++) {
      int status = 0;
      ASSERT_EQ(::waitpid(pid_, &status, WNOHANG), 0) << "stratad exited during start-up";
      if (SocketAccepts(socket_)) {
        // A fresh channel per attempt: the previous daemon was killed under the old one.
        grpc::ChannelArguments args;
        args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
        channel_ =
            grpc::CreateCustomChannel("unix:" + socket_, grpc::InsecureChannelCredentials(), args);
        auto stub = admin::Admin::NewStub(channel_);
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
        ctx.set_wait_for_ready(true);
        admin::VersionRequest req;
        admin::VersionResponse resp;
        grpc::Status vs = stub->Version(&ctx, req, &resp);
        if (vs.ok() && resp.pid() == pid_) return;
        ADD_FAILURE() << "Version: " << vs.error_message() << " pid " << resp.pid();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL() << "stratad did not answer on " << socket_;
  }

  void Kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  void Stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  ~Daemon() { Kill(); }

  std::shared_ptr<grpc::Channel> channel() const { return channel_; }

 private:
  std::string root_, socket_;
  pid_t pid_ = -1;
  std::shared_ptr<grpc::Channel> channel_;
};

// Runs random operations on this client's own keys until `stop`; records
// acknowledgements in `model`.
void RunClient(std::shared_ptr<grpc::Channel> channel, int client, unsigned seed,
               std::atomic<bool>& stop, ClientModel& model, int& counter) {
  auto stub = pb::Snapshots::NewStub(channel);
  std::mt19937 rng(seed);
  while (!stop.load()) {
    std::vector<std::string> actives, committed, leaves;
    std::map<std::string, int> children;
    for (const auto& [k, e] : model.snapshots) {
      if (!e.parent.empty()) children[e.parent]++;
    }
    for (const auto& [k, e] : model.snapshots) {
      if (e.kind == pb::ACTIVE) actives.push_back(k);
      if (e.kind == pb::COMMITTED) committed.push_back(k);
      if (children[k] == 0) leaves.push_back(k);
    }
    int choice = static_cast<int>(rng() % 10);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    google::protobuf::Empty empty;
    if (choice < 4 || (actives.empty() && leaves.empty())) {
      ClientModel::Pending p;
      p.op = ClientModel::Pending::kPrepare;
      p.key = "crash/" + std::to_string(client) + "/active " + std::to_string(counter++);
      if (!committed.empty() && rng() % 2 == 0) p.parent = committed[rng() % committed.size()];
      model.pending = p;
      pb::PrepareSnapshotRequest req;
      req.set_key(p.key);
      req.set_parent(p.parent);
      pb::PrepareSnapshotResponse resp;
      grpc::Status st = stub->Prepare(&ctx, req, &resp);
      if (!st.ok()) return;  // daemon gone: the operation stays pending
      model.snapshots[p.key] = {pb::ACTIVE, p.parent};
    } else if (choice < 7 && !actives.empty()) {
      ClientModel::Pending p;
      p.op = ClientModel::Pending::kCommit;
      p.key = actives[rng() % actives.size()];
      p.name = "crash/" + std::to_string(client) + "/layer:" + std::to_string(counter++);
      p.parent = model.snapshots[p.key].parent;
      model.pending = p;
      pb::CommitSnapshotRequest req;
      req.set_key(p.key);
      req.set_name(p.name);
      grpc::Status st = stub->Commit(&ctx, req, &empty);
      if (!st.ok()) return;
      model.snapshots.erase(p.key);
      model.snapshots[p.name] = {pb::COMMITTED, p.parent};
    } else if (!leaves.empty()) {
      ClientModel::Pending p;
      p.op = ClientModel::Pending::kRemove;
      p.key = leaves[rng() % leaves.size()];
      p.parent = model.snapshots[p.key].parent;
      p.removed_kind = model.snapshots[p.key].kind;
      model.pending = p;
      pb::RemoveSnapshotRequest req;
      req.set_key(p.key);
      grpc::Status st = stub->Remove(&ctx, req, &empty);
      if (!st.ok()) return;
      model.snapshots.erase(p.key);
    } else {
      continue;
    }
    model.pending.reset();
  }
}

std::map<std::string, Expected> ListAll(std::shared_ptr<grpc::Channel> channel) {
  auto stub = pb::Snapshots::NewStub(channel);
  grpc::ClientContext ctx;
  pb::ListSnapshotsRequest req;
  auto reader = stub->List(&ctx, req);
  pb::ListSnapshotsResponse resp;
  std::map<std::string, Expected> out;
  while (reader->Read(&resp)) {
    for (const auto& info : resp.info()) out[info.name()] = {info.kind(), info.parent()};
  }
  EXPECT_TRUE(reader->Finish().ok());
  return out;
}

// Resolves the pending operation of `model` against what the daemon has, asserting it
// is entirely applied or entirely not, and that every acknowledged snapshot is there.
void Reconcile(ClientModel& model, const std::map<std::string, Expected>& actual,
               const std::string& prefix) {
  std::set<std::string> allowed_extra, allowed_missing;
  if (model.pending) {
    const auto& p = *model.pending;
    switch (p.op) {
      case ClientModel::Pending::kPrepare:
        if (actual.count(p.key)) {
          EXPECT_EQ(actual.at(p.key).kind, pb::ACTIVE);
          model.snapshots[p.key] = {pb::ACTIVE, p.parent};
        }
        break;
      case ClientModel::Pending::kCommit: {
        bool committed = actual.count(p.name) != 0;
        bool active = actual.count(p.key) != 0;
        EXPECT_NE(committed, active) << "commit of " << p.key << " half applied";
        if (committed) {
          model.snapshots.erase(p.key);
          model.snapshots[p.name] = {pb::COMMITTED, p.parent};
        }
        break;
      }
      case ClientModel::Pending::kRemove:
        if (!actual.count(p.key)) model.snapshots.erase(p.key);
        break;
    }
    model.pending.reset();
  }
  for (const auto& [k, e] : model.snapshots) {
    auto it = actual.find(k);
    ASSERT_NE(it, actual.end()) << "acknowledged snapshot lost: " << k;
    EXPECT_EQ(it->second.kind, e.kind) << k;
    EXPECT_EQ(it->second.parent, e.parent) << k;
  }
  for (const auto& [k, e] : actual) {
    if (k.rfind(prefix, 0) != 0) continue;
    EXPECT_TRUE(model.snapshots.count(k)) << "snapshot appeared from nowhere: " << k;
  }
}

TEST(CrashSafety, KillNineAtRandomInstantsLosesNothingAcknowledged) {
  char tmpl[] = "/tmp/strata-crash-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  std::string root = dir + "/root";
  Daemon daemon(root, dir + "/strata.sock");

  constexpr int kClients = 4;
  constexpr int kRounds = 40;
  std::vector<ClientModel> models(kClients);
  std::vector<int> counters(kClients, 0);
  std::mt19937 rng(static_cast<unsigned>(std::random_device{}()));
  size_t total_acknowledged = 0;

  for (int round = 0; round < kRounds; round++) {
    ASSERT_NO_FATAL_FAILURE(daemon.Start()) << "round " << round;
    auto actual = ListAll(daemon.channel());
    for (int c = 0; c < kClients; c++) {
      ASSERT_NO_FATAL_FAILURE(Reconcile(models[c], actual, "crash/" + std::to_string(c) + "/"));
    }
    {
      auto stub = admin::Admin::NewStub(daemon.channel());
      grpc::ClientContext ctx;
      admin::CheckRequest req;
      admin::CheckResponse resp;
      ASSERT_TRUE(stub->Check(&ctx, req, &resp).ok());
      for (const auto& p : resp.problems()) ADD_FAILURE() << p.kind() << ": " << p.detail();
      ASSERT_EQ(resp.problems_size(), 0) << "round " << round;
    }
    total_acknowledged += actual.size();

    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    for (int c = 0; c < kClients; c++) {
      threads.emplace_back(RunClient, daemon.channel(), c, static_cast<unsigned>(rng()),
                           std::ref(stop), std::ref(models[c]), std::ref(counters[c]));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 300));
    daemon.Kill();
    stop = true;
    for (auto& t : threads) t.join();
  }
  // A final clean start must also be consistent.
  ASSERT_NO_FATAL_FAILURE(daemon.Start());
  auto actual = ListAll(daemon.channel());
  for (int c = 0; c < kClients; c++) {
    ASSERT_NO_FATAL_FAILURE(Reconcile(models[c], actual, "crash/" + std::to_string(c) + "/"));
  }
  int operations = 0;
  for (int c : counters) operations += c;
  EXPECT_GT(operations, kRounds) << "the workload hardly ran";
  std::printf("crash test: %d rounds, %d create/commit operations, %zu snapshots verified\n",
              kRounds, operations, total_acknowledged);
  daemon.Stop();
  std::filesystem::remove_all(dir);
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i < argc; i++) {
    std::string arg = argv[i];
    if (arg.rfind("--stratad=", 0) == 0) g_stratad = arg.substr(10);
  }
  if (g_stratad.empty()) {
    std::fprintf(stderr, "usage: crash_test --stratad=PATH\n");
    return 2;
  }
  return RUN_ALL_TESTS();
}
