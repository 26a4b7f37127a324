#include "snapshotter/service.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "core/quote.h"
#include "snapshotter/call_loop.h"
#include "snapshotter/layer_source.h"
#include "strata/admin/v1/admin.grpc.pb.h"

namespace strata::snapshotter {
namespace {

namespace pb = ::containerd::services::snapshots::v1;

constexpr size_t kListBatchCount = 100;
constexpr size_t kListBatchBytes = 1 << 20;

void ToProto(const Mount& m, ::containerd::types::Mount* out) {
  out->set_type(m.type);
  out->set_source(m.source);
  out->set_target(m.target);
  for (const auto& o : m.options) out->add_options(o);
}

template <typename Response>
void MountsToProto(const std::vector<Mount>& mounts, Response* response) {
  for (const auto& m : mounts) ToProto(m, response->add_mounts());
}

void NanosToTimestamp(int64_t nanos, google::protobuf::Timestamp* ts) {
  ts->set_seconds(nanos / 1000000000LL);
  ts->set_nanos(static_cast<int32_t>(nanos % 1000000000LL));
}

int64_t TimestampToNanos(const google::protobuf::Timestamp& ts) {
  return ts.seconds() * 1000000000LL + ts.nanos();
}

void InfoToProto(const Info& info, pb::Info* out) {
  out->set_name(info.name);
  out->set_parent(info.parent);
  out->set_kind(static_cast<pb::Kind>(static_cast<int>(info.kind)));
  NanosToTimestamp(info.created_unix_nanos, out->mutable_created_at());
  NanosToTimestamp(info.updated_unix_nanos, out->mutable_updated_at());
  for (const auto& [k, v] : info.labels) (*out->mutable_labels())[k] = v;
}

Info InfoFromProto(const pb::Info& in) {
  Info info;
  info.name = in.name();
  info.parent = in.parent();
  info.kind = static_cast<Kind>(static_cast<int>(in.kind()));
  info.labels.insert(in.labels().begin(), in.labels().end());
  info.created_unix_nanos = TimestampToNanos(in.created_at());
  info.updated_unix_nanos = TimestampToNanos(in.updated_at());
  return info;
}

template <typename Map>
Labels LabelsFromProto(const Map& map) {
  return Labels(map.begin(), map.end());
}

// Logs a request at debug level: method, snapshotter name, key, parent, label keys.
template <typename Request>
void LogRequest(const char* method, const Request& req, const std::string& key,
                const std::string& parent = "") {
  if (!spdlog::should_log(spdlog::level::debug)) return;
  std::string labels;
  if constexpr (requires { req.labels(); }) {
    for (const auto& [k, v] : req.labels()) labels += (labels.empty() ? "" : ",") + k;
  }
  spdlog::debug("{} snapshotter={} key={} parent={} labels=[{}]", method, req.snapshotter(),
                Quote(key), Quote(parent), labels);
}

// The gRPC service object: List streams and stays on gRPC's synchronous threads;
// every unary method is asynchronous, served by SnapshotsServiceImpl's CallLoop.
using AsyncSnapshots = pb::Snapshots::WithAsyncMethod_Prepare<pb::Snapshots::WithAsyncMethod_View<
    pb::Snapshots::WithAsyncMethod_Mounts<pb::Snapshots::WithAsyncMethod_Commit<
        pb::Snapshots::WithAsyncMethod_Remove<pb::Snapshots::WithAsyncMethod_Stat<
            pb::Snapshots::WithAsyncMethod_Update<pb::Snapshots::WithAsyncMethod_Usage<
                pb::Snapshots::WithAsyncMethod_Cleanup<pb::Snapshots::Service>>>>>>>>>;

class GrpcSnapshots final : public AsyncSnapshots {
 public:
  explicit GrpcSnapshots(Overlay* overlay) : overlay_(overlay) {}

  grpc::Status Prepare(const pb::PrepareSnapshotRequest& req, pb::PrepareSnapshotResponse* resp) {
    LogRequest("Prepare", req, req.key(), req.parent());
    auto mounts = For(req)->Prepare(req.key(), req.parent(), LabelsFromProto(req.labels()));
    if (!mounts.ok()) return ToGrpc(mounts.status());
    MountsToProto(*mounts, resp);
    return grpc::Status::OK;
  }

  grpc::Status View(const pb::ViewSnapshotRequest& req, pb::ViewSnapshotResponse* resp) {
    LogRequest("View", req, req.key(), req.parent());
    auto mounts = For(req)->View(req.key(), req.parent(), LabelsFromProto(req.labels()));
    if (!mounts.ok()) return ToGrpc(mounts.status());
    MountsToProto(*mounts, resp);
    return grpc::Status::OK;
  }

  grpc::Status Mounts(const pb::MountsRequest& req, pb::MountsResponse* resp) {
    LogRequest("Mounts", req, req.key());
    auto mounts = For(req)->Mounts(req.key());
    if (!mounts.ok()) return ToGrpc(mounts.status());
    MountsToProto(*mounts, resp);
    return grpc::Status::OK;
  }

  grpc::Status Commit(const pb::CommitSnapshotRequest& req, google::protobuf::Empty*) {
    LogRequest("Commit", req, req.key(), req.name());
    return ToGrpc(
        For(req)->Commit(req.name(), req.key(), LabelsFromProto(req.labels()), req.parent()));
  }

  // Commit measures the snapshot's files. A snapshot whose top directory has
  // subdirectories or more than a block of entries may take long to walk: that walk
  // runs on a worker, not on the loop. (Unknown keys fail fast either way. File
  // systems whose directories do not count subdirectories in st_nlink, like btrfs,
  // always walk on a worker.)
  bool CommitMayTakeLong(const pb::CommitSnapshotRequest& req) {
    Result<std::string> path = overlay_->FsPath(NameOf(req), req.key());
    if (!path.ok()) return false;
    struct stat st;
    if (::lstat(path->c_str(), &st) != 0) return false;
    return st.st_nlink != 2 || st.st_size > kSmallDirectoryBytes;
  }

  bool IsRemote(const pb::RemoveSnapshotRequest& req) {
    return overlay_->IsRemote(NameOf(req), req.key());
  }

  grpc::Status Remove(const pb::RemoveSnapshotRequest& req, google::protobuf::Empty*) {
    LogRequest("Remove", req, req.key());
    return ToGrpc(For(req)->Remove(req.key()));
  }

  grpc::Status Stat(const pb::StatSnapshotRequest& req, pb::StatSnapshotResponse* resp) {
    LogRequest("Stat", req, req.key());
    auto info = For(req)->Stat(req.key());
    if (!info.ok()) return ToGrpc(info.status());
    InfoToProto(*info, resp->mutable_info());
    return grpc::Status::OK;
  }

  grpc::Status Update(const pb::UpdateSnapshotRequest& req, pb::UpdateSnapshotResponse* resp) {
    std::vector<std::string> paths(req.update_mask().paths().begin(),
                                   req.update_mask().paths().end());
    auto info = For(req)->Update(InfoFromProto(req.info()), paths);
    if (!info.ok()) return ToGrpc(info.status());
    InfoToProto(*info, resp->mutable_info());
    return grpc::Status::OK;
  }

  grpc::Status Usage(const pb::UsageRequest& req, pb::UsageResponse* resp) {
    LogRequest("Usage", req, req.key());
    auto usage = For(req)->GetUsage(req.key());
    if (!usage.ok()) return ToGrpc(usage.status());
    resp->set_size(usage->size_bytes);
    resp->set_inodes(usage->inodes);
    return grpc::Status::OK;
  }

  grpc::Status Cleanup(const pb::CleanupRequest& req, google::protobuf::Empty*) {
    LogRequest("Cleanup", req, "");
    return ToGrpc(overlay_->Cleanup());
  }

  grpc::Status List(grpc::ServerContext* ctx, const pb::ListSnapshotsRequest* req,
                    grpc::ServerWriter<pb::ListSnapshotsResponse>* writer) override {
    std::vector<std::string> filters(req->filters().begin(), req->filters().end());
    LogRequest("List", *req, "");
    pb::ListSnapshotsResponse batch;
    size_t batch_bytes = 0;
    // Cancellation is checked per message, not per entry: in the synchronous API
    // IsCancelled() polls the completion queue, which costs a futex each time.
    auto flush = [&]() -> Status {
      if (batch.info_size() == 0) return Status::Ok();
      if (ctx->IsCancelled()) return Status(Code::kCancelled, "list cancelled");
      if (!writer->Write(batch)) return Status(Code::kCancelled, "list stream closed by client");
      batch.Clear();
      batch_bytes = 0;
      return Status::Ok();
    };
    Status st = For(*req)->Walk(
        [&](const Info& info) -> Status {
          pb::Info* out = batch.add_info();
          InfoToProto(info, out);
          batch_bytes += out->ByteSizeLong();
          if (static_cast<size_t>(batch.info_size()) >= kListBatchCount ||
              batch_bytes >= kListBatchBytes) {
            return flush();
          }
          return Status::Ok();
        },
        filters);
    if (st.ok()) st = flush();
    return ToGrpc(st);
  }

 private:
  static constexpr off_t kSmallDirectoryBytes = 4096;

  template <typename Request>
  static std::string NameOf(const Request& req) {
    return req.snapshotter().empty() ? kDefaultSnapshotterName : req.snapshotter();
  }

  template <typename Request>
  std::unique_ptr<Snapshotter> For(const Request& req) {
    return overlay_->ForName(NameOf(req));
  }

  Overlay* overlay_;
};

class SnapshotsServiceImpl final : public SnapshotsService {
 public:
  explicit SnapshotsServiceImpl(Overlay* overlay) : grpc_(overlay) {}
  ~SnapshotsServiceImpl() override { Stop(); }

  void Register(grpc::ServerBuilder& builder) override {
    builder.RegisterService(&grpc_);
    loop_ = std::make_unique<CallLoop>(builder.AddCompletionQueue(), kMaxWorkers);
    GrpcSnapshots* g = &grpc_;
    // Each method: how gRPC is asked for its next request, and its handler.
#define STRATA_UNARY(Method, Req, Resp, ...)                                            \
  loop_->AddUnary<Req, Resp>(                                                           \
      [g](grpc::ServerContext* ctx, Req* req, grpc::ServerAsyncResponseWriter<Resp>* w, \
          grpc::ServerCompletionQueue* cq,                                              \
          void* tag) { g->Request##Method(ctx, req, w, cq, cq, tag); },                 \
      [g](const Req& req, Resp* resp) { return g->Method(req, resp); }, ##__VA_ARGS__)

    // Never on the loop thread: preparing a remote (lazily pulled) layer fetches its
    // index over the network and removing one unmounts it (waiting for its reads),
    // Usage walks a whole tree, Cleanup deletes trees, and Commit walks the
    // snapshot's files when there are many.
    STRATA_UNARY(Prepare, pb::PrepareSnapshotRequest, pb::PrepareSnapshotResponse,
                 [](const pb::PrepareSnapshotRequest& req) {
                   return ParseRemoteLayer(LabelsFromProto(req.labels())).has_value();
                 });
    STRATA_UNARY(View, pb::ViewSnapshotRequest, pb::ViewSnapshotResponse);
    STRATA_UNARY(Mounts, pb::MountsRequest, pb::MountsResponse);
    STRATA_UNARY(Commit, pb::CommitSnapshotRequest, google::protobuf::Empty,
                 [g](const pb::CommitSnapshotRequest& req) { return g->CommitMayTakeLong(req); });
    STRATA_UNARY(Remove, pb::RemoveSnapshotRequest, google::protobuf::Empty,
                 [g](const pb::RemoveSnapshotRequest& req) { return g->IsRemote(req); });
    STRATA_UNARY(Stat, pb::StatSnapshotRequest, pb::StatSnapshotResponse);
    STRATA_UNARY(Update, pb::UpdateSnapshotRequest, pb::UpdateSnapshotResponse);
    STRATA_UNARY(Usage, pb::UsageRequest, pb::UsageResponse,
                 [](const pb::UsageRequest&) { return true; });
    STRATA_UNARY(Cleanup, pb::CleanupRequest, google::protobuf::Empty,
                 [](const pb::CleanupRequest&) { return true; });
#undef STRATA_UNARY
  }

  void Start() override {
    if (loop_) loop_->Start();
  }

  void Stop() override {
    if (loop_) loop_->Stop();
  }

 private:
  // Calls blocked at once (each waiting for a flush or a long call) before later
  // ones queue: as many as containerd's concurrent unpacks and pods need.
  static constexpr size_t kMaxWorkers = 64;

  GrpcSnapshots grpc_;
  std::unique_ptr<CallLoop> loop_;
};

class AdminService final : public ::strata::admin::v1::Admin::Service {
 public:
  AdminService(Overlay* overlay, AdminInfo info) : overlay_(overlay), info_(std::move(info)) {}

  grpc::Status Check(grpc::ServerContext*, const ::strata::admin::v1::CheckRequest* req,
                     ::strata::admin::v1::CheckResponse* resp) override {
    auto problems = overlay_->Check(req->repair());
    if (!problems.ok()) return ToGrpc(problems.status());
    for (const auto& p : *problems) {
      auto* out = resp->add_problems();
      out->set_kind(p.kind);
      out->set_detail(p.detail);
      out->set_repaired(p.repaired);
    }
    return grpc::Status::OK;
  }

  grpc::Status Version(grpc::ServerContext*, const ::strata::admin::v1::VersionRequest*,
                       ::strata::admin::v1::VersionResponse* resp) override {
    resp->set_version(info_.version);
    resp->set_root(info_.root);
    resp->set_schema_version(info_.schema_version);
    resp->set_pid(::getpid());
    resp->set_image_snapshotter(info_.image_snapshotter);
    return grpc::Status::OK;
  }

 private:
  Overlay* overlay_;
  AdminInfo info_;
};

}  // namespace

grpc::Status ToGrpc(const Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // The message travels in a gRPC trailer, which clients cap (8 KiB by default): a
  // message quoting a huge key would reach the client as RESOURCE_EXHAUSTED and lose
  // its class. Long messages are cut.
  constexpr size_t kMaxMessageBytes = 1024;
  std::string message = status.message();
  if (message.size() > kMaxMessageBytes) {
    message.resize(kMaxMessageBytes);
    message += "... (truncated)";
  }
  return grpc::Status(static_cast<grpc::StatusCode>(static_cast<int>(status.code())),
                      std::move(message));
}

std::unique_ptr<SnapshotsService> SnapshotsService::New(Overlay* overlay) {
  return std::make_unique<SnapshotsServiceImpl>(overlay);
}

std::unique_ptr<grpc::Service> NewAdminService(Overlay* overlay, AdminInfo info) {
  return std::make_unique<AdminService>(overlay, std::move(info));
}

}  // namespace strata::snapshotter
