#include "transfer/gc.h"

#include <spdlog/spdlog.h>

#include <cctype>
#include <ctime>
#include <deque>
#include <set>
#include <variant>

#include "core/quote.h"

namespace strata::transfer {


std::string FormatRfc3339(std::chrono::system_clock::time_point t) {
  time_t secs = std::chrono::system_clock::to_time_t(t);
  struct tm tm = {};
  ::gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

namespace {

using Node = std::variant<std::string, SnapshotRef>;  // content digest, or a snapshot

// The objects that `labels` refer to, per containerd's gc.ref label rules.
void LabelReferences(const Labels& labels, std::vector<Node>& out) {
  const std::string content_ref = kLabelGcRefContent;
  const std::string snapshot_ref = kLabelGcRefSnapshotPrefix;
  for (const auto& [key, value] : labels) {
    if (key.rfind(content_ref, 0) == 0) {
      if (key.size() == content_ref.size() || key[content_ref.size()] == '.' ||
          key[content_ref.size()] == '/') {
        out.emplace_back(value);
      }
    } else if (key.rfind(snapshot_ref, 0) == 0) {
      std::string snapshotter = key.substr(snapshot_ref.size());
      snapshotter = snapshotter.substr(0, snapshotter.find('/'));
      out.emplace_back(SnapshotRef{snapshotter, value});
    }
  }
}

// gc.root, or gc.expire still in the future.
bool IsLabelledRoot(const Labels& labels, std::chrono::system_clock::time_point now,
                    const std::string& what) {
  if (labels.contains(kLabelGcRoot)) return true;
  auto expire = labels.find(kLabelGcExpire);
  if (expire == labels.end()) return false;
  auto until = ParseRfc3339(expire->second);
  if (!until) {
    spdlog::info("gc: ignoring invalid {} value {} on {}", kLabelGcExpire, Quote(expire->second),
                 what);
    return false;
  }
  return *until > now;
}

// Orders `doomed` so that every snapshot comes before its parent.
std::vector<SnapshotRef> ChildrenFirst(const std::set<SnapshotRef>& doomed,
                                       const std::map<SnapshotRef, snapshotter::Info>& infos) {
  std::map<SnapshotRef, int> children;  // doomed children still to remove first
  for (const auto& ref : doomed) {
    const auto& parent = infos.at(ref).parent;
    SnapshotRef p{ref.snapshotter, parent};
    if (!parent.empty() && doomed.contains(p)) children[p]++;
  }
  std::deque<SnapshotRef> ready;
  for (const auto& ref : doomed) {
    if (children[ref] == 0) ready.push_back(ref);
  }
  std::vector<SnapshotRef> order;
  while (!ready.empty()) {
    SnapshotRef ref = ready.front();
    ready.pop_front();
    order.push_back(ref);
    const auto& parent = infos.at(ref).parent;
    SnapshotRef p{ref.snapshotter, parent};
    if (!parent.empty() && doomed.contains(p) && --children[p] == 0) ready.push_back(p);
  }
  return order;  // parents form a forest, so every doomed snapshot is in it
}

}  // namespace

Result<GcReport> CollectGarbage(ContentStore& content, ImageStore& images,
                                const GcOptions& options) {
  const auto now = options.now.value_or(std::chrono::system_clock::now());

  // Candidates are listed before roots: an object created after its listing is not a
  // candidate, and an image created before the image listing is seen as a root.
  std::map<SnapshotRef, snapshotter::Info> snapshots;
  for (const auto& [name, sn] : options.snapshotters) {
    RETURN_IF_ERROR(sn->Walk(
        [&, &name = name](const snapshotter::Info& info) {
          snapshots.emplace(SnapshotRef{name, info.name}, info);
          return Status::Ok();
        },
        {}));
  }
  ASSIGN_OR_RETURN(std::vector<ContentInfo> blobs, content.List({}));
  std::map<std::string, const ContentInfo*> blob_by_digest;
  for (const auto& b : blobs) blob_by_digest.emplace(b.digest, &b);
  ASSIGN_OR_RETURN(std::vector<Image> all_images, images.List({}));

  // Mark.
  std::vector<Node> pending;
  for (const auto& image : all_images) {
    pending.emplace_back(image.target.digest);
    LabelReferences(image.labels, pending);
  }
  for (const auto& b : blobs) {
    if (IsLabelledRoot(b.labels, now, b.digest) || content.IsProtected(b.digest)) {
      pending.emplace_back(b.digest);
    }
  }
  for (const auto& [ref, info] : snapshots) {
    if (IsLabelledRoot(info.labels, now, "snapshot " + Quote(ref.key))) pending.emplace_back(ref);
  }
  for (const auto& d : options.extra_content_roots) pending.emplace_back(d);
  for (const auto& s : options.extra_snapshot_roots) pending.emplace_back(s);

  std::set<std::string> live_content;
  std::set<SnapshotRef> live_snapshots;
  while (!pending.empty()) {
    Node node = std::move(pending.back());
    pending.pop_back();
    if (const auto* digest = std::get_if<std::string>(&node)) {
      auto it = blob_by_digest.find(*digest);
      if (it == blob_by_digest.end() || !live_content.insert(*digest).second) continue;
      LabelReferences(it->second->labels, pending);
    } else {
      const auto& ref = std::get<SnapshotRef>(node);
      auto it = snapshots.find(ref);
      if (it == snapshots.end() || !live_snapshots.insert(ref).second) continue;
      if (!it->second.parent.empty()) {
        pending.emplace_back(SnapshotRef{ref.snapshotter, it->second.parent});
      }
      LabelReferences(it->second.labels, pending);
    }
  }

  // Sweep.
  std::set<SnapshotRef> doomed_snapshots;
  for (const auto& [ref, info] : snapshots) {
    if (!live_snapshots.contains(ref)) doomed_snapshots.insert(ref);
  }
  GcReport report;
  for (const auto& ref : ChildrenFirst(doomed_snapshots, snapshots)) {
    if (options.dry_run) {
      report.snapshots.push_back(ref);
      continue;
    }
    Status s = options.snapshotters.at(ref.snapshotter)->Remove(ref.key);
    if (s.ok()) {
      report.snapshots.push_back(ref);
    } else if (!s.IsNotFound()) {
      report.errors.push_back(
          s.WithContext("remove snapshot " + Quote(ref.key) + " of " + Quote(ref.snapshotter)));
    }
  }
  for (const auto& b : blobs) {
    if (live_content.contains(b.digest)) continue;
    if (options.dry_run) {
      report.content.push_back(b.digest);
      report.content_bytes += b.size_bytes;
      continue;
    }
    Status s = content.Delete(b.digest, ContentStore::DeleteMode::kUnlessProtected);
    if (s.ok()) {
      report.content.push_back(b.digest);
      report.content_bytes += b.size_bytes;
    } else if (s.IsFailedPrecondition()) {
      report.kept_protected.push_back(b.digest);
    } else if (!s.IsNotFound()) {
      report.errors.push_back(s.WithContext("remove content " + b.digest));
    }
  }
  if (!options.dry_run && (!report.content.empty() || !report.snapshots.empty())) {
    spdlog::info("gc: removed {} blobs and {} snapshots ({} errors)", report.content.size(),
                 report.snapshots.size(), report.errors.size());
  }
  return report;
}

}  // namespace strata::transfer
