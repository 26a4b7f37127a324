// Image verifier plugins (containerd 2.x bindir protocol) run as real processes.
#include "transfer/verifier.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "core/fs.h"

namespace strata::transfer {
namespace {

class VerifierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/strata-verifier-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    options_.bin_dir = dir_ + "/bin";
    ASSERT_TRUE(fs::MakeDirs(options_.bin_dir).ok());
    desc_.media_type = "application/vnd.oci.image.index.v1+json";
    desc_.digest = "sha256:" + std::string(64, 'a');
    desc_.size = 1234;
  }
  void TearDown() override { (void)fs::RemoveAll(dir_); }

  void Plugin(const std::string& name, const std::string& script) {
    std::string path = options_.bin_dir + "/" + name;
    std::ofstream(path) << "#!/bin/sh\n" << script;
    ::chmod(path.c_str(), 0755);
  }

  std::string dir_;
  VerifierOptions options_;
  registry::Descriptor desc_;
};

TEST_F(VerifierTest, NoDirectoryMeansNoVerification) {
  options_.bin_dir = dir_ + "/absent";
  EXPECT_TRUE(VerifyImage(options_, "x/y:z", desc_).ok());
}

TEST_F(VerifierTest, PluginGetsNameDigestMediaTypeAndDescriptor) {
  Plugin("record", "echo \"$@\" > " + dir_ + "/args\ncat > " + dir_ + "/stdin\n");
  ASSERT_TRUE(VerifyImage(options_, "reg.example/app:v1", desc_).ok());
  EXPECT_EQ(*fs::ReadFile(dir_ + "/args"),
            "-name reg.example/app:v1 -digest " + desc_.digest +
                " -stdin-media-type application/vnd.oci.descriptor.v1+json\n");
  std::string stdin_json = *fs::ReadFile(dir_ + "/stdin");
  EXPECT_NE(stdin_json.find("\"digest\":\"" + desc_.digest + "\""), std::string::npos);
  EXPECT_NE(stdin_json.find("\"size\":1234"), std::string::npos);
}

TEST_F(VerifierTest, NonZeroExitRejectsWithStdoutAsReason) {
  Plugin("a-accept", "exit 0\n");
  Plugin("b-reject", "echo 'signature missing'\nexit 3\n");
  Status s = VerifyImage(options_, "reg.example/app:v1", desc_);
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_EQ(s.message(),
            "image reg.example/app:v1 rejected by verifier b-reject: signature missing");
}

TEST_F(VerifierTest, SlowPluginIsKilledAndRejects) {
  Plugin("slow", "sleep 30 &\nsleep 30\n");
  options_.per_verifier_timeout = std::chrono::milliseconds(300);
  Status s = VerifyImage(options_, "reg.example/app:v1", desc_);
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_NE(s.message().find("timed out"), std::string::npos) << s.message();
}

TEST_F(VerifierTest, MoreThanMaxVerifiersRejectsEveryPull) {
  Plugin("one", "exit 0\n");
  Plugin("two", "exit 0\n");
  options_.max_verifiers = 1;
  Status s = VerifyImage(options_, "reg.example/app:v1", desc_);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("max_verifiers"), std::string::npos);
}

}  // namespace
}  // namespace strata::transfer
