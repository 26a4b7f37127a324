// Pushing an image of the store to a registry: every layer and the config of the
// platform's manifest (skipping blobs the registry has, mounting blobs that came from
// another repository of the same registry), then the manifest under the reference's
// tag. An index is pushed too when all of its manifests are in the store; otherwise only
// the platform's manifest is pushed.
#pragma once

#include <string>

#include "core/status.h"
#include "registry/client.h"
#include "transfer/content_store.h"
#include "transfer/puller.h"

namespace strata::transfer {

struct PushRequest {
  registry::Reference destination;
  uint64_t chunk_size = 0;  // 0: monolithic uploads
};

// Pushes `layout` (from Puller::Layout) reading blobs from `content`. `progress`
// receives the per-blob states (kWaiting, kDownloading meaning "uploading", kDone,
// kAlreadyExists). Returns the digest of the pushed top-level document.
Result<std::string> PushImage(registry::Client& registry, ContentStore& content,
                              const ImageLayout& layout, const PushRequest& request,
                              const ProgressSink& progress);

}  // namespace strata::transfer
