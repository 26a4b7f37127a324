// strata.tasks.v1.Tasks over a TaskManager (api/strata/tasks/v1/tasks.proto).
#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/service_type.h>

#include <memory>

#include "runtime-bridge/tasks.h"

namespace strata::runtime {

// `tasks` is not owned and must outlive the service.
std::unique_ptr<grpc::Service> NewTasksService(TaskManager* tasks);

}  // namespace strata::runtime
