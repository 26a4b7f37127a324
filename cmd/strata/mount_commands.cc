#include "cmd/strata/mount_commands.h"

#include <limits.h>
#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <iostream>

#include "cmd/strata/output.h"
#include "cmd/strata/progress.h"
#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "core/clock.h"
#include "core/mount.h"
#include "strata/admin/v1/admin.grpc.pb.h"
#include "strata/images/v1/images.grpc.pb.h"

namespace strata::cli {
namespace {

namespace images = ::strata::images::v1;
namespace snapshots = ::containerd::services::snapshots::v1;

constexpr char kLabelGcRoot[] = "containerd.io/gc.root";
constexpr char kLabelMountPoint[] = "strata.io/mount-point";
constexpr char kLabelMountImage[] = "strata.io/mount-image";

// The absolute path of directory `dir` without symlinks, or "" with `error` set.
std::string RealDirectory(const std::string& dir, std::string* error) {
  char buf[PATH_MAX];
  if (::realpath(dir.c_str(), buf) == nullptr) {
    *error = dir + ": " + std::strerror(errno);
    return "";
  }
  return buf;
}

// The snapshotter name images are unpacked into, from the daemon.
grpc::Status ImageSnapshotter(Context& ctx, std::string* name) {
  auto admin = ::strata::admin::v1::Admin::NewStub(ctx.channel);
  grpc::ClientContext cctx;
  ::strata::admin::v1::VersionResponse resp;
  grpc::Status st = admin->Version(&cctx, {}, &resp);
  if (st.ok()) *name = resp.image_snapshotter().empty() ? "strata-images" : resp.image_snapshotter();
  return st;
}

}  // namespace

std::string MountViewKey(const std::string& dir) { return "strata-mount:" + dir; }

void AddMountCommands(CLI::App& app, Context& ctx, std::function<void(std::function<int()>)> run) {
  // mount
  {
    auto* cmd = app.add_subcommand(
        "mount", "mount an image read-only at a directory (lazily when its layers allow)");
    auto ref = std::make_shared<std::string>();
    auto dir = std::make_shared<std::string>();
    auto platform = std::make_shared<std::string>();
    auto lazy = std::make_shared<bool>(true);
    auto quiet = std::make_shared<bool>(false);
    cmd->add_option("reference", *ref, "image reference")->required();
    cmd->add_option("directory", *dir, "existing directory to mount the image at")->required();
    cmd->add_option("--platform", *platform, "os/arch[/variant] (default: this machine's)");
    cmd->add_flag("--lazy,!--no-lazy", *lazy,
                  "serve eStargz layers from the registry on demand (--lazy=false pulls all)");
    cmd->add_flag("--quiet,-q", *quiet, "no progress output");
    cmd->callback([=, &ctx] {
      run([=, &ctx]() -> int {
        std::string error;
        std::string target = RealDirectory(*dir, &error);
        if (target.empty()) return Fail("mount: " + error);
        if (IsMountPoint(target)) return Fail("mount: " + target + " is already a mount point");

        // 1. Pull (lazily where possible).
        auto image_stub = images::Images::NewStub(ctx.channel);
        images::PullRequest pull;
        pull.set_reference(*ref);
        pull.set_platform(*platform);
        pull.set_no_lazy(!*lazy);
        images::PullProgress last;
        {
          grpc::ClientContext cctx;
          auto reader = image_stub->Pull(&cctx, pull);
          grpc::Status st = Follow(reader, *quiet, &last);
          if (!st.ok()) return Fail("mount: pull " + *ref, st);
        }
        const std::string name = last.image().name();
        int lazy_layers = 0;
        for (const auto& l : last.layers()) lazy_layers += l.state() == images::LAYER_STATE_LAZY;

        // 2. Its top chain snapshot.
        std::string snapshotter;
        if (grpc::Status st = ImageSnapshotter(ctx, &snapshotter); !st.ok()) {
          return Fail("mount: ask stratad for its image snapshotter", st);
        }
        images::InspectImageResponse inspected;
        {
          grpc::ClientContext cctx;
          images::InspectImageRequest req;
          req.set_name(name);
          req.set_platform(*platform);
          grpc::Status st = image_stub->Inspect(&cctx, req, &inspected);
          if (!st.ok()) return Fail("mount: inspect " + name, st);
        }
        if (inspected.layers().empty()) return Fail("mount: image " + name + " has no layers");
        if (!inspected.snapshotter().empty()) snapshotter = inspected.snapshotter();
        const std::string top = inspected.layers(inspected.layers_size() - 1).chain_id();

        // 3. A view of it, kept from garbage collection while mounted.
        auto snap_stub = snapshots::Snapshots::NewStub(ctx.channel);
        snapshots::ViewSnapshotRequest view;
        view.set_snapshotter(snapshotter);
        view.set_key(MountViewKey(target));
        view.set_parent(top);
        const int64_t now = NowUnixNanos();
        (*view.mutable_labels())[kLabelGcRoot] =
            FormatTime(now / 1000000000, static_cast<int32_t>(now % 1000000000));
        (*view.mutable_labels())[kLabelMountPoint] = target;
        (*view.mutable_labels())[kLabelMountImage] = name;
        snapshots::ViewSnapshotResponse viewed;
        {
          grpc::ClientContext cctx;
          grpc::Status st = snap_stub->View(&cctx, view, &viewed);
          if (st.error_code() == grpc::StatusCode::ALREADY_EXISTS) {
            return Fail("mount: " + target + " already has a strata mount (strata umount " +
                        target + " first)");
          }
          if (!st.ok()) return Fail("mount: view of " + name, st);
        }

        // 4. Mount it.
        std::vector<Mount> mounts;
        for (const auto& m : viewed.mounts()) {
          Mount mount{m.type(), m.source(), m.target(), {}};
          for (const auto& o : m.options()) mount.options.push_back(o);
          mounts.push_back(std::move(mount));
        }
        if (Status s = MountAll(mounts, target); !s.ok()) {
          grpc::ClientContext cctx;
          snapshots::RemoveSnapshotRequest rm;
          rm.set_snapshotter(snapshotter);
          rm.set_key(MountViewKey(target));
          google::protobuf::Empty empty;
          (void)snap_stub->Remove(&cctx, rm, &empty);
          return Fail("mount: " + s.ToString());
        }
        std::cout << "mounted " << name << " at " << target;
        if (lazy_layers > 0) {
          std::cout << " (" << lazy_layers << " of " << last.layers_size()
                    << " layers served lazily)";
        }
        std::cout << "\n";
        return 0;
      });
    });
  }

  // umount
  {
    auto* cmd = app.add_subcommand("umount", "unmount what `strata mount` mounted")->alias("unmount");
    auto dir = std::make_shared<std::string>();
    auto force = std::make_shared<bool>(false);
    cmd->add_option("directory", *dir, "the mount point")->required();
    cmd->add_flag("--force,-f", *force, "detach the mount even while it is busy (MNT_DETACH)");
    cmd->callback([=, &ctx] {
      run([=, &ctx]() -> int {
        std::string error;
        std::string target = RealDirectory(*dir, &error);
        if (target.empty()) return Fail("umount: " + error);
        std::string snapshotter;
        if (grpc::Status st = ImageSnapshotter(ctx, &snapshotter); !st.ok()) {
          return Fail("umount: ask stratad for its image snapshotter", st);
        }
        auto snap_stub = snapshots::Snapshots::NewStub(ctx.channel);
        {
          grpc::ClientContext cctx;
          snapshots::StatSnapshotRequest stat;
          stat.set_snapshotter(snapshotter);
          stat.set_key(MountViewKey(target));
          snapshots::StatSnapshotResponse info;
          grpc::Status st = snap_stub->Stat(&cctx, stat, &info);
          if (st.error_code() == grpc::StatusCode::NOT_FOUND) {
            return Fail("umount: " + target + " was not mounted by strata mount");
          }
          if (!st.ok()) return Fail("umount: " + target, st);
        }
        if (Status s = Unmount(target, *force); !s.ok()) {
          return Fail("umount: " + s.ToString() + (*force ? "" : " (--force detaches it)"));
        }
        grpc::ClientContext cctx;
        snapshots::RemoveSnapshotRequest rm;
        rm.set_snapshotter(snapshotter);
        rm.set_key(MountViewKey(target));
        google::protobuf::Empty empty;
        grpc::Status st = snap_stub->Remove(&cctx, rm, &empty);
        if (!st.ok()) return Fail("umount: remove the view of " + target, st);
        return 0;
      });
    });
  }
}

}  // namespace strata::cli
