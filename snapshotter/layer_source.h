// The remote-snapshot hook: how a lazy format serves a layer without unpacking it.
//
// containerd's remote snapshot protocol (used by stargz-snapshotter, and by containerd
// 1.6's CRI and `ctr-remote image rpull` unchanged): while unpacking an image,
// containerd calls
//
//   Prepare(key = "extract-… <chain id>", parent = <parent chain id>, labels = {
//     "containerd.io/snapshot.ref": <chain id>          the name to commit under
//     "containerd.io/snapshot/cri.image-ref": <ref>     (CRI) or
//     "containerd.io/snapshot/remote/stargz.reference"  (ctr-remote)
//     "containerd.io/snapshot/cri.layer-digest": <digest> (or .../stargz.digest)
//     "containerd.io/snapshot/cri.image-layers": <digests, comma-separated>
//     + the layer descriptor's annotations (e.g. the eStargz TOC digest) })
//
// If the snapshotter can serve the layer remotely, it mounts it at the snapshot's
// directory, commits it under the target name and answers AlreadyExists — containerd
// then skips downloading and applying that layer. Otherwise Prepare answers as usual
// and containerd unpacks the layer itself.
//
// A LayerSource is one lazy format's answer to "can you serve this layer? then mount
// it here". The overlay snapshotter asks its sources in the order they were added; the
// first that mounts the layer wins. snapshotter/ knows no format: sources live in
// lazy/<format>/ and are added by stratad.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace strata::snapshotter {

inline constexpr char kLabelTargetSnapshotRef[] = "containerd.io/snapshot.ref";
// Marks a committed snapshot as remote (stargz-snapshotter's label and value).
inline constexpr char kLabelRemote[] = "containerd.io/snapshot/remote";
// Which LayerSource serves a remote snapshot (so that it can be mounted again after a
// restart).
inline constexpr char kLabelLazySource[] = "strata.io/lazy-source";

// What a remote-snapshot Prepare says about its layer.
struct RemoteLayer {
  std::string target;        // containerd.io/snapshot.ref: the chain id to commit under
  std::string image_ref;     // "registry/repo:tag" the layer belongs to
  std::string layer_digest;  // "sha256:…" of the layer blob
  std::vector<std::string> image_layers;      // every layer of the image, in order
  std::map<std::string, std::string> labels;  // all labels (annotations ride here)
};

// The remote layer described by Prepare labels, or nullopt when they do not ask for a
// remote snapshot (no snapshot.ref, or no image reference / layer digest in either the
// CRI or the ctr-remote spelling).
std::optional<RemoteLayer> ParseRemoteLayer(const std::map<std::string, std::string>& labels);

// Why a layer is unmounted.
enum class UnmountReason {
  kRemoved,   // its snapshot is gone (or was never committed): its cache may go too
  kShutdown,  // the daemon stops; the layer is mounted again at the next start
};

class LayerSource {
 public:
  virtual ~LayerSource() = default;

  // Short name recorded on snapshots it serves ("stargz").
  virtual std::string_view name() const = 0;

  // Mounts `layer` read-only at `mountpoint` (an existing empty directory, or, after a
  // restart, whatever the source's earlier run left mounted there), fetching only what
  // it needs to know the layer's files. FailedPrecondition or Unimplemented
  // when the layer is not in this source's format (the next source is asked); any
  // other error is logged and the layer is unpacked normally.
  virtual Status Mount(const RemoteLayer& layer, const std::string& mountpoint) = 0;

  // Unmounts what Mount mounted at `mountpoint`. OK when nothing is mounted there.
  virtual Status Unmount(const std::string& mountpoint, UnmountReason reason) = 0;
};

}  // namespace strata::snapshotter
