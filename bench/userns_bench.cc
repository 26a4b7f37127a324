// userns_bench: how long strata takes to prepare a user-namespaced container rootfs
// (runtime::MountRemapped) with each of its three methods, against image trees of
// different sizes, beside the figures containerd's developers published for their
// overlayfs snapshotter at about the same inode counts.
//
//   userns_bench [--runs N] [--slow-s S] [--slow-runs M] [--no-warm] [--settle-s S]
//                [--methods chown,metacopy-chown,idmapped] [--retries N] --work DIR TREE...
//       TREE is DIR or DIR:DIR:... (several layers, the leftmost on top, as overlayfs
//       takes lowerdir), optionally prefixed with "LABEL=".
//
// One measurement: a fresh overlay as strata's snapshotter mounts an active snapshot
// (the tree as lowerdir, an empty upperdir and workdir under --work, "index=off"),
// mapping 0:100000:65536 for uids and gids; the clock runs from the MountRemapped call
// until it returns (the chown methods include their walk). Then, untimed, the rootfs is
// checked (its root and a top-level entry owned by 100000), unmounted and synced.
// "cold" measurements drop the page, dentry and inode caches before the call (sync;
// echo 3 > /proc/sys/vm/drop_caches); "warm" ones follow the cold ones without
// dropping. Each figure is the median of --runs runs, or of --slow-runs when the
// method's first cold run took over --slow-s. --work should be on the file system of
// the trees (overlayfs copies up within it).
//
// The upper and work directories of a tree's runs with one method are deleted together
// after the last of them, and the next measurement waits --settle-s after that: on ext4
// without a journal the inode allocator skips inodes freed in the last 60 s while their
// inode table block is cached (recently_deleted() in fs/ext4/ialloc.c), which made a
// copy-up right after the previous run's deletion up to 4x slower.
//
// Before each measurement it waits up to --quiet-wait-s for the machine's other jobs
// to leave the CPUs at most 15% busy, and samples them again for half a second right
// after it (by then the measurement's own writes are synced): a measurement with the
// CPUs busier before or after is repeated, up to --retries times, and the ones kept
// anyway are marked. Prints markdown tables. Needs root (mounts, user namespaces,
// drop_caches).
#include <fcntl.h>
#include <fts.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_stats.h"
#include "core/fs.h"
#include "core/mount.h"
#include "core/status.h"
#include "runtime-bridge/userns.h"

namespace {

using strata::Mount;
using strata::Result;
using strata::Status;
using strata::bench::Median;
using strata::runtime::RemapMethod;
using Clock = std::chrono::steady_clock;

constexpr strata::runtime::IdMap kMapping{0, 100000, 65536};
const RemapMethod kMethods[] = {RemapMethod::kChown, RemapMethod::kMetacopyChown,
                                RemapMethod::kIdmapped};

struct Options {
  std::vector<std::string> trees;
  std::string work_dir;
  int runs = 5;
  double slow_s = 30;
  int slow_runs = 3;
  bool warm = true;
  int quiet_wait_s = 300;
  int settle_s = 61;
  int retries = 3;
  std::vector<std::string> methods = {"chown", "metacopy-chown", "idmapped"};
};

// An image tree: its layers, top first, and what the merged view holds.
struct Tree {
  std::string label;
  std::vector<std::string> layers;
  uint64_t entries = 0;     // paths in the merged view, its root included (find | wc -l)
  uint64_t file_bytes = 0;  // sizes of the merged view's regular files
};

// The published figures for containerd's overlayfs snapshotter, seconds.
struct PeerFigures {
  uint64_t inodes;
  double chown_s, metacopy_s, idmapped_s;
};
constexpr PeerFigures kPeer[] = {
    {3500, 15, 0.10, 0.009},
    {33000, 160, 1.05, 0.018},
    {37000, 178, 1.43, 0.022},
};

// The peer row whose inode count is within 10% of `entries`, if any.
std::optional<PeerFigures> PeerFor(uint64_t entries) {
  for (const auto& p : kPeer) {
    double diff = std::fabs(static_cast<double>(entries) - static_cast<double>(p.inodes));
    if (diff <= 0.1 * static_cast<double>(p.inodes)) return p;
  }
  return std::nullopt;
}

// Adds the entries of `layer` that no layer above it had (whiteouts are not expected
// here) to `seen`, and the sizes of the new regular files to `file_bytes`.
Status CountLayer(const std::string& layer, std::set<std::string>& seen, uint64_t& file_bytes) {
  char* roots[] = {const_cast<char*>(layer.c_str()), nullptr};
  FTS* walk = ::fts_open(roots, FTS_PHYSICAL | FTS_NOCHDIR | FTS_XDEV, nullptr);
  if (walk == nullptr) return Status::FromErrno(errno, "walk " + layer);
  Status status;
  while (true) {
    errno = 0;
    FTSENT* e = ::fts_read(walk);
    if (e == nullptr) {
      if (errno != 0) status = Status::FromErrno(errno, "walk " + layer);
      break;
    }
    if (e->fts_info == FTS_DP) continue;
    if (e->fts_info == FTS_NS || e->fts_info == FTS_DNR || e->fts_info == FTS_ERR) {
      status = Status::FromErrno(e->fts_errno, std::string("walk ") + e->fts_path);
      break;
    }
    std::string rel = std::string(e->fts_path).substr(layer.size());
    if (seen.insert(rel).second && S_ISREG(e->fts_statp->st_mode)) {
      file_bytes += static_cast<uint64_t>(e->fts_statp->st_size);
    }
  }
  ::fts_close(walk);
  return status;
}

Result<Tree> DescribeTree(const std::string& spec) {
  Tree tree;
  std::string dirs = spec;
  if (size_t eq = spec.find('='); eq != std::string::npos) {
    tree.label = spec.substr(0, eq);
    dirs = spec.substr(eq + 1);
  }
  std::stringstream in(dirs);
  for (std::string dir; std::getline(in, dir, ':');) {
    if (dir.empty()) continue;
    char* real = ::realpath(dir.c_str(), nullptr);
    if (real == nullptr) return Status::FromErrno(errno, "realpath " + dir);
    tree.layers.push_back(real);
    std::free(real);
  }
  if (tree.layers.empty()) return Status::InvalidArgument("empty tree \"" + spec + "\"");
  std::set<std::string> seen;
  for (const auto& layer : tree.layers) RETURN_IF_ERROR(CountLayer(layer, seen, tree.file_bytes));
  tree.entries = seen.size();
  if (tree.label.empty()) tree.label = strata::fs::BaseName(tree.layers[0]);
  return tree;
}

Status DropCaches() {
  ::sync();
  int fd = ::open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "open /proc/sys/vm/drop_caches");
  Status s = strata::fs::WriteAll(fd, "3\n", "write /proc/sys/vm/drop_caches");
  ::close(fd);
  return s;
}

// Busy and total jiffies of all CPUs so far.
std::pair<uint64_t, uint64_t> CpuJiffies() {
  std::ifstream stat("/proc/stat");
  std::string cpu;
  uint64_t v[8] = {};
  stat >> cpu >> v[0] >> v[1] >> v[2] >> v[3] >> v[4] >> v[5] >> v[6] >> v[7];
  uint64_t total = 0;
  for (uint64_t x : v) total += x;
  uint64_t idle = v[3] + v[4];  // idle + iowait
  return {total - idle, total};
}

// Percent of all CPUs busy over the next half second.
int CpuBusyPercent() {
  auto [busy0, total0] = CpuJiffies();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto [busy1, total1] = CpuJiffies();
  if (total1 == total0) return 0;
  return static_cast<int>(100 * (busy1 - busy0) / (total1 - total0));
}

// Waits up to `wait_s` for other jobs to leave the CPUs at most 15% busy; false if
// they did not.
bool WaitQuiet(int wait_s) {
  auto deadline = Clock::now() + std::chrono::seconds(wait_s);
  while (true) {
    if (CpuBusyPercent() <= 15) return true;
    if (Clock::now() >= deadline) return false;
  }
}

std::string FormatSeconds(double s) {
  char buf[32];
  if (s < 1) {
    std::snprintf(buf, sizeof buf, "%.1f ms", s * 1000);
  } else if (s < 60) {
    std::snprintf(buf, sizeof buf, "%.2f s", s);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f s (%d m %02d s)", s, static_cast<int>(s) / 60,
                  static_cast<int>(std::lround(s)) % 60);
  }
  return buf;
}

std::string FormatCount(uint64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); i++) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

// The rootfs belongs to the mapped root: its root directory and its first top-level
// entry (a directory or file of the image) are owned by host uid 100000.
Status CheckRemapped(const std::string& rootfs) {
  auto names = strata::fs::ListDir(rootfs);
  if (!names.ok()) return names.status();
  std::vector<std::string> paths = {rootfs};
  if (!names->empty()) paths.push_back(rootfs + "/" + (*names)[0]);
  for (const auto& path : paths) {
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) return Status::FromErrno(errno, "lstat " + path);
    if (st.st_uid != kMapping.host_id || st.st_gid != kMapping.host_id) {
      return Status::Internal(path + " is owned by " + std::to_string(st.st_uid) + ":" +
                              std::to_string(st.st_gid) + ", not the mapped root");
    }
  }
  return Status::Ok();
}

// One timed MountRemapped of `tree` with `method`, in a fresh overlay under `run_dir`,
// which it leaves unmounted for the caller to delete.
Result<double> MeasureOnce(const Tree& tree, RemapMethod method, bool cold,
                           const std::string& run_dir) {
  const std::string upper = run_dir + "/upper", work = run_dir + "/work",
                    rootfs = run_dir + "/rootfs", scratch = run_dir + "/scratch";
  for (const auto& dir : {upper, work, rootfs}) RETURN_IF_ERROR(strata::fs::MakeDirs(dir, 0755));
  std::string lowerdir = "lowerdir=";
  for (size_t i = 0; i < tree.layers.size(); i++) {
    lowerdir += (i > 0 ? ":" : "") + tree.layers[i];
  }
  std::vector<Mount> mounts = {Mount{
      "overlay", "overlay", "", {"index=off", "workdir=" + work, "upperdir=" + upper, lowerdir}}};
  strata::runtime::RemapOptions options;
  options.uids = kMapping;
  options.gids = kMapping;
  options.scratch_dir = scratch;
  options.force = method;
  if (cold) RETURN_IF_ERROR(DropCaches());

  auto start = Clock::now();
  auto used = strata::runtime::MountRemapped(mounts, rootfs, options);
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();

  Status s = used.status();
  if (s.ok() && *used != method) s = Status::Internal("MountRemapped used another method");
  if (s.ok()) s = CheckRemapped(rootfs);
  if (used.ok()) {
    Status u = strata::Unmount(rootfs);
    if (s.ok()) s = u;
  }
  if (strata::IsMountPoint(rootfs)) return Status::Internal(rootfs + " is still mounted");
  ::sync();
  if (!s.ok()) return s;
  return seconds;
}

struct Figures {
  std::vector<double> cold, warm;
  std::vector<bool> cold_busy, warm_busy;  // kept although other jobs were busy
};

std::string MethodLabel(RemapMethod method) {
  switch (method) {
    case RemapMethod::kChown:
      return "chown";
    case RemapMethod::kMetacopyChown:
      return "metacopy chown";
    case RemapMethod::kIdmapped:
      return "idmapped";
  }
  return "?";
}

std::string MachineNote(const std::string& work_dir) {
  struct utsname u;
  ::uname(&u);
  struct statfs fs;
  std::string fs_type = "?";
  if (::statfs(work_dir.c_str(), &fs) == 0) {
    fs_type = fs.f_type == 0xEF53 ? "ext4" : fs.f_type == 0x58465342 ? "xfs" : "other";
  }
  return std::to_string(std::thread::hardware_concurrency()) + " CPUs, Linux " + u.release + ", " +
         fs_type + " under " + work_dir;
}

int Run(const Options& options) {
  if (::geteuid() != 0) {
    std::fprintf(stderr, "userns_bench: needs root (mounts, user namespaces, drop_caches)\n");
    return 2;
  }
  std::vector<Tree> trees;
  for (const auto& spec : options.trees) {
    auto tree = DescribeTree(spec);
    if (!tree.ok()) {
      std::fprintf(stderr, "userns_bench: %s\n", tree.status().ToString().c_str());
      return 2;
    }
    std::fprintf(stderr, "%s: %s entries in %zu layer(s), %.1f MB in files\n", tree->label.c_str(),
                 FormatCount(tree->entries).c_str(), tree->layers.size(),
                 static_cast<double>(tree->file_bytes) / 1e6);
    trees.push_back(std::move(*tree));
  }
  if (strata::fs::Exists(options.work_dir)) {  // a previous run's leftovers
    if (Status s = strata::fs::RemoveAll(options.work_dir); !s.ok()) {
      std::fprintf(stderr, "userns_bench: %s\n", s.ToString().c_str());
      return 2;
    }
    ::sync();
    std::this_thread::sleep_for(std::chrono::seconds(options.settle_s));
  }
  if (Status s = strata::fs::MakeDirs(options.work_dir, 0755); !s.ok()) {
    std::fprintf(stderr, "userns_bench: %s\n", s.ToString().c_str());
    return 2;
  }
  std::vector<RemapMethod> methods;
  for (RemapMethod m : kMethods) {
    const auto& names = options.methods;
    if (std::find(names.begin(), names.end(), strata::runtime::RemapMethodName(m)) != names.end()) {
      methods.push_back(m);
    }
  }
  if (methods.size() != options.methods.size()) {
    std::fprintf(stderr, "userns_bench: --methods takes chown, metacopy-chown, idmapped\n");
    return 2;
  }

  std::vector<std::map<RemapMethod, Figures>> results(trees.size());
  int measurements = 0, busy = 0;
  for (size_t t = 0; t < trees.size(); t++) {
    for (RemapMethod method : methods) {
      Figures& fig = results[t][method];
      int runs = options.runs;
      std::vector<std::string> run_dirs;
      for (bool cold : {true, false}) {
        if (!cold && !options.warm) break;
        for (int i = 0; i < runs; i++) {
          Result<double> seconds = 0.0;
          bool quiet = false;
          for (int attempt = 0; attempt <= options.retries && !quiet; attempt++) {
            measurements++;
            quiet = WaitQuiet(options.quiet_wait_s);
            run_dirs.push_back(options.work_dir + "/run-" + std::to_string(run_dirs.size()));
            seconds = MeasureOnce(trees[t], method, cold, run_dirs.back());
            if (!seconds.ok()) break;
            quiet = quiet && CpuBusyPercent() <= 15;
            std::fprintf(stderr, "%s %s %s run %d: %s%s\n", trees[t].label.c_str(),
                         MethodLabel(method).c_str(), cold ? "cold" : "warm", i + 1,
                         FormatSeconds(*seconds).c_str(), quiet ? "" : " (other jobs busy)");
          }
          if (!seconds.ok()) {
            std::fprintf(stderr, "userns_bench: %s %s: %s\n", trees[t].label.c_str(),
                         MethodLabel(method).c_str(), seconds.status().ToString().c_str());
            return 1;
          }
          if (!quiet) busy++;
          (cold ? fig.cold : fig.warm).push_back(*seconds);
          (cold ? fig.cold_busy : fig.warm_busy).push_back(!quiet);
          if (cold && i == 0 && *seconds > options.slow_s) runs = std::min(runs, options.slow_runs);
        }
      }
      for (const auto& dir : run_dirs) {
        if (Status s = strata::fs::RemoveAll(dir); !s.ok()) {
          std::fprintf(stderr, "userns_bench: %s\n", s.ToString().c_str());
          return 1;
        }
      }
      ::sync();
      std::this_thread::sleep_for(std::chrono::seconds(options.settle_s));
    }
  }

  std::printf("userns_bench: %s; mapping %u:%u:%u for uids and gids; overlay with index=off.\n",
              MachineNote(options.work_dir).c_str(), kMapping.container_id, kMapping.host_id,
              kMapping.size);
  std::printf(
      "%d measurements (retries included); %d kept although other jobs kept the CPUs over 15%%"
      " busy before or after them (marked * below).\n",
      measurements, busy);
  for (bool cold : {true, false}) {
    if (!cold && !options.warm) break;
    std::printf("\n%s caches, medians (runs):\n\n", cold ? "Cold" : "Warm");
    std::printf(
        "| tree | inodes | layers | MB in files | chown | metacopy chown | idmapped |"
        " containerd chown | containerd metacopy chown | containerd idmapped |\n");
    std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (size_t t = 0; t < trees.size(); t++) {
      std::printf("| %s | %s | %zu | %.0f |", trees[t].label.c_str(),
                  FormatCount(trees[t].entries).c_str(), trees[t].layers.size(),
                  static_cast<double>(trees[t].file_bytes) / 1e6);
      for (RemapMethod method : kMethods) {
        const auto& v = cold ? results[t][method].cold : results[t][method].warm;
        if (v.empty()) {
          std::printf(" |");
        } else {
          std::printf(" %s (%zu) |", FormatSeconds(Median(v)).c_str(), v.size());
        }
      }
      auto peer = PeerFor(trees[t].entries);
      if (peer && trees[t].layers.size() == 1) {
        std::printf(" %s | %s | %s |\n", FormatSeconds(peer->chown_s).c_str(),
                    FormatSeconds(peer->metacopy_s).c_str(),
                    FormatSeconds(peer->idmapped_s).c_str());
      } else {
        std::printf(" | | |\n");
      }
    }
  }
  std::printf("\nEvery run, seconds (cold / warm):\n\n");
  for (size_t t = 0; t < trees.size(); t++) {
    for (RemapMethod method : methods) {
      const Figures& fig = results[t][method];
      std::printf("- %s, %s:", trees[t].label.c_str(), MethodLabel(method).c_str());
      for (size_t i = 0; i < fig.cold.size(); i++) {
        std::printf(" %.4f%s", fig.cold[i], fig.cold_busy[i] ? "*" : "");
      }
      std::printf(" /");
      for (size_t i = 0; i < fig.warm.size(); i++) {
        std::printf(" %.4f%s", fig.warm[i], fig.warm_busy[i] ? "*" : "");
      }
      std::printf("\n");
    }
  }
  if (std::find(methods.begin(), methods.end(), RemapMethod::kIdmapped) != methods.end()) {
    std::printf("\nGoal, idmapped under 25 ms for every tree (cold median):");
    bool met = true;
    for (size_t t = 0; t < trees.size(); t++) {
      double median = Median(results[t][RemapMethod::kIdmapped].cold);
      met = met && median < 0.025;
      std::printf(" %s %s;", trees[t].label.c_str(), FormatSeconds(median).c_str());
    }
    std::printf(" %s\n", met ? "met" : "not met");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  CLI::App app{"userns_bench: time of MountRemapped per method against image trees"};
  app.add_option("trees", options.trees, "[LABEL=]DIR[:DIR...] (layers, top first)")->required();
  app.add_option("--work", options.work_dir,
                 "directory for upper/work dirs, on the trees' file system")
      ->required();
  app.add_option("--runs", options.runs, "runs per figure")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  app.add_option("--slow-s", options.slow_s,
                 "a method whose first cold run takes longer gets --slow-runs runs")
      ->capture_default_str();
  app.add_option("--slow-runs", options.slow_runs, "runs per figure of slow methods")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
  app.add_flag("!--no-warm", options.warm, "skip the warm-cache runs");
  app.add_option("--quiet-wait-s", options.quiet_wait_s,
                 "seconds to wait for a quiet machine before each measurement")
      ->capture_default_str();
  app.add_option("--methods", options.methods, "chown, metacopy-chown, idmapped")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--retries", options.retries,
                 "repeats of a measurement with other jobs busy before or after it")
      ->capture_default_str();
  app.add_option("--settle-s", options.settle_s,
                 "seconds to wait after deleting a series' upper directories")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  return Run(options);
}
