// Snapshotter: containerd's snapshot model, the centre of strata.
//
// A snapshot is a directory tree that a container sees as its root filesystem (or
// one layer of it). Snapshots come in three kinds:
//
//   active     writable; created by Prepare(key, parent). Its Mounts() give a
//              read-write view of parent + its own changes.
//   view       read-only; created by View(key, parent). Cheap way to look at a
//              committed snapshot; it can never be committed.
//   committed  immutable; created by Commit(name, key), which turns the active
//              snapshot `key` into the committed snapshot `name` (the key is gone
//              afterwards). Only committed snapshots can be parents.
//
// Keys and names share one namespace: a key names an active or view snapshot, a name
// a committed one, and no two snapshots share a string. Keys are opaque data: any
// bytes (containerd sends "<namespace>/<seq>/<key>"), never used as paths.
//
// Unpacking an image of two layers, as containerd does it:
//
//   mounts = Prepare("ns/1/extract-a", "")        // empty active snapshot
//   <mount, untar layer A into it, unmount>
//   Commit("ns/2/sha256:chainA", "ns/1/extract-a")
//   mounts = Prepare("ns/3/extract-b", "ns/2/sha256:chainA")  // A below, writable above
//   <mount, apply layer B (whiteouts delete from A), unmount>
//   Commit("ns/4/sha256:chainAB", "ns/3/extract-b")
//
// Running a container on that image:
//
//   mounts = Prepare("ns/5/ctr-1", "ns/4/sha256:chainAB")  // container rootfs
//   ... the container writes; its changes land in ctr-1 only ...
//   Remove("ns/5/ctr-1")                                    // when the container ends
//
// A snapshot with children cannot be removed (FailedPrecondition); remove from the top
// down. Remove only deletes the record: the directories go when Cleanup runs (or in the
// background), so Remove stays fast.
//
// Errors follow containerd's classes: NotFound (unknown key or parent), AlreadyExists
// (key or commit name taken), InvalidArgument (parent not committed, bad label or field
// path), FailedPrecondition (wrong kind for the operation, removal with children).
//
// Implementations are safe for concurrent use from many threads; every change is
// durable before the call returns.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/mount.h"
#include "core/status.h"

namespace strata::snapshotter {

enum class Kind : int { kUnknown = 0, kView = 1, kActive = 2, kCommitted = 3 };

// "view", "active", "committed" (the strings containerd's filters match on).
std::string_view KindName(Kind kind);

using Labels = std::map<std::string, std::string>;

// The largest len(key) + len(value) a label may have, as in containerd.
inline constexpr size_t kMaxLabelSize = 4096;

// InvalidArgument when a label pair is larger than kMaxLabelSize.
Status ValidateLabels(const Labels& labels);

struct Info {
  std::string name;    // the key (active, view) or name (committed)
  std::string parent;  // committed parent's name, empty for none
  Kind kind = Kind::kUnknown;
  Labels labels;
  int64_t created_unix_nanos = 0;
  int64_t updated_unix_nanos = 0;
};

struct Usage {
  int64_t size_bytes = 0;
  int64_t inodes = 0;
};

class Snapshotter {
 public:
  virtual ~Snapshotter() = default;

  // Returns the snapshot's info. NotFound if `key` is unknown.
  virtual Result<Info> Stat(const std::string& key) = 0;

  // Changes labels of `info.name` and returns the new info. `fieldpaths` may hold
  // "labels" (replace all labels) and "labels.<k>" (set label k from info.labels, or
  // delete it when absent there); no paths replaces all labels. Any other path is
  // InvalidArgument. Updated becomes now; Created never changes.
  virtual Result<Info> Update(const Info& info, const std::vector<std::string>& fieldpaths) = 0;

  // Disk usage: measured now for active snapshots, as stored at commit for committed
  // ones. NotFound if unknown.
  virtual Result<Usage> GetUsage(const std::string& key) = 0;

  // The mounts of an active or view snapshot (FailedPrecondition for a committed one).
  virtual Result<std::vector<Mount>> Mounts(const std::string& key) = 0;

  // Creates an active snapshot `key` on top of committed `parent` (empty: no parent)
  // and returns its mounts.
  virtual Result<std::vector<Mount>> Prepare(const std::string& key, const std::string& parent,
                                             const Labels& labels) = 0;

  // Creates a read-only view `key` of committed `parent` and returns its mounts.
  virtual Result<std::vector<Mount>> View(const std::string& key, const std::string& parent,
                                          const Labels& labels) = 0;

  // Turns active snapshot `key` into committed snapshot `name` with `labels`.
  // `parent` (containerd 2.2+) may name the parent: it must match the active
  // snapshot's parent, or give one to a snapshot prepared without (a rebase).
  virtual Status Commit(const std::string& name, const std::string& key, const Labels& labels,
                        const std::string& parent) = 0;

  // Removes snapshot `key` (any kind). FailedPrecondition if it has children.
  virtual Status Remove(const std::string& key) = 0;

  // Calls `fn` for every snapshot matching `filters` (containerd filter syntax, OR of
  // the strings). `fn` may call back into the snapshotter. Stops at the first error
  // `fn` returns and returns it.
  virtual Status Walk(const std::function<Status(const Info&)>& fn,
                      const std::vector<std::string>& filters) = 0;

  // Deletes directories no snapshot refers to any more.
  virtual Status Cleanup() = 0;

  // Releases resources; later calls fail with Unavailable. Calling it twice is fine.
  virtual Status Close() = 0;
};

}  // namespace strata::snapshotter
