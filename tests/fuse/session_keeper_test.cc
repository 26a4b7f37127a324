// The FUSE session keeper's protocol and lifetime rules (fuse/session_keeper.h), with
// pipes standing in for /dev/fuse descriptors: the keeper only holds descriptors and
// watches them for errors, whatever they are.
#include "fuse/session_keeper.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

namespace strata::fuse {
namespace {

using namespace std::chrono_literals;

class SessionKeeperTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::signal(SIGPIPE, SIG_IGN);
    char dir[] = "/tmp/strata-keeper-test.XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    socket_ = dir_ + "/keeper.sock";
  }
  void TearDown() override {
    if (keeper_pid_ > 0) {
      ::kill(keeper_pid_, SIGKILL);
      ::waitpid(keeper_pid_, nullptr, 0);
    }
    std::string cmd = "rm -rf '" + dir_ + "'";
    (void)std::system(cmd.c_str());
  }

  // Runs the keeper in a child process (as `stratad --fuse-keeper` would).
  void StartKeeper(std::chrono::milliseconds grace) {
    keeper_pid_ = ::fork();
    ASSERT_GE(keeper_pid_, 0);
    if (keeper_pid_ == 0) ::_exit(RunSessionKeeper(socket_, grace));
    for (int i = 0; i < 200 && ::access(socket_.c_str(), F_OK) != 0; i++) {
      std::this_thread::sleep_for(10ms);
    }
  }

  // Whether the keeper exited within `timeout`.
  bool KeeperExitsWithin(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (::waitpid(keeper_pid_, nullptr, WNOHANG) == keeper_pid_) {
        keeper_pid_ = -1;
        return true;
      }
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }

  SessionKeeperClient Client() { return SessionKeeperClient(socket_, {"/nonexistent"}, 1s); }

  std::string dir_;
  std::string socket_;
  pid_t keeper_pid_ = -1;
};

TEST_F(SessionKeeperTest, TakeAllWithoutAKeeperIsEmptyAndStartsNothing) {
  SessionKeeperClient client(socket_, {"/nonexistent"}, 1s);
  auto taken = client.TakeAll();
  ASSERT_TRUE(taken.ok()) << taken.status().ToString();
  EXPECT_TRUE(taken->empty());
  EXPECT_NE(::access(socket_.c_str(), F_OK), 0);
}

TEST_F(SessionKeeperTest, KeptDescriptorsComeBackAsCopiesOfTheSameFile) {
  StartKeeper(5s);
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  {
    SessionKeeperClient client = Client();
    ASSERT_TRUE(client.Put("/mnt/layer 1", fds[0]).ok());
  }
  ::close(fds[0]);  // the keeper's copy keeps the pipe's read end open

  SessionKeeperClient next = Client();  // "the next daemon"
  auto taken = next.TakeAll();
  ASSERT_TRUE(taken.ok()) << taken.status().ToString();
  ASSERT_EQ(taken->size(), 1u);
  ASSERT_EQ(taken->begin()->first, "/mnt/layer 1");
  int copy = taken->begin()->second;
  ASSERT_EQ(::write(fds[1], "hi", 2), 2);
  char buf[2];
  ASSERT_EQ(::read(copy, buf, 2), 2);
  EXPECT_EQ(std::string(buf, 2), "hi");
  ::close(copy);
  ::close(fds[1]);
}

TEST_F(SessionKeeperTest, RemovedSessionsAreClosedAndNotHandedOut) {
  StartKeeper(5s);
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  SessionKeeperClient client = Client();
  ASSERT_TRUE(client.Put("/mnt/a", fds[0]).ok());
  ::close(fds[0]);
  ASSERT_TRUE(client.Remove("/mnt/a").ok());
  auto taken = client.TakeAll();
  ASSERT_TRUE(taken.ok());
  EXPECT_TRUE(taken->empty());
  // Nobody holds the read end any more.
  EXPECT_EQ(::write(fds[1], "x", 1), -1);
  EXPECT_EQ(errno, EPIPE);
  ::close(fds[1]);
}

TEST_F(SessionKeeperTest, ASessionWhoseOtherEndWentAwayIsDropped) {
  StartKeeper(5s);
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  SessionKeeperClient client = Client();
  ASSERT_TRUE(client.Put("/mnt/gone", fds[0]).ok());
  ::close(fds[0]);
  ::close(fds[1]);  // POLLHUP on the kept end, as POLLERR on an ended FUSE connection
  std::this_thread::sleep_for(200ms);
  auto taken = client.TakeAll();
  ASSERT_TRUE(taken.ok());
  EXPECT_TRUE(taken->empty());
}

TEST_F(SessionKeeperTest, TheKeeperExitsWhenItHoldsNothingAndTheDaemonLeaves) {
  StartKeeper(5s);
  {
    SessionKeeperClient client = Client();
    ASSERT_TRUE(client.TakeAll().ok());
  }
  EXPECT_TRUE(KeeperExitsWithin(3s));
  EXPECT_NE(::access(socket_.c_str(), F_OK), 0) << "socket left behind";
}

TEST_F(SessionKeeperTest, WithoutADaemonForTheGraceItEndsEverySessionAndExits) {
  StartKeeper(500ms);
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  {
    SessionKeeperClient client = Client();
    ASSERT_TRUE(client.Put("/mnt/a", fds[0]).ok());
  }
  ::close(fds[0]);
  EXPECT_TRUE(KeeperExitsWithin(5s));
  EXPECT_EQ(::write(fds[1], "x", 1), -1) << "the kept copy should be closed";
  EXPECT_EQ(errno, EPIPE);
  ::close(fds[1]);
}

TEST_F(SessionKeeperTest, ASecondKeeperOnTheSameSocketLeavesTheFirstAlone) {
  StartKeeper(5s);
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  {
    SessionKeeperClient client = Client();
    ASSERT_TRUE(client.Put("/mnt/a", fds[0]).ok());
  }
  EXPECT_EQ(RunSessionKeeper(socket_, 1s), 1);  // returns at once: one answers there
  SessionKeeperClient client = Client();
  auto taken = client.TakeAll();
  ASSERT_TRUE(taken.ok()) << taken.status().ToString();
  ASSERT_EQ(taken->size(), 1u) << "the first keeper lost its session";
  ::close(taken->begin()->second);
  ::close(fds[0]);
  ::close(fds[1]);
}

}  // namespace
}  // namespace strata::fuse
