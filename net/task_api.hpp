#pragma once
// orchestratord's task routes (CONTRACT §2): submit, state, SSE events, cancel. Handlers talk to
// the admission_queue actor (found by name) and to each task's actor (found in the directory).
#include <caf/fwd.hpp>

#include <memory>

namespace llorch {
class task_directory;
}

namespace llorch::net {

class http_router;

void add_task_routes(http_router& router, caf::actor_system& sys,
                     std::shared_ptr<const task_directory> tasks);

} // namespace llorch::net
