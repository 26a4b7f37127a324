#include "core/subprocess.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>

namespace strata {
namespace {

TEST(SubprocessTest, PassesStdinAndCapturesStdoutStderrAndExitCode) {
  ProcessOptions opts;
  opts.stdin_data = "hello from stdin";
  auto r = RunProcess({"sh", "-c", "cat; echo oops >&2; exit 3"}, opts);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->stdout_data, "hello from stdin");
  EXPECT_EQ(r->stderr_data, "oops\n");
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_FALSE(r->timed_out);
}

TEST(SubprocessTest, MissingProgramIsNotFound) {
  auto r = RunProcess({"strata-no-such-program-xyz"});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsNotFound());
}

TEST(SubprocessTest, DeadlineKillsTheWholeProcessGroup) {
  ProcessOptions opts;
  opts.timeout_ms = 300;
  auto start = std::chrono::steady_clock::now();
  // The grandchild keeps stdout open; killing only the shell would leave us waiting.
  auto r = RunProcess({"sh", "-c", "sleep 30 & sleep 30"}, opts);
  auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->timed_out);
  EXPECT_EQ(r->signal, SIGKILL);
  EXPECT_LT(elapsed, std::chrono::seconds(10));
}

TEST(SubprocessTest, OutputIsCappedButDrained) {
  ProcessOptions opts;
  opts.max_output_bytes = 1000;
  auto r = RunProcess({"sh", "-c", "head -c 100000 /dev/zero; echo done >&2"}, opts);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->stdout_data.size(), 1000u);
  EXPECT_EQ(r->stderr_data, "done\n");
  EXPECT_EQ(r->exit_code, 0);
}

TEST(SubprocessTest, HelperThatIgnoresStdinStillCompletes) {
  ProcessOptions opts;
  opts.stdin_data = std::string(1 << 20, 'x');  // more than a pipe holds
  auto r = RunProcess({"sh", "-c", "exec 0<&-; echo ok"}, opts);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->stdout_data, "ok\n");
  EXPECT_EQ(r->exit_code, 0);
}

}  // namespace
}  // namespace strata
