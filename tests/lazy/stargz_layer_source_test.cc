// StargzSource: eStargz layers pushed to Debian's docker-registry, mounted for real over
// FUSE through the lazy engine. Requests are counted with the registry client's stats
// (the engine and the source share the client; blobs are pushed with another one).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "core/digest.h"
#include "core/fs.h"
#include "fuse/mounts.h"
#include "lazy/stargz/layer_source.h"
#include "registry/client.h"
#include "registry/reference.h"
#include "tests/lazy/stargz_builder.h"
#include "tests/lazy/stargz_test_support.h"
#include "tests/support/local_registry.h"
#include "tests/support/random_bytes.h"

namespace strata::lazy::stargz {
namespace {

using std::chrono::milliseconds;
using strata::testing::LocalRegistry;
using strata::testing::RandomBytes;
using testing::BuildLayer;
using testing::BuildOptions;
using testing::BuiltLayer;
using testing::File;
using testing::LayerEntry;
using testing::Symlink;
using UnmountReason = snapshotter::UnmountReason;

constexpr char kRepository[] = "stargz-source";
const std::string kBigFile = RandomBytes(300000, 7);  // several 64 KiB chunks

std::vector<LayerEntry> SmallLayer(const std::string& hostname) {
  return {
      File("etc/hostname", hostname),
      File("bin/tool", kBigFile, 0755),
      Symlink("bin/sh", "tool"),
      File("usr/share/doc/readme", "read me\n"),
  };
}

BuildOptions SmallChunks() {
  BuildOptions options;
  options.chunk_size = 64 << 10;
  return options;
}

// The whole content of `path`, or "<unreadable>" when it cannot be opened.
std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "<unreadable>";
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

bool IsMounted(const std::string& path) {
  Result<std::optional<fuse::MountInfoEntry>> top = fuse::FindMount(path);
  return top.ok() && top->has_value();
}

// Polls `done` every 20 ms for up to `limit`.
bool WaitFor(const std::function<bool()>& done, milliseconds limit = milliseconds(20000)) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return true;
}

class StargzSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/strata-stargz-source-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    cache_dir_ = dir_ + "/cache";

    auto reg = LocalRegistry::Start();
    ASSERT_TRUE(reg.ok()) << reg.status().ToString();
    registry_ = std::move(*reg);
    image_ref_ = registry_->address() + "/" + kRepository + ":v1";
    pusher_ = MakeClient();
    client_ = MakeClient();

    EngineOptions engine_options;
    engine_options.cache_dir = cache_dir_;
    engine_options.chunk_size = 64 << 10;
    engine_options.read_deadline = milliseconds(20000);
    auto engine = Engine::Open(engine_options, client_.get());
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(*engine);

    // Prefetch and background fetch off, so that every request counted is the test's.
    options_.prefetch = false;
    options_.background_fetch = false;
    source_ = std::make_unique<StargzSource>(engine_.get(), client_.get(), options_);
  }

  void TearDown() override {
    source_.reset();  // unmounts what it still has
    // Whatever a failed test left mounted (the source's or the test's own mounts).
    for (const std::string& mountpoint : mountpoints_) {
      while (IsMounted(mountpoint)) {
        if (::umount2(mountpoint.c_str(), MNT_DETACH) != 0) break;
      }
    }
    engine_.reset();
    client_.reset();
    pusher_.reset();
    registry_.reset();
    if (!dir_.empty()) {
      EXPECT_TRUE(fs::RemoveAll(dir_).ok());
    }
  }

  std::unique_ptr<registry::Client> MakeClient() {
    registry::ClientOptions options;
    options.docker_config = dir_ + "/no-docker-config.json";
    options.initial_backoff = milliseconds(10);
    return std::move(registry::Client::Create(options)).value();
  }

  // Pushes `blob` to the test repository; returns its digest.
  std::string Push(const std::string& blob) {
    registry::Descriptor desc;
    desc.media_type = "application/vnd.oci.image.layer.v1.tar+gzip";
    desc.digest = Sha256Digest(blob);
    desc.size = static_cast<int64_t>(blob.size());
    registry::Reference ref = *registry::ParseReference(image_ref_);
    Status pushed =
        pusher_->PushBlob(ref, desc, [&blob](uint64_t off, char* buf, size_t n) -> Result<size_t> {
          size_t take = std::min<size_t>(n, blob.size() - std::min<size_t>(off, blob.size()));
          std::memcpy(buf, blob.data() + off, take);
          return take;
        });
    EXPECT_TRUE(pushed.ok()) << pushed.ToString();
    return desc.digest;
  }

  // The remote-snapshot labels of a layer `digest` with TOC digest `toc_digest` ("" for
  // none).
  snapshotter::RemoteLayer Remote(const std::string& digest, const std::string& toc_digest) {
    snapshotter::RemoteLayer layer;
    layer.target = "chain-of-" + digest;
    layer.image_ref = image_ref_;
    layer.layer_digest = digest;
    layer.image_layers = {digest};
    layer.labels[snapshotter::kLabelTargetSnapshotRef] = layer.target;
    if (!toc_digest.empty()) layer.labels[std::string(kTocDigestAnnotation)] = toc_digest;
    return layer;
  }

  // Builds and pushes an eStargz layer; returns its labels.
  snapshotter::RemoteLayer PushLayer(const std::vector<LayerEntry>& entries,
                                     BuiltLayer* built = nullptr) {
    BuiltLayer layer = BuildLayer(entries, SmallChunks());
    std::string digest = Push(layer.blob);
    if (built) *built = layer;
    return Remote(digest, layer.toc_digest);
  }

  // A new empty directory under the test's directory, unmounted at teardown.
  std::string MakeMountpoint(const std::string& name) {
    std::string path = dir_ + "/" + name;
    EXPECT_EQ(::mkdir(path.c_str(), 0755), 0) << path << ": " << std::strerror(errno);
    mountpoints_.push_back(path);
    return path;
  }

  std::string CacheDirOf(const std::string& digest) const {
    return cache_dir_ + "/" + digest.substr(std::strlen("sha256:"));
  }

  uint64_t Requests() const { return client_->stats().requests.load(); }

  std::string dir_;
  std::string cache_dir_;
  std::unique_ptr<LocalRegistry> registry_;
  std::string image_ref_;
  std::unique_ptr<registry::Client> pusher_;
  std::unique_ptr<registry::Client> client_;
  std::unique_ptr<Engine> engine_;
  SourceOptions options_;
  std::unique_ptr<StargzSource> source_;
  std::vector<std::string> mountpoints_;
};

// ---- layers that are not served --------------------------------------------------------

TEST_F(StargzSourceTest, LayerWithoutTocDigestIsFailedPreconditionWithoutAnyRequest) {
  BuiltLayer built;
  snapshotter::RemoteLayer layer = PushLayer(SmallLayer("a\n"), &built);
  layer.labels.erase(std::string(kTocDigestAnnotation));
  std::string mnt = MakeMountpoint("mnt");

  Status s = source_->Mount(layer, mnt);

  EXPECT_TRUE(s.IsFailedPrecondition()) << s.ToString();
  EXPECT_EQ(Requests(), 0u);
  EXPECT_FALSE(IsMounted(mnt));
  EXPECT_TRUE(source_->Mounts().empty());
}

TEST_F(StargzSourceTest, PlainGzipBlobWithTocDigestIsFailedPreconditionAndLeavesNoCache) {
  BuiltLayer built = BuildLayer(SmallLayer("a\n"), SmallChunks());
  std::string digest = Push(testing::Gzip(built.tar));
  std::string mnt = MakeMountpoint("mnt");

  Status s = source_->Mount(Remote(digest, built.toc_digest), mnt);

  EXPECT_TRUE(s.IsFailedPrecondition()) << s.ToString();
  EXPECT_GT(Requests(), 0u) << "the blob had to be looked at";
  EXPECT_FALSE(IsMounted(mnt));
  EXPECT_TRUE(source_->Mounts().empty());
  EXPECT_FALSE(fs::Exists(CacheDirOf(digest)));
  EXPECT_EQ(engine_->Stats().blobs, 0u);
}

TEST_F(StargzSourceTest, WrongTocDigestIsDataLossAndMountsNothing) {
  snapshotter::RemoteLayer layer = PushLayer(SmallLayer("a\n"));
  layer.labels[std::string(kTocDigestAnnotation)] = Sha256Digest("not the TOC");
  std::string mnt = MakeMountpoint("mnt");

  Status s = source_->Mount(layer, mnt);

  EXPECT_EQ(s.code(), Code::kDataLoss) << s.ToString();
  EXPECT_FALSE(IsMounted(mnt));
  EXPECT_TRUE(source_->Mounts().empty());
}

TEST_F(StargzSourceTest, MalformedLayerDigestIsInvalidArgumentWithoutAnyRequest) {
  snapshotter::RemoteLayer layer = PushLayer(SmallLayer("a\n"));
  layer.layer_digest = "sha256:not-hex";
  std::string mnt = MakeMountpoint("mnt");

  Status s = source_->Mount(layer, mnt);

  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_EQ(Requests(), 0u);
  EXPECT_FALSE(IsMounted(mnt));
}

TEST_F(StargzSourceTest, MalformedImageReferenceIsInvalidArgumentWithoutAnyRequest) {
  snapshotter::RemoteLayer layer = PushLayer(SmallLayer("a\n"));
  layer.image_ref = "Not A Reference";
  std::string mnt = MakeMountpoint("mnt");

  Status s = source_->Mount(layer, mnt);

  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_EQ(Requests(), 0u);
  EXPECT_FALSE(IsMounted(mnt));
}

TEST_F(StargzSourceTest, BlobMissingFromTheRegistryIsAnErrorAndMountsNothing) {
  BuiltLayer built = BuildLayer(SmallLayer("a\n"), SmallChunks());  // never pushed
  std::string mnt = MakeMountpoint("mnt");

  Status s = source_->Mount(Remote(Sha256Digest(built.blob), built.toc_digest), mnt);

  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(IsMounted(mnt));
  EXPECT_TRUE(source_->Mounts().empty());
}

// ---- a mounted layer ---------------------------------------------------------------------

TEST_F(StargzSourceTest, MountedLayerServesTheFilesOfTheLayer) {
  snapshotter::RemoteLayer layer = PushLayer(SmallLayer("strata-host\n"));
  std::string mnt = MakeMountpoint("mnt");

  Status s = source_->Mount(layer, mnt);

  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(ReadFile(mnt + "/etc/hostname"), "strata-host\n");
  EXPECT_EQ(ReadFile(mnt + "/usr/share/doc/readme"), "read me\n");
  EXPECT_TRUE(ReadFile(mnt + "/bin/tool") == kBigFile) << "bin/tool differs from the layer's";
  char target[16] = {};
  EXPECT_EQ(::readlink((mnt + "/bin/sh").c_str(), target, sizeof target - 1), 4);
  EXPECT_STREQ(target, "tool");
}

TEST_F(StargzSourceTest, MountIsAReadOnlyFuseMountNamedAfterTheDigest) {
  snapshotter::RemoteLayer layer = PushLayer(SmallLayer("a\n"));
  std::string mnt = MakeMountpoint("mnt");

  ASSERT_TRUE(source_->Mount(layer, mnt).ok());

  Result<std::optional<fuse::MountInfoEntry>> top = fuse::FindMount(mnt);
  ASSERT_TRUE(top.ok() && top->has_value());
  EXPECT_EQ((*top)->fs_type, "fuse.strata-stargz");
  EXPECT_EQ((*top)->source, layer.layer_digest);
  EXPECT_LT(::open((mnt + "/etc/new").c_str(), O_WRONLY | O_CREAT, 0644), 0);
  EXPECT_EQ(errno, EROFS);
}

TEST_F(StargzSourceTest, MountsListsTheMountedLayer) {
  BuiltLayer built;
  snapshotter::RemoteLayer layer = PushLayer(SmallLayer("a\n"), &built);
  std::string mnt = MakeMountpoint("mnt");

  ASSERT_TRUE(source_->Mount(layer, mnt).ok());

  std::vector<MountedLayer> mounts = source_->Mounts();
  ASSERT_EQ(mounts.size(), 1u);
  EXPECT_EQ(mounts[0].mountpoint, mnt);
  EXPECT_EQ(mounts[0].digest, layer.layer_digest);
  EXPECT_EQ(mounts[0].image_ref, image_ref_);
  EXPECT_EQ(mounts[0].blob_size, built.blob.size());
  EXPECT_GT(mounts[0].cached_bytes, 0u) << "the TOC was read through the cache";
}

TEST_F(StargzSourceTest, MountingTheSameLayerAgainAtTheSameMountpointIsOkAndChangesNothing) {
  snapshotter::RemoteLayer layer = PushLayer(SmallLayer("a\n"));
  std::string mnt = MakeMountpoint("mnt");
  ASSERT_TRUE(source_->Mount(layer, mnt).ok());
  uint64_t before = Requests();

  Status again = source_->Mount(layer, mnt);

  EXPECT_TRUE(again.ok()) << again.ToString();
  EXPECT_EQ(Requests(), before);
  EXPECT_EQ(source_->Mounts().size(), 1u);
  EXPECT_EQ(ReadFile(mnt + "/etc/hostname"), "a\n");
}

TEST_F(StargzSourceTest, AnotherLayerAtAMountedMountpointIsAlreadyExists) {
  snapshotter::RemoteLayer first = PushLayer(SmallLayer("first\n"));
  snapshotter::RemoteLayer second = PushLayer(SmallLayer("second\n"));
  std::string mnt = MakeMountpoint("mnt");
  ASSERT_TRUE(source_->Mount(first, mnt).ok());

  Status s = source_->Mount(second, mnt);

  EXPECT_TRUE(s.IsAlreadyExists()) << s.ToString();
  EXPECT_EQ(ReadFile(mnt + "/etc/hostname"), "first\n");
  ASSERT_EQ(source_->Mounts().size(), 1u);
  EXPECT_EQ(source_->Mounts()[0].digest, first.layer_digest);
}

TEST_F(StargzSourceTest, BackgroundFetchCachesTheWholeLayer) {
  BuiltLayer built;
  snapshotter::RemoteLayer layer = PushLayer(SmallLayer("a\n"), &built);
  SourceOptions options = options_;
  options.background_fetch = true;
  StargzSource source(engine_.get(), client_.get(), options);
  std::string mnt = MakeMountpoint("mnt");

  ASSERT_TRUE(source.Mount(layer, mnt).ok());

  EXPECT_TRUE(WaitFor([&] {
    std::vector<MountedLayer> mounts = source.Mounts();
    return mounts.size() == 1 && mounts[0].cached_bytes == built.blob.size();
  }));
  EXPECT_TRUE(source.Unmount(mnt, UnmountReason::kShutdown).ok());
}

// ---- sharing and the cache's life ------------------------------------------------------

TEST_F(StargzSourceTest, SameLayerAtTwoMountpointsSharesOneBlobWithoutNewRequests) {
  snapshotter::RemoteLayer layer = PushLayer(SmallLayer("shared\n"));
  std::string a = MakeMountpoint("a");
  std::string b = MakeMountpoint("b");
  ASSERT_TRUE(source_->Mount(layer, a).ok());
  ASSERT_EQ(ReadFile(a + "/bin/tool").size(), kBigFile.size());
  uint64_t before = Requests();

  Status s = source_->Mount(layer, b);

  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(ReadFile(b + "/bin/tool") == kBigFile);
  EXPECT_EQ(Requests(), before) << "no HEAD, TOC or data fetch for the second mount";
  EXPECT_EQ(engine_->Stats().blobs, 1u);
  EXPECT_EQ(source_->Mounts().size(), 2u);
}

TEST_F(StargzSourceTest, RemovingOneOfTwoMountsKeepsTheCacheAndTheOtherMount) {
  snapshotter::RemoteLayer layer = PushLayer(SmallLayer("shared\n"));
  std::string a = MakeMountpoint("a");
  std::string b = MakeMountpoint("b");
  ASSERT_TRUE(source_->Mount(layer, a).ok());
  ASSERT_TRUE(source_->Mount(layer, b).ok());
  ASSERT_TRUE(fs::Exists(CacheDirOf(layer.layer_digest)));

  Status s = source_->Unmount(a, UnmountReason::kRemoved);

  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_FALSE(IsMounted(a));
  EXPECT_TRUE(fs::Exists(CacheDirOf(layer.layer_digest)));
  EXPECT_TRUE(ReadFile(b + "/bin/tool") == kBigFile);
  ASSERT_EQ(source_->Mounts().size(), 1u);
  EXPECT_EQ(source_->Mounts()[0].mountpoint, b);
}

TEST_F(StargzSourceTest, RemovingTheLastMountDeletesTheCache) {
  snapshotter::RemoteLayer layer = PushLayer(SmallLayer("shared\n"));
  std::string a = MakeMountpoint("a");
  std::string b = MakeMountpoint("b");
  ASSERT_TRUE(source_->Mount(layer, a).ok());
  ASSERT_TRUE(source_->Mount(layer, b).ok());
  ASSERT_TRUE(source_->Unmount(a, UnmountReason::kRemoved).ok());

  Status s = source_->Unmount(b, UnmountReason::kRemoved);

  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_FALSE(IsMounted(b));
  EXPECT_FALSE(fs::Exists(CacheDirOf(layer.layer_digest)));
  EXPECT_TRUE(source_->Mounts().empty());
}

TEST_F(StargzSourceTest, ShutdownUnmountKeepsTheCache) {
  snapshotter::RemoteLayer layer = PushLayer(SmallLayer("a\n"));
  std::string mnt = MakeMountpoint("mnt");
  ASSERT_TRUE(source_->Mount(layer, mnt).ok());

  Status s = source_->Unmount(mnt, UnmountReason::kShutdown);

  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_FALSE(IsMounted(mnt));
  EXPECT_TRUE(source_->Mounts().empty());
  EXPECT_TRUE(fs::Exists(CacheDirOf(layer.layer_digest)));
}

TEST_F(StargzSourceTest, RemountAfterShutdownReadsTheTocFromTheCache) {
  snapshotter::RemoteLayer layer = PushLayer(SmallLayer("a\n"));
  std::string mnt = MakeMountpoint("mnt");
  ASSERT_TRUE(source_->Mount(layer, mnt).ok());
  ASSERT_TRUE(source_->Unmount(mnt, UnmountReason::kShutdown).ok());
  uint64_t before = Requests();

  Status s = source_->Mount(layer, mnt);

  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(Requests() - before, 1u) << "only the HEAD for the blob size";
  EXPECT_EQ(ReadFile(mnt + "/etc/hostname"), "a\n");
}

// The header: the cache goes when the *last* mount is unmounted with kRemoved; a layer
// whose last mount goes at shutdown is mounted again from its cache at the next start.
TEST_F(StargzSourceTest, ShutdownOfTheLastMountAfterRemovingAnotherKeepsTheCache) {
  snapshotter::RemoteLayer layer = PushLayer(SmallLayer("shared\n"));
  std::string a = MakeMountpoint("a");
  std::string b = MakeMountpoint("b");
  ASSERT_TRUE(source_->Mount(layer, a).ok());
  ASSERT_TRUE(source_->Mount(layer, b).ok());
  ASSERT_TRUE(source_->Unmount(a, UnmountReason::kRemoved).ok());

  Status s = source_->Unmount(b, UnmountReason::kShutdown);

  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(fs::Exists(CacheDirOf(layer.layer_digest)));
}

TEST_F(StargzSourceTest, UnmountWhereNothingIsMountedIsOk) {
  std::string mnt = MakeMountpoint("mnt");
  EXPECT_TRUE(source_->Unmount(mnt, UnmountReason::kRemoved).ok());
  EXPECT_TRUE(source_->Unmount(dir_ + "/missing", UnmountReason::kShutdown).ok());
}

TEST_F(StargzSourceTest, DestroyingTheSourceUnmountsEveryLayerAndKeepsTheirCaches) {
  snapshotter::RemoteLayer first = PushLayer(SmallLayer("first\n"));
  snapshotter::RemoteLayer second = PushLayer(SmallLayer("second\n"));
  std::string a = MakeMountpoint("a");
  std::string b = MakeMountpoint("b");
  ASSERT_TRUE(source_->Mount(first, a).ok());
  ASSERT_TRUE(source_->Mount(second, b).ok());

  source_.reset();

  EXPECT_FALSE(IsMounted(a));
  EXPECT_FALSE(IsMounted(b));
  EXPECT_TRUE(fs::Exists(CacheDirOf(first.layer_digest)));
  EXPECT_TRUE(fs::Exists(CacheDirOf(second.layer_digest)));
}

// ---- busy mounts -----------------------------------------------------------------------

TEST_F(StargzSourceTest, UnmountWithAFileOpenIsFailedPreconditionAndTheMountKeepsServing) {
  snapshotter::RemoteLayer layer = PushLayer(SmallLayer("busy\n"));
  std::string mnt = MakeMountpoint("mnt");
  ASSERT_TRUE(source_->Mount(layer, mnt).ok());
  int fd = ::open((mnt + "/etc/hostname").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << std::strerror(errno);

  Status s = source_->Unmount(mnt, UnmountReason::kRemoved);

  EXPECT_TRUE(s.IsFailedPrecondition()) << s.ToString();
  EXPECT_TRUE(IsMounted(mnt));
  char buf[16] = {};
  EXPECT_EQ(::pread(fd, buf, sizeof buf, 0), 5);
  EXPECT_STREQ(buf, "busy\n");
  EXPECT_TRUE(ReadFile(mnt + "/bin/tool") == kBigFile);
  EXPECT_EQ(source_->Mounts().size(), 1u);
  EXPECT_TRUE(fs::Exists(CacheDirOf(layer.layer_digest)));
  ::close(fd);
}

TEST_F(StargzSourceTest, UnmountSucceedsOnceTheOpenFileIsClosed) {
  snapshotter::RemoteLayer layer = PushLayer(SmallLayer("busy\n"));
  std::string mnt = MakeMountpoint("mnt");
  ASSERT_TRUE(source_->Mount(layer, mnt).ok());
  int fd = ::open((mnt + "/etc/hostname").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ASSERT_TRUE(source_->Unmount(mnt, UnmountReason::kRemoved).IsFailedPrecondition());
  ::close(fd);

  Status s = source_->Unmount(mnt, UnmountReason::kRemoved);

  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_FALSE(IsMounted(mnt));
  EXPECT_TRUE(source_->Mounts().empty());
  EXPECT_FALSE(fs::Exists(CacheDirOf(layer.layer_digest)));
}

// The header: a busy Unmount changes nothing, so the refused removal must not mark the
// cache for deletion when the layer later goes at shutdown.
TEST_F(StargzSourceTest, RefusedRemovalDoesNotDeleteTheCacheAtALaterShutdown) {
  snapshotter::RemoteLayer layer = PushLayer(SmallLayer("busy\n"));
  std::string mnt = MakeMountpoint("mnt");
  ASSERT_TRUE(source_->Mount(layer, mnt).ok());
  int fd = ::open((mnt + "/etc/hostname").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ASSERT_TRUE(source_->Unmount(mnt, UnmountReason::kRemoved).IsFailedPrecondition());
  ::close(fd);

  Status s = source_->Unmount(mnt, UnmountReason::kShutdown);

  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(fs::Exists(CacheDirOf(layer.layer_digest)));
}

// ---- a dead mount left at the mount point ----------------------------------------------

TEST_F(StargzSourceTest, MountRecoversADeadMountLeftAtTheMountpoint) {
  BuiltLayer built;
  snapshotter::RemoteLayer layer = PushLayer(SmallLayer("recovered\n"), &built);
  std::string mnt = MakeMountpoint("mnt");
  // A server of an earlier run: the same layer served from memory, then its connection
  // is aborted, which leaves a mount that answers ENOTCONN.
  auto blob = std::make_shared<testing::StringBlobReader>(built.blob);
  OpenOptions open;
  open.toc.toc_digest = built.toc_digest;
  Result<std::unique_ptr<StargzTree>> earlier_tree = StargzTree::Open(blob, open);
  ASSERT_TRUE(earlier_tree.ok()) << earlier_tree.status().ToString();
  fuse::MountOptions earlier_options;
  earlier_options.fs_name = "earlier-run";
  Result<std::unique_ptr<fuse::Server>> earlier =
      fuse::Server::Mount(**earlier_tree, mnt, earlier_options);
  ASSERT_TRUE(earlier.ok()) << earlier.status().ToString();
  ASSERT_TRUE(fuse::AbortConnection((*earlier)->device()).ok());
  ASSERT_TRUE(WaitFor([&] { return !(*earlier)->serving(); }));
  struct statfs st;
  ASSERT_NE(::statfs(mnt.c_str(), &st), 0);
  ASSERT_EQ(errno, ENOTCONN);

  Status s = source_->Mount(layer, mnt);

  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(ReadFile(mnt + "/etc/hostname"), "recovered\n");
  Result<std::optional<fuse::MountInfoEntry>> top = fuse::FindMount(mnt);
  ASSERT_TRUE(top.ok() && top->has_value());
  EXPECT_EQ((*top)->source, layer.layer_digest);  // the source's mount, not the dead one
  EXPECT_TRUE(source_->Unmount(mnt, UnmountReason::kShutdown).ok());
  EXPECT_FALSE(IsMounted(mnt)) << "the dead mount was detached, not left below";
  EXPECT_TRUE((*earlier)->Unmount().ok());
}

}  // namespace
}  // namespace strata::lazy::stargz
