// The pull pipeline end to end in one process: Debian's docker-registry on loopback,
// the real overlay snapshotter, content and image stores on a temporary root. Images
// are built by the test (GNU tar layers) and pushed with strata's registry client.
#include "transfer/puller.h"

#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cstring>
#include <fstream>
#include <random>
#include <thread>

#include "core/digest.h"
#include "core/fs.h"
#include "core/subprocess.h"
#include "registry/client.h"
#include "tests/support/local_registry.h"
#include "transfer/gc.h"
#include "transfer/pusher.h"

namespace strata::transfer {
namespace {

using registry::Descriptor;
using strata::testing::LocalRegistry;

void RunOrFail(const std::vector<std::string>& argv) {
  auto r = RunProcess(argv, {.timeout_ms = 60000});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->exit_code, 0) << argv[0] << ": " << r->stderr_data;
}

void WriteFile(const std::string& path, const std::string& data, mode_t mode = 0644) {
  ASSERT_TRUE(fs::MakeDirs(path.substr(0, path.rfind('/'))).ok());
  std::ofstream(path, std::ios::binary) << data;
  ::chmod(path.c_str(), mode);
}

std::string ReadFileOr(const std::string& path) {
  auto r = fs::ReadFile(path);
  return r.ok() ? *r : "<missing>";
}

std::string RandomText(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, ' ');
  for (auto& c : s) c = static_cast<char>('a' + rng() % 26);
  return s;
}

struct BuiltLayer {
  std::string blob;  // compressed
  std::string diff_id;
  std::string media_type;
};

class PullerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/var/tmp/strata-pull-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    root_ = dir_ + "/root";
    auto reg = LocalRegistry::Start();
    ASSERT_TRUE(reg.ok()) << reg.status().ToString();
    registry_ = std::move(*reg);
    registry::ClientOptions ro;
    ro.docker_config = dir_ + "/none.json";
    ro.initial_backoff = std::chrono::milliseconds(5);
    client_ = std::move(registry::Client::Create(ro)).value();
    OpenStores();
  }

  void OpenStores() {
    store_ = std::move(metadata::Store::Open(root_ + "/metadata")).value();
    snapshotter::OverlayOptions oo;
    oo.background_cleanup = false;
    overlay_ = std::move(snapshotter::Overlay::Open(root_, store_.get(), oo)).value();
    content_ = std::move(ContentStore::Open(root_, store_.get())).value();
    images_ = ImageStore::Open(store_.get());
    PullerOptions po;
    po.verifiers = verifiers_;
    puller_ =
        std::make_unique<Puller>(client_.get(), content_.get(), images_.get(), overlay_.get(), po);
  }

  void CloseStores() {
    puller_.reset();
    images_.reset();
    content_.reset();
    if (overlay_) (void)overlay_->Close();
    overlay_.reset();
    store_.reset();
  }

  void TearDown() override {
    for (const auto& m : mounts_) ::umount2(m.c_str(), MNT_DETACH);
    CloseStores();
    (void)fs::RemoveAll(dir_);
  }

  // Tars directory `src` (GNU tar, PAX, xattrs, numeric owners) and compresses it.
  BuiltLayer MakeLayer(const std::string& src, const std::string& compression = "gzip") {
    std::string tar = dir_ + "/layer-" + std::to_string(counter_++) + ".tar";
    RunOrFail({"tar", "--format=pax", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-C",
               src, "-cf", tar, "."});
    BuiltLayer layer;
    layer.diff_id = *Sha256DigestOfFile(tar);
    if (compression == "gzip") {
      RunOrFail({"gzip", "-kf", tar});
      layer.blob = *fs::ReadFile(tar + ".gz");
      layer.media_type = "application/vnd.oci.image.layer.v1.tar+gzip";
    } else if (compression == "zstd") {
      RunOrFail({"zstd", "-qf", tar, "-o", tar + ".zst"});
      layer.blob = *fs::ReadFile(tar + ".zst");
      layer.media_type = "application/vnd.oci.image.layer.v1.tar+zstd";
    } else {
      layer.blob = *fs::ReadFile(tar);
      layer.media_type = "application/vnd.oci.image.layer.v1.tar";
    }
    return layer;
  }

  static registry::BlobReader ReaderOf(const std::string& data) {
    return [&data](uint64_t off, char* buf, size_t n) -> Result<size_t> {
      if (off >= data.size()) return size_t{0};
      size_t take = std::min<size_t>(n, data.size() - off);
      std::copy_n(data.data() + off, take, buf);
      return take;
    };
  }

  // Pushes an image of `layers` as `repo_tag`; `diff_ids` overrides the config's.
  Descriptor PushImage(const std::string& repo_tag, const std::vector<BuiltLayer>& layers,
                       std::vector<std::string> diff_ids = {}) {
    auto ref = *registry::ParseReference(registry_->address() + "/" + repo_tag);
    if (diff_ids.empty()) {
      for (const auto& l : layers) diff_ids.push_back(l.diff_id);
    }
    std::string ids;
    for (const auto& d : diff_ids) ids += (ids.empty() ? "\"" : ",\"") + d + "\"";
    configs_.push_back(
        R"({"architecture":")" + registry::HostPlatform().architecture +
        R"(","os":"linux","config":{"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":[)" +
        ids + "]}}");
    const std::string& config = configs_.back();
    Descriptor cd{registry::kMediaTypeOciConfig,
                  Sha256Digest(config),
                  static_cast<int64_t>(config.size()),
                  {},
                  {},
                  std::nullopt};
    EXPECT_TRUE(client_->PushBlob(ref, cd, ReaderOf(config)).ok());
    std::string layer_json;
    for (const auto& l : layers) {
      Descriptor ld{l.media_type, Sha256Digest(l.blob), static_cast<int64_t>(l.blob.size()), {},
                    {},           std::nullopt};
      auto pushed = client_->PushBlob(ref, ld, ReaderOf(l.blob));
      EXPECT_TRUE(pushed.ok()) << pushed.ToString();
      layer_json += (layer_json.empty() ? "" : ",") + registry::DescriptorJson(ld);
    }
    std::string manifest = std::string(R"({"schemaVersion":2,"mediaType":")") +
                           registry::kMediaTypeOciManifest + R"(","config":)" +
                           registry::DescriptorJson(cd) + R"(,"layers":[)" + layer_json + "]}";
    EXPECT_TRUE(client_->PushManifest(ref, registry::kMediaTypeOciManifest, manifest).ok());
    return Descriptor{registry::kMediaTypeOciManifest,
                      Sha256Digest(manifest),
                      static_cast<int64_t>(manifest.size()),
                      {},
                      {},
                      std::nullopt};
  }

  std::string Ref(const std::string& repo_tag) { return registry_->address() + "/" + repo_tag; }

  // Mounts a read-only view of `chain_id` and returns the mount point.
  std::string MountView(const std::string& chain_id) {
    auto snaps = overlay_->ForName("strata-images");
    std::string key = "view-" + std::to_string(counter_++);
    auto mounts = snaps->View(key, chain_id, {});
    EXPECT_TRUE(mounts.ok()) << mounts.status().ToString();
    std::string target = dir_ + "/" + key;
    EXPECT_TRUE(fs::MakeDirs(target).ok());
    const auto& m = mounts->front();
    std::string options;
    for (const auto& o : m.options) options += (options.empty() ? "" : ",") + o;
    int rc = ::mount(m.source.c_str(), target.c_str(), m.type.c_str(),
                     m.type == "bind" ? MS_BIND | MS_RDONLY : 0,
                     m.type == "bind" ? nullptr : options.c_str());
    EXPECT_EQ(rc, 0) << "mount " << m.type << " " << options << ": " << std::strerror(errno);
    mounts_.push_back(target);
    return target;
  }

  Result<Image> Pull(const std::string& ref, PullRequest request = {}) {
    request.reference = ref;
    return puller_->Pull(request, nullptr);
  }

  std::string dir_, root_;
  int counter_ = 0;
  std::vector<std::string> configs_;
  std::vector<std::string> mounts_;
  VerifierOptions verifiers_;
  std::unique_ptr<LocalRegistry> registry_;
  std::unique_ptr<registry::Client> client_;
  std::unique_ptr<metadata::Store> store_;
  std::unique_ptr<snapshotter::Overlay> overlay_;
  std::unique_ptr<ContentStore> content_;
  std::unique_ptr<ImageStore> images_;
  std::unique_ptr<Puller> puller_;
};

TEST_F(PullerTest, PulledImageMergesLayersWithWhiteoutsAndOpaqueDirectories) {
  std::string base = dir_ + "/base", upper = dir_ + "/upper";
  WriteFile(base + "/etc/hostname", "base\n");
  WriteFile(base + "/etc/removed", "gone soon\n");
  WriteFile(base + "/opaque/old", "hidden by opaque\n");
  WriteFile(base + "/bin/tool", "#!/bin/sh\n", 04755);
  WriteFile(upper + "/etc/hostname", "upper\n");
  WriteFile(upper + "/etc/.wh.removed", "");
  WriteFile(upper + "/opaque/.wh..wh..opq", "");
  WriteFile(upper + "/opaque/new", "fresh\n");
  ::chown((base + "/etc/hostname").c_str(), 1234, 5678);
  std::vector<BuiltLayer> layers = {MakeLayer(base), MakeLayer(upper, "zstd")};
  Descriptor manifest = PushImage("app:v1", layers);

  auto image = Pull(Ref("app:v1"));
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  EXPECT_EQ(image->name, Ref("app:v1"));
  EXPECT_EQ(image->target.digest, manifest.digest);

  auto chain = ChainIds({layers[0].diff_id, layers[1].diff_id});
  auto snaps = overlay_->ForName("strata-images");
  auto top = snaps->Stat(chain[1]);
  ASSERT_TRUE(top.ok()) << top.status().ToString();
  EXPECT_EQ(top->kind, snapshotter::Kind::kCommitted);
  EXPECT_EQ(top->parent, chain[0]);

  std::string merged = MountView(chain[1]);
  EXPECT_EQ(ReadFileOr(merged + "/etc/hostname"), "upper\n");
  EXPECT_FALSE(fs::Exists(merged + "/etc/removed"));
  EXPECT_FALSE(fs::Exists(merged + "/opaque/old"));
  EXPECT_EQ(ReadFileOr(merged + "/opaque/new"), "fresh\n");
  struct stat st {};
  ASSERT_EQ(::stat((merged + "/bin/tool").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 04755u);

  std::string lower = MountView(chain[0]);
  ASSERT_EQ(::stat((lower + "/etc/hostname").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 5678u);
  EXPECT_EQ(ReadFileOr(lower + "/etc/removed"), "gone soon\n");
}

TEST_F(PullerTest, IndexPullUnpacksThisPlatformsManifestAndRefersToIt) {
  std::string mine = dir_ + "/mine", other = dir_ + "/other";
  WriteFile(mine + "/arch", "mine\n");
  WriteFile(other + "/arch", "other\n");
  BuiltLayer mine_layer = MakeLayer(mine);
  Descriptor here = PushImage("multi:here", {mine_layer});
  Descriptor there = PushImage("multi:there", {MakeLayer(other)});
  here.platform = registry::HostPlatform();
  there.platform = registry::Platform{"linux", "s390x", "", ""};
  std::string index = std::string(R"({"schemaVersion":2,"mediaType":")") +
                      registry::kMediaTypeOciIndex + R"(","manifests":[)" +
                      registry::DescriptorJson(there) + "," + registry::DescriptorJson(here) + "]}";
  ASSERT_TRUE(client_
                  ->PushManifest(*registry::ParseReference(Ref("multi:v1")),
                                 registry::kMediaTypeOciIndex, index)
                  .ok());
  uint64_t requests = client_->stats().requests;
  auto image = Pull(Ref("multi:v1"));
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  EXPECT_EQ(image->target.digest, Sha256Digest(index));
  EXPECT_EQ(image->target.media_type, registry::kMediaTypeOciIndex);
  EXPECT_EQ(ReadFileOr(MountView(mine_layer.diff_id) + "/arch"), "mine\n");
  auto stored = content_->Info(Sha256Digest(index));
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->labels.at("containerd.io/gc.ref.content.m.1"), here.digest);
  // resolve, index, manifest, config, layer: each once.
  EXPECT_EQ(client_->stats().requests - requests, 5u);
}

TEST_F(PullerTest, RepullOfAPresentImageFetchesNoBlob) {
  std::string base = dir_ + "/base";
  WriteFile(base + "/data", RandomText(1 << 20, 1));
  PushImage("app:v1", {MakeLayer(base)});
  ASSERT_TRUE(Pull(Ref("app:v1")).ok());
  uint64_t before = client_->stats().blob_bytes;
  uint64_t requests = client_->stats().requests;
  auto again = Pull(Ref("app:v1"));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(client_->stats().blob_bytes, before);
  EXPECT_LE(client_->stats().requests - requests, 1u);  // the resolve
}

TEST_F(PullerTest, ConcurrentPullsOfImagesSharingALayerDownloadItOnce) {
  std::string base = dir_ + "/base", a = dir_ + "/a", b = dir_ + "/b";
  std::string big = RandomText(8 << 20, 2);
  WriteFile(base + "/shared", big);
  WriteFile(a + "/only-a", "a\n");
  WriteFile(b + "/only-b", "b\n");
  BuiltLayer shared = MakeLayer(base);
  PushImage("a:v1", {shared, MakeLayer(a)});
  PushImage("b:v1", {shared, MakeLayer(b)});
  Result<Image> ra = Status::Internal("unset"), rb = Status::Internal("unset");
  std::thread ta([&] { ra = Pull(Ref("a:v1")); });
  std::thread tb([&] { rb = Pull(Ref("b:v1")); });
  ta.join();
  tb.join();
  ASSERT_TRUE(ra.ok()) << ra.status().ToString();
  ASSERT_TRUE(rb.ok()) << rb.status().ToString();
  // The shared layer once (~8 MiB of random letters gzip to ~5 MiB), not twice.
  EXPECT_LT(client_->stats().blob_bytes, shared.blob.size() + shared.blob.size() / 2);
  EXPECT_GE(client_->stats().blob_bytes, shared.blob.size());
  auto snaps = overlay_->ForName("strata-images");
  EXPECT_TRUE(snaps->Stat(shared.diff_id).ok());
}

TEST_F(PullerTest, WrongDiffIdFailsAndLeavesNoSnapshotOrImage) {
  std::string base = dir_ + "/base";
  WriteFile(base + "/f", "x\n");
  BuiltLayer layer = MakeLayer(base);
  PushImage("bad:v1", {layer}, {Sha256Digest("not the layer")});
  auto image = Pull(Ref("bad:v1"));
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.status().code(), Code::kDataLoss) << image.status().ToString();
  EXPECT_NE(image.status().message().find("diff"), std::string::npos) << image.status().message();
  EXPECT_TRUE(images_->Get(Ref("bad:v1")).status().IsNotFound());
  int snapshots = 0;
  ASSERT_TRUE(overlay_->ForName("strata-images")
                  ->Walk(
                      [&](const snapshotter::Info&) {
                        snapshots++;
                        return Status::Ok();
                      },
                      {})
                  .ok());
  EXPECT_EQ(snapshots, 0);
}

TEST_F(PullerTest, HostileLayerIsRefusedAndWritesNothingOutside) {
  // A tar whose entry climbs out of the root.
  std::string staging = dir_ + "/staging";
  WriteFile(staging + "/x/evil", "pwned\n");
  std::string tar = dir_ + "/hostile.tar";
  RunOrFail(
      {"tar", "--format=pax", "-C", staging + "/x", "-cf", tar, "--transform=s,^,../../,", "evil"});
  BuiltLayer layer;
  layer.diff_id = *Sha256DigestOfFile(tar);
  layer.blob = *fs::ReadFile(tar);
  layer.media_type = "application/vnd.oci.image.layer.v1.tar";
  PushImage("hostile:v1", {layer});
  auto image = Pull(Ref("hostile:v1"));
  ASSERT_FALSE(image.ok());
  EXPECT_FALSE(fs::Exists(root_ + "/snapshots/evil"));
  EXPECT_FALSE(fs::Exists(root_ + "/evil"));
  EXPECT_FALSE(fs::Exists(dir_ + "/evil"));
  EXPECT_TRUE(images_->Get(Ref("hostile:v1")).status().IsNotFound());
}

TEST_F(PullerTest, VerifierRejectionStopsThePullBeforeAnyBlob) {
  std::string bin = dir_ + "/verifiers";
  WriteFile(bin + "/allow-only-trusted",
            "#!/bin/sh\n"
            "while [ $# -gt 0 ]; do [ \"$1\" = -name ] && name=$2; shift; done\n"
            "cat >/dev/null\n"
            "case \"$name\" in */trusted/*) exit 0;; esac\n"
            "echo \"repository of $name is not trusted\"; exit 1\n",
            0755);
  verifiers_.bin_dir = bin;
  CloseStores();
  OpenStores();
  std::string base = dir_ + "/base";
  WriteFile(base + "/f", "x\n");
  BuiltLayer layer = MakeLayer(base);
  PushImage("untrusted/app:v1", {layer});
  PushImage("trusted/app:v1", {layer});
  uint64_t before = client_->stats().blob_bytes;
  auto refused = Pull(Ref("untrusted/app:v1"));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
  EXPECT_NE(refused.status().message().find("is not trusted"), std::string::npos)
      << refused.status().message();
  EXPECT_EQ(client_->stats().blob_bytes, before);
  auto accepted = Pull(Ref("trusted/app:v1"));
  EXPECT_TRUE(accepted.ok()) << accepted.status().ToString();
}

TEST_F(PullerTest, SkipUnpackStoresContentOnly) {
  std::string base = dir_ + "/base";
  WriteFile(base + "/f", "x\n");
  BuiltLayer layer = MakeLayer(base);
  PushImage("app:v1", {layer});
  PullRequest request;
  request.unpack = false;
  auto image = Pull(Ref("app:v1"), request);
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  EXPECT_TRUE(content_->Info(Sha256Digest(layer.blob)).ok());
  EXPECT_TRUE(overlay_->ForName("strata-images")->Stat(layer.diff_id).status().IsNotFound());
}

TEST_F(PullerTest, GarbageCollectionAfterImageRemovalFreesContentAndSnapshots) {
  std::string base = dir_ + "/base";
  WriteFile(base + "/f", "x\n");
  BuiltLayer layer = MakeLayer(base);
  PushImage("app:v1", {layer});
  ASSERT_TRUE(Pull(Ref("app:v1")).ok());
  auto snaps = overlay_->ForName("strata-images");
  GcOptions options;
  options.snapshotters["strata-images"] = snaps.get();
  auto kept = CollectGarbage(*content_, *images_, options);
  ASSERT_TRUE(kept.ok()) << kept.status().ToString();
  EXPECT_TRUE(kept->content.empty());
  EXPECT_TRUE(kept->snapshots.empty());
  ASSERT_TRUE(images_->Delete(Ref("app:v1")).ok());
  // Fresh-content protection would keep the blobs; end it as time would.
  for (const auto& c : *content_->List({})) {
    content_->Protect(c.digest, std::chrono::steady_clock::now());
  }
  int64_t stored_bytes = 0;
  for (const auto& c : *content_->List({})) stored_bytes += c.size_bytes;
  auto report = CollectGarbage(*content_, *images_, options);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->content.size(), 3u);  // manifest, config, layer
  EXPECT_EQ(report->content_bytes, stored_bytes);
  EXPECT_EQ(report->snapshots.size(), 1u);
  EXPECT_TRUE(snaps->Stat(layer.diff_id).status().IsNotFound());
}

TEST_F(PullerTest, PushOfAPulledImageToAnotherRepositoryMountsItsBlobs) {
  std::string base = dir_ + "/base";
  WriteFile(base + "/f", RandomText(100000, 3));
  PushImage("src:v1", {MakeLayer(base)});
  auto image = Pull(Ref("src:v1"));
  ASSERT_TRUE(image.ok());
  auto layout = puller_->Layout(*image, "");
  ASSERT_TRUE(layout.ok()) << layout.status().ToString();
  // The pull recorded where the layer came from: that is what makes the push mount it.
  auto layer = content_->Info(layout->parsed.layers[0].digest);
  ASSERT_TRUE(layer.ok());
  EXPECT_EQ(layer->labels.at("containerd.io/distribution.source." + registry_->address()), "src");
  PushRequest request;
  request.destination = *registry::ParseReference(Ref("copy:v2"));
  auto pushed = transfer::PushImage(*client_, *content_, *layout, request, nullptr);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  EXPECT_EQ(*pushed, image->target.digest);
  // The copy resolves and pulls like the original.
  auto copy = client_->Resolve(*registry::ParseReference(Ref("copy:v2")));
  ASSERT_TRUE(copy.ok());
  EXPECT_EQ(copy->digest, image->target.digest);
}

TEST_F(PullerTest, InterruptedDownloadResumesFromTheIngest) {
  std::string base = dir_ + "/base";
  WriteFile(base + "/data", RandomText(4 << 20, 4));
  BuiltLayer layer = MakeLayer(base, "none");
  PushImage("app:v1", {layer});
  // Simulate a daemon killed mid-download: half the blob sits in the ingest.
  std::string digest = Sha256Digest(layer.blob);
  {
    auto w =
        content_->OpenWriter("layer-" + digest, digest, static_cast<int64_t>(layer.blob.size()));
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    ASSERT_TRUE((*w)->Write(layer.blob.data(), layer.blob.size() / 2).ok());
  }
  CloseStores();
  OpenStores();
  uint64_t before = client_->stats().blob_bytes;
  auto image = Pull(Ref("app:v1"));
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  uint64_t fetched = client_->stats().blob_bytes - before;
  EXPECT_LE(fetched, layer.blob.size() - layer.blob.size() / 2 + 4096);
  EXPECT_EQ(ReadFileOr(MountView(layer.diff_id) + "/data"), RandomText(4 << 20, 4));
}

}  // namespace
}  // namespace strata::transfer
