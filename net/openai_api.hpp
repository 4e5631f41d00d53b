#pragma once
// The OpenAI-compatible facade (CONTRACT §2): /v1/models, /v1/completions, /v1/chat/completions,
// streaming and not, on the same admission, placement and task machinery as /v2/tasks.
#include <caf/fwd.hpp>

#include <memory>

namespace llorch {
class task_directory;
}

namespace llorch::net {

class http_router;

void add_openai_routes(http_router& router, caf::actor_system& sys,
                       std::shared_ptr<const task_directory> tasks);

} // namespace llorch::net
