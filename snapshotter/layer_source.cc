#include "snapshotter/layer_source.h"

namespace strata::snapshotter {
namespace {

std::string First(const std::map<std::string, std::string>& labels,
                  std::initializer_list<const char*> keys) {
  for (const char* k : keys) {
    auto it = labels.find(k);
    if (it != labels.end() && !it->second.empty()) return it->second;
  }
  return "";
}

}  // namespace

std::optional<RemoteLayer> ParseRemoteLayer(const std::map<std::string, std::string>& labels) {
  RemoteLayer layer;
  layer.target = First(labels, {kLabelTargetSnapshotRef});
  layer.image_ref = First(labels, {"containerd.io/snapshot/cri.image-ref",
                                   "containerd.io/snapshot/remote/stargz.reference"});
  layer.layer_digest = First(labels, {"containerd.io/snapshot/cri.layer-digest",
                                      "containerd.io/snapshot/remote/stargz.digest"});
  if (layer.target.empty() || layer.image_ref.empty() || layer.layer_digest.empty()) {
    return std::nullopt;
  }
  std::string layers = First(labels, {"containerd.io/snapshot/cri.image-layers",
                                      "containerd.io/snapshot/remote/stargz.layers"});
  for (size_t b = 0; b < layers.size();) {
    size_t e = layers.find(',', b);
    if (e == std::string::npos) e = layers.size();
    if (e > b) layer.image_layers.push_back(layers.substr(b, e - b));
    b = e + 1;
  }
  layer.labels = labels;
  return layer;
}

}  // namespace strata::snapshotter
