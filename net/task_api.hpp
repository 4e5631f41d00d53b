#pragma once
// orchestratord's task routes (CONTRACT §2): submit, state, SSE events, cancel. Handlers talk to
// the admission_queue actor (found by name) and to each task's actor (found in the directory).
#include "runtime/messages.hpp"

#include <functional>
#include <memory>

namespace llorch {
class task_directory;
}

namespace llorch::net {

class http_router;
class http_exchange;

// Hands `spec` to admission, which answers the client: a refusal (404, 409, 429 with
// Retry-After) or, when admission is gone, 503; an admitted task goes to `on_admitted`, which
// then owns the answer. Runs on admission's thread: keep it quick.
void submit_task(caf::actor_system& sys, std::shared_ptr<http_exchange> ex, task_spec spec,
                 std::function<void(const submit_reply&)> on_admitted);

void add_task_routes(http_router& router, caf::actor_system& sys,
                     std::shared_ptr<const task_directory> tasks);

} // namespace llorch::net
