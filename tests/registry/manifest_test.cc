#include "registry/manifest.h"

#include <gtest/gtest.h>

namespace strata::registry {
namespace {

const std::string kDigestA = "sha256:" + std::string(64, 'a');
const std::string kDigestB = "sha256:" + std::string(64, 'b');

TEST(PlatformTest, ParsesAndNormalisesAliases) {
  EXPECT_EQ(ParsePlatform("linux/amd64")->String(), "linux/amd64");
  EXPECT_EQ(ParsePlatform("linux/x86_64")->String(), "linux/amd64");
  EXPECT_EQ(ParsePlatform("linux/aarch64")->String(), "linux/arm64/v8");
  EXPECT_EQ(ParsePlatform("linux/arm")->String(), "linux/arm/v7");
  EXPECT_EQ(ParsePlatform("arm64")->String(), "linux/arm64/v8");
  EXPECT_EQ(ParsePlatform("linux/arm/v6")->String(), "linux/arm/v6");
}

TEST(PlatformTest, RejectsMalformedText) {
  for (const char* bad : {"", "/", "linux/", "linux/amd64/v1/x", "Linux/AMD64", "linux/a b"}) {
    auto p = ParsePlatform(bad);
    EXPECT_EQ(p.status().code(), Code::kInvalidArgument) << bad;
  }
}

TEST(PlatformTest, HostPlatformIsLinux) { EXPECT_EQ(HostPlatform().os, "linux"); }

TEST(PlatformTest, ArmV7HostRunsV6ButNotV8) {
  EXPECT_TRUE(PlatformMatches(*ParsePlatform("linux/arm/v7"), *ParsePlatform("linux/arm/v6")));
  EXPECT_FALSE(PlatformMatches(*ParsePlatform("linux/arm/v6"), *ParsePlatform("linux/arm/v7")));
  EXPECT_FALSE(PlatformMatches(*ParsePlatform("linux/amd64"), *ParsePlatform("linux/arm64")));
}

TEST(ManifestTest, ParsesOciManifest) {
  std::string json = R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
    "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":")" +
                     kDigestA +
                     R"(","size":10},
    "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":")" +
                     kDigestB + R"(","size":20,"annotations":{"k":"v"}}]})";
  auto m = ParseManifest(json);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->config.digest, kDigestA);
  ASSERT_EQ(m->layers.size(), 1u);
  EXPECT_EQ(m->layers[0].size, 20);
  EXPECT_EQ(m->layers[0].annotations.at("k"), "v");
}

TEST(ManifestTest, ManifestWithoutMediaTypeIsRecognisedByShape) {
  std::string json =
      R"({"schemaVersion":2,"config":{"digest":")" + kDigestA + R"(","size":1},"layers":[]})";
  auto m = ParseManifest(json);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->media_type, kMediaTypeOciManifest);
}

TEST(ManifestTest, BadDescriptorsAreInvalidArgument) {
  for (const std::string& bad : std::vector<std::string>{
           std::string("not json"), std::string("[]"),
           R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]})",
           R"({"config":{"digest":"sha256:xyz","size":1},"layers":[]})",
           R"({"config":{"digest":")" + kDigestA + R"(","size":-1},"layers":[]})",
           R"({"schemaVersion":1,"fsLayers":[]})"}) {
    auto m = ParseManifest(bad);
    EXPECT_EQ(m.status().code(), Code::kInvalidArgument) << bad;
  }
}

TEST(ManifestTest, IndexPrefersExactVariant) {
  std::string json =
      R"({"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[
    {"digest":")" +
      kDigestA + R"(","size":1,"platform":{"os":"linux","architecture":"arm","variant":"v6"}},
    {"digest":")" +
      kDigestB + R"(","size":1,"platform":{"os":"linux","architecture":"arm","variant":"v7"}}]})";
  auto index = ParseIndex(json);
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  EXPECT_EQ(SelectPlatform(*index, *ParsePlatform("linux/arm/v7"))->digest, kDigestB);
  EXPECT_EQ(SelectPlatform(*index, *ParsePlatform("linux/arm/v6"))->digest, kDigestA);
}

TEST(ManifestTest, DiffIdsComeFromTheConfig) {
  auto ids = ParseDiffIds(R"({"rootfs":{"type":"layers","diff_ids":[")" + kDigestA + R"("]}})");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, std::vector<std::string>{kDigestA});
  EXPECT_FALSE(ParseDiffIds(R"({"rootfs":{}})").ok());
  EXPECT_FALSE(ParseDiffIds(R"({"rootfs":{"diff_ids":["nope"]}})").ok());
}

TEST(ManifestTest, DescriptorJsonRoundTrips) {
  Descriptor d;
  d.media_type = kMediaTypeOciManifest;
  d.digest = kDigestA;
  d.size = 42;
  d.platform = Platform{"linux", "arm64", "v8", ""};
  std::string index = R"({"manifests":[)" + DescriptorJson(d) + "]}";
  auto parsed = ParseIndex(index);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->manifests[0].digest, kDigestA);
  EXPECT_EQ(parsed->manifests[0].platform->String(), "linux/arm64/v8");
}

}  // namespace
}  // namespace strata::registry
