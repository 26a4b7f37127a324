// stargz::StargzSource — the snapshotter::LayerSource that serves eStargz, legacy
// stargz and zstd:chunked layers lazily: a remote-snapshot Prepare for such a layer
// mounts a FUSE filesystem (a StargzTree over the lazy engine's BlobReader) at the
// snapshot's directory instead of downloading and unpacking the layer.
//
// What Mount needs from the Prepare's labels (snapshotter::RemoteLayer):
//   - the image reference and the layer digest (where to read the blob);
//   - the layer's TOC digest annotation (containerd.io/snapshot/stargz/toc.digest) or,
//     for zstd:chunked, its manifest checksum annotation. A layer without either is
//     not lazy-capable: Mount answers FailedPrecondition without any request, and the
//     layer is unpacked the normal way.
// Then: one HEAD for the blob size, the footer and TOC (one or two ranged reads,
// verified against the digest), the mount, and the prefetch of the files before the
// layer's .prefetch.landmark in one merged request (and, if configured, a background
// fetch of the rest).
//
// Layers are shared: mounts of the same blob (the same layer in two namespaces or
// images) use one tree and one cache. A layer's cache is deleted when its last mount
// is unmounted with UnmountReason::kRemoved, and kept at kShutdown (the next start
// mounts it again from the cache).
//
// Unmount of a layer still in use: umount(2) refuses while files are open on the
// mount (FailedPrecondition, nothing changes); an overlay using it as a lower layer
// does not block the unmount, and the source then keeps serving the detached mount
// until its last user lets go.
//
// Thread safety: every method may be called concurrently.
#pragma once

#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "fuse/server.h"
#include "fuse/session_keeper.h"
#include "lazy/engine.h"
#include "lazy/stargz/tree.h"
#include "registry/client.h"
#include "snapshotter/layer_source.h"

namespace strata::lazy::stargz {

struct SourceOptions {
  OpenOptions open;  // TOC limits and tree options (the digests come from the labels)
  // How the FUSE mounts are made; fs_name and subtype are set by the source.
  fuse::MountOptions mount;
  // Fetch the landmark-prioritised files right after mounting.
  bool prefetch = true;
  // Then fetch the rest of the layer in the background (paused while reads wait), so
  // that the layer stops depending on the registry.
  bool background_fetch = true;
  // How long Mount waits for a dead server's mount left at the mount point to answer
  // before it is detached (see fuse::RecoverStaleMount).
  std::chrono::milliseconds stale_mount_probe = std::chrono::seconds(2);
  // When set, every mount's FUSE session is handed to this keeper, so that it outlives
  // the daemon (fuse/session_keeper.h): Unmount(kShutdown) then leaves the layer
  // mounted and served until the process exits, and the next daemon serves it again
  // (Inherit). Not owned.
  fuse::SessionKeeperClient* keeper = nullptr;
  // When a layer is mounted, fetch the footers and TOCs of the image's other layers
  // (the Prepare's image-layers label) in the background, so that their Mounts, which
  // containerd makes one after the other, find them cached.
  bool warm_up_image_layers = true;
};

// One mounted layer, for diagnostics and tests.
struct MountedLayer {
  std::string mountpoint;
  std::string digest;
  std::string image_ref;
  uint64_t blob_size = 0;
  uint64_t cached_bytes = 0;
};

class StargzSource final : public snapshotter::LayerSource {
 public:
  static constexpr std::string_view kName = "stargz";

  // `engine` and `client` must outlive the source.
  StargzSource(Engine* engine, registry::Client* client, SourceOptions options = {});
  // Unmounts every layer (aborting connections still in use).
  ~StargzSource() override;
  StargzSource(const StargzSource&) = delete;
  StargzSource& operator=(const StargzSource&) = delete;

  std::string_view name() const override { return kName; }

  // Errors: FailedPrecondition for a layer without TOC digest annotation (no request
  // made) and for a blob that is not in a stargz layout; InvalidArgument for a
  // malformed reference or digest; AlreadyExists when another layer is mounted at
  // `mountpoint`; the registry's, LoadToc's and fuse::Server::Mount's errors.
  // Mounting the same layer again at the same mount point is OK.
  Status Mount(const snapshotter::RemoteLayer& layer, const std::string& mountpoint) override;

  // FailedPrecondition when the mount is busy (see above); OK when nothing of this
  // source is mounted there.
  Status Unmount(const std::string& mountpoint, snapshotter::UnmountReason reason) override;

  // Unmounts everything at once, aborting mounts still in use.
  void UnmountAll();

  // FUSE sessions of an earlier daemon (SessionKeeperClient::TakeAll), by mount point:
  // a Mount at one of these mount points serves the existing session again
  // (fuse::Server::Adopt) instead of mounting anew, so that its users never notice.
  // Takes ownership of the descriptors.
  void Inherit(std::map<std::string, int> sessions);
  // Ends the inherited sessions no Mount claimed (their snapshots are gone): closes
  // them, has the keeper close its copies, and detaches their mounts. Returns how many.
  int DropUnclaimedSessions();

  std::vector<MountedLayer> Mounts() const;

 private:
  struct Layer;  // one blob: its tree, shared by its mounts
  struct Mounted {
    std::shared_ptr<Layer> layer;
    std::unique_ptr<fuse::Server> server;
    std::string image_ref;
  };

  // The tree of blob `digest`, opened (HEAD, footer, TOC) unless a mount has it.
  Result<std::shared_ptr<Layer>> OpenLayer(const snapshotter::RemoteLayer& remote,
                                           const registry::Reference& ref);
  // Starts warm-ups of `remote`'s sibling layers (SourceOptions::warm_up_image_layers).
  void WarmUpOtherLayers(const snapshotter::RemoteLayer& remote, const registry::Reference& ref);
  // Drops detached servers whose users have gone, and the caches of removed layers
  // nobody serves any more. Requires mu_.
  void ReapLocked();

  Engine* const engine_;
  registry::Client* const client_;
  const SourceOptions options_;

  mutable std::mutex mu_;
  std::map<std::string, Mounted> mounts_;      // by mount point
  std::vector<Mounted> detached_;              // unmounted, still serving overlays
  std::map<std::string, std::weak_ptr<Layer>> layers_;  // by digest
  std::set<std::string> removed_digests_;      // caches to delete once unserved
  std::map<std::string, int> inherited_;       // sessions of an earlier daemon
  // Warm-ups by digest: the blob size once its footer and TOC are cached.
  std::map<std::string, std::shared_future<Result<uint64_t>>> warmups_;
};

}  // namespace strata::lazy::stargz
