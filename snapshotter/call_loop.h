// CallLoop: serves asynchronous unary gRPC methods from one completion queue, running
// each call on the loop's own thread when nothing else is waiting, and on a worker
// thread when other calls are waiting or running.
//
// Why: a snapshot call is short work plus, for a change, one wait for the disk flush.
// With gRPC's synchronous server every call passes between several threads (the
// thread that polls hands polling to another before running the handler), and on a
// small VM each wake-up of a sleeping thread costs tens of microseconds. Run inline,
// a call costs one wake-up for the request and one for the flush. When calls overlap
// (many clients), running them on workers lets their writes wait together, so one
// flush covers them all (metadata::Store's group commit).
#pragma once

#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "core/worker_pool.h"

namespace strata::snapshotter {

class CallLoop {
 public:
  // A completion-queue tag: a call waiting for a request, or for its reply to be sent.
  class Tag {
   public:
    virtual ~Tag() = default;
    // A request arrived (ok) or the server is shutting down (!ok); the call is then
    // handed to Run or deleted.
    virtual bool WaitsForRequest() const = 0;
    // Runs the handler and sends the reply; called once, after a request arrived.
    virtual void Run() = 0;
    // The handler must run on a worker (it may block for long).
    virtual bool MustUseWorker() const = 0;
    // Arms a fresh call of the same method, for the next request.
    virtual void ArmNext() = 0;
    // Answers the request with `status` instead of running the handler.
    virtual void Refuse(const grpc::Status& status) = 0;
  };

  // `cq` comes from grpc::ServerBuilder::AddCompletionQueue; `workers` is the number
  // of worker threads at most (each blocked call holds one).
  CallLoop(std::unique_ptr<grpc::ServerCompletionQueue> cq, size_t workers);
  ~CallLoop();
  CallLoop(const CallLoop&) = delete;
  CallLoop& operator=(const CallLoop&) = delete;

  // Serves `Req` -> `Resp` calls: `request` arms gRPC's Request<Method> for one call,
  // `handle` computes the reply (any thread), `must_use_worker` (optional) says which
  // requests may block for long. Call before Start.
  template <typename Req, typename Resp>
  using RequestFn =
      std::function<void(grpc::ServerContext*, Req*, grpc::ServerAsyncResponseWriter<Resp>*,
                         grpc::ServerCompletionQueue*, void*)>;
  template <typename Req, typename Resp>
  void AddUnary(RequestFn<Req, Resp> request, std::function<grpc::Status(const Req&, Resp*)> handle,
                std::function<bool(const Req&)> must_use_worker = nullptr);

  // Arms every method and starts the loop thread. Call after the server started.
  void Start();

  // Call after grpc::Server::Shutdown returned, from another thread than the loop.
  // The loop thread stops between two calls: it waits for the calls running on
  // workers, answers requests that were delivered but not started with UNAVAILABLE,
  // shuts the completion queue down and drains it. Stop returns when the loop thread
  // has ended. Idempotent.
  void Stop();

 private:
  template <typename Req, typename Resp>
  struct Method {
    RequestFn<Req, Resp> request;
    std::function<grpc::Status(const Req&, Resp*)> handle;
    std::function<bool(const Req&)> must_use_worker;
  };
  template <typename Req, typename Resp>
  class UnaryCall;

  void Loop();
  // The next event if one is already there (never blocks).
  bool TryNext(void** raw, bool* ok);
  // Takes the next event that is already there without blocking. A finished reply is
  // dealt with here, and the stop alarm noted; a new request is returned (the caller
  // owns it). nullptr if none.
  Tag* TakeReadyRequest(bool* ok);
  // Runs `call` now on this thread or hands it to a worker.
  void Dispatch(Tag* call, bool another_is_waiting);
  // On the loop thread, after the stop alarm: see Stop. `held` is a request taken
  // but not started (or nullptr).
  void Finish(Tag* held, bool held_ok);
  // Deals with one event while stopping: delivered requests are refused (while the
  // queue can still take a reply), the rest deleted.
  void DisposeWhileStopping(void* raw, bool ok, bool can_reply);

  std::unique_ptr<grpc::ServerCompletionQueue> cq_;
  WorkerPool workers_;
  // Arms a method's first call; each holds its Method, which calls point at.
  std::vector<std::function<void()>> arm_first_;
  std::thread thread_;
  grpc::Alarm stop_alarm_;       // its tag is &stop_alarm_, not a Tag
  bool stop_requested_ = false;  // loop thread only
  bool started_ = false;
  bool stopped_ = false;
};

template <typename Req, typename Resp>
class CallLoop::UnaryCall final : public CallLoop::Tag {
 public:
  UnaryCall(CallLoop* loop, const Method<Req, Resp>* method) : loop_(loop), method_(method) {
    method_->request(&ctx_, &request_, &writer_, loop_->cq_.get(), this);
  }

  bool WaitsForRequest() const override { return !replying_; }
  bool MustUseWorker() const override {
    return method_->must_use_worker && method_->must_use_worker(request_);
  }
  void ArmNext() override { new UnaryCall(loop_, method_); }
  void Refuse(const grpc::Status& status) override {
    replying_ = true;
    writer_.FinishWithError(status, this);
  }
  void Run() override {
    replying_ = true;
    Resp response;
    grpc::Status status = method_->handle(request_, &response);
    if (status.ok()) {
      writer_.Finish(response, status, this);
    } else {
      writer_.FinishWithError(status, this);
    }
  }

 private:
  CallLoop* loop_;
  const Method<Req, Resp>* method_;
  grpc::ServerContext ctx_;
  Req request_;
  grpc::ServerAsyncResponseWriter<Resp> writer_{&ctx_};
  bool replying_ = false;
};

template <typename Req, typename Resp>
void CallLoop::AddUnary(RequestFn<Req, Resp> request,
                        std::function<grpc::Status(const Req&, Resp*)> handle,
                        std::function<bool(const Req&)> must_use_worker) {
  auto method = std::make_shared<Method<Req, Resp>>(
      Method<Req, Resp>{std::move(request), std::move(handle), std::move(must_use_worker)});
  arm_first_.push_back([this, method] { new UnaryCall<Req, Resp>(this, method.get()); });
}

}  // namespace strata::snapshotter
