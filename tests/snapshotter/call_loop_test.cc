// CallLoop, specified through a real gRPC server on a unix socket: where calls run
// (the loop thread alone, workers when calls overlap or may block), that replies and
// errors reach the client, and that Stop lets calls in progress finish.
#include "snapshotter/call_loop.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"

namespace strata::snapshotter {
namespace {

namespace pb = ::containerd::services::snapshots::v1;
using Service = pb::Snapshots::WithAsyncMethod_Stat<
    pb::Snapshots::WithAsyncMethod_Usage<pb::Snapshots::Service>>;

std::string ThreadName() {
  char name[16] = {};
  pthread_getname_np(pthread_self(), name, sizeof(name));
  return name;
}

class CallLoopTest : public ::testing::Test {
 protected:
  // Stat replies with the handler's thread name (as the snapshot name), after
  // `stat_hook` ran; Usage (which must use a worker) runs `usage_hook`.
  void StartServer() {
    socket_ = "/tmp/strata-call-loop-test-" + std::to_string(::getpid()) + ".sock";
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix://" + socket_, grpc::InsecureServerCredentials());
    builder.RegisterService(&service_);
    loop_ = std::make_unique<CallLoop>(builder.AddCompletionQueue(), 16);
    Service* s = &service_;
    loop_->AddUnary<pb::StatSnapshotRequest, pb::StatSnapshotResponse>(
        [s](grpc::ServerContext* ctx, pb::StatSnapshotRequest* req,
            grpc::ServerAsyncResponseWriter<pb::StatSnapshotResponse>* w,
            grpc::ServerCompletionQueue* cq,
            void* tag) { s->RequestStat(ctx, req, w, cq, cq, tag); },
        [this](const pb::StatSnapshotRequest& req, pb::StatSnapshotResponse* resp) {
          if (req.key() == "missing")
            return grpc::Status(grpc::StatusCode::NOT_FOUND, "no missing");
          if (stat_hook_) stat_hook_(req.key());
          resp->mutable_info()->set_name(ThreadName());
          return grpc::Status::OK;
        });
    loop_->AddUnary<pb::UsageRequest, pb::UsageResponse>(
        [s](grpc::ServerContext* ctx, pb::UsageRequest* req,
            grpc::ServerAsyncResponseWriter<pb::UsageResponse>* w, grpc::ServerCompletionQueue* cq,
            void* tag) { s->RequestUsage(ctx, req, w, cq, cq, tag); },
        [this](const pb::UsageRequest&, pb::UsageResponse* resp) {
          if (usage_hook_) usage_hook_();
          resp->set_size(ThreadName() == "strata-calls" ? 1 : 0);
          return grpc::Status::OK;
        },
        [](const pb::UsageRequest&) { return true; });
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    loop_->Start();
    channel_ = grpc::CreateChannel("unix://" + socket_, grpc::InsecureChannelCredentials());
  }

  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    if (loop_) loop_->Stop();
    server_.reset();
    ::unlink(socket_.c_str());
  }

  // Each client uses a channel of its own, so calls really travel at once.
  grpc::Status Stat(const std::string& key, std::string* thread) {
    auto channel = grpc::CreateCustomChannel(
        "unix://" + socket_, grpc::InsecureChannelCredentials(), UniqueChannelArgs());
    auto stub = pb::Snapshots::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    pb::StatSnapshotRequest req;
    req.set_key(key);
    pb::StatSnapshotResponse resp;
    grpc::Status s = stub->Stat(&ctx, req, &resp);
    if (thread != nullptr) *thread = resp.info().name();
    return s;
  }

  grpc::ChannelArguments UniqueChannelArgs() {
    grpc::ChannelArguments args;
    args.SetInt("strata.test.channel", channel_seq_++);  // no subchannel sharing
    return args;
  }

  Service service_;
  std::unique_ptr<CallLoop> loop_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::string socket_;
  std::function<void(const std::string&)> stat_hook_;
  std::function<void()> usage_hook_;
  std::atomic<int> channel_seq_{0};
};

TEST_F(CallLoopTest, ACallAloneRunsOnTheLoopThread) {
  StartServer();
  for (int i = 0; i < 5; i++) {
    std::string thread;
    grpc::Status s = Stat("k" + std::to_string(i), &thread);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(thread, "strata-loop");
  }
}

TEST_F(CallLoopTest, ErrorsReachTheClientWithTheirCodeAndMessage) {
  StartServer();
  grpc::Status s = Stat("missing", nullptr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(s.error_message(), "no missing");
  // The loop goes on serving.
  std::string thread;
  EXPECT_TRUE(Stat("k", &thread).ok());
  EXPECT_EQ(thread, "strata-loop");
}

TEST_F(CallLoopTest, CallsThatMayBlockLongRunOnWorkers) {
  StartServer();
  auto stub = pb::Snapshots::NewStub(channel_);
  for (int i = 0; i < 3; i++) {
    grpc::ClientContext ctx;
    pb::UsageRequest req;
    pb::UsageResponse resp;
    ASSERT_TRUE(stub->Usage(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.size(), 1) << "Usage ran on the loop thread";
  }
}

// While a call keeps the loop busy, the calls that arrive meanwhile must then run
// together on workers, not one after the other on the loop: each of them waits
// until all are running at once.
TEST_F(CallLoopTest, CallsThatArriveWhileTheLoopIsBusyRunAtOnceOnWorkers) {
  constexpr int kOthers = 6;
  std::mutex mu;
  std::condition_variable cv;
  bool first_entered = false;
  bool release_first = false;
  int running = 0;
  int ran_on_loop = 0;
  bool all_met = false;
  stat_hook_ = [&](const std::string& key) {
    std::unique_lock<std::mutex> lock(mu);
    if (key == "first") {
      first_entered = true;
      cv.notify_all();
      cv.wait(lock, [&] { return release_first; });
      return;
    }
    if (ThreadName() == "strata-loop") {  // wrong, and must not block the loop
      ran_on_loop++;
      return;
    }
    running++;
    cv.notify_all();
    if (cv.wait_for(lock, std::chrono::seconds(10), [&] { return running >= kOthers; })) {
      all_met = true;
    }
  };
  StartServer();
  // Connections first, so that the calls later travel at once.
  std::vector<std::unique_ptr<pb::Snapshots::Stub>> stubs;
  for (int i = 0; i < kOthers; i++) {
    auto channel = grpc::CreateCustomChannel(
        "unix://" + socket_, grpc::InsecureChannelCredentials(), UniqueChannelArgs());
    ASSERT_TRUE(
        channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10)));
    stubs.push_back(pb::Snapshots::NewStub(channel));
  }
  std::thread first([&] { EXPECT_TRUE(Stat("first", nullptr).ok()); });
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return first_entered; }));
  }
  std::vector<std::thread> others;
  std::vector<std::string> threads(kOthers);
  for (int i = 0; i < kOthers; i++) {
    others.emplace_back([&, i] {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      pb::StatSnapshotRequest req;
      req.set_key("other" + std::to_string(i));
      pb::StatSnapshotResponse resp;
      EXPECT_TRUE(stubs[i]->Stat(&ctx, req, &resp).ok());
      threads[i] = resp.info().name();
    });
  }
  // Time for the requests to reach the server (over open connections) while the
  // loop is held.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  {
    std::lock_guard<std::mutex> lock(mu);
    release_first = true;
    cv.notify_all();
  }
  first.join();
  for (auto& t : others) t.join();
  EXPECT_EQ(ran_on_loop, 0);
  EXPECT_TRUE(all_met) << "the calls did not run at once";
  for (const auto& name : threads) EXPECT_EQ(name, "strata-calls");
}

// A handler that takes 500 ms, and the test's view of it.
class SlowHandler {
 public:
  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    entered_ = true;
    cv_.notify_all();
    cv_.wait_for(lock, std::chrono::milliseconds(500));
    finished_ = true;
  }
  bool WaitUntilEntered() {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return entered_; });
  }
  bool Finished() {
    std::lock_guard<std::mutex> lock(mu_);
    return finished_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool entered_ = false;
  bool finished_ = false;
};

// Stop after a Shutdown whose deadline passed: calls still running, on a worker or
// on the loop itself, finish before Stop returns, and nothing breaks. `call` makes
// the client's call (its status is OK or CANCELLED, by timing).
void ExpectStopLetsTheCallFinish(grpc::Server* server, CallLoop* loop, SlowHandler& handler,
                                 const std::function<void()>& call) {
  std::thread client(call);
  EXPECT_TRUE(handler.WaitUntilEntered());
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(50));
  loop->Stop();
  EXPECT_TRUE(handler.Finished()) << "Stop returned while a call was still running";
  client.join();
}

TEST_F(CallLoopTest, StopLetsACallOnAWorkerFinishFirst) {
  SlowHandler handler;
  usage_hook_ = [&] { handler.Run(); };
  StartServer();
  ExpectStopLetsTheCallFinish(server_.get(), loop_.get(), handler, [&] {
    auto stub = pb::Snapshots::NewStub(channel_);
    grpc::ClientContext ctx;
    pb::UsageRequest req;
    pb::UsageResponse resp;
    stub->Usage(&ctx, req, &resp).ok();
  });
}

TEST_F(CallLoopTest, StopLetsACallOnTheLoopThreadFinishFirst) {
  SlowHandler handler;
  stat_hook_ = [&](const std::string&) { handler.Run(); };
  StartServer();
  ExpectStopLetsTheCallFinish(server_.get(), loop_.get(), handler,
                              [&] { Stat("k", nullptr).ok(); });
}

TEST_F(CallLoopTest, StopWithoutStartDrainsTheQueue) {
  grpc::ServerBuilder builder;
  Service service;
  builder.RegisterService(&service);
  CallLoop loop(builder.AddCompletionQueue(), 2);
  auto server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  server->Shutdown();
  loop.Stop();
  loop.Stop();  // idempotent
}

}  // namespace
}  // namespace strata::snapshotter
