// Garbage collection of content and snapshots, with containerd's rules (metadata/gc.go):
// mark everything reachable from the roots, delete the rest.
//
// Roots:
//   - every image's target digest, and the gc.ref labels of every image;
//   - content and snapshots labelled "containerd.io/gc.root" (any value);
//   - content and snapshots labelled "containerd.io/gc.expire" with an RFC 3339 time
//     still in the future (containerd puts this label on leases; strata honours it on
//     objects, as a lease-free way to keep something for a while). A value that does
//     not parse is ignored;
//   - content the ContentStore protects as fresh (see content_store.h);
//   - GcOptions::extra_content_roots and extra_snapshot_roots.
// References (edges), from the labels of images, content and snapshots:
//   - "containerd.io/gc.ref.content" and "containerd.io/gc.ref.content.<anything>" (or
//     "/<anything>"): the value is a content digest (index -> manifests, manifest ->
//     config and layers);
//   - "containerd.io/gc.ref.snapshot.<snapshotter>" (optionally "/<anything>" after the
//     name): the value is the key of a snapshot of that snapshotter (config -> the
//     top snapshot of the unpacked chain);
//   - a snapshot's parent.
//
// Only snapshots of the snapshotter names given in GcOptions::snapshotters are read
// or removed; references into other names are ignored. Never pass the name containerd
// addresses strata by: containerd collects its own snapshots, and strata's collector
// must not remove what containerd still uses.
//
// Snapshots are removed through the Snapshotter interface, children before parents
// (their directories go when the snapshotter cleans up); content through
// ContentStore::Delete in kUnlessProtected mode, so that a blob a pull commits or
// finds while the collection runs survives it. Active and view snapshots are collected
// like committed ones when nothing refers to them: label a snapshot that must stay
// (a container's rootfs) with gc.root, or pass it as an extra root.
//
// Leases (containerd's leases service) are not implemented yet; fresh protection and
// gc.expire cover the pull that runs alongside a collection.
#pragma once

#include <chrono>
#include <compare>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/status.h"
#include "snapshotter/snapshotter.h"
#include "transfer/content_store.h"
#include "transfer/image_store.h"

namespace strata::transfer {

inline constexpr char kLabelGcRoot[] = "containerd.io/gc.root";
inline constexpr char kLabelGcExpire[] = "containerd.io/gc.expire";
inline constexpr char kLabelGcRefContent[] = "containerd.io/gc.ref.content";
inline constexpr char kLabelGcRefSnapshotPrefix[] = "containerd.io/gc.ref.snapshot.";

struct SnapshotRef {
  std::string snapshotter;
  std::string key;
  auto operator<=>(const SnapshotRef&) const = default;
};

struct GcOptions {
  // The snapshotters whose unreferenced snapshots may be removed, by the name their
  // references use. Not owned; each must stay valid during Collect.
  std::map<std::string, snapshotter::Snapshotter*> snapshotters;
  // Compute and report, delete nothing.
  bool dry_run = false;
  std::vector<std::string> extra_content_roots;
  std::vector<SnapshotRef> extra_snapshot_roots;
  // The time gc.expire labels are compared with; default: when the collection starts.
  std::optional<std::chrono::system_clock::time_point> now;
};

struct GcReport {
  // Removed (in a dry run: to be removed), in digest order.
  std::vector<std::string> content;
  // Sum of the sizes of `content`.
  int64_t content_bytes = 0;
  // Removed (in a dry run: to be removed), in removal order: children before parents.
  std::vector<SnapshotRef> snapshots;
  // Unreferenced content left alone because it became protected while the collection
  // ran.
  std::vector<std::string> kept_protected;
  // Removals that failed; the collection went on with the rest.
  std::vector<Status> errors;
};

// Runs one collection over `content`, `images` and the snapshotters in `options`.
// Returns an error (deleting nothing) when the objects cannot be listed; failures of
// single removals are in GcReport::errors. Safe to call concurrently with any other
// use of the stores.
Result<GcReport> CollectGarbage(ContentStore& content, ImageStore& images,
                                const GcOptions& options);

using ::strata::ParseRfc3339;  // core/clock.h
// Formats `t` as RFC 3339 in UTC with second precision ("2024-05-01T12:00:00Z").
std::string FormatRfc3339(std::chrono::system_clock::time_point t);

}  // namespace strata::transfer
