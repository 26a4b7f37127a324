#include "snapshotter/overlay.h"

#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "core/clock.h"
#include "core/filters.h"
#include "core/fs.h"
#include "core/idmap.h"
#include "core/mount.h"
#include "core/quote.h"

namespace strata::snapshotter {
namespace {

using metadata::SnapshotKind;
using metadata::SnapshotRecord;

// containerd does not keep labels with empty values (setting one deletes it).
void DropEmptyLabels(Labels& labels) {
  std::erase_if(labels, [](const auto& label) { return label.second.empty(); });
}

Kind ToKind(SnapshotKind k) { return static_cast<Kind>(static_cast<int>(k)); }

Info ToInfo(const SnapshotRecord& r) {
  Info info;
  info.name = r.key;
  info.parent = r.parent;
  info.kind = ToKind(r.kind);
  info.labels = r.labels;
  info.created_unix_nanos = r.created_unix_nanos;
  info.updated_unix_nanos = r.updated_unix_nanos;
  return info;
}

// Exposes an Info to containerd's filters: kind, name, parent, labels.<key>.
class InfoAdaptor : public filters::Adaptor {
 public:
  explicit InfoAdaptor(const Info& info) : info_(info) {}
  std::optional<std::string> Field(const std::vector<std::string>& path) const override {
    if (path.empty()) return std::nullopt;
    if (path[0] == "kind") return std::string(KindName(info_.kind));
    if (path[0] == "name") return info_.name;
    if (path[0] == "parent") return info_.parent;
    if (path[0] == "labels") {
      if (info_.labels.empty()) return std::nullopt;
      std::string key;
      for (size_t i = 1; i < path.size(); i++) {
        if (i > 1) key += ".";
        key += path[i];
      }
      auto it = info_.labels.find(key);
      if (it == info_.labels.end()) return std::nullopt;
      return it->second;
    }
    return std::nullopt;
  }

 private:
  const Info& info_;
};

bool OverlayIndexParameterExists() { return fs::Exists("/sys/module/overlay/parameters/index"); }

// True inside a user namespace that does not map the whole id range (as runc's
// RunningInUserNS): overlayfs then needs "userxattr".
bool RunningInUserNamespace() {
  std::ifstream in("/proc/self/uid_map");
  long a = 0, b = 0, c = 0;
  if (!(in >> a >> b >> c)) return false;
  return !(a == 0 && b == 0 && c == 4294967295L);
}

class OverlayImpl : public Overlay {
 public:
  OverlayImpl(std::string root, metadata::Store* store, OverlayOptions options)
      : root_(std::move(root)), store_(store), options_(options) {
    snapshots_dir_ = root_ + "/snapshots";
    spares_dir_ = root_ + "/spares";
    index_off_ = OverlayIndexParameterExists();
    userxattr_ = RunningInUserNamespace();
  }

  ~OverlayImpl() override { Close().ok(); }

  std::unique_ptr<Snapshotter> ForName(const std::string& name) override;

  Status Load() {
    RETURN_IF_ERROR(fs::MakeDirs(root_, 0700));
    RETURN_IF_ERROR(fs::MakeDirs(snapshots_dir_, 0700));
    // Spares left by the previous run are not trusted (one may be half made).
    RETURN_IF_ERROR(fs::RemoveAll(spares_dir_));
    ASSIGN_OR_RETURN(auto records, store_->LoadSnapshots());
    ASSIGN_OR_RETURN(next_id_, store_->NextSnapshotId());
    for (auto& r : records) {
      next_id_ = std::max(next_id_, r.id + 1);
      std::string ref = Ref(r.snapshotter, r.key);
      by_key_.emplace(std::move(ref), Entry{std::move(r), 0});
    }
    for (auto& [key, e] : by_key_) {
      if (e.record.parent.empty()) continue;
      auto it = by_key_.find(Ref(e.record.snapshotter, e.record.parent));
      if (it != by_key_.end()) it->second.children++;
    }
    // Reconcile: directories without a record are leftovers of an interrupted
    // Prepare or of a Remove whose directory deletion did not finish.
    Status cleaned = Cleanup();
    if (!cleaned.ok()) {
      spdlog::warn("start-up cleanup incomplete (retried by the next Cleanup): {}",
                   cleaned.ToString());
    }
    RETURN_IF_ERROR(RecreateMissingDirectories());
    if (options_.background_cleanup) {
      remover_ = std::thread([this] { RemoverLoop(); });
    }
    if (options_.spare_directories > 0) {
      RETURN_IF_ERROR(fs::MakeDirs(spares_dir_, 0700));
      spare_maker_ = std::thread([this] { SpareLoop(); });
    }
    return Status::Ok();
  }

  // A record is durable once the write-ahead log is flushed, but the directories made
  // for it are durable only when the file system writes its metadata back (seconds
  // later): after a power loss a record may come back without its directories.
  // They are made again, empty, as Prepare left them; a committed snapshot made again
  // lost content its writer never synced, which is logged.
  Status RecreateMissingDirectories() {
    std::vector<const SnapshotRecord*> records;
    for (const auto& [ref, e] : by_key_) records.push_back(&e.record);
    // Parents before children: a new layer's root takes its parent's owner.
    std::sort(records.begin(), records.end(),
              [](const SnapshotRecord* a, const SnapshotRecord* b) { return a->id < b->id; });
    for (const SnapshotRecord* r : records) {
      bool upper_missing = fs::Missing(UpperPath(r->id));
      bool work_missing = r->kind == SnapshotKind::kActive && fs::Missing(WorkPath(r->id));
      if (!upper_missing && !work_missing) continue;
      const char* level = r->kind == SnapshotKind::kCommitted ? "lost its content" : "was empty";
      spdlog::warn(
          "snapshot {} ({}): directory {} is missing (its creation did not reach the "
          "disk before a crash); made again empty (the snapshot {})",
          Quote(r->key), KindName(ToKind(r->kind)), SnapshotDir(r->id), level);
      if (!upper_missing) {
        RETURN_IF_ERROR(fs::MakeDir(WorkPath(r->id), 0711));
        continue;
      }
      uint64_t parent_id = 0;
      if (auto p = by_key_.find(Ref(r->snapshotter, r->parent));
          !r->parent.empty() && p != by_key_.end()) {
        parent_id = p->second.record.id;
      }
      auto owner = MappedRootOwner(r->labels);
      RETURN_IF_ERROR(MakeSnapshotDirs(r->id,
                                       r->kind == SnapshotKind::kActive ? SnapshotKind::kActive
                                                                        : SnapshotKind::kView,
                                       parent_id, owner.ok() ? *owner : std::nullopt)
                          .WithContext("make again the directories of snapshot " + Quote(r->key)));
    }
    return Status::Ok();
  }

  Result<Info> Stat(const std::string& ns, const std::string& key) {
    Info info;
    RETURN_IF_ERROR(ReadRecord(ns, key, [&](const SnapshotRecord& r) {
      info = ToInfo(r);
      return Status::Ok();
    }));
    return info;
  }

  Result<Info> Update(const std::string& ns, const Info& info,
                      const std::vector<std::string>& fieldpaths) {
    if (info.name.empty()) return Status::InvalidArgument("snapshot name must not be empty");
    Info out;
    uint64_t ticket = 0;
    {
      std::unique_lock lock(mu_);
      RETURN_IF_ERROR(CheckOpen());
      auto it = by_key_.find(Ref(ns, info.name));
      if (it == by_key_.end()) return NotFoundUnlocking(lock, info.name);
      SnapshotRecord updated = it->second.record;
      if (fieldpaths.empty()) {
        updated.labels = info.labels;
      } else {
        for (const auto& path : fieldpaths) {
          if (path == "labels") {
            updated.labels = info.labels;
          } else if (path.rfind("labels.", 0) == 0) {
            std::string label = path.substr(7);
            auto value = info.labels.find(label);
            if (value == info.labels.end() || value->second.empty()) {
              updated.labels.erase(label);
            } else {
              updated.labels[label] = value->second;
            }
          } else {
            return Status::InvalidArgument("cannot update " + Quote(path) + " field on snapshot " +
                                           Quote(info.name));
          }
        }
      }
      DropEmptyLabels(updated.labels);
      RETURN_IF_ERROR(ValidateLabels(updated.labels));
      updated.updated_unix_nanos = NowUnixNanos();
      metadata::Batch batch;
      batch.PutSnapshot(updated);
      ASSIGN_OR_RETURN(ticket, store_->Apply(batch));
      it->second.record = std::move(updated);
      it->second.ticket = ticket;
      out = ToInfo(it->second.record);
    }
    RETURN_IF_ERROR(store_->WaitDurable(ticket));
    return out;
  }

  Result<Usage> GetUsage(const std::string& ns, const std::string& key) {
    Usage usage;
    uint64_t id = 0;
    RETURN_IF_ERROR(ReadRecord(ns, key, [&](const SnapshotRecord& r) {
      if (r.kind == SnapshotKind::kActive) {
        id = r.id;  // measured below, outside the lock
      } else {
        usage.size_bytes = r.usage_size_bytes;
        usage.inodes = r.usage_inodes;
      }
      return Status::Ok();
    }));
    if (id != 0) {
      ASSIGN_OR_RETURN(fs::DiskUsage du, fs::UsageOf(UpperPath(id)));
      usage.size_bytes = du.size_bytes;
      usage.inodes = du.inodes;
    }
    return usage;
  }

  Result<std::vector<Mount>> Mounts(const std::string& ns, const std::string& key) {
    std::vector<Mount> mounts;
    RETURN_IF_ERROR(ReadRecord(ns, key, [&](const SnapshotRecord& r) -> Status {
      if (r.kind == SnapshotKind::kCommitted) {
        return Status::FailedPrecondition("requested snapshot " + Quote(key) +
                                          " not active or view");
      }
      ASSIGN_OR_RETURN(mounts, MountsLocked(r));
      return Status::Ok();
    }));
    return mounts;
  }

  Result<std::vector<Mount>> Create(const std::string& ns, SnapshotKind kind,
                                    const std::string& key, const std::string& parent,
                                    const Labels& labels) {
    ASSIGN_OR_RETURN(std::vector<Mount> mounts, CreateSnapshot(ns, kind, key, parent, labels));
    if (kind == SnapshotKind::kActive && !sources_.empty()) {
      if (std::optional<RemoteLayer> remote = ParseRemoteLayer(labels)) {
        Status served = PrepareRemote(ns, key, parent, labels, *remote);
        if (served.IsAlreadyExists() || !served.ok()) return served;
      }
    }
    return mounts;
  }

  void AddLayerSource(LayerSource* source) override { sources_.push_back(source); }

  Result<int> RestoreRemoteLayers() override {
    std::vector<std::pair<uint64_t, Labels>> remote;
    {
      std::shared_lock lock(mu_);
      for (const auto& [ref, e] : by_key_) {
        if (e.record.labels.count(kLabelLazySource) != 0) {
          remote.emplace_back(e.record.id, e.record.labels);
        }
      }
    }
    int mounted = 0;
    for (const auto& [id, labels] : remote) {
      const std::string& name = labels.at(kLabelLazySource);
      LayerSource* source = SourceNamed(name);
      std::optional<RemoteLayer> layer = ParseRemoteLayer(labels);
      if (source == nullptr || !layer) {
        spdlog::error("remote snapshot {} needs lazy source {}, which is not available",
                      UpperPath(id), name);
        continue;
      }
      // The source deals with what an earlier run left there: a dead mount of a crash,
      // or a live session it serves again.
      Status s = source->Mount(*layer, UpperPath(id));
      if (!s.ok()) {
        spdlog::error("cannot mount remote snapshot {} ({}) again: {}", layer->target,
                      layer->layer_digest, s.ToString());
        continue;
      }
      mounted++;
    }
    return mounted;
  }

  Status Commit(const std::string& ns, const std::string& name, const std::string& key,
                const Labels& labels, const std::string& parent) {
    return CommitSnapshot(ns, name, key, labels, parent, /*measure_usage=*/true);
  }

  // Commit; a remote snapshot is not measured (that would walk the lazy mount).
  Status CommitSnapshot(const std::string& ns, const std::string& name, const std::string& key,
                        const Labels& labels, const std::string& parent, bool measure_usage) {
    if (name.empty()) return Status::InvalidArgument("commit name must not be empty");
    RETURN_IF_ERROR(ValidateLabels(labels));
    // Measure usage before taking the write lock: it walks the whole tree.
    uint64_t id = 0;
    {
      std::shared_lock lock(mu_);
      RETURN_IF_ERROR(CheckOpen());
      // As containerd: a taken name is reported before anything about the key.
      if (by_key_.count(Ref(ns, name)) != 0 || creating_.count(Ref(ns, name)) != 0) {
        return Status::AlreadyExists("committed snapshot " + Quote(name) + ": already exists");
      }
      auto it = by_key_.find(Ref(ns, key));
      if (it == by_key_.end()) return NotFoundUnlocking(lock, key);
      if (it->second.record.kind != SnapshotKind::kActive) {
        return Status::FailedPrecondition("snapshot " + Quote(key) + " is not active");
      }
      id = it->second.record.id;
    }
    fs::DiskUsage du;
    if (measure_usage) {
      ASSIGN_OR_RETURN(du, fs::UsageOf(UpperPath(id)));
    }

    uint64_t ticket = 0;
    {
      std::unique_lock lock(mu_);
      RETURN_IF_ERROR(CheckOpen());
      if (by_key_.count(Ref(ns, name)) != 0 || creating_.count(Ref(ns, name)) != 0) {
        return Status::AlreadyExists("committed snapshot " + Quote(name) + ": already exists");
      }
      auto it = by_key_.find(Ref(ns, key));
      if (it == by_key_.end()) return NotFoundUnlocking(lock, key);
      if (it->second.record.kind != SnapshotKind::kActive || it->second.record.id != id) {
        return Status::FailedPrecondition("snapshot " + Quote(key) + " is not active");
      }
      SnapshotRecord committed = it->second.record;
      if (!parent.empty() && parent != committed.parent) {
        if (!committed.parent.empty()) {
          return Status::InvalidArgument("cannot change parent of active snapshot " + Quote(key) +
                                         " on commit");
        }
        auto p = by_key_.find(Ref(ns, parent));
        if (p == by_key_.end()) return NotFoundError(parent);
        if (p->second.record.kind != SnapshotKind::kCommitted) {
          return Status::InvalidArgument("parent " + Quote(parent) + " is not committed snapshot");
        }
        committed.parent = parent;  // rebase (containerd 2.2 parallel unpack)
      }
      committed.key = name;
      committed.kind = SnapshotKind::kCommitted;
      committed.labels = labels;
      DropEmptyLabels(committed.labels);
      committed.created_unix_nanos = committed.updated_unix_nanos = NowUnixNanos();
      committed.usage_size_bytes = du.size_bytes;
      committed.usage_inodes = du.inodes;

      metadata::Batch batch;
      batch.DeleteSnapshot(ns, key);
      batch.PutSnapshot(committed);
      const std::string& old_parent = it->second.record.parent;
      if (!old_parent.empty()) batch.RemoveChild(ns, old_parent, key);
      if (!committed.parent.empty()) batch.AddChild(ns, committed.parent, name);
      ASSIGN_OR_RETURN(ticket, store_->Apply(batch));

      if (old_parent != committed.parent) {
        by_key_.find(Ref(ns, committed.parent))->second.children++;
      }
      int children = it->second.children;
      by_key_.erase(it);
      by_key_.emplace(Ref(ns, name), Entry{std::move(committed), children, ticket});
    }
    return store_->WaitDurable(ticket);
  }

  Status Remove(const std::string& ns, const std::string& key) {
    uint64_t ticket = 0;
    uint64_t id = 0;
    std::string lazy_source;
    {
      std::unique_lock lock(mu_);
      RETURN_IF_ERROR(CheckOpen());
      auto it = by_key_.find(Ref(ns, key));
      if (it == by_key_.end()) return NotFoundUnlocking(lock, key);
      if (it->second.children > 0) {
        return Status::FailedPrecondition("cannot remove snapshot with child: " + Quote(key) +
                                          " has " + std::to_string(it->second.children) +
                                          " children");
      }
      metadata::Batch batch;
      batch.DeleteSnapshot(ns, key);
      const std::string parent = it->second.record.parent;
      if (!parent.empty()) batch.RemoveChild(ns, parent, key);
      ASSIGN_OR_RETURN(ticket, store_->Apply(batch));
      id = it->second.record.id;
      if (auto l = it->second.record.labels.find(kLabelLazySource);
          l != it->second.record.labels.end()) {
        lazy_source = l->second;
      }
      if (auto p = by_key_.find(Ref(ns, parent)); !parent.empty() && p != by_key_.end()) {
        p->second.children--;
      }
      by_key_.erase(it);
      std::lock_guard<std::mutex> removal_lock(remove_mu_);
      removed_ids_.insert(id);  // its directory is now expected to go, not an orphan
    }
    RETURN_IF_ERROR(store_->WaitDurable(ticket));
    if (!lazy_source.empty()) {
      LayerSource* source = SourceNamed(lazy_source);
      Status s = source != nullptr ? source->Unmount(UpperPath(id), UnmountReason::kRemoved)
                                   : Status::Ok();
      if (!s.ok()) spdlog::warn("unmount remote snapshot {}: {}", UpperPath(id), s.ToString());
    }
    // Only now that the removal is durable may the directory go.
    if (options_.background_cleanup) {
      std::lock_guard<std::mutex> lock(remove_mu_);
      remove_queue_.push_back(id);
      // Wake the remover only when it has something new to decide about; otherwise
      // it is waiting for a quiet moment and checks again by itself.
      if (remove_queue_.size() == 1 || remove_queue_.size() >= kMaxDeferredRemovals) {
        remove_cv_.notify_one();
      }
    }
    return Status::Ok();
  }

  Status Walk(const std::string& ns, const std::function<Status(const Info&)>& fn,
              const std::vector<std::string>& filter_strings) {
    ASSIGN_OR_RETURN(filters::Filter filter, filters::Filter::ParseAll(filter_strings));
    std::vector<Info> matched;
    uint64_t ticket = 0;
    {
      std::shared_lock lock(mu_);
      RETURN_IF_ERROR(CheckOpen());
      ticket = store_->LastTicket();
      matched.reserve(by_key_.size());
      for (const auto& [ref, e] : by_key_) {
        if (e.record.snapshotter != ns) continue;
        Info info = ToInfo(e.record);
        if (filter.MatchesAll() || filter.Match(InfoAdaptor(info)))
          matched.push_back(std::move(info));
      }
    }
    RETURN_IF_ERROR(store_->WaitDurable(ticket));
    for (const auto& info : matched) RETURN_IF_ERROR(fn(info));
    return Status::Ok();
  }

  Status Cleanup() override {
    ASSIGN_OR_RETURN(auto orphans, FindOrphans());
    Status result;
    for (const auto& name : orphans) {
      // A remote snapshot's mount left by a crash would make the tree undeletable.
      (void)strata::Unmount(snapshots_dir_ + "/" + name + "/fs", /*detach=*/true);
      Status s = fs::RemoveAll(snapshots_dir_ + "/" + name);
      if (!s.ok()) {
        spdlog::warn("cleanup: cannot remove {}/{}: {}", snapshots_dir_, name, s.ToString());
        result = s;
        continue;
      }
      char* end = nullptr;
      uint64_t id = std::strtoull(name.c_str(), &end, 10);
      if (end != nullptr && *end == '\0') {
        std::lock_guard<std::mutex> lock(remove_mu_);
        removed_ids_.erase(id);
      }
    }
    return result;
  }

  Status Close() override {
    {
      std::unique_lock lock(mu_);
      if (closed_) return Status::Ok();
      closed_ = true;
    }
    {
      std::lock_guard<std::mutex> lock(remove_mu_);
      stop_remover_ = true;
      remove_cv_.notify_all();
    }
    if (remover_.joinable()) remover_.join();
    {
      std::lock_guard<std::mutex> lock(spare_mu_);
      stop_spares_ = true;
      spare_cv_.notify_all();
    }
    if (spare_maker_.joinable()) spare_maker_.join();
    // The lazy sources' servers stop with the daemon: unmount their layers now (they
    // are mounted again at the next start by RestoreRemoteLayers).
    std::shared_lock lock(mu_);
    for (const auto& [ref, e] : by_key_) {
      auto l = e.record.labels.find(kLabelLazySource);
      if (l == e.record.labels.end()) continue;
      if (LayerSource* source = SourceNamed(l->second)) {
        Status s = source->Unmount(UpperPath(e.record.id), UnmountReason::kShutdown);
        if (!s.ok()) spdlog::warn("unmount remote snapshot: {}", s.ToString());
      }
    }
    return Status::Ok();
  }

  Result<std::vector<Problem>> Check(bool repair) override {
    std::vector<Problem> problems;
    // 1. Orphan directories.
    ASSIGN_OR_RETURN(auto orphans, FindOrphans());
    std::unordered_set<std::string> removed;
    {
      std::lock_guard<std::mutex> lock(remove_mu_);
      for (uint64_t id : removed_ids_) removed.insert(std::to_string(id));
    }
    for (const auto& name : orphans) {
      // Directories of removed snapshots are awaiting the remover or Cleanup; one that
      // is already gone was removed while we looked.
      if (removed.count(name) != 0 || !fs::Exists(snapshots_dir_ + "/" + name)) continue;
      Problem p{"orphan-directory", snapshots_dir_ + "/" + name + " belongs to no snapshot"};
      if (repair) p.repaired = fs::RemoveAll(snapshots_dir_ + "/" + name).ok();
      problems.push_back(std::move(p));
    }
    std::unique_lock lock(mu_);
    RETURN_IF_ERROR(CheckOpen());
    // 2. Records whose directories are missing, parents broken or ids shared.
    std::unordered_map<uint64_t, std::string> ids;
    for (const auto& [ref, e] : by_key_) {
      const SnapshotRecord& r = e.record;
      const std::string& key = r.key;
      auto [dup, inserted] = ids.emplace(r.id, key);
      if (!inserted) {
        problems.push_back({"duplicate-id", "snapshots " + Quote(key) + " and " +
                                                Quote(dup->second) + " share id " +
                                                std::to_string(r.id)});
      }
      std::vector<std::string> dirs = {UpperPath(r.id)};
      if (r.kind == SnapshotKind::kActive) dirs.push_back(WorkPath(r.id));
      for (const auto& dir : dirs) {
        if (fs::Exists(dir)) continue;
        Problem p{"missing-directory", dir + " of snapshot " + Quote(key) + " (" +
                                           std::string(KindName(ToKind(r.kind))) + ") is missing"};
        if (repair) {
          p.repaired = fs::MakeDirs(SnapshotDir(r.id), 0700).ok() &&
                       fs::MakeDirs(dir, dir == UpperPath(r.id) ? 0755 : 0711).ok();
        }
        problems.push_back(std::move(p));
      }
      if (!r.parent.empty()) {
        auto p = by_key_.find(Ref(r.snapshotter, r.parent));
        if (p == by_key_.end()) {
          problems.push_back({"missing-parent",
                              "snapshot " + Quote(key) + " has unknown parent " + Quote(r.parent)});
        } else if (p->second.record.kind != SnapshotKind::kCommitted) {
          problems.push_back({"parent-not-committed", "snapshot " + Quote(key) + " has parent " +
                                                          Quote(r.parent) +
                                                          " that is not committed"});
        }
      }
      if (r.id >= next_id_) {
        problems.push_back(
            {"id-counter", "snapshot id " + std::to_string(r.id) + " is not below the id counter"});
      }
    }
    // 3. The persisted children index must equal the parent pointers.
    ASSIGN_OR_RETURN(auto index, store_->LoadChildren());
    std::set<metadata::ChildLink> stored(index.begin(), index.end());
    std::set<metadata::ChildLink> expected;
    for (const auto& [ref, e] : by_key_) {
      if (!e.record.parent.empty()) {
        expected.insert({e.record.snapshotter, e.record.parent, e.record.key});
      }
    }
    metadata::Batch fix;
    bool need_fix = false;
    for (const auto& pc : stored) {
      if (expected.count(pc) != 0) continue;
      problems.push_back({"children-index",
                          "stale index entry " + Quote(pc.parent) + " -> " + Quote(pc.child),
                          repair});
      fix.RemoveChild(pc.snapshotter, pc.parent, pc.child);
      need_fix = true;
    }
    for (const auto& pc : expected) {
      if (stored.count(pc) != 0) continue;
      problems.push_back({"children-index",
                          "missing index entry " + Quote(pc.parent) + " -> " + Quote(pc.child),
                          repair});
      fix.AddChild(pc.snapshotter, pc.parent, pc.child);
      need_fix = true;
    }
    if (repair && need_fix) RETURN_IF_ERROR(store_->Commit(fix));
    return problems;
  }

  bool IsRemote(const std::string& ns, const std::string& key) override {
    std::shared_lock lock(mu_);
    auto it = by_key_.find(Ref(ns, key));
    return it != by_key_.end() && it->second.record.labels.count(kLabelLazySource) != 0;
  }

  Result<std::string> FsPath(const std::string& ns, const std::string& key) override {
    std::shared_lock lock(mu_);
    auto it = by_key_.find(Ref(ns, key));
    if (it == by_key_.end()) return NotFoundError(key);
    return UpperPath(it->second.record.id);
  }

 private:
  struct Entry {
    SnapshotRecord record;
    int children = 0;     // committed children plus children being created
    uint64_t ticket = 0;  // store ticket of the last write of this record
  };

  static Status NotFoundError(const std::string& key) {
    return Status::NotFound("snapshot " + Quote(key) + " does not exist");
  }

  // Runs `read` on the record of `key` under the shared lock, then waits until the
  // record's last write is durable, so nothing a crash could undo is ever shown.
  // NotFound when absent, reported only once every write so far is durable (the
  // absence may come from a Remove).
  template <typename Read>
  Status ReadRecord(const std::string& ns, const std::string& key, Read read) {
    uint64_t ticket = 0;
    bool missing = false;
    {
      std::shared_lock lock(mu_);
      RETURN_IF_ERROR(CheckOpen());
      auto it = by_key_.find(Ref(ns, key));
      if (it == by_key_.end()) {
        ticket = store_->LastTicket();
        missing = true;
      } else {
        ticket = it->second.ticket;
        RETURN_IF_ERROR(read(it->second.record));
      }
    }
    if (missing) return NotFoundWhenDurable(key, ticket);
    return store_->WaitDurable(ticket);
  }

  // NotFound from inside a locked section: releases `lock` (shared or unique) and
  // reports the absence once every write so far is durable, since it may come from a
  // Remove that is not yet.
  template <typename Lock>
  Status NotFoundUnlocking(Lock& lock, const std::string& key) {
    uint64_t latest = store_->LastTicket();
    lock.unlock();
    return NotFoundWhenDurable(key, latest);
  }

  // NotFound for a read, reported only once every write so far is durable: the
  // absence may come from a Remove that must not be visible before it is. Call
  // without holding mu_, with a ticket read under it.
  Status NotFoundWhenDurable(const std::string& key, uint64_t ticket) {
    RETURN_IF_ERROR(store_->WaitDurable(ticket));
    return NotFoundError(key);
  }

  Status CheckOpen() const {
    if (closed_) return Status::Unavailable("snapshotter is closed");
    return Status::Ok();
  }

  // The in-memory index key of snapshot `key` under snapshotter name `ns`.
  static std::string Ref(const std::string& ns, const std::string& key) {
    return std::to_string(ns.size()) + ":" + ns + key;
  }

  std::string SnapshotDir(uint64_t id) const { return snapshots_dir_ + "/" + std::to_string(id); }
  std::string UpperPath(uint64_t id) const { return SnapshotDir(id) + "/fs"; }
  std::string WorkPath(uint64_t id) const { return SnapshotDir(id) + "/work"; }

  Result<std::vector<Mount>> CreateSnapshot(const std::string& ns, SnapshotKind kind,
                                            const std::string& key, const std::string& parent,
                                            const Labels& labels) {
    if (key.empty()) return Status::InvalidArgument("snapshot key must not be empty");
    RETURN_IF_ERROR(ValidateLabels(labels));
    ASSIGN_OR_RETURN(std::optional<RootOwner> owner, MappedRootOwner(labels));
    const std::string ref = Ref(ns, key);
    const std::string parent_ref = Ref(ns, parent);
    SnapshotRecord r;
    uint64_t parent_id = 0;
    // 1. Under the lock: validate, take an id, reserve the key and pin the parent (its
    //    child count includes children being created, so it cannot be removed).
    {
      std::unique_lock lock(mu_);
      RETURN_IF_ERROR(CheckOpen());
      // As containerd: the parent is checked before the key.
      auto p = parent.empty() ? by_key_.end() : by_key_.find(parent_ref);
      if (!parent.empty()) {
        if (p == by_key_.end()) {
          return Status::NotFound("parent snapshot " + Quote(parent) + " does not exist");
        }
        if (p->second.record.kind != SnapshotKind::kCommitted) {
          return Status::InvalidArgument("parent " + Quote(parent) + " is not committed snapshot");
        }
      }
      if (by_key_.count(ref) != 0 || creating_.count(ref) != 0) {
        return Status::AlreadyExists("snapshot " + Quote(key) + ": already exists");
      }
      if (p != by_key_.end()) {
        parent_id = p->second.record.id;
        p->second.children++;
      }
      r.snapshotter = ns;
      r.key = key;
      r.id = next_id_++;
      r.kind = kind;
      r.parent = parent;
      r.labels = labels;
      DropEmptyLabels(r.labels);
      r.created_unix_nanos = r.updated_unix_nanos = NowUnixNanos();
      creating_.emplace(ref, r.id);
    }

    // 2. Without the lock: directories first, then the record. A crash in between
    //    leaves an orphan directory that start-up removes. (A power loss may still
    //    lose the directories of a durable record: start-up makes them again.)
    Status made = kind == SnapshotKind::kActive && PlaceSpare(r.id)
                      ? SetRootOwner(r.id, kind, parent_id, owner)
                      : MakeSnapshotDirs(r.id, kind, parent_id, owner);

    // 3. Under the lock again: write the record, or undo the reservation.
    std::vector<Mount> mounts;
    uint64_t ticket = 0;
    {
      std::unique_lock lock(mu_);
      auto undo = [&](const Status& why) {
        creating_.erase(ref);
        if (!parent.empty()) by_key_.find(parent_ref)->second.children--;
        fs::RemoveAll(SnapshotDir(r.id)).ok();
        return why;
      };
      if (!made.ok()) return undo(made.WithContext("failed to create snapshot " + Quote(key)));
      if (by_key_.count(ref) != 0) {  // cannot happen: the ref was reserved
        return undo(Status::Internal("snapshot " + Quote(key) + " appeared during creation"));
      }
      metadata::Batch batch;
      batch.PutSnapshot(r);
      if (!parent.empty()) batch.AddChild(ns, parent, key);
      batch.SetNextSnapshotId(next_id_);
      auto applied = store_->Apply(batch);
      if (!applied.ok()) return undo(applied.status());
      ticket = *applied;
      creating_.erase(ref);
      auto inserted = by_key_.emplace(ref, Entry{std::move(r), 0, ticket});
      ASSIGN_OR_RETURN(mounts, MountsLocked(inserted.first->second.record));
    }
    RETURN_IF_ERROR(store_->WaitDurable(ticket));
    return mounts;
  }

  LayerSource* SourceNamed(const std::string& name) const {
    for (LayerSource* s : sources_) {
      if (s->name() == name) return s;
    }
    return nullptr;
  }

  // Asks the sources to serve the layer of active snapshot `key`; on success commits it
  // as the target and returns AlreadyExists (containerd then skips the layer). OK when
  // no source can serve it: the snapshot stays a normal active one.
  Status PrepareRemote(const std::string& ns, const std::string& key, const std::string& parent,
                       const Labels& labels, const RemoteLayer& layer) {
    ASSIGN_OR_RETURN(std::string mountpoint, FsPath(ns, key));
    for (LayerSource* source : sources_) {
      Status mounted = source->Mount(layer, mountpoint);
      if (!mounted.ok()) {
        if (mounted.code() != Code::kFailedPrecondition && mounted.code() != Code::kUnimplemented) {
          spdlog::warn("lazy source {} cannot serve layer {} of {}: {}", source->name(),
                       layer.layer_digest, layer.image_ref, mounted.ToString());
        }
        continue;
      }
      Labels committed = labels;
      committed[kLabelRemote] = "remote snapshot";
      committed[kLabelLazySource] = std::string(source->name());
      Status s = CommitSnapshot(ns, layer.target, key, committed, parent, /*measure_usage=*/false);
      if (!s.ok()) {
        (void)source->Unmount(mountpoint, UnmountReason::kRemoved);
        (void)Remove(ns, key);
        if (!s.IsAlreadyExists()) return s.WithContext("commit remote snapshot");
      }
      spdlog::info("layer {} of {} served lazily by {} as {}", layer.layer_digest, layer.image_ref,
                   source->name(), layer.target);
      return Status::AlreadyExists("target snapshot " + Quote(layer.target) + ": already exists");
    }
    return Status::Ok();
  }

  struct RootOwner {
    uint32_t uid;
    uint32_t gid;
  };

  // The host ids of the container's root under containerd's uidmapping/gidmapping
  // labels; nullopt without them. InvalidArgument when only one is given, when either
  // is malformed or when it does not map container id 0.
  static Result<std::optional<RootOwner>> MappedRootOwner(const Labels& labels) {
    auto uid = labels.find(kLabelUidMapping);
    auto gid = labels.find(kLabelGidMapping);
    if (uid == labels.end() && gid == labels.end()) return std::optional<RootOwner>();
    if (uid == labels.end() || gid == labels.end()) {
      return Status::InvalidArgument(std::string("labels ") + kLabelUidMapping + " and " +
                                     kLabelGidMapping + " must be given together");
    }
    auto uids = ParseIdMapList(uid->second);
    if (!uids.ok()) return uids.status().WithContext(kLabelUidMapping);
    auto gids = ParseIdMapList(gid->second);
    if (!gids.ok()) return gids.status().WithContext(kLabelGidMapping);
    auto root_uid = HostIdOf(*uids, 0);
    auto root_gid = HostIdOf(*gids, 0);
    if (!root_uid.ok() || !root_gid.ok()) {
      return Status::InvalidArgument(
          "user namespace labels do not map the container's root (id 0)");
    }
    return std::optional<RootOwner>(RootOwner{*root_uid, *root_gid});
  }

  Status MakeSnapshotDirs(uint64_t id, SnapshotKind kind, uint64_t parent_id,
                          const std::optional<RootOwner>& owner = std::nullopt) {
    std::string dir = SnapshotDir(id);
    if (fs::Exists(dir)) RETURN_IF_ERROR(fs::RemoveAll(dir));  // stale leftover
    RETURN_IF_ERROR(fs::MakeDir(dir, 0700));
    RETURN_IF_ERROR(fs::MakeDir(UpperPath(id), 0755));
    if (kind == SnapshotKind::kActive) RETURN_IF_ERROR(fs::MakeDir(WorkPath(id), 0711));
    return SetRootOwner(id, kind, parent_id, owner);
  }

  // Moves a spare directory into place as the directories of active snapshot `id`.
  // False when no spare is ready or the move failed: make them instead.
  bool PlaceSpare(uint64_t id) {
    std::string spare;
    {
      std::lock_guard<std::mutex> lock(spare_mu_);
      if (spares_.empty()) return false;
      spare = std::move(spares_.front());
      spares_.pop_front();
      // The maker refills in batches: one wake-up per half a pool, not per Prepare.
      if (spares_.size() == SpareRefillLevel()) spare_cv_.notify_one();
    }
    if (::rename(spare.c_str(), SnapshotDir(id).c_str()) != 0) {
      // A stale directory of this id (rename refuses non-empty targets): the slow path
      // removes it.
      int err = errno;
      spdlog::debug("spare {} not used: {}", spare, std::strerror(err));
      fs::RemoveAll(spare).ok();
      return false;
    }
    return true;
  }

  // Keeps spare_directories empty snapshot directories ready under <root>/spares.
  void SpareLoop() {
    ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 19);
    const size_t target = static_cast<size_t>(options_.spare_directories);
    uint64_t next = 1;
    std::unique_lock<std::mutex> lock(spare_mu_);
    for (;;) {
      if (spares_.size() >= target) {
        spare_cv_.wait(lock, [&] { return stop_spares_ || spares_.size() <= SpareRefillLevel(); });
      }
      if (stop_spares_) return;
      std::string dir = spares_dir_ + "/" + std::to_string(next++);
      lock.unlock();
      Status made = fs::MakeDir(dir, 0700);
      if (made.ok()) made = fs::MakeDir(dir + "/fs", 0755);
      if (made.ok()) made = fs::MakeDir(dir + "/work", 0711);
      lock.lock();
      if (made.ok()) {
        spares_.push_back(std::move(dir));
        continue;
      }
      spdlog::warn("cannot make a spare snapshot directory (retrying in 10 s): {}",
                   made.ToString());
      lock.unlock();
      fs::RemoveAll(dir).ok();
      lock.lock();
      spare_cv_.wait_for(lock, std::chrono::seconds(10), [&] { return stop_spares_; });
    }
  }

  size_t SpareRefillLevel() const { return static_cast<size_t>(options_.spare_directories) / 2; }

  // The owner of a new snapshot's root directory (fs/, and work/ for an active one).
  Status SetRootOwner(uint64_t id, SnapshotKind kind, uint64_t parent_id,
                      const std::optional<RootOwner>& owner) {
    if (parent_id != 0) {
      // The new layer's root takes the owner of the parent's root, so a container's
      // "/" keeps its owner across layers.
      struct stat st;
      if (::stat(UpperPath(parent_id).c_str(), &st) != 0) {
        return Status::FromErrno(errno, "stat " + UpperPath(parent_id));
      }
      if (!owner && (st.st_uid != 0 || st.st_gid != 0)) {
        if (::lchown(UpperPath(id).c_str(), st.st_uid, st.st_gid) != 0) {
          return Status::FromErrno(errno, "chown " + UpperPath(id));
        }
      }
    }
    if (owner) {
      // A user-namespaced container writes here as its mapped root.
      for (const std::string& d : {UpperPath(id), WorkPath(id)}) {
        if (d == WorkPath(id) && kind != SnapshotKind::kActive) continue;
        if (::lchown(d.c_str(), owner->uid, owner->gid) != 0)
          return Status::FromErrno(errno, "chown " + d);
      }
    }
    return Status::Ok();
  }

  // Mounts of an active or view record, exactly as containerd's overlayfs snapshotter.
  Result<std::vector<Mount>> MountsLocked(const SnapshotRecord& r) const {
    std::vector<uint64_t> parent_ids;
    for (std::string p = r.parent; !p.empty();) {
      auto it = by_key_.find(Ref(r.snapshotter, p));
      if (it == by_key_.end()) {
        return Status::NotFound("missing parent " + Quote(p) + " of snapshot " + Quote(r.key));
      }
      parent_ids.push_back(it->second.record.id);
      p = it->second.record.parent;
    }
    // containerd 2.x mounts with these options idmapped (see kLabelUidMapping).
    std::vector<std::string> idmap_options;
    if (auto u = r.labels.find(kLabelUidMapping), g = r.labels.find(kLabelGidMapping);
        u != r.labels.end() && g != r.labels.end()) {
      idmap_options = {"uidmap=" + u->second, "gidmap=" + g->second};
    }
    if (parent_ids.empty()) {
      std::vector<std::string> options = {r.kind == SnapshotKind::kView ? "ro" : "rw", "rbind"};
      options.insert(options.end(), idmap_options.begin(), idmap_options.end());
      return std::vector<Mount>{Mount{"bind", UpperPath(r.id), "", std::move(options)}};
    }
    if (r.kind == SnapshotKind::kView && parent_ids.size() == 1) {
      std::vector<std::string> options = {"ro", "rbind"};
      options.insert(options.end(), idmap_options.begin(), idmap_options.end());
      return std::vector<Mount>{Mount{"bind", UpperPath(parent_ids[0]), "", std::move(options)}};
    }
    std::vector<std::string> options;
    if (index_off_) options.emplace_back("index=off");
    if (userxattr_) options.emplace_back("userxattr");
    if (r.kind == SnapshotKind::kActive) {
      options.push_back("workdir=" + WorkPath(r.id));
      options.push_back("upperdir=" + UpperPath(r.id));
    }
    std::string lower = "lowerdir=";
    for (size_t i = 0; i < parent_ids.size(); i++) {
      if (i > 0) lower += ":";
      lower += UpperPath(parent_ids[i]);
    }
    options.push_back(std::move(lower));
    options.insert(options.end(), idmap_options.begin(), idmap_options.end());
    return std::vector<Mount>{Mount{"overlay", "overlay", "", std::move(options)}};
  }

  // Entries of <root>/snapshots whose removal is durable and that no record uses.
  Result<std::vector<std::string>> FindOrphans() {
    // List first, then read the live ids: an id whose directory we listed was
    // allocated under the lock before the directory was made, so once we hold the
    // lock it is either a record, a creation in flight, or a failed creation whose
    // directory is being removed anyway.
    ASSIGN_OR_RETURN(std::vector<std::string> names, fs::ListDir(snapshots_dir_));
    std::unordered_set<std::string> live;
    uint64_t ticket = 0;
    {
      std::shared_lock lock(mu_);
      for (const auto& [ref, e] : by_key_) live.insert(std::to_string(e.record.id));
      // Directories of snapshots being created exist before their records.
      for (const auto& [ref, id] : creating_) live.insert(std::to_string(id));
      ticket = store_->LastTicket();
    }
    // A directory may go only once the removal of its record is durable.
    RETURN_IF_ERROR(store_->WaitDurable(ticket));
    std::vector<std::string> orphans;
    for (const auto& name : names) {
      if (live.count(name) == 0) orphans.push_back(name);
    }
    return orphans;
  }

  void RemoverLoop() {
    // Deleting trees is background work: lowest CPU and I/O priority for this thread,
    // so it does not slow the calls clients wait for.
    ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 19);
    constexpr int kIoprioClassIdle = 3;
    ::syscall(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, ::gettid(), kIoprioClassIdle << 13);
    // Removal waits for a quiet moment: deleting directories (and the discards the file
    // system may issue for them) competes with the fsyncs clients wait for. It goes
    // ahead anyway once kMaxDeferredRemovals are queued.
    constexpr auto kQuietPeriod = std::chrono::milliseconds(200);
    uint64_t last_ticket = store_->LastTicket();
    auto last_activity = std::chrono::steady_clock::now();
    std::unique_lock<std::mutex> lock(remove_mu_);
    for (;;) {
      remove_cv_.wait(lock, [this] { return stop_remover_ || !remove_queue_.empty(); });
      if (stop_remover_) return;
      if (remove_queue_.size() < kMaxDeferredRemovals) {
        auto now = std::chrono::steady_clock::now();
        if (uint64_t t = store_->LastTicket(); t != last_ticket) {
          last_ticket = t;
          last_activity = now;
        }
        if (now - last_activity < kQuietPeriod) {
          remove_cv_.wait_for(lock, kQuietPeriod - (now - last_activity));
          continue;
        }
      }
      // The id stays queued until its directory is gone, so that Check does not
      // report a directory being deleted as an orphan. Only this thread pops.
      uint64_t id = remove_queue_.front();
      lock.unlock();
      (void)strata::Unmount(UpperPath(id), /*detach=*/true);
      Status s = fs::RemoveAll(SnapshotDir(id));
      if (!s.ok()) spdlog::warn("background removal of {}: {}", SnapshotDir(id), s.ToString());
      lock.lock();
      remove_queue_.pop_front();
      // On failure the directory is left to Cleanup and shows up in Check again.
      removed_ids_.erase(id);
    }
  }

  const std::string root_;
  std::string snapshots_dir_;
  metadata::Store* const store_;
  const OverlayOptions options_;
  bool index_off_ = false;
  bool userxattr_ = false;

  mutable std::shared_mutex mu_;
  bool closed_ = false;
  std::unordered_map<std::string, Entry> by_key_;
  // Prepare/View calls in flight: reserved ref -> allocated id.
  std::unordered_map<std::string, uint64_t> creating_;
  uint64_t next_id_ = 1;

  std::mutex remove_mu_;
  std::condition_variable remove_cv_;
  std::deque<uint64_t> remove_queue_;
  std::unordered_set<uint64_t> removed_ids_;  // records gone, directories not yet
  static constexpr size_t kMaxDeferredRemovals = 4096;

  bool stop_remover_ = false;
  std::thread remover_;

  std::string spares_dir_;
  std::mutex spare_mu_;
  std::condition_variable spare_cv_;
  std::deque<std::string> spares_;  // ready to be renamed into place
  bool stop_spares_ = false;
  std::thread spare_maker_;

  std::vector<LayerSource*> sources_;  // set before serving; read-only afterwards
};

// The Snapshotter interface for one snapshotter name.
class NamedSnapshotter : public Snapshotter {
 public:
  NamedSnapshotter(OverlayImpl* impl, std::string name) : impl_(impl), name_(std::move(name)) {}

  Result<Info> Stat(const std::string& key) override { return impl_->Stat(name_, key); }
  Result<Info> Update(const Info& info, const std::vector<std::string>& fieldpaths) override {
    return impl_->Update(name_, info, fieldpaths);
  }
  Result<Usage> GetUsage(const std::string& key) override { return impl_->GetUsage(name_, key); }
  Result<std::vector<Mount>> Mounts(const std::string& key) override {
    return impl_->Mounts(name_, key);
  }
  Result<std::vector<Mount>> Prepare(const std::string& key, const std::string& parent,
                                     const Labels& labels) override {
    return impl_->Create(name_, SnapshotKind::kActive, key, parent, labels);
  }
  Result<std::vector<Mount>> View(const std::string& key, const std::string& parent,
                                  const Labels& labels) override {
    return impl_->Create(name_, SnapshotKind::kView, key, parent, labels);
  }
  Status Commit(const std::string& name, const std::string& key, const Labels& labels,
                const std::string& parent) override {
    return impl_->Commit(name_, name, key, labels, parent);
  }
  Status Remove(const std::string& key) override { return impl_->Remove(name_, key); }
  Status Walk(const std::function<Status(const Info&)>& fn,
              const std::vector<std::string>& filters) override {
    return impl_->Walk(name_, fn, filters);
  }
  Status Cleanup() override { return impl_->Cleanup(); }
  Status Close() override { return Status::Ok(); }

 private:
  OverlayImpl* impl_;
  std::string name_;
};

// No cache of handles: a shared map would put a lock on every request and grow with
// every name a client invents.
std::unique_ptr<Snapshotter> OverlayImpl::ForName(const std::string& name) {
  return std::make_unique<NamedSnapshotter>(this, name);
}

}  // namespace

Result<std::unique_ptr<Overlay>> Overlay::Open(const std::string& root, metadata::Store* store,
                                               OverlayOptions options) {
  auto impl = std::make_unique<OverlayImpl>(root, store, options);
  RETURN_IF_ERROR(impl->Load());
  return std::unique_ptr<Overlay>(std::move(impl));
}

}  // namespace strata::snapshotter
