// Specification of transfer::CollectGarbage: what is reachable from images and gc.root
// labels through gc.ref labels and snapshot parents stays; everything else goes.
#include "transfer/gc.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <set>

#include "core/digest.h"
#include "core/fs.h"
#include "snapshotter/overlay.h"

namespace strata::transfer {
namespace {

using std::chrono::hours;
using std::chrono::system_clock;

constexpr char kStrata[] = "strata";
constexpr char kContainerd[] = "containerd-proxy";

class GcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/strata-gc-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    auto md = metadata::Store::Open(root_ + "/metadata");
    ASSERT_TRUE(md.ok()) << md.status().ToString();
    metadata_ = std::move(md).value();
    // No fresh protection: these tests are about the graph, not about pulls in flight.
    auto cs = ContentStore::Open(root_, metadata_.get(), {.fresh_protection = {}});
    ASSERT_TRUE(cs.ok()) << cs.status().ToString();
    content_ = std::move(cs).value();
    images_ = ImageStore::Open(metadata_.get());
    auto overlay =
        snapshotter::Overlay::Open(root_, metadata_.get(), {.background_cleanup = false});
    ASSERT_TRUE(overlay.ok()) << overlay.status().ToString();
    overlay_ = std::move(overlay).value();
    strata_ = overlay_->ForName(kStrata);
    containerd_ = overlay_->ForName(kContainerd);
  }
  void TearDown() override {
    strata_.reset();
    containerd_.reset();
    if (overlay_) {
      EXPECT_TRUE(overlay_->Close().ok());
    }
    overlay_.reset();
    images_.reset();
    content_.reset();
    metadata_.reset();
    EXPECT_TRUE(fs::RemoveAll(root_).ok());
  }

  // Commits `data` with `labels`; returns its digest.
  std::string Blob(const std::string& data, const Labels& labels = {}) {
    std::string digest = Sha256Digest(data);
    auto w = content_->OpenWriter("w-" + digest, digest, static_cast<int64_t>(data.size()));
    EXPECT_TRUE(w.ok()) << w.status().ToString();
    if (!w.ok()) return digest;
    EXPECT_TRUE((*w)->Write(data.data(), data.size()).ok());
    EXPECT_TRUE((*w)->Commit(labels).ok());
    return digest;
  }

  void MakeImage(const std::string& name, const std::string& target) {
    Image image;
    image.name = name;
    image.target = {"application/vnd.oci.image.index.v1+json", target, 100, {}};
    ASSERT_TRUE(images_->Create(image).ok());
  }

  // A committed snapshot `name` on `parent` in snapshotter `sn`.
  void Committed(snapshotter::Snapshotter& sn, const std::string& name, const std::string& parent,
                 const Labels& labels = {}) {
    ASSERT_TRUE(sn.Prepare("extract-" + name, parent, {}).ok());
    ASSERT_TRUE(sn.Commit(name, "extract-" + name, labels, "").ok());
  }

  GcOptions StrataOnly() {
    GcOptions options;
    options.snapshotters[kStrata] = strata_.get();
    return options;
  }

  GcReport Collect(const GcOptions& options) {
    auto report = CollectGarbage(*content_, *images_, options);
    EXPECT_TRUE(report.ok()) << report.status().ToString();
    if (!report.ok()) return {};
    for (const auto& e : report->errors) ADD_FAILURE() << "gc error: " << e.ToString();
    return *report;
  }

  // image -> index -> manifests -> config and layers, through gc.ref.content labels.
  struct ImageGraph {
    std::string layer1, layer2, layer3, config1, config2, manifest1, manifest2, index;
  };
  ImageGraph BuildImageGraph() {
    ImageGraph g;
    g.layer1 = Blob("layer 1");
    g.layer2 = Blob("layer 2");
    g.layer3 = Blob("layer 3");
    g.config1 = Blob("config amd64");
    g.config2 = Blob("config arm64");
    g.manifest1 = Blob("manifest amd64", {{"containerd.io/gc.ref.content.config", g.config1},
                                          {"containerd.io/gc.ref.content.l.0", g.layer1},
                                          {"containerd.io/gc.ref.content.l.1", g.layer2}});
    g.manifest2 = Blob("manifest arm64", {{"containerd.io/gc.ref.content.config", g.config2},
                                          {"containerd.io/gc.ref.content.l.0", g.layer3}});
    g.index = Blob("index", {{"containerd.io/gc.ref.content.m.0", g.manifest1},
                             {"containerd.io/gc.ref.content.m.1", g.manifest2}});
    return g;
  }

  bool HasContent(const std::string& digest) { return content_->Info(digest).ok(); }
  bool HasSnapshot(snapshotter::Snapshotter& sn, const std::string& key) {
    return sn.Stat(key).ok();
  }
  std::set<std::string> AsSet(const std::vector<std::string>& v) { return {v.begin(), v.end()}; }

  std::string root_;
  std::unique_ptr<metadata::Store> metadata_;
  std::unique_ptr<ContentStore> content_;
  std::unique_ptr<ImageStore> images_;
  std::unique_ptr<snapshotter::Overlay> overlay_;
  std::unique_ptr<snapshotter::Snapshotter> strata_;
  std::unique_ptr<snapshotter::Snapshotter> containerd_;
};

TEST_F(GcTest, ImageKeepsItsIndexManifestsConfigsAndLayers) {
  ImageGraph g = BuildImageGraph();
  std::string unreferenced = Blob("unreferenced");
  MakeImage("docker.io/library/app:1", g.index);

  GcReport report = Collect(StrataOnly());
  EXPECT_EQ(report.content, std::vector<std::string>{unreferenced});
  EXPECT_FALSE(HasContent(unreferenced));
  for (const auto& d :
       {g.index, g.manifest1, g.manifest2, g.config1, g.config2, g.layer1, g.layer2, g.layer3}) {
    EXPECT_TRUE(HasContent(d)) << d;
  }
}

TEST_F(GcTest, DeletingTheImageMakesItsWholeGraphCollectable) {
  ImageGraph g = BuildImageGraph();
  MakeImage("app", g.index);
  ASSERT_TRUE(images_->Delete("app").ok());
  GcReport report = Collect(StrataOnly());
  EXPECT_EQ(AsSet(report.content),
            (std::set<std::string>{g.index, g.manifest1, g.manifest2, g.config1, g.config2,
                                   g.layer1, g.layer2, g.layer3}));
  EXPECT_TRUE(content_->List({})->empty());
}

TEST_F(GcTest, ContentRefLabelsMatchContainerdsForms) {
  std::string bare = Blob("bare");
  std::string dotted = Blob("dotted");
  std::string slashed = Blob("slashed");
  std::string lookalike = Blob("lookalike");
  std::string root = Blob("root", {{"containerd.io/gc.root", "x"},
                                   {"containerd.io/gc.ref.content", bare},
                                   {"containerd.io/gc.ref.content.a.b", dotted},
                                   {"containerd.io/gc.ref.content/x", slashed},
                                   {"containerd.io/gc.ref.contentx", lookalike}});
  GcReport report = Collect(StrataOnly());
  EXPECT_EQ(report.content, std::vector<std::string>{lookalike});
  EXPECT_TRUE(HasContent(root));
  EXPECT_TRUE(HasContent(bare));
  EXPECT_TRUE(HasContent(dotted));
  EXPECT_TRUE(HasContent(slashed));
}

TEST_F(GcTest, ImageLabelsReferToContentToo) {
  std::string extra = Blob("signature");
  std::string index = Blob("index");
  Image image;
  image.name = "signed";
  image.target = {"application/vnd.oci.image.index.v1+json", index, 5, {}};
  image.labels = {{"containerd.io/gc.ref.content.sig", extra}};
  ASSERT_TRUE(images_->Create(image).ok());
  EXPECT_TRUE(Collect(StrataOnly()).content.empty());
  EXPECT_TRUE(HasContent(extra));
}

TEST_F(GcTest, ConfigLabelKeepsTheUnpackedSnapshotChain) {
  Committed(*strata_, "chain-a", "");
  Committed(*strata_, "chain-ab", "chain-a");
  Committed(*strata_, "chain-abc", "chain-ab");
  std::string config = Blob("config", {{"containerd.io/gc.ref.snapshot.strata", "chain-abc"}});
  std::string manifest = Blob("manifest", {{"containerd.io/gc.ref.content.config", config}});
  MakeImage("app", manifest);
  GcReport report = Collect(StrataOnly());
  EXPECT_TRUE(report.snapshots.empty());
  EXPECT_TRUE(report.content.empty());
  EXPECT_TRUE(HasSnapshot(*strata_, "chain-a"));
  EXPECT_TRUE(HasSnapshot(*strata_, "chain-ab"));
  EXPECT_TRUE(HasSnapshot(*strata_, "chain-abc"));
}

TEST_F(GcTest, UnreferencedSnapshotChainIsRemovedChildrenFirst) {
  Committed(*strata_, "x", "");
  Committed(*strata_, "xy", "x");
  Committed(*strata_, "xyz", "xy");
  ASSERT_TRUE(strata_->Prepare("container-on-xy", "xy", {}).ok());
  GcReport report = Collect(StrataOnly());
  ASSERT_EQ(report.snapshots.size(), 4u);
  auto position = [&](const std::string& key) {
    for (size_t i = 0; i < report.snapshots.size(); i++) {
      if (report.snapshots[i].key == key) return i;
    }
    return report.snapshots.size();
  };
  EXPECT_LT(position("xyz"), position("xy"));
  EXPECT_LT(position("container-on-xy"), position("xy"));
  EXPECT_LT(position("xy"), position("x"));
  for (const auto& ref : report.snapshots) EXPECT_EQ(ref.snapshotter, kStrata);
  for (const auto& key : {"x", "xy", "xyz", "container-on-xy"}) {
    EXPECT_FALSE(HasSnapshot(*strata_, key)) << key;
  }
}

TEST_F(GcTest, SnapshotLabelsReferToContentAndOtherSnapshots) {
  std::string blob = Blob("referenced by a snapshot");
  Committed(*strata_, "other", "");
  Committed(*strata_, "rooted", "",
            {{"containerd.io/gc.root", "1"},
             {"containerd.io/gc.ref.content.x", blob},
             {"containerd.io/gc.ref.snapshot.strata/extra", "other"}});
  GcReport report = Collect(StrataOnly());
  EXPECT_TRUE(report.content.empty());
  EXPECT_TRUE(report.snapshots.empty());
  EXPECT_TRUE(HasContent(blob));
  EXPECT_TRUE(HasSnapshot(*strata_, "other"));
}

TEST_F(GcTest, OnlyTheNamedSnapshottersAreCollected) {
  Committed(*containerd_, "containerd-layer", "");
  Committed(*strata_, "strata-layer", "");
  // A reference into a snapshotter the caller did not name is ignored, not followed.
  Blob("c", {{"containerd.io/gc.root", "1"},
             {"containerd.io/gc.ref.snapshot.containerd-proxy", "containerd-layer"}});
  GcReport report = Collect(StrataOnly());
  ASSERT_EQ(report.snapshots.size(), 1u);
  EXPECT_EQ(report.snapshots[0], (SnapshotRef{kStrata, "strata-layer"}));
  EXPECT_TRUE(HasSnapshot(*containerd_, "containerd-layer"));
  EXPECT_FALSE(HasSnapshot(*strata_, "strata-layer"));
}

TEST_F(GcTest, ExpireLabelKeepsAnObjectUntilItsTime) {
  auto now = system_clock::now();
  std::string future = Blob("future", {{"containerd.io/gc.expire", FormatRfc3339(now + hours(1))}});
  std::string past = Blob("past", {{"containerd.io/gc.expire", FormatRfc3339(now - hours(1))}});
  std::string garbage = Blob("garbage", {{"containerd.io/gc.expire", "tomorrow"}});
  Committed(*strata_, "pulling", "", {{"containerd.io/gc.expire", FormatRfc3339(now + hours(1))}});
  GcReport report = Collect(StrataOnly());
  EXPECT_EQ(AsSet(report.content), (std::set<std::string>{past, garbage}));
  EXPECT_TRUE(HasContent(future));
  EXPECT_TRUE(HasSnapshot(*strata_, "pulling"));

  GcOptions later = StrataOnly();
  later.now = now + hours(2);
  report = Collect(later);
  EXPECT_EQ(report.content, std::vector<std::string>{future});
  EXPECT_EQ(report.snapshots, (std::vector<SnapshotRef>{{kStrata, "pulling"}}));
}

TEST_F(GcTest, DryRunReportsWhatWouldGoAndDeletesNothing) {
  std::string blob = Blob("unreferenced");
  Committed(*strata_, "base", "");
  Committed(*strata_, "top", "base");
  GcOptions options = StrataOnly();
  options.dry_run = true;
  GcReport report = Collect(options);
  EXPECT_EQ(report.content, std::vector<std::string>{blob});
  EXPECT_EQ(report.snapshots, (std::vector<SnapshotRef>{{kStrata, "top"}, {kStrata, "base"}}));
  EXPECT_TRUE(HasContent(blob));
  EXPECT_TRUE(HasSnapshot(*strata_, "base"));
  EXPECT_TRUE(HasSnapshot(*strata_, "top"));
}

TEST_F(GcTest, ExtraRootsAreKept) {
  std::string blob = Blob("kept by the caller");
  Committed(*strata_, "rootfs", "");
  GcOptions options = StrataOnly();
  options.extra_content_roots = {blob};
  options.extra_snapshot_roots = {{kStrata, "rootfs"}};
  GcReport report = Collect(options);
  EXPECT_TRUE(report.content.empty());
  EXPECT_TRUE(report.snapshots.empty());
}

TEST_F(GcTest, FreshlyCommittedContentSurvivesACollectionWithItsReferences) {
  // A pull in flight: layer and manifest are committed, the image record is not yet.
  content_.reset();
  auto cs = ContentStore::Open(root_, metadata_.get());  // default fresh protection
  ASSERT_TRUE(cs.ok());
  content_ = std::move(cs).value();
  std::string layer = Blob("fresh layer");
  std::string manifest = Blob("fresh manifest", {{"containerd.io/gc.ref.content.l.0", layer}});
  GcReport report = Collect(StrataOnly());
  EXPECT_TRUE(report.content.empty());
  EXPECT_TRUE(HasContent(layer));
  EXPECT_TRUE(HasContent(manifest));

  // Once the protection ends, nothing keeps them.
  content_->Protect(layer, std::chrono::steady_clock::now());
  content_->Protect(manifest, std::chrono::steady_clock::now());
  report = Collect(StrataOnly());
  EXPECT_EQ(AsSet(report.content), (std::set<std::string>{layer, manifest}));
}

TEST_F(GcTest, Rfc3339TimesParseWithZonesAndFractions) {
  auto utc = ParseRfc3339("2024-05-01T12:00:00Z");
  ASSERT_TRUE(utc.has_value());
  EXPECT_EQ(system_clock::to_time_t(*utc), 1714564800);
  auto zoned = ParseRfc3339("2024-05-01T14:00:00.5+02:00");
  ASSERT_TRUE(zoned.has_value());
  EXPECT_EQ(*zoned - *utc, std::chrono::milliseconds(500));
  EXPECT_EQ(FormatRfc3339(*utc), "2024-05-01T12:00:00Z");
  for (const char* bad : {"", "2024-05-01", "2024-05-01T12:00:00", "2024-13-01T00:00:00Z",
                          "2024-05-01T12:00:00Zjunk", "tomorrow"}) {
    EXPECT_FALSE(ParseRfc3339(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace strata::transfer
