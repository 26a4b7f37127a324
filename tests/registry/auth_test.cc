#include "registry/auth.h"

#include <gtest/gtest.h>

namespace strata::registry {
namespace {

TEST(AuthChallengeTest, ParsesBearerWithQuotedParameters) {
  auto c = ParseAuthChallenges(
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull")");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].scheme, "bearer");
  EXPECT_EQ(c[0].params["realm"], "https://auth.docker.io/token");
  EXPECT_EQ(c[0].params["service"], "registry.docker.io");
  EXPECT_EQ(c[0].params["scope"], "repository:library/busybox:pull");
}

TEST(AuthChallengeTest, ParsesSeveralChallengesAndEscapes) {
  auto c = ParseAuthChallenges(
      R"(Basic realm="a \"quoted\" realm", Bearer realm=https://x/t,error=invalid_token)");
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].scheme, "basic");
  EXPECT_EQ(c[0].params["realm"], "a \"quoted\" realm");
  EXPECT_EQ(c[1].scheme, "bearer");
  EXPECT_EQ(c[1].params["realm"], "https://x/t");
  EXPECT_EQ(c[1].params["error"], "invalid_token");
}

TEST(AuthChallengeTest, GarbageYieldsNoCrashAndNoRealm) {
  for (const char* h : {"", "=", ",,,", "Bearer realm=\"unterminated", "Bearer =x"}) {
    auto c = ParseAuthChallenges(h);
    for (auto& ch : c) {
      if (ch.scheme == "bearer" && ch.params.count("realm")) {
        EXPECT_EQ(std::string(h), "Bearer realm=\"unterminated");
      }
    }
  }
}

TEST(AuthChallengeTest, BasicAuthorizationIsBase64OfUserColonSecret) {
  EXPECT_EQ(BasicAuthorization({"alice", "s3cret", false}), "Basic YWxpY2U6czNjcmV0");
}

}  // namespace
}  // namespace strata::registry
