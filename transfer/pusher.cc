#include "transfer/pusher.h"

#include <chrono>

namespace strata::transfer {
namespace {

constexpr char kDistributionSourcePrefix[] = "containerd.io/distribution.source.";

}  // namespace

Result<std::string> PushImage(registry::Client& registry, ContentStore& content,
                              const ImageLayout& layout, const PushRequest& request,
                              const ProgressSink& progress) {
  const auto start = std::chrono::steady_clock::now();
  const registry::Reference& dest = request.destination;
  std::vector<registry::Descriptor> blobs = layout.parsed.layers;
  blobs.push_back(layout.parsed.config);

  PullProgress p;
  for (const auto& b : blobs) {
    LayerProgress l;
    l.digest = b.digest;
    l.media_type = b.media_type;
    l.total_bytes = b.size;
    p.layers.push_back(l);
  }
  auto report = [&](std::string message) -> Status {
    p.message = std::move(message);
    p.elapsed = std::chrono::steady_clock::now() - start;
    return progress ? progress(p) : Status::Ok();
  };
  RETURN_IF_ERROR(report("pushing " + dest.String()));

  for (size_t i = 0; i < blobs.size(); i++) {
    const registry::Descriptor& b = blobs[i];
    ASSIGN_OR_RETURN(std::unique_ptr<ContentReader> reader, content.OpenReader(b.digest));
    ASSIGN_OR_RETURN(ContentInfo info, content.Info(b.digest));
    registry::PushBlobOptions options;
    options.chunk_size = request.chunk_size;
    // A blob pulled from another repository of the same registry is mounted.
    auto source = info.labels.find(kDistributionSourcePrefix + dest.domain);
    if (source != info.labels.end() && source->second != dest.repository) {
      options.mount_from = source->second;
    }
    ASSIGN_OR_RETURN(bool exists, registry.HasBlob(dest, b.digest));
    if (exists) {
      p.layers[i].state = LayerState::kAlreadyExists;
      p.layers[i].current_bytes = b.size;
      RETURN_IF_ERROR(report(""));
      continue;
    }
    p.layers[i].state = LayerState::kDownloading;
    RETURN_IF_ERROR(report(""));
    ContentReader* r = reader.get();
    RETURN_IF_ERROR(registry.PushBlob(
        dest, b,
        [r](uint64_t off, char* buf, size_t n) {
          return r->ReadAt(buf, n, static_cast<int64_t>(off));
        },
        options));
    p.layers[i].state = LayerState::kDone;
    p.layers[i].current_bytes = b.size;
    RETURN_IF_ERROR(report(""));
  }

  ASSIGN_OR_RETURN(std::string manifest, ReadContent(content, layout.manifest.digest));
  std::string media_type =
      layout.manifest.media_type.empty() ? layout.parsed.media_type : layout.manifest.media_type;
  bool push_index = layout.target.digest != layout.manifest.digest;
  std::string index;
  if (push_index) {
    ASSIGN_OR_RETURN(index, ReadContent(content, layout.target.digest));
    ASSIGN_OR_RETURN(registry::Index parsed, registry::ParseIndex(index));
    for (const auto& m : parsed.manifests) {
      if (!content.Info(m.digest).ok()) push_index = false;
    }
  }
  if (!push_index) {
    ASSIGN_OR_RETURN(std::string digest, registry.PushManifest(dest, media_type, manifest));
    RETURN_IF_ERROR(report("pushed " + dest.String() + " (" + digest + ")"));
    return digest;
  }
  // Every manifest of the index by digest, then the index under the tag.
  ASSIGN_OR_RETURN(registry::Index parsed, registry::ParseIndex(index));
  for (const auto& m : parsed.manifests) {
    ASSIGN_OR_RETURN(std::string body, ReadContent(content, m.digest));
    registry::Reference by_digest = dest;
    by_digest.tag.clear();
    by_digest.digest = m.digest;
    std::string type = m.media_type.empty() ? registry::kMediaTypeOciManifest : m.media_type;
    RETURN_IF_ERROR(registry.PushManifest(by_digest, type, body).status());
  }
  ASSIGN_OR_RETURN(std::string digest,
                   registry.PushManifest(dest, layout.target.media_type, index));
  RETURN_IF_ERROR(report("pushed " + dest.String() + " (" + digest + ")"));
  return digest;
}

}  // namespace strata::transfer
