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
  if (started_) workers_.Drain();  // their replies still go out through the loop
  cq_->Shutdown();
  if (thread_.joinable()) {
    thread_.join();
    return;
  }
  // Never started: nothing was armed, but the queue must still be drained.
  void* tag = nullptr;
  bool ok = false;
  while (cq_->Next(&tag, &ok)) delete static_cast<Tag*>(tag);
}

void CallLoop::Loop() {
  Tag* next = nullptr;  // a request taken while looking for more work
  bool next_ok = false;
  while (true) {
    Tag* tag = next;
    bool ok = next_ok;
    next = nullptr;
    if (tag == nullptr) {
      void* raw = nullptr;
      if (!cq_->Next(&raw, &ok)) return;  // shut down and drained
      tag = static_cast<Tag*>(raw);
    }
    if (!tag->WaitsForRequest() || !ok) {
      // A reply went out (or could not), or the server shut down before a request
      // came: the call is over.
      delete tag;
      continue;
    }
    tag->ArmNext();
    next = TakeReadyRequest(&next_ok);
    Dispatch(tag, next != nullptr);
  }
}

CallLoop::Tag* CallLoop::TakeReadyRequest(bool* ok) {
  while (true) {
    void* raw = nullptr;
    grpc::CompletionQueue::NextStatus s = cq_->AsyncNext(&raw, ok, gpr_time_0(GPR_CLOCK_MONOTONIC));
    if (s != grpc::CompletionQueue::GOT_EVENT) return nullptr;
    Tag* tag = static_cast<Tag*>(raw);
    if (tag->WaitsForRequest()) return tag;
    delete tag;  // a finished reply
  }
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
