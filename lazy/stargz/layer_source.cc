#include "lazy/stargz/layer_source.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include "core/digest.h"
#include "fuse/mounts.h"
#include "lazy/stargz/footer.h"
#include "registry/reference.h"

namespace strata::lazy::stargz {

struct StargzSource::Layer {
  std::string digest;
  std::shared_ptr<BlobReader> blob;
  std::unique_ptr<StargzTree> tree;
};

namespace {

std::string Label(const snapshotter::RemoteLayer& layer, std::string_view key) {
  auto it = layer.labels.find(std::string(key));
  return it == layer.labels.end() ? std::string() : it->second;
}

}  // namespace

StargzSource::StargzSource(Engine* engine, registry::Client* client, SourceOptions options)
    : engine_(engine), client_(client), options_(std::move(options)) {}

StargzSource::~StargzSource() {
  std::map<std::string, std::shared_future<Result<uint64_t>>> warmups;
  {
    std::lock_guard<std::mutex> lock(mu_);
    warmups.swap(warmups_);
  }
  for (auto& [_, w] : warmups) w.wait();
  UnmountAll();
  for (const auto& [_, fd] : inherited_) ::close(fd);
}

Result<std::shared_ptr<StargzSource::Layer>> StargzSource::OpenLayer(
    const snapshotter::RemoteLayer& remote, const registry::Reference& ref) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = layers_.find(remote.layer_digest);
    if (it != layers_.end()) {
      if (auto layer = it->second.lock()) return layer;
    }
  }
  OpenOptions open = options_.open;
  open.toc.toc_digest = Label(remote, kTocDigestAnnotation);
  open.toc.zstd_manifest_checksum = Label(remote, kZstdChunkedManifestChecksumAnnotation);
  if (open.toc.zstd_manifest_checksum.empty()) {
    open.toc.zstd_manifest_checksum = Label(remote, kLegacyZstdChunkedManifestChecksumAnnotation);
  }
  const auto start = std::chrono::steady_clock::now();
  std::shared_future<Result<uint64_t>> warmed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = warmups_.find(remote.layer_digest);
    if (it != warmups_.end()) warmed = it->second;
  }
  // A warm-up started by an earlier layer's Mount knows the size and has the footer
  // and TOC in the cache already (or is fetching them).
  Result<uint64_t> size_or = warmed.valid() ? warmed.get() : Result<uint64_t>(Status::NotFound(""));
  if (warmed.valid()) {
    std::lock_guard<std::mutex> lock(mu_);
    warmups_.erase(remote.layer_digest);
  }
  if (!size_or.ok()) size_or = client_->BlobSize(ref, remote.layer_digest);
  ASSIGN_OR_RETURN(uint64_t size, size_or);
  const auto sized = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(auto blob, engine_->OpenBlob(ref, remote.layer_digest, size));
  Result<std::unique_ptr<StargzTree>> tree = StargzTree::Open(blob, open);
  const auto opened = std::chrono::steady_clock::now();
  auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
  spdlog::debug("stargz layer {}: size {:.1f} ms, footer and TOC {:.1f} ms", remote.layer_digest,
                ms(sized - start), ms(opened - sized));
  if (!tree.ok()) {
    // Not a stargz blob after all: the caller unpacks it, the cache is useless.
    if (tree.status().code() == Code::kInvalidArgument ||
        tree.status().code() == Code::kFailedPrecondition) {
      (void)engine_->RemoveBlob(remote.layer_digest);
      return Status::FailedPrecondition("layer " + remote.layer_digest + " of " + remote.image_ref +
                                        " is not a stargz layer: " + tree.status().message());
    }
    return tree.status();
  }
  auto layer = std::make_shared<Layer>();
  layer->digest = remote.layer_digest;
  layer->blob = std::move(blob);
  layer->tree = std::move(*tree);

  std::lock_guard<std::mutex> lock(mu_);
  auto& slot = layers_[remote.layer_digest];
  if (auto other = slot.lock()) return other;  // a concurrent Mount opened it first
  slot = layer;
  removed_digests_.erase(remote.layer_digest);
  return layer;
}

Status StargzSource::Mount(const snapshotter::RemoteLayer& remote, const std::string& mountpoint) {
  if (!HasTocAnnotation(remote.labels)) {
    return Status::FailedPrecondition("layer " + remote.layer_digest + " of " + remote.image_ref +
                                      " has no " + std::string(kTocDigestAnnotation) +
                                      " annotation: not an eStargz layer");
  }
  RETURN_IF_ERROR(ValidateDigest(remote.layer_digest).WithContext("layer digest"));
  ASSIGN_OR_RETURN(registry::Reference ref, registry::ParseReference(remote.image_ref));
  {
    std::lock_guard<std::mutex> lock(mu_);
    ReapLocked();
    auto it = mounts_.find(mountpoint);
    if (it != mounts_.end()) {
      if (it->second.layer->digest == remote.layer_digest && it->second.server->serving()) {
        return Status::Ok();
      }
      return Status::AlreadyExists("layer " + it->second.layer->digest + " is mounted at " +
                                   mountpoint);
    }
  }
  WarmUpOtherLayers(remote, ref);
  int inherited_fd = -1;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = inherited_.find(mountpoint);
    if (it != inherited_.end()) {
      inherited_fd = it->second;
      inherited_.erase(it);
    }
  }
  fuse::MountOptions mount = options_.mount;
  mount.subtype = "strata-stargz";
  // A keeper holds one descriptor per session: requests read through per-thread
  // clones would be lost with a dying daemon instead of being sent again.
  if (options_.keeper != nullptr) mount.clone_fd = false;
  std::unique_ptr<fuse::Server> server;
  std::shared_ptr<Layer> layer;
  if (inherited_fd >= 0) {
    Result<std::shared_ptr<Layer>> opened = OpenLayer(remote, ref);
    Result<std::unique_ptr<fuse::Server>> adopted = Status::Unavailable("");
    if (opened.ok()) {
      layer = *opened;
      mount.fs_name = layer->digest;
      adopted = fuse::Server::Adopt(*layer->tree, mountpoint, inherited_fd, mount);
    } else {
      ::close(inherited_fd);
    }
    if (adopted.ok()) {
      server = std::move(*adopted);
    } else {
      // Its users would wait forever on a session nobody serves: end it.
      spdlog::error("cannot serve the session of the earlier run at {} again: {}", mountpoint,
                    (opened.ok() ? adopted.status() : opened.status()).ToString());
      if (options_.keeper != nullptr) (void)options_.keeper->Remove(mountpoint);
      if (!opened.ok()) return opened.status();
    }
  }
  if (server == nullptr) {
    // A mount left by a crashed stratad answers ENOTCONN and cannot be mounted over.
    Result<bool> stale = fuse::RecoverStaleMount(mountpoint, options_.stale_mount_probe);
    if (!stale.ok()) return stale.status().WithContext("mount point " + mountpoint);
    if (*stale) spdlog::info("detached the dead mount of an earlier run at {}", mountpoint);
    if (layer == nullptr) {
      ASSIGN_OR_RETURN(layer, OpenLayer(remote, ref));
    }
    mount.fs_name = layer->digest;
    ASSIGN_OR_RETURN(server, fuse::Server::Mount(*layer->tree, mountpoint, mount));
    if (options_.keeper != nullptr) {
      Status kept = options_.keeper->Put(mountpoint, server->fuse_fd());
      if (!kept.ok()) {
        spdlog::warn("the lazy layer at {} will not survive a daemon restart: {}", mountpoint,
                     kept.ToString());
      }
    }
  }

  if (options_.prefetch) {
    std::vector<registry::ByteRange> ranges = layer->tree->PrefetchRanges();
    if (!ranges.empty()) layer->blob->Prefetch(ranges);
  }
  if (options_.background_fetch) layer->blob->FetchRemaining();

  std::lock_guard<std::mutex> lock(mu_);
  auto [it, inserted] = mounts_.try_emplace(mountpoint);
  if (!inserted) {  // a concurrent Mount at the same mount point won
    (void)server->Unmount(fuse::IfBusy::kAbort);
    return it->second.layer->digest == remote.layer_digest
               ? Status::Ok()
               : Status::AlreadyExists("layer " + it->second.layer->digest + " is mounted at " +
                                       mountpoint);
  }
  it->second = Mounted{layer, std::move(server), remote.image_ref};
  removed_digests_.erase(layer->digest);
  spdlog::debug("mounted stargz layer {} ({} bytes, {} inodes) at {}", layer->digest,
                layer->blob->size(), layer->tree->toc().inodes.size(), mountpoint);
  return Status::Ok();
}

Status StargzSource::Unmount(const std::string& mountpoint, snapshotter::UnmountReason reason) {
  std::unique_lock<std::mutex> lock(mu_);
  auto it = mounts_.find(mountpoint);
  if (it == mounts_.end()) return Status::Ok();
  if (reason == snapshotter::UnmountReason::kShutdown && options_.keeper != nullptr) {
    // Handed over: the keeper keeps the session alive past this process, and the next
    // daemon serves it again. Nothing to do (the daemon exits without unmounting).
    return Status::Ok();
  }
  Mounted mounted = std::move(it->second);
  mounts_.erase(it);
  lock.unlock();
  // Not under mu_: Unmount waits for the FUSE requests in flight.
  Status s = mounted.server->Unmount(reason == snapshotter::UnmountReason::kShutdown
                                         ? fuse::IfBusy::kAbort
                                         : fuse::IfBusy::kFail);
  lock.lock();
  const std::string digest = mounted.layer->digest;
  bool unmounted = true;
  if (!s.ok()) {
    Result<std::optional<fuse::MountInfoEntry>> still = fuse::FindMount(mountpoint);
    if (mounted.server->serving() && still.ok() && still->has_value()) {
      mounts_.emplace(mountpoint, std::move(mounted));  // busy: still mounted, still ours
      unmounted = false;
    } else {
      detached_.push_back(std::move(mounted));  // serving an overlay that still uses it
    }
  }
  // The reason of the layer's last unmount decides its cache's fate; a refused unmount
  // changed nothing.
  if (unmounted && options_.keeper != nullptr && s.ok()) {
    (void)options_.keeper->Remove(mountpoint);  // its session is over
  }
  if (unmounted) {
    if (reason == snapshotter::UnmountReason::kRemoved) {
      removed_digests_.insert(digest);
    } else {
      removed_digests_.erase(digest);
    }
  }
  ReapLocked();
  return s;
}

void StargzSource::ReapLocked() {
  for (auto it = detached_.begin(); it != detached_.end();) {
    it = it->server->serving() ? std::next(it) : detached_.erase(it);
  }
  for (auto it = removed_digests_.begin(); it != removed_digests_.end();) {
    bool in_use = false;
    for (const auto& [_, m] : mounts_) in_use |= m.layer->digest == *it;
    for (const auto& m : detached_) in_use |= m.layer->digest == *it;
    if (in_use) {
      ++it;
      continue;
    }
    layers_.erase(*it);
    Status s = engine_->RemoveBlob(*it);
    if (!s.ok()) spdlog::warn("remove the cache of layer {}: {}", *it, s.ToString());
    it = removed_digests_.erase(it);
  }
}

void StargzSource::UnmountAll() {
  std::map<std::string, Mounted> mounts;
  std::vector<Mounted> detached;
  {
    std::lock_guard<std::mutex> lock(mu_);
    mounts.swap(mounts_);
    detached.swap(detached_);
  }
  for (auto& [mountpoint, m] : mounts) {
    Status s = m.server->Unmount(fuse::IfBusy::kAbort);
    if (!s.ok()) spdlog::warn("unmount stargz layer at {}: {}", mountpoint, s.ToString());
  }
  for (auto& m : detached) (void)m.server->Unmount(fuse::IfBusy::kAbort);
}

void StargzSource::WarmUpOtherLayers(const snapshotter::RemoteLayer& remote,
                                     const registry::Reference& ref) {
  if (!options_.warm_up_image_layers) return;
  std::lock_guard<std::mutex> lock(mu_);
  int started = 0;
  for (const std::string& digest : remote.image_layers) {
    if (started >= 16) break;
    if (digest == remote.layer_digest || !ValidateDigest(digest).ok()) continue;
    if (warmups_.count(digest) > 0 || layers_.count(digest) > 0) continue;
    // containerd prepares an image's layers one after the other; fetch the others'
    // footers and TOCs meanwhile, so that their Mounts find them in the cache.
    warmups_[digest] = std::async(std::launch::async, [this, ref, digest]() -> Result<uint64_t> {
                         ASSIGN_OR_RETURN(uint64_t size, client_->BlobSize(ref, digest));
                         Result<std::shared_ptr<BlobReader>> blob =
                             engine_->OpenBlob(ref, digest, size);
                         if (blob.ok() && !ReadFooterAndToc(**blob).ok()) {
                           (void)engine_->RemoveBlob(digest);  // not a stargz layer
                         }
                         return size;
                       }).share();
    started++;
  }
}

void StargzSource::Inherit(std::map<std::string, int> sessions) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [mountpoint, fd] : sessions) {
    auto [it, inserted] = inherited_.emplace(mountpoint, fd);
    if (!inserted) {
      ::close(it->second);
      it->second = fd;
    }
  }
}

int StargzSource::DropUnclaimedSessions() {
  std::map<std::string, int> unclaimed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    unclaimed.swap(inherited_);
  }
  for (const auto& [mountpoint, fd] : unclaimed) {
    ::close(fd);
    if (options_.keeper != nullptr) (void)options_.keeper->Remove(mountpoint);
    // Nobody holds the connection now: it ended, and its mount is dead.
    Result<bool> detached = fuse::RecoverStaleMount(mountpoint, options_.stale_mount_probe);
    spdlog::info("ended the session of the earlier run at {} (no snapshot uses it){}", mountpoint,
                 detached.ok() && *detached ? "" : "; its mount point was already free");
  }
  return static_cast<int>(unclaimed.size());
}

std::vector<MountedLayer> StargzSource::Mounts() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<MountedLayer> out;
  for (const auto& [mountpoint, m] : mounts_) {
    out.push_back({mountpoint, m.layer->digest, m.image_ref, m.layer->blob->size(),
                   m.layer->blob->CachedBytes()});
  }
  return out;
}

}  // namespace strata::lazy::stargz
