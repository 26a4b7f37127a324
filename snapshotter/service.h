// gRPC services of the snapshot service:
//  - containerd.services.snapshots.v1.Snapshots, wire-compatible with containerd 1.6
//    and 2.x, so containerd can load stratad as a proxy snapshotter;
//  - strata.admin.v1.Admin (check/repair, version).
// Errors keep their class across the hop: Status codes equal gRPC codes, which is what
// containerd's errdefs expects.
#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/service_type.h>

#include <memory>
#include <string>

#include "snapshotter/overlay.h"

namespace strata::snapshotter {

grpc::Status ToGrpc(const Status& status);

// The snapshotter name used when a request leaves the field empty.
inline constexpr char kDefaultSnapshotterName[] = "strata";

// Builds the containerd Snapshots service on `overlay` (not owned). Requests for any
// snapshotter name are served, each name being its own set of snapshots (see
// Overlay): containerd sends its proxy plugin's configured name.
std::unique_ptr<grpc::Service> NewSnapshotsService(Overlay* overlay);

struct AdminInfo {
  std::string version;
  std::string root;
  uint32_t schema_version = 0;
  std::string image_snapshotter;  // where `strata image pull` unpacks ([transfer])
};

// Builds strata's Admin service on `overlay` (not owned).
std::unique_ptr<grpc::Service> NewAdminService(Overlay* overlay, AdminInfo info);

}  // namespace strata::snapshotter
