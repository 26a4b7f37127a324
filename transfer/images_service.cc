#include "transfer/images_service.h"

#include <spdlog/spdlog.h>

#include "core/quote.h"
#include "snapshotter/service.h"
#include "strata/images/v1/images.grpc.pb.h"
#include "transfer/converter.h"
#include "transfer/gc.h"
#include "transfer/pusher.h"

namespace strata::transfer {
namespace {

namespace pb = ::strata::images::v1;
using snapshotter::ToGrpc;

void ToProto(const Image& image, pb::Image* out) {
  out->set_name(image.name);
  auto* t = out->mutable_target();
  t->set_media_type(image.target.media_type);
  t->set_digest(image.target.digest);
  t->set_size(image.target.size_bytes);
  for (const auto& [k, v] : image.target.annotations) (*t->mutable_annotations())[k] = v;
  for (const auto& [k, v] : image.labels) (*out->mutable_labels())[k] = v;
  out->set_created_unix_nanos(image.created_unix_nanos);
  out->set_updated_unix_nanos(image.updated_unix_nanos);
}

void ToProto(const registry::Descriptor& d, pb::Descriptor* out) {
  out->set_media_type(d.media_type);
  out->set_digest(d.digest);
  out->set_size(d.size);
  for (const auto& [k, v] : d.annotations) (*out->mutable_annotations())[k] = v;
}

pb::LayerState ToProto(LayerState s) {
  switch (s) {
    case LayerState::kWaiting:
      return pb::LAYER_STATE_WAITING;
    case LayerState::kDownloading:
      return pb::LAYER_STATE_DOWNLOADING;
    case LayerState::kExtracting:
      return pb::LAYER_STATE_EXTRACTING;
    case LayerState::kVerifying:
      return pb::LAYER_STATE_VERIFYING;
    case LayerState::kDone:
      return pb::LAYER_STATE_DONE;
    case LayerState::kAlreadyExists:
      return pb::LAYER_STATE_ALREADY_EXISTS;
    case LayerState::kFailed:
      return pb::LAYER_STATE_FAILED;
    case LayerState::kLazy:
      return pb::LAYER_STATE_LAZY;
  }
  return pb::LAYER_STATE_UNSPECIFIED;
}

void ToProto(const PullProgress& p, pb::PullProgress* out) {
  for (const auto& l : p.layers) {
    auto* o = out->add_layers();
    o->set_digest(l.digest);
    o->set_media_type(l.media_type);
    o->set_state(ToProto(l.state));
    o->set_current_bytes(l.current_bytes);
    o->set_total_bytes(l.total_bytes);
    o->set_bytes_per_second(l.bytes_per_second);
  }
  out->set_message(p.message);
  out->set_elapsed_nanos(p.elapsed.count());
}

// Normalises a user-typed image name ("busybox" -> "docker.io/library/busybox:latest");
// names that are not references are used as they are.
std::string NormaliseName(const std::string& name) {
  auto ref = registry::ParseReference(name);
  return ref.ok() ? ref->String() : name;
}

Result<GcReport> RunGc(const TransferServices& deps, bool dry_run) {
  std::vector<std::unique_ptr<snapshotter::Snapshotter>> handles;
  GcOptions options;
  options.dry_run = dry_run;
  for (const auto& name : deps.gc_snapshotters) {
    handles.push_back(deps.snapshots->ForName(name));
    options.snapshotters[name] = handles.back().get();
  }
  ASSIGN_OR_RETURN(GcReport report, CollectGarbage(*deps.content, *deps.images, options));
  for (const auto& e : report.errors) spdlog::warn("garbage collection: {}", e.ToString());
  return report;
}

void ToProto(const GcReport& report, pb::GarbageCollectResponse* out) {
  for (const auto& d : report.content) out->add_content_removed(d);
  for (const auto& s : report.snapshots) out->add_snapshots_removed(s.snapshotter + "/" + s.key);
  out->set_bytes_freed(report.content_bytes);
}

class ImagesService final : public pb::Images::Service {
 public:
  explicit ImagesService(TransferServices deps) : deps_(std::move(deps)) {}

  grpc::Status Pull(grpc::ServerContext* ctx, const pb::PullRequest* req,
                    grpc::ServerWriter<pb::PullProgress>* writer) override {
    PullRequest request;
    request.reference = req->reference();
    request.platform = req->platform();
    request.snapshotter = req->snapshotter();
    request.unpack = !req->skip_unpack();
    request.lazy = !req->no_lazy();
    request.max_concurrent_downloads = req->max_concurrent_downloads();
    spdlog::info("pull {} (platform {}, snapshotter {})", Quote(request.reference),
                 request.platform.empty() ? "host" : request.platform,
                 request.snapshotter.empty() ? deps_.puller->options().snapshotter_name
                                             : request.snapshotter);
    Result<Image> image = deps_.puller->Pull(request, [&](const PullProgress& p) -> Status {
      if (ctx->IsCancelled()) return Status(Code::kCancelled, "the client cancelled the pull");
      pb::PullProgress msg;
      ToProto(p, &msg);
      if (!writer->Write(msg)) return Status(Code::kCancelled, "the client went away");
      return Status::Ok();
    });
    if (!image.ok()) {
      spdlog::warn("pull {} failed: {}", Quote(request.reference), image.status().ToString());
      return ToGrpc(image.status());
    }
    pb::PullProgress last;
    last.set_done(true);
    ToProto(*image, last.mutable_image());
    writer->Write(last);
    return grpc::Status::OK;
  }

  grpc::Status List(grpc::ServerContext*, const pb::ListImagesRequest* req,
                    pb::ListImagesResponse* resp) override {
    std::vector<std::string> filters(req->filters().begin(), req->filters().end());
    Result<std::vector<Image>> images = deps_.images->List(filters);
    if (!images.ok()) return ToGrpc(images.status());
    auto snaps = deps_.snapshots->ForName(deps_.puller->options().snapshotter_name);
    for (const auto& image : *images) {
      ToProto(image, resp->add_images());
      auto layout = deps_.puller->Layout(image, "");
      if (!layout.ok()) continue;
      int64_t total = 0;
      bool complete = true;
      for (const auto& chain : layout->chain_ids) {
        auto usage = snaps->GetUsage(chain);
        if (!usage.ok()) {
          complete = false;
          break;
        }
        total += usage->size_bytes;
      }
      if (complete) (*resp->mutable_unpacked_size_bytes())[image.name] = total;
    }
    return grpc::Status::OK;
  }

  grpc::Status Inspect(grpc::ServerContext*, const pb::InspectImageRequest* req,
                       pb::InspectImageResponse* resp) override {
    Result<Image> image = deps_.images->Get(NormaliseName(req->name()));
    if (!image.ok()) return ToGrpc(image.status());
    ToProto(*image, resp->mutable_image());
    Result<ImageLayout> layout = deps_.puller->Layout(*image, req->platform());
    if (!layout.ok()) return ToGrpc(layout.status().WithContext("inspect " + image->name));
    const std::string snapshotter = deps_.puller->options().snapshotter_name;
    resp->set_snapshotter(snapshotter);
    if (layout->target.digest != layout->manifest.digest) {
      auto reader = deps_.content->OpenReader(layout->target.digest);
      if (reader.ok()) {
        std::string data(static_cast<size_t>((*reader)->Size()), '\0');
        auto n = (*reader)->ReadAt(data.data(), data.size(), 0);
        if (n.ok()) resp->set_index_json(data.substr(0, *n));
      }
    }
    ToProto(layout->manifest, resp->mutable_manifest());
    auto manifest_reader = deps_.content->OpenReader(layout->manifest.digest);
    if (manifest_reader.ok()) {
      std::string data(static_cast<size_t>((*manifest_reader)->Size()), '\0');
      auto n = (*manifest_reader)->ReadAt(data.data(), data.size(), 0);
      if (n.ok()) resp->set_manifest_json(data.substr(0, *n));
    }
    resp->set_config_json(layout->config_json);
    auto snaps = deps_.snapshots->ForName(snapshotter);
    for (size_t i = 0; i < layout->parsed.layers.size(); i++) {
      auto* l = resp->add_layers();
      ToProto(layout->parsed.layers[i], l->mutable_layer());
      if (i < layout->diff_ids.size()) l->set_diff_id(layout->diff_ids[i]);
      if (i < layout->chain_ids.size()) {
        l->set_chain_id(layout->chain_ids[i]);
        l->set_snapshot_present(snaps->Stat(layout->chain_ids[i]).ok());
      }
      l->set_content_present(deps_.content->Info(layout->parsed.layers[i].digest).ok());
    }
    return grpc::Status::OK;
  }

  grpc::Status Tag(grpc::ServerContext*, const pb::TagImageRequest* req, pb::Image* resp) override {
    Result<Image> source = deps_.images->Get(NormaliseName(req->source()));
    if (!source.ok()) return ToGrpc(source.status());
    Result<registry::Reference> target_ref = registry::ParseReference(req->target());
    if (!target_ref.ok()) return ToGrpc(target_ref.status());
    Image image = *source;
    image.name = target_ref->String();
    Result<Image> created = deps_.images->Create(image);
    if (!created.ok() && created.status().IsAlreadyExists() && req->force()) {
      created = deps_.images->Update(image, {"target"});
    }
    if (!created.ok()) return ToGrpc(created.status());
    ToProto(*created, resp);
    return grpc::Status::OK;
  }

  grpc::Status Delete(grpc::ServerContext*, const pb::DeleteImageRequest* req,
                      pb::DeleteImageResponse* resp) override {
    for (const auto& name : req->names()) {
      std::string normalised = NormaliseName(name);
      Status s = deps_.images->Delete(normalised);
      if (!s.ok()) return ToGrpc(s);
      resp->add_deleted(normalised);
    }
    if (!req->skip_gc()) {
      Result<GcReport> report = RunGc(deps_, false);
      if (!report.ok()) return ToGrpc(report.status());
      ToProto(*report, resp->mutable_gc());
    }
    return grpc::Status::OK;
  }

  grpc::Status Push(grpc::ServerContext* ctx, const pb::PushRequest* req,
                    grpc::ServerWriter<pb::PullProgress>* writer) override {
    Result<Image> image = deps_.images->Get(NormaliseName(req->source()));
    if (!image.ok()) return ToGrpc(image.status());
    std::string dest_text = req->reference().empty() ? image->name : req->reference();
    Result<registry::Reference> dest = registry::ParseReference(dest_text);
    if (!dest.ok()) return ToGrpc(dest.status());
    Result<ImageLayout> layout = deps_.puller->Layout(*image, req->platform());
    if (!layout.ok()) return ToGrpc(layout.status().WithContext("push " + image->name));

    PushRequest request;
    request.destination = *dest;
    request.chunk_size = req->chunk_size();
    Result<std::string> pushed = PushImage(
        *deps_.registry, *deps_.content, *layout, request, [&](const PullProgress& p) -> Status {
          if (ctx->IsCancelled()) return Status(Code::kCancelled, "the client cancelled the push");
          pb::PullProgress msg;
          ToProto(p, &msg);
          for (auto& l : *msg.mutable_layers()) {
            if (l.state() == pb::LAYER_STATE_DOWNLOADING) l.set_state(pb::LAYER_STATE_UPLOADING);
          }
          if (!writer->Write(msg)) return Status(Code::kCancelled, "the client went away");
          return Status::Ok();
        });
    if (!pushed.ok()) return ToGrpc(pushed.status());
    pb::PullProgress last;
    last.set_done(true);
    ToProto(*image, last.mutable_image());
    last.mutable_image()->set_name(dest->String());
    writer->Write(last);
    return grpc::Status::OK;
  }

  grpc::Status Convert(grpc::ServerContext* ctx, const pb::ConvertRequest* req,
                       grpc::ServerWriter<pb::PullProgress>* writer) override {
    if (!req->estargz()) {
      return ToGrpc(Status::InvalidArgument("convert: say which format (--estargz)"));
    }
    ConvertRequest request;
    request.source = ParseOciLayoutSpec(req->source()) ? req->source() : NormaliseName(req->source());
    request.target = req->target();
    request.platform = req->platform();
    if (req->chunk_size() > 0) request.estargz.chunk_size = req->chunk_size();
    request.estargz.prioritized_files.assign(req->prioritized_files().begin(),
                                             req->prioritized_files().end());
    auto sink = [&](const PullProgress& p) -> Status {
      if (ctx->IsCancelled()) return Status(Code::kCancelled, "the client cancelled the conversion");
      pb::PullProgress msg;
      ToProto(p, &msg);
      if (!writer->Write(msg)) return Status(Code::kCancelled, "the client went away");
      return Status::Ok();
    };
    spdlog::info("convert {} to {} (eStargz)", Quote(request.source), Quote(request.target));
    Result<ConvertResult> converted =
        ConvertImage(*deps_.puller, *deps_.content, *deps_.images, request, sink);
    if (!converted.ok()) {
      spdlog::warn("convert {} failed: {}", Quote(request.source), converted.status().ToString());
      return ToGrpc(converted.status());
    }
    if (!converted->missing_prioritized_files.empty()) {
      PullProgress p;
      p.message = "not in the image (not prioritized): ";
      for (const auto& m : converted->missing_prioritized_files) p.message += m + " ";
      (void)sink(p);
    }
    if (req->push()) {
      if (ParseOciLayoutSpec(request.target)) {
        return ToGrpc(Status::InvalidArgument("convert: --push needs a registry target"));
      }
      Result<registry::Reference> dest = registry::ParseReference(converted->image.name);
      if (!dest.ok()) return ToGrpc(dest.status());
      Result<ImageLayout> layout = deps_.puller->Layout(converted->image, request.platform);
      if (!layout.ok()) return ToGrpc(layout.status());
      PushRequest push;
      push.destination = *dest;
      Result<std::string> pushed = PushImage(*deps_.registry, *deps_.content, *layout, push, sink);
      if (!pushed.ok()) return ToGrpc(pushed.status().WithContext("push " + dest->String()));
    }
    pb::PullProgress last;
    last.set_done(true);
    ToProto(converted->image, last.mutable_image());
    writer->Write(last);
    return grpc::Status::OK;
  }

 private:
  TransferServices deps_;
};

class ContentService final : public pb::Content::Service {
 public:
  explicit ContentService(TransferServices deps) : deps_(std::move(deps)) {}

  grpc::Status List(grpc::ServerContext*, const pb::ListContentRequest* req,
                    pb::ListContentResponse* resp) override {
    std::vector<std::string> filters(req->filters().begin(), req->filters().end());
    Result<std::vector<ContentInfo>> list = deps_.content->List(filters);
    if (!list.ok()) return ToGrpc(list.status());
    for (const auto& info : *list) {
      auto* c = resp->add_content();
      c->set_digest(info.digest);
      c->set_size(info.size_bytes);
      for (const auto& [k, v] : info.labels) (*c->mutable_labels())[k] = v;
      c->set_created_unix_nanos(info.created_unix_nanos);
      c->set_updated_unix_nanos(info.updated_unix_nanos);
    }
    return grpc::Status::OK;
  }

  grpc::Status Delete(grpc::ServerContext*, const pb::DeleteContentRequest* req,
                      pb::DeleteContentResponse*) override {
    for (const auto& d : req->digests()) {
      Status s = deps_.content->Delete(d);
      if (!s.ok()) return ToGrpc(s);
    }
    return grpc::Status::OK;
  }

  grpc::Status GarbageCollect(grpc::ServerContext*, const pb::GarbageCollectRequest* req,
                              pb::GarbageCollectResponse* resp) override {
    Result<GcReport> report = RunGc(deps_, req->dry_run());
    if (!report.ok()) return ToGrpc(report.status());
    ToProto(*report, resp);
    if (req->dry_run()) return grpc::Status::OK;
    spdlog::info("garbage collection removed {} blobs and {} snapshots", report->content.size(),
                 report->snapshots.size());
    return grpc::Status::OK;
  }

 private:
  TransferServices deps_;
};

}  // namespace

std::unique_ptr<grpc::Service> NewImagesService(const TransferServices& deps) {
  return std::make_unique<ImagesService>(deps);
}

std::unique_ptr<grpc::Service> NewContentService(const TransferServices& deps) {
  return std::make_unique<ContentService>(deps);
}

}  // namespace strata::transfer
