// transfer::ImageStore — images by name: each name points at a target descriptor (a
// manifest or an index in the content store) and carries labels.
//
// Names are the normalised reference strings ("docker.io/library/busybox:latest"; see
// registry::ParseReference), normalised by the caller. The store keeps them as opaque
// data (RocksDB keys, never paths), so any non-empty string is a valid name.
//
// Records live in the shared metadata::Store (table "images"); every change is durable
// before the call returns. The garbage collector (transfer/gc.h) treats every image's
// target, and the gc.ref labels of the image, as roots.
//
// Thread safety: an ImageStore is safe for concurrent use from many threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "metadata/store.h"
#include "transfer/content_store.h"

namespace strata::transfer {

// An OCI content descriptor, as far as an image target needs one.
struct Descriptor {
  std::string media_type;
  std::string digest;
  int64_t size_bytes = 0;
  Labels annotations;
};

struct Image {
  std::string name;
  Descriptor target;
  Labels labels;
  int64_t created_unix_nanos = 0;  // set by the store
  int64_t updated_unix_nanos = 0;  // set by the store
};

class ImageStore {
 public:
  virtual ~ImageStore() = default;

  // An image store on `store`, which must outlive it.
  static std::unique_ptr<ImageStore> Open(metadata::Store* store);

  // NotFound if no image has that name.
  virtual Result<Image> Get(const std::string& name) = 0;

  // Images matching `filters` (containerd filter syntax, OR of the strings; fields
  // "name", "target.digest", "target.mediatype", "labels.<k>", "annotations.<k>"), in
  // name order. InvalidArgument for a filter that does not parse.
  virtual Result<std::vector<Image>> List(const std::vector<std::string>& filters) = 0;

  // Creates `image` and returns it with its times set. AlreadyExists if the name is
  // taken; InvalidArgument for an empty name, a target without a valid digest, a
  // positive size and a media type, or an oversized label. Empty labels are dropped.
  virtual Result<Image> Create(const Image& image) = 0;

  // Changes the image named `image.name` and returns the result. `fieldpaths` (as in
  // containerd) may hold "target" (replace the whole descriptor), "labels",
  // "labels.<k>", "annotations" and "annotations.<k>" (the target's annotations); a
  // ".<k>" path sets k from `image`, or deletes it when absent or empty there. No paths
  // replaces target and labels. NotFound if there is no such image; InvalidArgument
  // for another path or an invalid result. Created never changes; updated becomes now.
  virtual Result<Image> Update(const Image& image, const std::vector<std::string>& fieldpaths) = 0;

  // Deletes the image (not its content: that is for the garbage collector). NotFound if
  // there is no such image.
  virtual Status Delete(const std::string& name) = 0;
};

}  // namespace strata::transfer
