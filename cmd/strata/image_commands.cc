#include "cmd/strata/image_commands.h"

#include <unistd.h>

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cmd/strata/output.h"
#include "cmd/strata/progress.h"
#include "strata/images/v1/images.grpc.pb.h"

namespace strata::cli {
namespace {

namespace pb = ::strata::images::v1;
using nlohmann::json;

std::string TypeOf(const std::string& media_type) {
  if (media_type.find("index") != std::string::npos ||
      media_type.find("manifest.list") != std::string::npos) {
    return "index";
  }
  if (media_type.find("manifest") != std::string::npos) return "manifest";
  return media_type;
}

json ImageJson(const pb::Image& image) {
  json labels = json::object();
  for (const auto& [k, v] : image.labels()) labels[k] = v;
  return {{"name", image.name()},
          {"target",
           {{"mediaType", image.target().media_type()},
            {"digest", image.target().digest()},
            {"size", image.target().size()}}},
          {"labels", labels},
          {"created", FormatTime(image.created_unix_nanos() / 1000000000LL,
                                 static_cast<int32_t>(image.created_unix_nanos() % 1000000000LL))},
          {"updated", FormatTime(image.updated_unix_nanos() / 1000000000LL,
                                 static_cast<int32_t>(image.updated_unix_nanos() % 1000000000LL))}};
}

json ParsedOrString(const std::string& text) {
  json parsed = json::parse(text, nullptr, false);
  return parsed.is_discarded() ? json(text) : parsed;
}

}  // namespace

void AddImageCommands(CLI::App& app, Context& ctx, std::function<void(std::function<int()>)> run) {
  CLI::App* images = app.add_subcommand("image", "pull, list and manage images")->alias("images");
  images->require_subcommand(1);
  auto stub = [&ctx]() { return pb::Images::NewStub(ctx.channel); };

  // pull
  {
    auto* cmd = images->add_subcommand("pull", "pull an image from a registry");
    auto ref = std::make_shared<std::string>();
    auto platform = std::make_shared<std::string>();
    auto snapshotter = std::make_shared<std::string>();
    auto skip_unpack = std::make_shared<bool>(false);
    auto lazy = std::make_shared<bool>(true);
    auto quiet = std::make_shared<bool>(false);
    auto downloads = std::make_shared<int>(0);
    cmd->add_option("reference", *ref, "image reference (busybox, ghcr.io/org/app:1.0, ...)")
        ->required();
    cmd->add_option("--platform", *platform, "os/arch[/variant] (default: this machine's)");
    cmd->add_option("--unpack-snapshotter", *snapshotter,
                    "snapshotter name to unpack into (default: the daemon's)");
    cmd->add_flag("--skip-unpack", *skip_unpack, "download only");
    cmd->add_flag("--lazy,!--no-lazy", *lazy,
                  "serve eStargz layers from the registry on demand (--lazy=false pulls all)");
    cmd->add_option("--max-concurrent-downloads", *downloads, "parallel layer downloads");
    cmd->add_flag("--quiet,-q", *quiet, "print only the image name and digest");
    cmd->callback([=, &ctx] {
      run([=, &ctx] {
        pb::PullRequest req;
        req.set_reference(*ref);
        req.set_platform(*platform);
        req.set_snapshotter(*snapshotter);
        req.set_skip_unpack(*skip_unpack);
        req.set_no_lazy(!*lazy);
        req.set_max_concurrent_downloads(*downloads);
        grpc::ClientContext cctx;
        auto reader = stub()->Pull(&cctx, req);
        pb::PullProgress last;
        grpc::Status st = Follow(reader, *quiet, &last);
        if (!st.ok()) return Fail("pull " + *ref, st);
        std::cout << last.image().name() << " " << last.image().target().digest() << "\n";
        return 0;
      });
    });
  }

  // convert
  {
    auto* cmd = images->add_subcommand(
        "convert", "rewrite an image as eStargz, so that it can be pulled lazily");
    auto source = std::make_shared<std::string>();
    auto target = std::make_shared<std::string>();
    auto platform = std::make_shared<std::string>();
    auto estargz = std::make_shared<bool>(false);
    auto chunk_size = std::make_shared<uint64_t>(0);
    auto record_in = std::make_shared<std::string>();
    auto push = std::make_shared<bool>(false);
    auto quiet = std::make_shared<bool>(false);
    cmd->add_option("source", *source,
                    "image name, registry reference, or oci:DIR[:TAG] (an OCI image layout)")
        ->required();
    cmd->add_option("target", *target, "image name to record, or oci:DIR[:TAG]")->required();
    cmd->add_flag("--estargz", *estargz, "convert to eStargz (the only format so far)");
    cmd->add_option("--estargz-chunk-size", *chunk_size, "bytes per chunk (default 4 MiB)");
    cmd->add_option("--estargz-record-in", *record_in,
                    "files to prefetch first: one path per line, or ctr-remote's "
                    "{\"path\": ...} JSON lines");
    cmd->add_option("--platform", *platform, "os/arch[/variant] (default: this machine's)");
    cmd->add_flag("--push", *push, "push the result to the registry its name points at");
    cmd->add_flag("--quiet,-q", *quiet, "print only the result");
    cmd->callback([=, &ctx] {
      run([=, &ctx]() -> int {
        if (!*estargz) return Fail("convert: say which format: --estargz");
        pb::ConvertRequest req;
        req.set_source(*source);
        req.set_target(*target);
        req.set_platform(*platform);
        req.set_estargz(true);
        req.set_chunk_size(*chunk_size);
        req.set_push(*push);
        if (!record_in->empty()) {
          std::ifstream in(*record_in);
          if (!in) return Fail("convert: cannot read " + *record_in);
          std::string line;
          while (std::getline(in, line)) {
            if (line.empty()) continue;
            json parsed = json::parse(line, nullptr, false);
            if (parsed.is_object() && parsed.contains("path") && parsed["path"].is_string()) {
              req.add_prioritized_files(parsed["path"].get<std::string>());
            } else if (line[0] != '{') {
              req.add_prioritized_files(line);
            } else {
              return Fail("convert: " + *record_in + ": not a path nor {\"path\": ...}: " + line);
            }
          }
        }
        grpc::ClientContext cctx;
        auto reader = stub()->Convert(&cctx, req);
        pb::PullProgress last;
        grpc::Status st = Follow(reader, *quiet, &last);
        if (!st.ok()) return Fail("convert " + *source, st);
        std::cout << last.image().name() << " " << last.image().target().digest() << "\n";
        return 0;
      });
    });
  }

  // push
  {
    auto* cmd = images->add_subcommand("push", "push an image to a registry");
    auto source = std::make_shared<std::string>();
    auto dest = std::make_shared<std::string>();
    auto platform = std::make_shared<std::string>();
    auto chunk = std::make_shared<uint64_t>(0);
    auto quiet = std::make_shared<bool>(false);
    cmd->add_option("image", *source, "image name in the store")->required();
    cmd->add_option("destination", *dest, "reference to push to (default: the image name)");
    cmd->add_option("--platform", *platform, "which manifest of an index to push");
    cmd->add_option("--chunk-size", *chunk, "upload in chunks of this many bytes");
    cmd->add_flag("--quiet,-q", *quiet, "no progress");
    cmd->callback([=, &ctx] {
      run([=, &ctx] {
        pb::PushRequest req;
        req.set_source(*source);
        req.set_reference(*dest);
        req.set_platform(*platform);
        req.set_chunk_size(*chunk);
        grpc::ClientContext cctx;
        auto reader = stub()->Push(&cctx, req);
        pb::PullProgress last;
        grpc::Status st = Follow(reader, *quiet, &last);
        if (!st.ok()) return Fail("push " + *source, st);
        std::cout << last.image().name() << "\n";
        return 0;
      });
    });
  }

  // ls
  {
    auto* cmd = images->add_subcommand("ls", "list images")->alias("list");
    auto filters = std::make_shared<std::vector<std::string>>();
    auto as_json = std::make_shared<bool>(false);
    auto quiet = std::make_shared<bool>(false);
    cmd->add_option("--filter,-f", *filters, "containerd filter (repeat for OR)");
    cmd->add_flag("--json", *as_json, "print JSON");
    cmd->add_flag("--quiet,-q", *quiet, "names only");
    cmd->callback([=, &ctx] {
      run([=, &ctx] {
        pb::ListImagesRequest req;
        for (const auto& f : *filters) req.add_filters(f);
        pb::ListImagesResponse resp;
        grpc::ClientContext cctx;
        grpc::Status st = stub()->List(&cctx, req, &resp);
        if (!st.ok()) return Fail("list images", st);
        if (*as_json) {
          json out = json::array();
          for (const auto& i : resp.images()) {
            json j = ImageJson(i);
            auto size = resp.unpacked_size_bytes().find(i.name());
            if (size != resp.unpacked_size_bytes().end()) j["unpackedSize"] = size->second;
            out.push_back(j);
          }
          std::cout << out.dump(2) << "\n";
          return 0;
        }
        if (*quiet) {
          for (const auto& i : resp.images()) std::cout << i.name() << "\n";
          return 0;
        }
        std::vector<std::vector<std::string>> rows;
        for (const auto& i : resp.images()) {
          auto size = resp.unpacked_size_bytes().find(i.name());
          rows.push_back(
              {i.name(), TypeOf(i.target().media_type()), i.target().digest(),
               size == resp.unpacked_size_bytes().end() ? "-" : HumanBytes(size->second)});
        }
        PrintTable({"REF", "TYPE", "DIGEST", "UNPACKED"}, rows);
        return 0;
      });
    });
  }

  // inspect
  {
    auto* cmd =
        images->add_subcommand("inspect", "show an image: record, manifest, config, layers");
    auto name = std::make_shared<std::string>();
    auto platform = std::make_shared<std::string>();
    cmd->add_option("image", *name, "image name")->required();
    cmd->add_option("--platform", *platform, "which manifest of an index");
    cmd->callback([=, &ctx] {
      run([=, &ctx] {
        pb::InspectImageRequest req;
        req.set_name(*name);
        req.set_platform(*platform);
        pb::InspectImageResponse resp;
        grpc::ClientContext cctx;
        grpc::Status st = stub()->Inspect(&cctx, req, &resp);
        if (!st.ok()) return Fail("inspect " + *name, st);
        json layers = json::array();
        for (const auto& l : resp.layers()) {
          layers.push_back({{"digest", l.layer().digest()},
                            {"mediaType", l.layer().media_type()},
                            {"size", l.layer().size()},
                            {"diffID", l.diff_id()},
                            {"chainID", l.chain_id()},
                            {"contentPresent", l.content_present()},
                            {"snapshotPresent", l.snapshot_present()}});
        }
        json out = ImageJson(resp.image());
        if (!resp.index_json().empty()) out["index"] = ParsedOrString(resp.index_json());
        out["manifestDigest"] = resp.manifest().digest();
        out["manifest"] = ParsedOrString(resp.manifest_json());
        out["config"] = ParsedOrString(resp.config_json());
        out["layers"] = layers;
        out["snapshotter"] = resp.snapshotter();
        std::cout << out.dump(2) << "\n";
        return 0;
      });
    });
  }

  // tag
  {
    auto* cmd = images->add_subcommand("tag", "give an image another name");
    auto source = std::make_shared<std::string>();
    auto target = std::make_shared<std::string>();
    auto force = std::make_shared<bool>(false);
    cmd->add_option("source", *source, "existing image")->required();
    cmd->add_option("target", *target, "new name")->required();
    cmd->add_flag("--force", *force, "replace an existing image of that name");
    cmd->callback([=, &ctx] {
      run([=, &ctx] {
        pb::TagImageRequest req;
        req.set_source(*source);
        req.set_target(*target);
        req.set_force(*force);
        pb::Image resp;
        grpc::ClientContext cctx;
        grpc::Status st = stub()->Tag(&cctx, req, &resp);
        if (!st.ok()) return Fail("tag " + *source, st);
        std::cout << resp.name() << "\n";
        return 0;
      });
    });
  }

  // rm
  {
    auto* cmd = images->add_subcommand("rm", "remove images (and collect what they alone used)")
                    ->alias("remove");
    auto names = std::make_shared<std::vector<std::string>>();
    auto skip_gc = std::make_shared<bool>(false);
    cmd->add_option("images", *names, "image names")->required();
    cmd->add_flag("--skip-gc", *skip_gc, "leave content and snapshots for a later collection");
    cmd->callback([=, &ctx] {
      run([=, &ctx] {
        pb::DeleteImageRequest req;
        for (const auto& n : *names) req.add_names(n);
        req.set_skip_gc(*skip_gc);
        pb::DeleteImageResponse resp;
        grpc::ClientContext cctx;
        grpc::Status st = stub()->Delete(&cctx, req, &resp);
        if (!st.ok()) return Fail("remove images", st);
        for (const auto& n : resp.deleted()) std::cout << "deleted " << n << "\n";
        if (!*skip_gc) {
          std::cout << "collected " << resp.gc().content_removed_size() << " blobs, "
                    << resp.gc().snapshots_removed_size() << " snapshots ("
                    << HumanBytes(resp.gc().bytes_freed()) << " of content)\n";
        }
        return 0;
      });
    });
  }

  // content
  CLI::App* content = app.add_subcommand("content", "manage the content store");
  content->require_subcommand(1);
  auto cstub = [&ctx]() { return pb::Content::NewStub(ctx.channel); };
  {
    auto* cmd = content->add_subcommand("ls", "list blobs")->alias("list");
    auto filters = std::make_shared<std::vector<std::string>>();
    auto as_json = std::make_shared<bool>(false);
    cmd->add_option("--filter,-f", *filters, "containerd filter (repeat for OR)");
    cmd->add_flag("--json", *as_json, "print JSON");
    cmd->callback([=, &ctx] {
      run([=, &ctx] {
        pb::ListContentRequest req;
        for (const auto& f : *filters) req.add_filters(f);
        pb::ListContentResponse resp;
        grpc::ClientContext cctx;
        grpc::Status st = cstub()->List(&cctx, req, &resp);
        if (!st.ok()) return Fail("list content", st);
        if (*as_json) {
          json out = json::array();
          for (const auto& c : resp.content()) {
            json labels = json::object();
            for (const auto& [k, v] : c.labels()) labels[k] = v;
            out.push_back({{"digest", c.digest()}, {"size", c.size()}, {"labels", labels}});
          }
          std::cout << out.dump(2) << "\n";
          return 0;
        }
        std::vector<std::vector<std::string>> rows;
        for (const auto& c : resp.content()) {
          std::string labels;
          for (const auto& [k, v] : c.labels()) labels += (labels.empty() ? "" : ",") + k + "=" + v;
          rows.push_back({c.digest(), HumanBytes(c.size()), labels});
        }
        PrintTable({"DIGEST", "SIZE", "LABELS"}, rows);
        return 0;
      });
    });
  }
  {
    auto* cmd = content->add_subcommand("rm", "delete blobs")->alias("remove");
    auto digests = std::make_shared<std::vector<std::string>>();
    cmd->add_option("digests", *digests, "blob digests")->required();
    cmd->callback([=, &ctx] {
      run([=, &ctx] {
        pb::DeleteContentRequest req;
        for (const auto& d : *digests) req.add_digests(d);
        pb::DeleteContentResponse resp;
        grpc::ClientContext cctx;
        grpc::Status st = cstub()->Delete(&cctx, req, &resp);
        if (!st.ok()) return Fail("delete content", st);
        return 0;
      });
    });
  }
  {
    auto* cmd = content->add_subcommand("gc", "delete content and snapshots no image uses");
    auto dry_run = std::make_shared<bool>(false);
    cmd->add_flag("--dry-run,-n", *dry_run, "only show what would be deleted");
    cmd->callback([=, &ctx] {
      run([=, &ctx] {
        pb::GarbageCollectRequest req;
        req.set_dry_run(*dry_run);
        pb::GarbageCollectResponse resp;
        grpc::ClientContext cctx;
        grpc::Status st = cstub()->GarbageCollect(&cctx, req, &resp);
        if (!st.ok()) return Fail("garbage collection", st);
        const char* verb = *dry_run ? "would remove" : "removed";
        for (const auto& d : resp.content_removed()) std::cout << verb << " blob " << d << "\n";
        for (const auto& s : resp.snapshots_removed())
          std::cout << verb << " snapshot " << s << "\n";
        std::cout << verb << " " << resp.content_removed_size() << " blobs ("
                  << HumanBytes(resp.bytes_freed()) << ") and " << resp.snapshots_removed_size()
                  << " snapshots\n";
        return 0;
      });
    });
  }
}

}  // namespace strata::cli
