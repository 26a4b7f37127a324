#include "snapshotter/call_loop.h"

#include <grpc/support/time.h>
#include <pthread.h>

namespace strata::snapshotter {

CallLoop::CallLoop(std::unique_ptr<grpc::ServerCompletionQueue> cq, size_t workers)
    : cq_(std::move(cq)), workers_("strata-calls", workers) {}

CallLoop::~CallLoop() { Stop(); }

void CallLoop::Start() {
  if (started_) return;
  started_ = true;
  for (const auto& arm : arm_first_) arm();
  thread_ = std::thread([this] { Loop(); });
  ::pthread_setname_np(thread_.native_handle(), "strata-loop");
}

void CallLoop::Stop() {
  if (stopped_) return;
  stopped_ = true;
  if (thread_.joinable()) {
    // The loop thread meets the alarm between two calls (never while one runs on
    // it) and winds down; see Finish.
    stop_alarm_.Set(cq_.get(), gpr_now(GPR_CLOCK_MONOTONIC), &stop_alarm_);
    thread_.join();
    return;
  }
  // Never started: nothing was armed, but the queue must still be drained.
  cq_->Shutdown();
  void* raw = nullptr;
  bool ok = false;
  while (cq_->Next(&raw, &ok)) DisposeWhileStopping(raw, ok, /*can_reply=*/false);
}

void CallLoop::Loop() {
  Tag* next = nullptr;  // a request taken while looking for more work
  bool next_ok = false;
  while (true) {
    if (stop_requested_) {
      Finish(next, next_ok);
      return;
    }
    Tag* tag = next;
    bool ok = next_ok;
    next = nullptr;
    if (tag == nullptr) {
      void* raw = nullptr;
      if (!cq_->Next(&raw, &ok)) return;  // only Finish shuts the queue down
      if (raw == &stop_alarm_) {
        stop_requested_ = true;
        continue;
      }
      tag = static_cast<Tag*>(raw);
    }
    if (!tag->WaitsForRequest() || !ok) {
      // A reply went out (or could not), or the server shut down before a request
      // came: the call is over.
      delete tag;
      continue;
    }
    tag->ArmNext();  // after the server's shutdown this fails at once (ok=false)
    next = TakeReadyRequest(&next_ok);
    Dispatch(tag, next != nullptr);
  }
}

void CallLoop::Finish(Tag* held, bool held_ok) {
  if (held != nullptr) DisposeWhileStopping(held, held_ok, /*can_reply=*/true);
  workers_.Drain();  // their replies are queued as completions
  // What is already there: finished replies, requests delivered before the server
  // shut down (refused), requests armed again since (failed).
  void* raw = nullptr;
  bool ok = false;
  while (TryNext(&raw, &ok)) DisposeWhileStopping(raw, ok, /*can_reply=*/true);
  cq_->Shutdown();
  while (cq_->Next(&raw, &ok)) DisposeWhileStopping(raw, ok, /*can_reply=*/false);
}

void CallLoop::DisposeWhileStopping(void* raw, bool ok, bool can_reply) {
  if (raw == &stop_alarm_) return;
  Tag* tag = static_cast<Tag*>(raw);
  if (tag->WaitsForRequest() && ok && can_reply) {
    tag->Refuse(grpc::Status(grpc::StatusCode::UNAVAILABLE, "stratad is stopping"));
    return;  // deleted when the refusal has gone out
  }
  // A queue that is shut down takes no reply: deleting the call cancels it.
  delete tag;
}

bool CallLoop::TryNext(void** raw, bool* ok) {
  return cq_->AsyncNext(raw, ok, gpr_time_0(GPR_CLOCK_MONOTONIC)) ==
         grpc::CompletionQueue::GOT_EVENT;
}

CallLoop::Tag* CallLoop::TakeReadyRequest(bool* ok) {
  void* raw = nullptr;
  while (TryNext(&raw, ok)) {
    if (raw == &stop_alarm_) {
      stop_requested_ = true;
      continue;
    }
    Tag* tag = static_cast<Tag*>(raw);
    if (tag->WaitsForRequest()) return tag;
    delete tag;  // a finished reply
  }
  return nullptr;
}

void CallLoop::Dispatch(Tag* call, bool another_is_waiting) {
  // Inline only when this call is all there is: a call that waits for a flush on
  // this thread would keep every later request waiting behind it.
  if (!another_is_waiting && workers_.Pending() == 0 && !call->MustUseWorker()) {
    call->Run();
    return;
  }
  workers_.Submit([call] { call->Run(); });
}

}  // namespace strata::snapshotter
