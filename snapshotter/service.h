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

// The containerd Snapshots service on an Overlay. Requests for any snapshotter name
// are served, each name being its own set of snapshots (see Overlay): containerd
// sends its proxy plugin's configured name.
//
// Unary calls are served by one event-loop thread of the service's own (see
// CallLoop): a call runs on that thread when it is the only one, and on a worker
// when calls overlap, so their writes share a flush. List streams on gRPC's
// synchronous threads. Lifecycle, with one grpc::Server:
//   auto service = SnapshotsService::New(overlay);
//   service->Register(builder);  // before builder.BuildAndStart()
//   service->Start();            // after it
//   ...
//   server->Shutdown(deadline);
//   service->Stop();             // after Shutdown returned
class SnapshotsService {
 public:
  // `overlay` is not owned and must outlive the service.
  static std::unique_ptr<SnapshotsService> New(Overlay* overlay);
  virtual ~SnapshotsService() = default;

  // Adds the gRPC service and the completion queue of its loop to `builder`. Once.
  virtual void Register(grpc::ServerBuilder& builder) = 0;
  // Starts the loop: unary calls are answered from now on.
  virtual void Start() = 0;
  // After grpc::Server::Shutdown returned: waits for the calls in progress, refuses
  // requests delivered but not started (UNAVAILABLE), stops the loop. Idempotent;
  // the destructor runs it too.
  virtual void Stop() = 0;
};

struct AdminInfo {
  std::string version;
  std::string root;
  uint32_t schema_version = 0;
  std::string image_snapshotter;  // where `strata image pull` unpacks ([transfer])
};

// Builds strata's Admin service on `overlay` (not owned).
std::unique_ptr<grpc::Service> NewAdminService(Overlay* overlay, AdminInfo info);

}  // namespace strata::snapshotter
