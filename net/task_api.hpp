#pragma once
// orchestratord's task routes (CONTRACT §2): submit, state, SSE events, cancel. Handlers talk to
// the admission_queue actor (found by name) and to each task's actor.
#include <caf/fwd.hpp>

namespace llorch::net {

class http_router;

void add_task_routes(http_router& router, caf::actor_system& sys);

} // namespace llorch::net
