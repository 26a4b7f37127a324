#include "registry/reference.h"

#include <gtest/gtest.h>

#include <string>

namespace strata::registry {
namespace {

const std::string kDigest = "sha256:" + std::string(64, 'a');

std::string Normalized(const std::string& text) {
  auto ref = ParseReference(text);
  EXPECT_TRUE(ref.ok()) << text << ": " << ref.status().ToString();
  return ref.ok() ? ref->String() : "";
}

TEST(ReferenceTest, BareNameGetsDockerHubLibraryAndLatest) {
  EXPECT_EQ(Normalized("busybox"), "docker.io/library/busybox:latest");
}

TEST(ReferenceTest, DockerHubUserRepositoryHasNoLibraryPrefix) {
  EXPECT_EQ(Normalized("user/app:1.0"), "docker.io/user/app:1.0");
}

TEST(ReferenceTest, IndexDockerIoIsDockerIo) {
  EXPECT_EQ(Normalized("index.docker.io/busybox"), "docker.io/library/busybox:latest");
}

TEST(ReferenceTest, FirstComponentWithDotColonOrLocalhostIsTheRegistry) {
  auto ref = ParseReference("ghcr.io/org/team/app:v2");
  ASSERT_TRUE(ref.ok());
  EXPECT_EQ(ref->domain, "ghcr.io");
  EXPECT_EQ(ref->repository, "org/team/app");
  EXPECT_EQ(ref->tag, "v2");
  EXPECT_EQ(Normalized("localhost/app"), "localhost/app:latest");
  EXPECT_EQ(Normalized("localhost:5000/app"), "localhost:5000/app:latest");
  EXPECT_EQ(Normalized("127.0.0.1:5000/a/b:t"), "127.0.0.1:5000/a/b:t");
  EXPECT_EQ(Normalized("[::1]:5000/app"), "[::1]:5000/app:latest");
}

TEST(ReferenceTest, PortIsNotMistakenForATag) {
  auto ref = ParseReference("registry.local:5000/app");
  ASSERT_TRUE(ref.ok());
  EXPECT_EQ(ref->domain, "registry.local:5000");
  EXPECT_EQ(ref->tag, "latest");
}

TEST(ReferenceTest, DigestOnlyKeepsNoTagAndAsksForTheDigest) {
  auto ref = ParseReference("busybox@" + kDigest);
  ASSERT_TRUE(ref.ok()) << ref.status().ToString();
  EXPECT_EQ(ref->tag, "");
  EXPECT_EQ(ref->digest, kDigest);
  EXPECT_EQ(ref->Object(), kDigest);
  EXPECT_EQ(ref->String(), "docker.io/library/busybox@" + kDigest);
}

TEST(ReferenceTest, TagAndDigestAreBothKept) {
  EXPECT_EQ(Normalized("ghcr.io/a/b:1.2@" + kDigest), "ghcr.io/a/b:1.2@" + kDigest);
}

TEST(ReferenceTest, SeparatorsInsidePathComponents) {
  // (a first component with a dot would be a registry host, as in docker)
  EXPECT_EQ(Normalized("user/a.b_c__d---e"), "docker.io/user/a.b_c__d---e:latest");
}

TEST(ReferenceTest, MalformedReferencesAreInvalidArgumentNamingTheReference) {
  const char* bad[] = {
      "",                    // empty
      "Busybox",             // uppercase repository
      "user/App",            // uppercase component
      "busybox:",            // empty tag
      "busybox:-x",          // tag starting with '-'
      "busybox:.x",          // tag starting with '.'
      "a//b",                // empty component
      "a/b/",                // trailing slash
      "-a/b",                // component starting with a separator
      "a..b",                // two dots
      "a_-b",                // mixed separators
      "bad_host.com:x/app",  // non-numeric port (and a bad label)
      "-host.io/app",        // label starting with '-'
      "busybox@sha256:abc",  // short digest
      "busybox@md5:0123",    // unsupported algorithm
      "busybox@sha256:"
      "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
      ":tag",  // no name
  };
  for (const char* text : bad) {
    auto ref = ParseReference(text);
    EXPECT_FALSE(ref.ok()) << "accepted " << text;
    if (!ref.ok()) {
      EXPECT_TRUE(ref.status().IsInvalidArgument()) << text;
      EXPECT_NE(ref.status().message().find("invalid reference"), std::string::npos) << text;
    }
  }
}

TEST(ReferenceTest, TagOf128CharactersIsTheLimit) {
  EXPECT_TRUE(ParseReference("a:" + std::string(128, 'x')).ok());
  EXPECT_FALSE(ParseReference("a:" + std::string(129, 'x')).ok());
}

TEST(ReferenceTest, NamesLongerThan255CharactersAreRejected) {
  EXPECT_TRUE(ParseReference("registry.io/" + std::string(200, 'a')).ok());
  auto ref = ParseReference("registry.io/" + std::string(250, 'a'));
  ASSERT_FALSE(ref.ok());
  EXPECT_NE(ref.status().message().find("255"), std::string::npos);
}

}  // namespace
}  // namespace strata::registry
