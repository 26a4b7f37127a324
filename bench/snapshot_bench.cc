// snapshot_bench: drives any endpoint that serves containerd's Snapshots gRPC service
// (stratad's socket, or containerd's own socket with any of its snapshotters) and
// prints one JSON line per run.
//
// Cycle mode (default): each of --clients threads, on its own connection, repeats
//   Prepare(key, parent="") -> Commit(name, key) -> Stat(name) -> Remove(name)
// with keys unique per thread, and the run reports cycles per second plus per-call
// latency percentiles. With --seconds the first --warmup-seconds are not counted;
// with --cycles every client runs exactly that many cycles and the whole run counts.
//
// Latency mode (--latency): creates --population committed snapshots, measures Stat
// (one client, random names) and a full List stream, then removes what it created.
//
// Probe mode (--fsync-probe DIR): the latency of fdatasync after a 200-byte overwrite
// of an already written file in DIR, which is what one durable write of a recycled
// write-ahead log costs on that disk.
//
// Every request carries the gRPC metadata "containerd-namespace: <ns>", which
// containerd requires, and with --lease "containerd-lease: <id>": without a lease
// containerd's garbage collector removes unreferenced active snapshots between
// Prepare and Commit. stratad ignores both.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"

namespace {

namespace pb = ::containerd::services::snapshots::v1;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string address;
  std::string snapshotter;
  std::string ns = "strata-bench";
  std::string lease;
  std::string target;  // free-form label echoed in the result line
  int clients = 1;
  double seconds = 5;
  double warmup_seconds = 1;
  int64_t cycles = 0;  // per client; 0 means run for --seconds
  bool latency = false;
  int population = 10000;
  int stat_calls = 5000;
  int list_calls = 20;
  int rpc_timeout_seconds = 60;
  std::string fsync_probe_dir;
};

int64_t Nanos(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
}

// Latency samples of one kind of call, in nanoseconds.
class Samples {
 public:
  void Add(int64_t nanos) { values_.push_back(nanos); }
  void Merge(const Samples& other) {
    values_.insert(values_.end(), other.values_.begin(), other.values_.end());
  }
  size_t size() const { return values_.size(); }
  // The q-quantile (0 < q <= 1) in microseconds, nearest rank; 0 when empty.
  double QuantileMicros(double q) {
    if (values_.empty()) return 0;
    std::sort(values_.begin(), values_.end());
    size_t rank = static_cast<size_t>(q * static_cast<double>(values_.size()) + 0.999999);
    rank = std::clamp<size_t>(rank, 1, values_.size());
    return static_cast<double>(values_[rank - 1]) / 1000.0;
  }

 private:
  std::vector<int64_t> values_;
};

// One client connection to a Snapshots endpoint. Not thread-safe: one per thread.
class SnapshotsClient {
 public:
  explicit SnapshotsClient(const Options& options) : options_(options) {
    grpc::ChannelArguments args;
    // A private subchannel pool gives every client its own connection, as separate
    // processes would have; otherwise gRPC multiplexes all channels over one.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetMaxReceiveMessageSize(64 << 20);
    channel_ = grpc::CreateCustomChannel("unix:" + options.address,
                                         grpc::InsecureChannelCredentials(), args);
    stub_ = pb::Snapshots::NewStub(channel_);
  }

  bool WaitConnected(int timeout_seconds) {
    return channel_->WaitForConnected(std::chrono::system_clock::now() +
                                      std::chrono::seconds(timeout_seconds));
  }

  grpc::Status Prepare(const std::string& key) {
    grpc::ClientContext ctx;
    Setup(ctx);
    pb::PrepareSnapshotRequest req;
    req.set_snapshotter(options_.snapshotter);
    req.set_key(key);
    pb::PrepareSnapshotResponse resp;
    return stub_->Prepare(&ctx, req, &resp);
  }

  grpc::Status Commit(const std::string& name, const std::string& key) {
    grpc::ClientContext ctx;
    Setup(ctx);
    pb::CommitSnapshotRequest req;
    req.set_snapshotter(options_.snapshotter);
    req.set_name(name);
    req.set_key(key);
    google::protobuf::Empty resp;
    return stub_->Commit(&ctx, req, &resp);
  }

  // Stats `key` and checks that the answer describes a committed snapshot of that name.
  grpc::Status StatCommitted(const std::string& key) {
    grpc::ClientContext ctx;
    Setup(ctx);
    pb::StatSnapshotRequest req;
    req.set_snapshotter(options_.snapshotter);
    req.set_key(key);
    pb::StatSnapshotResponse resp;
    grpc::Status s = stub_->Stat(&ctx, req, &resp);
    if (s.ok() && (resp.info().name() != key || resp.info().kind() != pb::COMMITTED)) {
      return grpc::Status(grpc::StatusCode::INTERNAL,
                          "stat returned name \"" + resp.info().name() + "\" kind " +
                              std::to_string(resp.info().kind()) + ", want a committed snapshot");
    }
    return s;
  }

  grpc::Status Remove(const std::string& key) {
    grpc::ClientContext ctx;
    Setup(ctx);
    pb::RemoveSnapshotRequest req;
    req.set_snapshotter(options_.snapshotter);
    req.set_key(key);
    google::protobuf::Empty resp;
    return stub_->Remove(&ctx, req, &resp);
  }

  // Reads the whole List stream; `count` receives the number of snapshots seen.
  grpc::Status List(size_t* count) {
    grpc::ClientContext ctx;
    Setup(ctx);
    pb::ListSnapshotsRequest req;
    req.set_snapshotter(options_.snapshotter);
    auto reader = stub_->List(&ctx, req);
    pb::ListSnapshotsResponse resp;
    *count = 0;
    while (reader->Read(&resp)) *count += static_cast<size_t>(resp.info_size());
    return reader->Finish();
  }

 private:
  void Setup(grpc::ClientContext& ctx) const {
    ctx.AddMetadata("containerd-namespace", options_.ns);
    if (!options_.lease.empty()) ctx.AddMetadata("containerd-lease", options_.lease);
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(options_.rpc_timeout_seconds));
  }

  const Options& options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::Snapshots::Stub> stub_;
};

// The first error any thread hit; later ones are dropped.
class FirstError {
 public:
  void Set(const std::string& what, const grpc::Status& s) {
    std::lock_guard<std::mutex> lock(mu_);
    if (failed_.exchange(true)) return;
    message_ =
        what + ": " + std::to_string(static_cast<int>(s.error_code())) + " " + s.error_message();
  }
  bool failed() const { return failed_.load(); }
  std::string message() const {
    std::lock_guard<std::mutex> lock(mu_);
    return message_;
  }

 private:
  mutable std::mutex mu_;
  std::atomic<bool> failed_{false};
  std::string message_;
};

// A prefix no earlier run used, so leftovers of an aborted run never collide.
std::string RunPrefix() {
  auto now = std::chrono::system_clock::now().time_since_epoch();
  return "bench-" + std::to_string(::getpid()) + "-" +
         std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(now).count());
}

std::vector<std::unique_ptr<SnapshotsClient>> ConnectClients(const Options& options, int n,
                                                             FirstError& error) {
  std::vector<std::unique_ptr<SnapshotsClient>> clients;
  for (int i = 0; i < n; i++) {
    clients.push_back(std::make_unique<SnapshotsClient>(options));
    if (!clients.back()->WaitConnected(10)) {
      error.Set("connect to " + options.address,
                grpc::Status(grpc::StatusCode::UNAVAILABLE, "not connected after 10s"));
      break;
    }
  }
  return clients;
}

// What one cycle-mode thread measured inside the counted window.
struct CycleStats {
  int64_t cycles = 0;
  Samples prepare, commit, stat, remove, cycle;
};

int RunCycles(const Options& options) {
  FirstError error;
  auto clients = ConnectClients(options, options.clients, error);
  if (error.failed()) {
    std::fprintf(stderr, "snapshot_bench: %s\n", error.message().c_str());
    return 1;
  }
  const std::string prefix = RunPrefix();
  const bool timed = options.cycles == 0;
  std::atomic<bool> stop{false};
  std::vector<CycleStats> stats(clients.size());
  const Clock::time_point start = Clock::now();
  const auto warmup = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(timed ? options.warmup_seconds : 0));
  const Clock::time_point window_start = start + warmup;

  auto worker = [&](size_t t) {
    SnapshotsClient& c = *clients[t];
    CycleStats& st = stats[t];
    const std::string base = prefix + "-c" + std::to_string(t) + "-";
    for (int64_t i = 0; timed ? !stop.load(std::memory_order_relaxed) : i < options.cycles; i++) {
      if (error.failed()) return;
      const std::string key = base + std::to_string(i) + "-active";
      const std::string name = base + std::to_string(i);
      Clock::time_point t0 = Clock::now();
      grpc::Status s = c.Prepare(key);
      if (!s.ok()) return error.Set("prepare " + key, s);
      Clock::time_point t1 = Clock::now();
      s = c.Commit(name, key);
      if (!s.ok()) return error.Set("commit " + key + " as " + name, s);
      Clock::time_point t2 = Clock::now();
      s = c.StatCommitted(name);
      if (!s.ok()) return error.Set("stat " + name, s);
      Clock::time_point t3 = Clock::now();
      s = c.Remove(name);
      if (!s.ok()) return error.Set("remove " + name, s);
      Clock::time_point t4 = Clock::now();
      if (t0 < window_start) continue;
      st.cycles++;
      st.prepare.Add(Nanos(t1 - t0));
      st.commit.Add(Nanos(t2 - t1));
      st.stat.Add(Nanos(t3 - t2));
      st.remove.Add(Nanos(t4 - t3));
      st.cycle.Add(Nanos(t4 - t0));
    }
  };

  std::vector<std::thread> threads;
  for (size_t t = 0; t < clients.size(); t++) threads.emplace_back(worker, t);
  Clock::time_point window_end;
  if (timed) {
    std::this_thread::sleep_until(window_start +
                                  std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(options.seconds)));
    window_end = Clock::now();
    stop = true;
    for (auto& th : threads) th.join();
  } else {
    for (auto& th : threads) th.join();
    window_end = Clock::now();
  }
  if (error.failed()) {
    std::fprintf(stderr, "snapshot_bench: %s\n", error.message().c_str());
    return 1;
  }

  // In timed mode a cycle counts when it started inside the window; the few that
  // finish after window_end are balanced by those cut off at window_start.
  CycleStats all;
  for (auto& st : stats) {
    all.cycles += st.cycles;
    all.prepare.Merge(st.prepare);
    all.commit.Merge(st.commit);
    all.stat.Merge(st.stat);
    all.remove.Merge(st.remove);
    all.cycle.Merge(st.cycle);
  }
  const double elapsed = static_cast<double>(Nanos(window_end - window_start)) / 1e9;
  std::printf(
      "{\"mode\":\"cycles\",\"target\":\"%s\",\"snapshotter\":\"%s\",\"clients\":%d,"
      "\"cycles\":%lld,\"seconds\":%.3f,\"cycles_per_sec\":%.1f,"
      "\"cycle_p50_us\":%.0f,\"cycle_p99_us\":%.0f,"
      "\"prepare_p50_us\":%.0f,\"commit_p50_us\":%.0f,\"stat_p50_us\":%.0f,"
      "\"remove_p50_us\":%.0f,\"prepare_p99_us\":%.0f,\"commit_p99_us\":%.0f,"
      "\"stat_p99_us\":%.0f,\"remove_p99_us\":%.0f}\n",
      options.target.c_str(), options.snapshotter.c_str(), options.clients,
      static_cast<long long>(all.cycles), elapsed, static_cast<double>(all.cycles) / elapsed,
      all.cycle.QuantileMicros(0.5), all.cycle.QuantileMicros(0.99),
      all.prepare.QuantileMicros(0.5), all.commit.QuantileMicros(0.5), all.stat.QuantileMicros(0.5),
      all.remove.QuantileMicros(0.5), all.prepare.QuantileMicros(0.99),
      all.commit.QuantileMicros(0.99), all.stat.QuantileMicros(0.99),
      all.remove.QuantileMicros(0.99));
  return 0;
}

// Runs fn(client, index) for index in [0, n) spread over the clients; returns the
// elapsed seconds.
template <typename Fn>
double ParallelFor(std::vector<std::unique_ptr<SnapshotsClient>>& clients, int n, FirstError& error,
                   Fn fn) {
  std::atomic<int> next{0};
  Clock::time_point start = Clock::now();
  std::vector<std::thread> threads;
  for (auto& client : clients) {
    threads.emplace_back([&, c = client.get()] {
      for (int i = next++; i < n && !error.failed(); i = next++) fn(*c, i);
    });
  }
  for (auto& th : threads) th.join();
  return static_cast<double>(Nanos(Clock::now() - start)) / 1e9;
}

int RunLatency(const Options& options) {
  FirstError error;
  auto clients = ConnectClients(options, options.clients, error);
  if (error.failed()) {
    std::fprintf(stderr, "snapshot_bench: %s\n", error.message().c_str());
    return 1;
  }
  const std::string prefix = RunPrefix() + "-pop-";
  auto name_of = [&](int i) { return prefix + std::to_string(i); };
  std::vector<char> created(static_cast<size_t>(options.population), 0);

  double populate_seconds =
      ParallelFor(clients, options.population, error, [&](SnapshotsClient& c, int i) {
        const std::string key = name_of(i) + "-active";
        grpc::Status s = c.Prepare(key);
        if (!s.ok()) return error.Set("prepare " + key, s);
        s = c.Commit(name_of(i), key);
        if (!s.ok()) return error.Set("commit " + key, s);
        created[static_cast<size_t>(i)] = 1;
      });

  Samples stat, list;
  size_t listed = 0;
  if (!error.failed()) {
    SnapshotsClient& c = *clients[0];
    std::mt19937 rng(42);
    std::uniform_int_distribution<int> pick(0, options.population - 1);
    const int warmup_calls = std::min(100, options.stat_calls);
    for (int i = 0; i < warmup_calls + options.stat_calls && !error.failed(); i++) {
      const std::string name = name_of(pick(rng));
      Clock::time_point t0 = Clock::now();
      grpc::Status s = c.StatCommitted(name);
      if (!s.ok()) error.Set("stat " + name, s);
      if (i >= warmup_calls) stat.Add(Nanos(Clock::now() - t0));
    }
    for (int i = 0; i < 1 + options.list_calls && !error.failed(); i++) {
      Clock::time_point t0 = Clock::now();
      grpc::Status s = c.List(&listed);
      if (!s.ok()) error.Set("list", s);
      if (listed < static_cast<size_t>(options.population)) {
        error.Set("list", grpc::Status(grpc::StatusCode::INTERNAL,
                                       "saw " + std::to_string(listed) + " snapshots, want >= " +
                                           std::to_string(options.population)));
      }
      if (i >= 1) list.Add(Nanos(Clock::now() - t0));
    }
  }

  // Remove what was created even after an error, so the target is left clean.
  FirstError remove_error;
  double remove_seconds =
      ParallelFor(clients, options.population, remove_error, [&](SnapshotsClient& c, int i) {
        if (!created[static_cast<size_t>(i)]) return;
        grpc::Status s = c.Remove(name_of(i));
        if (!s.ok()) remove_error.Set("remove " + name_of(i), s);
      });
  if (error.failed() || remove_error.failed()) {
    std::fprintf(stderr, "snapshot_bench: %s\n",
                 (error.failed() ? error : remove_error).message().c_str());
    return 1;
  }
  std::printf(
      "{\"mode\":\"latency\",\"target\":\"%s\",\"snapshotter\":\"%s\",\"population\":%d,"
      "\"clients\":%d,\"populate_per_sec\":%.1f,\"remove_per_sec\":%.1f,"
      "\"stat_calls\":%zu,\"stat_p50_us\":%.0f,\"stat_p99_us\":%.0f,"
      "\"list_calls\":%zu,\"list_entries\":%zu,\"list_p50_ms\":%.2f,\"list_p99_ms\":%.2f}\n",
      options.target.c_str(), options.snapshotter.c_str(), options.population, options.clients,
      options.population / populate_seconds, options.population / remove_seconds, stat.size(),
      stat.QuantileMicros(0.5), stat.QuantileMicros(0.99), list.size(), listed,
      list.QuantileMicros(0.5) / 1000.0, list.QuantileMicros(0.99) / 1000.0);
  return 0;
}

int RunFsyncProbe(const Options& options) {
  const std::string path = options.fsync_probe_dir + "/snapshot_bench.fsync-probe";
  constexpr int kWrites = 500;
  constexpr size_t kRecordBytes = 200;
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    std::fprintf(stderr, "snapshot_bench: create %s: %s\n", path.c_str(), std::strerror(errno));
    return 1;
  }
  // Written and synced once first, like a recycled write-ahead log: every measured
  // fdatasync then flushes one data block and no file metadata.
  int err = 0;
  const std::string fill(kWrites * kRecordBytes, 'f');
  if (::write(fd, fill.data(), fill.size()) != static_cast<ssize_t>(fill.size()) ||
      ::fsync(fd) != 0) {
    err = errno;
  }
  Samples samples;
  const std::string record(kRecordBytes, 'r');
  for (int i = 0; i < kWrites && err == 0; i++) {
    if (::pwrite(fd, record.data(), record.size(), static_cast<off_t>(i * kRecordBytes)) !=
        static_cast<ssize_t>(record.size())) {
      err = errno;
      break;
    }
    Clock::time_point t0 = Clock::now();
    if (::fdatasync(fd) != 0) err = errno;
    samples.Add(Nanos(Clock::now() - t0));
  }
  ::close(fd);
  ::unlink(path.c_str());
  if (err != 0) {
    std::fprintf(stderr, "snapshot_bench: fsync probe on %s: %s\n", path.c_str(),
                 std::strerror(err));
    return 1;
  }
  std::printf(
      "{\"mode\":\"fsync\",\"dir\":\"%s\",\"fdatasync_calls\":%zu,"
      "\"fdatasync_p50_us\":%.0f,\"fdatasync_p90_us\":%.0f,\"fdatasync_p99_us\":%.0f}\n",
      options.fsync_probe_dir.c_str(), samples.size(), samples.QuantileMicros(0.5),
      samples.QuantileMicros(0.9), samples.QuantileMicros(0.99));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  CLI::App app{"snapshot_bench: throughput and latency of a containerd Snapshots gRPC endpoint"};
  app.add_option("--address", options.address, "unix socket serving the Snapshots service");
  app.add_option("--snapshotter", options.snapshotter, "snapshotter name sent in requests");
  app.add_option("--namespace", options.ns, "containerd namespace (metadata header)")
      ->capture_default_str();
  app.add_option("--lease", options.lease,
                 "containerd lease (metadata header) holding the snapshots");
  app.add_option("--target", options.target, "label echoed in the result line");
  app.add_option("--clients", options.clients, "concurrent clients, one connection each")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  auto* seconds = app.add_option("--seconds", options.seconds, "measured duration (cycle mode)")
                      ->capture_default_str()
                      ->check(CLI::PositiveNumber);
  app.add_option("--warmup-seconds", options.warmup_seconds, "uncounted lead-in (cycle mode)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--cycles", options.cycles, "cycles per client instead of --seconds")
      ->excludes(seconds)
      ->check(CLI::PositiveNumber);
  app.add_flag("--latency", options.latency, "measure Stat/List latency with a population");
  app.add_option("--population", options.population, "committed snapshots for --latency")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000000));
  app.add_option("--stat-calls", options.stat_calls, "measured Stat calls (--latency)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--list-calls", options.list_calls, "measured List streams (--latency)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--rpc-timeout", options.rpc_timeout_seconds, "deadline of each call, seconds")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--fsync-probe", options.fsync_probe_dir,
                 "only measure the fdatasync latency of a file in this directory");
  CLI11_PARSE(app, argc, argv);
  if (!options.fsync_probe_dir.empty()) return RunFsyncProbe(options);
  if (options.address.empty() || options.snapshotter.empty()) {
    std::fprintf(stderr, "snapshot_bench: --address and --snapshotter are required\n");
    return 2;
  }
  return options.latency ? RunLatency(options) : RunCycles(options);
}
