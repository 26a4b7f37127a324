// The overlayfs backend: each snapshot is <root>/snapshots/<id>/{fs,work}, where <id>
// is an internal number (client keys never become paths). Records live in the shared
// metadata::Store; an in-memory index mirrors them for fast reads.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "metadata/store.h"
#include "snapshotter/layer_source.h"
#include "snapshotter/snapshotter.h"

namespace strata::snapshotter {

// containerd 2.x's user-namespace labels on Prepare/View ("C:H:L[,C:H:L...]"): with
// both present, the snapshot's directories belong to the mapped root and its mounts
// carry "uidmap=" / "gidmap=" options, as containerd's overlayfs snapshotter does for a
// proxy plugin with capabilities = ["remap-ids"]. containerd then mounts the layers
// idmapped instead of chowning them.
inline constexpr char kLabelUidMapping[] = "containerd.io/snapshot/uidmapping";
inline constexpr char kLabelGidMapping[] = "containerd.io/snapshot/gidmapping";

struct OverlayOptions {
  // Remove directories of removed snapshots in a background thread (otherwise only
  // Cleanup removes them).
  bool background_cleanup = true;
  // Empty snapshot directories (fs/ and work/) kept ready in <root>/spares by a
  // background thread, so that Prepare renames one into place instead of creating
  // three directories while the client waits. 0 disables the pool.
  int spare_directories = 8;
};

// One inconsistency found by Check.
struct Problem {
  std::string kind;    // "orphan-directory", "missing-directory", "children-index", ...
  std::string detail;  // what and where
  bool repaired = false;
};

// Snapshots are grouped by the snapshotter name clients address them with (the
// `snapshotter` field of every request; containerd sends its proxy plugin's name).
// Each name is a separate key space with its own parents and its own Walk. This keeps
// containerd's garbage collector, which removes every snapshot of its snapshotter
// that containerd did not create, away from snapshots made under other names.
class Overlay {
 public:
  virtual ~Overlay() = default;

  // Opens the backend on `root` (creating <root>/snapshots) with metadata in `store`,
  // which must outlive it. Start-up reconciles directories with metadata: orphan
  // directories (from a crash mid-Prepare or mid-Remove) are deleted, and records whose
  // directories a power loss took get them made again, empty (logged).
  static Result<std::unique_ptr<Overlay>> Open(const std::string& root, metadata::Store* store,
                                               OverlayOptions options = {});

  // The snapshots addressed as `name`: a small handle, cheap to make per request, that
  // must not outlive the Overlay. Its Close() is a no-op (close the Overlay).
  virtual std::unique_ptr<Snapshotter> ForName(const std::string& name) = 0;

  // Deletes directories no snapshot (under any name) refers to any more.
  virtual Status Cleanup() = 0;

  // Stops background work; later calls fail with Unavailable. Twice is fine.
  virtual Status Close() = 0;

  // Compares metadata with directories and the children index; with `repair`, fixes
  // what can be fixed (orphans removed, missing directories recreated empty, index
  // rebuilt). Returns every problem found.
  virtual Result<std::vector<Problem>> Check(bool repair) = 0;

  // The directory of a snapshot's filesystem (for tests and the lazy loaders).
  virtual Result<std::string> FsPath(const std::string& name, const std::string& key) = 0;

  // Whether `key` (under `name`) is a remote snapshot, served by a layer source: its
  // Remove unmounts it, which waits for that source. False when absent. Does not
  // wait for durability.
  virtual bool IsRemote(const std::string& name, const std::string& key) = 0;

  // Adds a lazy format asked by remote-snapshot Prepares (see layer_source.h), after
  // those added before. Not owned; must outlive the Overlay. Add sources before
  // serving requests.
  virtual void AddLayerSource(LayerSource* source) = 0;

  // Mounts again, through their sources, the remote snapshots recorded in the store
  // (after a restart; Close unmounts them). Returns how many were mounted; a snapshot
  // whose source is missing or fails is logged and left unmounted.
  virtual Result<int> RestoreRemoteLayers() = 0;
};

}  // namespace strata::snapshotter
