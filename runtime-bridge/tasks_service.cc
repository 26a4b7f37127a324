#include "runtime-bridge/tasks_service.h"

#include <signal.h>

#include <chrono>
#include <deque>
#include <fstream>
#include <thread>

#include "runtime-bridge/cri_log.h"
#include "runtime-bridge/shim.h"
#include "snapshotter/service.h"
#include "strata/tasks/v1/tasks.grpc.pb.h"

namespace strata::runtime {
namespace {

namespace pb = ::strata::tasks::v1;
using snapshotter::ToGrpc;

pb::TaskState ToProto(TaskState s) {
  switch (s) {
    case TaskState::kCreated:
      return pb::TASK_STATE_CREATED;
    case TaskState::kRunning:
      return pb::TASK_STATE_RUNNING;
    case TaskState::kStopped:
      return pb::TASK_STATE_STOPPED;
    default:
      return pb::TASK_STATE_UNKNOWN;
  }
}

void ToProto(const TaskInfo& t, pb::Task* out) {
  out->set_id(t.id);
  out->set_name(t.name);
  out->set_image(t.image);
  out->set_state(ToProto(t.state));
  for (const auto& a : t.args) out->add_args(a);
  out->set_runtime(t.runtime);
  out->set_bundle(t.bundle);
  out->set_terminal(t.terminal);
  out->set_stdin_open(t.stdin_open);
  out->set_uid_map(t.uid_map);
  out->set_gid_map(t.gid_map);
  out->set_rootfs_remap(t.remap_method);
  out->set_pid(t.pid);
  out->set_exit_code(t.exit_code);
  out->set_created_unix_nanos(t.created_unix_nanos);
  out->set_started_unix_nanos(t.started_unix_nanos);
  out->set_finished_unix_nanos(t.finished_unix_nanos);
  out->set_auto_remove(t.auto_remove);
  out->set_snapshot_key(t.snapshot_key);
}

grpc::Status Reply(const Result<TaskInfo>& r, pb::Task* out) {
  if (!r.ok()) return ToGrpc(r.status());
  ToProto(*r, out);
  return grpc::Status::OK;
}

class TasksService final : public pb::Tasks::Service {
 public:
  explicit TasksService(TaskManager* tasks) : tasks_(tasks) {}

  grpc::Status Create(grpc::ServerContext*, const pb::CreateTaskRequest* req,
                      pb::Task* resp) override {
    CreateOptions o;
    o.image = req->image();
    o.platform = req->platform();
    o.name = req->name();
    if (req->has_entrypoint()) o.entrypoint = req->entrypoint();
    o.cmd.assign(req->cmd().begin(), req->cmd().end());
    o.env.assign(req->env().begin(), req->env().end());
    o.volumes.assign(req->volumes().begin(), req->volumes().end());
    o.devices.assign(req->devices().begin(), req->devices().end());
    o.workdir = req->workdir();
    o.user = req->user();
    o.readonly_rootfs = req->read_only();
    o.memory_bytes = req->memory_bytes();
    o.cpus = req->cpus();
    o.pids_limit = req->pids_limit();
    o.network = req->network().empty() ? "none" : req->network();
    o.hostname = req->hostname();
    o.runtime = req->runtime();
    o.userns = req->userns();
    o.remap_method = req->rootfs_remap();
    o.terminal = req->terminal();
    o.stdin_open = req->stdin_open();
    o.auto_remove = req->auto_remove();
    return Reply(tasks_->Create(o), resp);
  }

  grpc::Status Start(grpc::ServerContext*, const pb::TaskRef* req, pb::Task* resp) override {
    return Reply(tasks_->Start(req->id()), resp);
  }

  grpc::Status Get(grpc::ServerContext*, const pb::TaskRef* req, pb::Task* resp) override {
    return Reply(tasks_->Get(req->id()), resp);
  }

  grpc::Status List(grpc::ServerContext*, const pb::ListTasksRequest* req,
                    pb::ListTasksResponse* resp) override {
    auto list = tasks_->List(req->all());
    if (!list.ok()) return ToGrpc(list.status());
    for (const auto& t : *list) ToProto(t, resp->add_tasks());
    return grpc::Status::OK;
  }

  grpc::Status Kill(grpc::ServerContext*, const pb::KillTaskRequest* req, pb::Task* resp) override {
    int signal = req->signal() == 0 ? SIGTERM : req->signal();
    if (signal < 0 || signal >= NSIG) {
      return ToGrpc(Status::InvalidArgument("invalid signal " + std::to_string(signal)));
    }
    Status s = tasks_->Kill(req->id(), signal, req->all());
    if (!s.ok()) return ToGrpc(s);
    return Reply(tasks_->Get(req->id()), resp);
  }

  grpc::Status Stop(grpc::ServerContext*, const pb::StopTaskRequest* req, pb::Task* resp) override {
    return Reply(tasks_->Stop(req->id(), req->timeout_ms() > 0 ? req->timeout_ms() : 10000), resp);
  }

  grpc::Status Wait(grpc::ServerContext* ctx, const pb::WaitTaskRequest* req,
                    pb::Task* resp) override {
    // Waits in slices so that a client that went away frees the handler.
    const auto start = std::chrono::steady_clock::now();
    while (true) {
      auto r = tasks_->Wait(req->id(), 200);
      if (r.ok() || r.status().code() != Code::kDeadlineExceeded) return Reply(r, resp);
      if (ctx->IsCancelled()) return grpc::Status::CANCELLED;
      if (req->timeout_ms() > 0 &&
          std::chrono::steady_clock::now() - start > std::chrono::milliseconds(req->timeout_ms())) {
        return Reply(r, resp);
      }
    }
  }

  grpc::Status Delete(grpc::ServerContext*, const pb::DeleteTaskRequest* req,
                      pb::Task* resp) override {
    return Reply(tasks_->Delete(req->id(), req->force()), resp);
  }

  grpc::Status Exec(grpc::ServerContext*, const pb::ExecTaskRequest* req,
                    pb::ExecTaskResponse* resp) override {
    ExecOptions o;
    o.args.assign(req->args().begin(), req->args().end());
    o.env.assign(req->env().begin(), req->env().end());
    o.workdir = req->workdir();
    o.user = req->user();
    o.terminal = req->terminal();
    o.stdin_open = req->stdin_open();
    auto r = tasks_->Exec(req->id(), o);
    if (!r.ok()) return ToGrpc(r.status());
    resp->set_exec_id(r->exec_id);
    resp->set_bundle(r->bundle);
    resp->set_socket(r->socket);
    return grpc::Status::OK;
  }

  grpc::Status Logs(grpc::ServerContext* ctx, const pb::LogsRequest* req,
                    grpc::ServerWriter<pb::LogChunk>* writer) override {
    auto task = tasks_->Get(req->id());
    if (!task.ok()) return ToGrpc(task.status());
    const std::string path = task->bundle + "/" + kLogFileName;
    std::ifstream in(path, std::ios::binary);
    // Records before the tail window are skipped; a record is one CRI line.
    std::deque<std::string> window;
    std::string line;
    auto send = [&](const std::string& l) {
      CriLogRecord rec;
      if (!ParseCriLogLine(l, &rec)) return true;
      pb::LogChunk chunk;
      chunk.set_stream(rec.is_stderr ? pb::LogChunk::STDERR : pb::LogChunk::STDOUT);
      chunk.set_data(rec.content);
      chunk.set_unix_nanos(rec.unix_nanos);
      return writer->Write(chunk);
    };
    std::string partial;  // a line the shim is still writing
    auto read_available = [&](bool windowed) {
      if (!in.is_open()) in.open(path, std::ios::binary);
      if (!in.is_open()) return true;
      in.clear();
      while (std::getline(in, line)) {
        if (in.eof()) {  // no '\n' yet: keep it for the next round
          partial += line;
          break;
        }
        std::string full = partial + line;
        partial.clear();
        if (windowed) {
          window.push_back(std::move(full));
          if (req->tail() > 0 && static_cast<int64_t>(window.size()) > req->tail())
            window.pop_front();
        } else if (!send(full)) {
          return false;
        }
      }
      in.clear();
      return true;
    };
    read_available(true);
    for (const auto& l : window) {
      if (!send(l)) return grpc::Status::OK;
    }
    if (!req->follow()) return grpc::Status::OK;
    while (!ctx->IsCancelled()) {
      auto now = tasks_->Get(req->id());
      bool stopped = !now.ok() || now->state == TaskState::kStopped;
      if (!read_available(false)) return grpc::Status::OK;
      if (stopped) {
        read_available(false);
        return grpc::Status::OK;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return grpc::Status::CANCELLED;
  }

 private:
  TaskManager* tasks_;
};

}  // namespace

std::unique_ptr<grpc::Service> NewTasksService(TaskManager* tasks) {
  return std::make_unique<TasksService>(tasks);
}

}  // namespace strata::runtime
