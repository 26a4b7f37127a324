// gRPC services of the transfer module: strata.images.v1.Images (pull, list, inspect,
// tag, delete, push) and strata.images.v1.Content (list, delete, garbage collection).
// Errors keep their class across the hop (Status codes are gRPC codes).
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "snapshotter/overlay.h"
#include "transfer/content_store.h"
#include "transfer/image_store.h"
#include "transfer/puller.h"

namespace strata::transfer {

struct TransferServices {
  registry::Client* registry = nullptr;
  ContentStore* content = nullptr;
  ImageStore* images = nullptr;
  snapshotter::Overlay* snapshots = nullptr;
  Puller* puller = nullptr;
  // Snapshotter names strata's garbage collector may collect in (never the name
  // containerd uses to reach strata).
  std::vector<std::string> gc_snapshotters;
};

// Both services; nothing in `deps` is owned and all must outlive the services.
std::unique_ptr<grpc::Service> NewImagesService(const TransferServices& deps);
std::unique_ptr<grpc::Service> NewContentService(const TransferServices& deps);

}  // namespace strata::transfer
