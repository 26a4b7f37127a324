// Specification of transfer::ImageStore: create, get, list with filters, update by
// field paths, delete; names are opaque data.
#include "transfer/image_store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "core/digest.h"
#include "core/fs.h"

namespace strata::transfer {
namespace {

constexpr char kIndexType[] = "application/vnd.oci.image.index.v1+json";
constexpr char kManifestType[] = "application/vnd.oci.image.manifest.v1+json";

Image MakeImage(const std::string& name, const std::string& content = "index") {
  Image image;
  image.name = name;
  image.target.media_type = kIndexType;
  image.target.digest = Sha256Digest(content);
  image.target.size_bytes = 512;
  return image;
}

class ImageStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/strata-images-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    Reopen();
  }
  void TearDown() override {
    images_.reset();
    metadata_.reset();
    EXPECT_TRUE(fs::RemoveAll(dir_).ok());
  }
  void Reopen() {
    images_.reset();
    metadata_.reset();
    auto md = metadata::Store::Open(dir_ + "/metadata");
    ASSERT_TRUE(md.ok()) << md.status().ToString();
    metadata_ = std::move(md).value();
    images_ = ImageStore::Open(metadata_.get());
  }
  Image MustCreate(const Image& image) {
    auto created = images_->Create(image);
    EXPECT_TRUE(created.ok()) << created.status().ToString();
    return created.ok() ? *created : Image{};
  }
  std::vector<std::string> Names(const std::vector<std::string>& filters) {
    auto list = images_->List(filters);
    EXPECT_TRUE(list.ok()) << list.status().ToString();
    std::vector<std::string> out;
    if (list.ok()) {
      for (const auto& i : *list) out.push_back(i.name);
    }
    return out;
  }

  std::string dir_;
  std::unique_ptr<metadata::Store> metadata_;
  std::unique_ptr<ImageStore> images_;
};

TEST_F(ImageStoreTest, CreatedImageIsReturnedByGetWithItsTimes) {
  Image image = MakeImage("docker.io/library/busybox:latest");
  image.target.annotations = {{"org.opencontainers.image.ref.name", "latest"}};
  image.labels = {{"a", "1"}, {"empty", ""}};
  Image created = MustCreate(image);
  EXPECT_GT(created.created_unix_nanos, 0);
  EXPECT_EQ(created.updated_unix_nanos, created.created_unix_nanos);
  auto got = images_->Get(image.name);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->name, image.name);
  EXPECT_EQ(got->target.media_type, kIndexType);
  EXPECT_EQ(got->target.digest, image.target.digest);
  EXPECT_EQ(got->target.size_bytes, 512);
  EXPECT_EQ(got->target.annotations, image.target.annotations);
  EXPECT_EQ(got->labels, (Labels{{"a", "1"}})) << "empty labels are dropped";
  EXPECT_EQ(got->created_unix_nanos, created.created_unix_nanos);
}

TEST_F(ImageStoreTest, ImagesSurviveReopen) {
  MustCreate(MakeImage("a"));
  Reopen();
  EXPECT_TRUE(images_->Get("a").ok());
}

TEST_F(ImageStoreTest, CreatingATakenNameIsAlreadyExists) {
  MustCreate(MakeImage("a", "first"));
  auto again = images_->Create(MakeImage("a", "second"));
  EXPECT_TRUE(again.status().IsAlreadyExists()) << again.status().ToString();
  EXPECT_EQ(images_->Get("a")->target.digest, Sha256Digest("first"));
}

TEST_F(ImageStoreTest, ConcurrentCreatesOfOneNameHaveOneWinner) {
  std::atomic<int> created{0};
  std::atomic<int> exists{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; t++) {
    threads.emplace_back([&, t] {
      auto r = images_->Create(MakeImage("race", std::to_string(t)));
      if (r.ok()) created++;
      if (r.status().IsAlreadyExists()) exists++;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(created.load(), 1);
  EXPECT_EQ(exists.load(), 7);
}

TEST_F(ImageStoreTest, InvalidImagesAreRefused) {
  EXPECT_TRUE(images_->Create(MakeImage("")).status().IsInvalidArgument());
  Image bad_digest = MakeImage("x");
  bad_digest.target.digest = "sha256:short";
  EXPECT_TRUE(images_->Create(bad_digest).status().IsInvalidArgument());
  Image no_size = MakeImage("x");
  no_size.target.size_bytes = 0;
  EXPECT_TRUE(images_->Create(no_size).status().IsInvalidArgument());
  Image no_type = MakeImage("x");
  no_type.target.media_type.clear();
  EXPECT_TRUE(images_->Create(no_type).status().IsInvalidArgument());
  Image big_label = MakeImage("x");
  big_label.labels["k"] = std::string(5000, 'v');
  EXPECT_TRUE(images_->Create(big_label).status().IsInvalidArgument());
  EXPECT_TRUE(images_->Get("x").status().IsNotFound());
}

TEST_F(ImageStoreTest, NamesAreDataNeverPaths) {
  const std::string odd = std::string("../../etc/passwd\0:latest", 24);
  MustCreate(MakeImage(odd));
  EXPECT_TRUE(images_->Get(odd).ok());
  EXPECT_TRUE(images_->Get("../../etc/passwd").status().IsNotFound());
  EXPECT_FALSE(fs::Exists(dir_ + "/etc"));
}

TEST_F(ImageStoreTest, UpdateTargetReplacesTheWholeDescriptorAndKeepsCreated) {
  Image created = MustCreate(MakeImage("img", "old"));
  Image change;
  change.name = "img";
  change.target = {kManifestType, Sha256Digest("new"), 99, {{"x", "y"}}};
  change.labels = {{"ignored", "because not in the paths"}};
  auto updated = images_->Update(change, {"target"});
  ASSERT_TRUE(updated.ok()) << updated.status().ToString();
  EXPECT_EQ(updated->target.media_type, kManifestType);
  EXPECT_EQ(updated->target.digest, Sha256Digest("new"));
  EXPECT_EQ(updated->target.size_bytes, 99);
  EXPECT_EQ(updated->target.annotations, (Labels{{"x", "y"}}));
  EXPECT_TRUE(updated->labels.empty());
  EXPECT_EQ(updated->created_unix_nanos, created.created_unix_nanos);
  EXPECT_GE(updated->updated_unix_nanos, created.updated_unix_nanos);
  EXPECT_EQ(images_->Get("img")->target.digest, Sha256Digest("new"));
}

TEST_F(ImageStoreTest, UpdateLabelKeySetsOrDeletesThatKeyOnly) {
  Image image = MakeImage("img");
  image.labels = {{"a", "1"}, {"b", "2"}};
  MustCreate(image);
  Image change = MakeImage("img", "not applied");
  change.labels = {{"a", "10"}, {"c", "3"}};
  auto updated = images_->Update(change, {"labels.a", "labels.b"});
  ASSERT_TRUE(updated.ok()) << updated.status().ToString();
  EXPECT_EQ(updated->labels, (Labels{{"a", "10"}}));
  EXPECT_EQ(updated->target.digest, Sha256Digest("index")) << "target untouched";
}

TEST_F(ImageStoreTest, UpdateLabelsReplacesAllLabels) {
  Image image = MakeImage("img");
  image.labels = {{"a", "1"}};
  MustCreate(image);
  Image change = MakeImage("img");
  change.labels = {{"z", "26"}};
  EXPECT_EQ(images_->Update(change, {"labels"})->labels, (Labels{{"z", "26"}}));
}

TEST_F(ImageStoreTest, UpdateAnnotationPathsChangeTheTargetsAnnotations) {
  Image image = MakeImage("img");
  image.target.annotations = {{"keep", "k"}, {"drop", "d"}};
  MustCreate(image);
  Image change = MakeImage("img");
  change.target.annotations = {{"new", "n"}};
  auto updated = images_->Update(change, {"annotations.new", "annotations.drop"});
  ASSERT_TRUE(updated.ok()) << updated.status().ToString();
  EXPECT_EQ(updated->target.annotations, (Labels{{"keep", "k"}, {"new", "n"}}));
  updated = images_->Update(change, {"annotations"});
  EXPECT_EQ(updated->target.annotations, (Labels{{"new", "n"}}));
}

TEST_F(ImageStoreTest, UpdateWithoutPathsReplacesTargetAndLabels) {
  Image image = MakeImage("img", "old");
  image.labels = {{"a", "1"}};
  MustCreate(image);
  Image change = MakeImage("img", "new");
  change.labels = {{"b", "2"}};
  auto updated = images_->Update(change, {});
  ASSERT_TRUE(updated.ok());
  EXPECT_EQ(updated->target.digest, Sha256Digest("new"));
  EXPECT_EQ(updated->labels, (Labels{{"b", "2"}}));
}

TEST_F(ImageStoreTest, UpdateRefusesUnknownPathsImagesAndInvalidResults) {
  MustCreate(MakeImage("img"));
  EXPECT_TRUE(images_->Update(MakeImage("img"), {"name"}).status().IsInvalidArgument());
  EXPECT_TRUE(images_->Update(MakeImage("missing"), {"target"}).status().IsNotFound());
  Image broken = MakeImage("img");
  broken.target.digest = "nonsense";
  EXPECT_TRUE(images_->Update(broken, {"target"}).status().IsInvalidArgument());
  EXPECT_EQ(images_->Get("img")->target.digest, Sha256Digest("index"));
}

TEST_F(ImageStoreTest, ListFiltersOnNameTargetLabelsAndAnnotations) {
  Image a = MakeImage("docker.io/library/alpine:3");
  a.labels = {{"team", "core"}};
  Image b = MakeImage("docker.io/library/busybox:latest", "b");
  b.target.media_type = kManifestType;
  b.target.annotations = {{"org.opencontainers.image.ref.name", "latest"}};
  Image c = MakeImage("ghcr.io/org/app:1", "c");
  MustCreate(c);
  MustCreate(a);
  MustCreate(b);
  EXPECT_EQ(Names({}), (std::vector<std::string>{a.name, b.name, c.name})) << "in name order";
  EXPECT_EQ(Names({"name==" + c.name}), std::vector<std::string>{c.name});
  EXPECT_EQ(Names({"name~=^docker.io/"}), (std::vector<std::string>{a.name, b.name}));
  EXPECT_EQ(Names({"target.mediatype==" + std::string(kManifestType)}),
            std::vector<std::string>{b.name});
  EXPECT_EQ(Names({"target.digest==" + Sha256Digest("c")}), std::vector<std::string>{c.name});
  EXPECT_EQ(Names({"labels.team==core", "name==" + c.name}),
            (std::vector<std::string>{a.name, c.name}));
  EXPECT_EQ(Names({"annotations.\"org.opencontainers.image.ref.name\""}),
            std::vector<std::string>{b.name});
  EXPECT_TRUE(images_->List({"name=="}).status().IsInvalidArgument());
}

TEST_F(ImageStoreTest, DeleteRemovesTheImage) {
  MustCreate(MakeImage("a"));
  MustCreate(MakeImage("b"));
  ASSERT_TRUE(images_->Delete("a").ok());
  EXPECT_TRUE(images_->Get("a").status().IsNotFound());
  EXPECT_EQ(Names({}), std::vector<std::string>{"b"});
  EXPECT_TRUE(images_->Delete("a").IsNotFound());
}

}  // namespace
}  // namespace strata::transfer
