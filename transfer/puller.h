// transfer::Puller — `strata image pull`: resolve a reference, verify it, download its
// blobs into the content store and unpack its layers into snapshots, then record the
// image.
//
// The pipeline, for an image of N layers:
//
//   Resolve(ref) ─ verifiers ─ index? ─ platform manifest ─ config (diff_ids, chain ids)
//        │
//        ├─ layer k whose chain snapshot exists already: nothing to do (a re-pull of a
//        │  present image makes no blob request at all)
//        └─ the others, at most `max_concurrent_downloads` at a time, each:
//             download ──┬─> content store ingest (resumable, digest verified at commit)
//                        └─> pipe ─> decompress (igzip / zstd) ─> tar ─> snapshot dir
//           Each layer is unpacked on its own into a snapshot prepared without a
//           parent, concurrently with the others; commits then happen in layer order,
//           each onto the previous chain id (a rebase commit), after the layer's
//           DiffID has been checked against the config.
//
// A layer whose blob is already in the content store is unpacked from there. Two pulls
// that need the same blob download it once: the second waits for the first's ingest
// (ContentStore::WaitForContent); two pulls that need the same chain snapshot unpack
// it once (the second waits for the first's commit). A download interrupted by a
// killed daemon resumes from the ingest's offset at the next pull.
//
// Garbage-collection references are written as containerd does: the index refers to
// its manifests, the manifest to its config and layers
// (`containerd.io/gc.ref.content.*`), the config to the top snapshot
// (`containerd.io/gc.ref.snapshot.<snapshotter>`); the image record is the root.
//
// Thread safety: Pull may run concurrently from many threads.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/status.h"
#include "registry/client.h"
#include "snapshotter/overlay.h"
#include "transfer/content_store.h"
#include "transfer/image_store.h"
#include "transfer/verifier.h"

namespace strata::transfer {

enum class LayerState {
  kWaiting,
  kDownloading,
  kExtracting,
  kVerifying,
  kDone,
  kAlreadyExists,
  kFailed,
  kLazy,  // served lazily: mounted from the registry, fetched on demand
};

std::string_view LayerStateName(LayerState state);

struct LayerProgress {
  std::string digest;
  std::string media_type;
  LayerState state = LayerState::kWaiting;
  int64_t current_bytes = 0;
  int64_t total_bytes = 0;
  int64_t bytes_per_second = 0;
};

struct PullProgress {
  std::vector<LayerProgress> layers;
  std::string message;  // a new line for the user, or ""
  std::chrono::nanoseconds elapsed{0};
};

// Receives progress snapshots, from one thread at a time, about every 100 ms and
// whenever a layer changes state. A non-OK status cancels the pull (the client went).
using ProgressSink = std::function<Status(const PullProgress&)>;

struct PullerOptions {
  std::string snapshotter_name = "strata-images";
  int max_concurrent_downloads = 3;
  bool allow_device_nodes = true;  // layers may create device nodes (root daemon)
  VerifierOptions verifiers;
};

struct PullRequest {
  std::string reference;
  std::string platform;     // "" = host platform
  std::string snapshotter;  // "" = PullerOptions::snapshotter_name
  bool unpack = true;
  // Layers that a lazy source can serve (eStargz with a TOC digest annotation) are
  // mounted from the registry instead of downloaded, as containerd's remote snapshot
  // protocol does it; the others are unpacked. false unpacks every layer.
  bool lazy = true;
  int max_concurrent_downloads = 0;  // 0 = PullerOptions
};

// The resolved shape of an image, as Pull and Inspect need it.
struct ImageLayout {
  registry::Descriptor target;    // what the name points at (index or manifest)
  registry::Descriptor manifest;  // the platform's manifest
  registry::Manifest parsed;
  std::string config_json;
  std::vector<std::string> diff_ids;
  std::vector<std::string> chain_ids;
};

// chain_id[0] = diff_id[0]; chain_id[i] = sha256(chain_id[i-1] + " " + diff_id[i]).
std::vector<std::string> ChainIds(const std::vector<std::string>& diff_ids);

class Puller {
 public:
  // All pointers must outlive the Puller.
  Puller(registry::Client* registry, ContentStore* content, ImageStore* images,
         snapshotter::Overlay* snapshots, PullerOptions options);

  // Pulls `request.reference` and returns the image record. Errors name the reference
  // and what failed; nothing half-done becomes visible: the image record is written
  // last, snapshots are committed only after their DiffID verified, blobs only after
  // their digest verified.
  Result<Image> Pull(const PullRequest& request, const ProgressSink& progress);

  // Reads an image's layout from the content store (no network). NotFound if the image
  // or one of its documents is missing.
  Result<ImageLayout> Layout(const Image& image, const std::string& platform);

  const PullerOptions& options() const { return options_; }

 private:
  struct Job;
  class Tracker;

  Result<std::string> FetchDocument(const registry::Reference& ref,
                                    const registry::Descriptor& desc, const Labels& labels,
                                    bool manifest);
  Status PullLayer(const registry::Reference& ref, Job& job, Tracker& tracker);
  // Downloads the rest of `job`'s blob (from writer.Offset()) into the ingest and
  // commits it (digest verified).
  Status DownloadToStore(const registry::Reference& ref, Job& job, ContentWriter& writer,
                         Tracker& tracker, const Labels& labels);
  Status UnpackLayer(const registry::Reference& ref, Job& job, Tracker& tracker);
  // Asks the snapshotter to serve `job`'s layer lazily (remote-snapshot Prepare onto
  // the committed parent chain). OK when the chain snapshot now exists;
  // FailedPrecondition when no lazy source serves the layer.
  Status PrepareLazy(const std::string& image_name, Job& job,
                     const std::vector<registry::Descriptor>& layers);

  // Serialises work on one chain snapshot across concurrent pulls. Returns false when
  // another pull produced it meanwhile.
  bool ClaimChain(const std::string& key);
  void ReleaseChain(const std::string& key);

  registry::Client* registry_;
  ContentStore* content_;
  ImageStore* images_;
  snapshotter::Overlay* snapshots_;
  PullerOptions options_;

  std::mutex chains_mu_;
  std::condition_variable chains_cv_;
  std::map<std::string, int> chains_in_flight_;
};

}  // namespace strata::transfer
