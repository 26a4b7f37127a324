#include "core/digest.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>

#include "core/fs.h"

namespace strata {
namespace {

TEST(DigestTest, Sha256OfKnownVectors) {
  EXPECT_EQ(Sha256Digest(""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Digest("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(DigestTest, StreamingEqualsOneShot) {
  std::string data(3 << 20, '\0');
  for (size_t i = 0; i < data.size(); i++) data[i] = static_cast<char>(i * 31 + 7);
  Sha256 h;
  for (size_t off = 0; off < data.size(); off += 4097) {
    h.Update(std::string_view(data).substr(off, 4097));
  }
  EXPECT_EQ(h.Digest(), Sha256Digest(data));
}

TEST(DigestTest, FileDigestMatchesContent) {
  char tmpl[] = "/tmp/strata-digest-test-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  std::string data(2'500'000, 'z');
  ASSERT_TRUE(fs::WriteFileAtomic(dir + "/blob", data).ok());
  auto d = Sha256DigestOfFile(dir + "/blob");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, Sha256Digest(data));
  EXPECT_TRUE(Sha256DigestOfFile(dir + "/missing").status().IsNotFound());
  ASSERT_TRUE(fs::RemoveAll(dir).ok());
}

TEST(DigestTest, ValidationKnowsSha256Sha384Sha512) {
  EXPECT_TRUE(ValidateDigest("sha256:" + std::string(64, '0')).ok());
  EXPECT_TRUE(ValidateDigest("sha384:" + std::string(96, 'f')).ok());
  EXPECT_TRUE(ValidateDigest("sha512:" + std::string(128, 'e')).ok());
  EXPECT_TRUE(ValidateDigest(Sha256Digest("x")).ok());
  EXPECT_FALSE(ValidateDigest("sha256:" + std::string(63, '0')).ok());
  EXPECT_FALSE(ValidateDigest(std::string(64, '0')).ok());
  EXPECT_FALSE(ValidateDigest("sha256:" + std::string(63, '0') + "g").ok());
  EXPECT_FALSE(ValidateDigest("md5:" + std::string(32, '0')).ok());
}

}  // namespace
}  // namespace strata
