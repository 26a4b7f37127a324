// The remote-snapshot hook of the overlay snapshotter (layer_source.h), with a test
// source that "serves" a layer by mounting a small read-only tmpfs holding a file
// named after the layer digest. Mounts are real.
#include "snapshotter/layer_source.h"

#include <gtest/gtest.h>
#include <sys/mount.h>

#include <atomic>
#include <fstream>

#include "core/fs.h"
#include "core/mount.h"
#include "metadata/store.h"
#include "snapshotter/overlay.h"

namespace strata::snapshotter {
namespace {

class TmpfsSource : public LayerSource {
 public:
  explicit TmpfsSource(std::string name, bool accept = true)
      : name_(std::move(name)), accept_(accept) {}
  std::string_view name() const override { return name_; }

  Status Mount(const RemoteLayer& layer, const std::string& mountpoint) override {
    mounts_++;
    if (!accept_) return Status::FailedPrecondition("not my format");
    if (::mount("tmpfs", mountpoint.c_str(), "tmpfs", 0, "size=1m") != 0) {
      return Status::FromErrno(errno, "mount tmpfs");
    }
    std::ofstream(mountpoint + "/served-" + layer.layer_digest.substr(7, 12)) << layer.image_ref;
    if (::mount(nullptr, mountpoint.c_str(), nullptr, MS_REMOUNT | MS_RDONLY, nullptr) != 0) {
      return Status::FromErrno(errno, "remount ro");
    }
    return Status::Ok();
  }
  Status Unmount(const std::string& mountpoint, UnmountReason) override {
    unmounts_++;
    return strata::Unmount(mountpoint, true);
  }

  std::atomic<int> mounts_{0};
  std::atomic<int> unmounts_{0};

 private:
  std::string name_;
  bool accept_;
};

const std::string kDigest = "sha256:" + std::string(64, 'b');

Labels RemoteLabels(const std::string& target) {
  return {{kLabelTargetSnapshotRef, target},
          {"containerd.io/snapshot/cri.image-ref", "registry.test/app:v1"},
          {"containerd.io/snapshot/cri.layer-digest", kDigest},
          {"containerd.io/snapshot/cri.image-layers", kDigest}};
}

class LayerSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/var/tmp/strata-lsrc-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    Open();
  }
  void Open() {
    store_ = std::move(metadata::Store::Open(root_ + "/metadata")).value();
    OverlayOptions options;
    options.background_cleanup = false;
    overlay_ = std::move(Overlay::Open(root_, store_.get(), options)).value();
    overlay_->AddLayerSource(&declining_);
    overlay_->AddLayerSource(&source_);
    snaps_ = overlay_->ForName("ctd");
  }
  void Close() {
    snaps_.reset();
    if (overlay_) (void)overlay_->Close();
    overlay_.reset();
    store_.reset();
  }
  void TearDown() override {
    for (const auto& m : mounted_) (void)strata::Unmount(m, true);
    Close();
    (void)fs::RemoveAll(root_);
  }

  std::string root_;
  TmpfsSource declining_{"declines", false};
  TmpfsSource source_{"tmpfs"};
  std::unique_ptr<metadata::Store> store_;
  std::unique_ptr<Overlay> overlay_;
  std::unique_ptr<Snapshotter> snaps_;
  std::vector<std::string> mounted_;
};

TEST(ParseRemoteLayerTest, ReadsCriAndCtrRemoteLabels) {
  auto cri = ParseRemoteLayer(RemoteLabels("sha256:chain"));
  ASSERT_TRUE(cri.has_value());
  EXPECT_EQ(cri->target, "sha256:chain");
  EXPECT_EQ(cri->image_ref, "registry.test/app:v1");
  EXPECT_EQ(cri->layer_digest, kDigest);
  EXPECT_EQ(cri->image_layers, std::vector<std::string>{kDigest});

  auto rpull = ParseRemoteLayer({{kLabelTargetSnapshotRef, "t"},
                                 {"containerd.io/snapshot/remote/stargz.reference", "r/x:y"},
                                 {"containerd.io/snapshot/remote/stargz.digest", kDigest},
                                 {"containerd.io/snapshot/remote/stargz.layers", "a,b,,c"}});
  ASSERT_TRUE(rpull.has_value());
  EXPECT_EQ(rpull->image_ref, "r/x:y");
  EXPECT_EQ(rpull->image_layers, (std::vector<std::string>{"a", "b", "c"}));

  EXPECT_FALSE(ParseRemoteLayer({{kLabelTargetSnapshotRef, "t"}}).has_value());
  EXPECT_FALSE(ParseRemoteLayer({{"containerd.io/snapshot/cri.image-ref", "x"}}).has_value());
}

TEST_F(LayerSourceTest, RemotePrepareCommitsTheTargetAndAnswersAlreadyExists) {
  auto mounts = snaps_->Prepare("extract-1 sha256:chain", "", RemoteLabels("sha256:chain"));
  ASSERT_FALSE(mounts.ok());
  EXPECT_TRUE(mounts.status().IsAlreadyExists()) << mounts.status().ToString();
  EXPECT_EQ(declining_.mounts_, 1);  // asked first, declined
  EXPECT_EQ(source_.mounts_, 1);

  auto info = snaps_->Stat("sha256:chain");
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->kind, Kind::kCommitted);
  EXPECT_EQ(info->labels.at(kLabelRemote), "remote snapshot");
  EXPECT_EQ(info->labels.at(kLabelLazySource), "tmpfs");
  EXPECT_TRUE(snaps_->Stat("extract-1 sha256:chain").status().IsNotFound());

  auto dir = overlay_->FsPath("ctd", "sha256:chain");
  ASSERT_TRUE(dir.ok());
  EXPECT_TRUE(IsMountPoint(*dir));
  EXPECT_TRUE(fs::Exists(*dir + "/served-bbbbbbbbbbbb"));
}

TEST_F(LayerSourceTest, ContainersOnARemoteLayerSeeItsFiles) {
  ASSERT_TRUE(
      snaps_->Prepare("extract-1 base", "", RemoteLabels("base")).status().IsAlreadyExists());
  auto mounts = snaps_->Prepare("container", "base", {});
  ASSERT_TRUE(mounts.ok()) << mounts.status().ToString();
  std::string target = root_ + "/rootfs";
  ASSERT_TRUE(fs::MakeDirs(target).ok());
  ASSERT_TRUE(MountAll(*mounts, target).ok());
  mounted_.push_back(target);
  EXPECT_TRUE(fs::Exists(target + "/served-bbbbbbbbbbbb"));
  std::ofstream(target + "/written") << "upper";
  EXPECT_TRUE(fs::Exists(target + "/written"));
}

TEST_F(LayerSourceTest, DecliningSourcesLeaveANormalActiveSnapshot) {
  Close();
  declining_.mounts_ = 0;
  store_ = std::move(metadata::Store::Open(root_ + "/metadata")).value();
  OverlayOptions options;
  options.background_cleanup = false;
  overlay_ = std::move(Overlay::Open(root_, store_.get(), options)).value();
  overlay_->AddLayerSource(&declining_);
  snaps_ = overlay_->ForName("ctd");
  auto mounts = snaps_->Prepare("extract-1 sha256:chain", "", RemoteLabels("sha256:chain"));
  ASSERT_TRUE(mounts.ok()) << mounts.status().ToString();
  EXPECT_EQ(declining_.mounts_, 1);
  EXPECT_EQ(snaps_->Stat("extract-1 sha256:chain")->kind, Kind::kActive);
  EXPECT_TRUE(snaps_->Stat("sha256:chain").status().IsNotFound());
}

TEST_F(LayerSourceTest, RemovingARemoteSnapshotUnmountsIt) {
  ASSERT_TRUE(
      snaps_->Prepare("extract-1 base", "", RemoteLabels("base")).status().IsAlreadyExists());
  std::string dir = *overlay_->FsPath("ctd", "base");
  ASSERT_TRUE(snaps_->Remove("base").ok());
  EXPECT_EQ(source_.unmounts_, 1);
  EXPECT_FALSE(IsMountPoint(dir));
  ASSERT_TRUE(overlay_->Cleanup().ok());
  EXPECT_FALSE(fs::Exists(dir));
}

TEST_F(LayerSourceTest, RemoteLayersAreMountedAgainAfterARestart) {
  ASSERT_TRUE(
      snaps_->Prepare("extract-1 base", "", RemoteLabels("base")).status().IsAlreadyExists());
  std::string dir = *overlay_->FsPath("ctd", "base");
  Close();  // unmounts
  EXPECT_FALSE(IsMountPoint(dir));
  Open();
  auto restored = overlay_->RestoreRemoteLayers();
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  EXPECT_EQ(*restored, 1);
  EXPECT_TRUE(IsMountPoint(dir));
  EXPECT_TRUE(fs::Exists(dir + "/served-bbbbbbbbbbbb"));
}

TEST_F(LayerSourceTest, PrepareWithoutRemoteLabelsNeverAsksSources) {
  ASSERT_TRUE(snaps_->Prepare("plain", "", {{kLabelTargetSnapshotRef, "x"}}).ok());
  EXPECT_EQ(source_.mounts_, 0);
  EXPECT_EQ(declining_.mounts_, 0);
}

}  // namespace
}  // namespace strata::snapshotter
