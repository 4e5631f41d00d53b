#pragma once
// task: one actor per task. Places and re-places its task: when its node or engine fails it asks
// admission to place it again and resumes from prompt + the tokens already produced, so the
// client's stream is the one it would have been without the fault. Its event log and subscribers
// are in its task_stream, which the stream router feeds with tokens and normal ends directly;
// the actor appends `started`, cancels and errors, and settles an ended task (metrics, admission).
//
// Messages:
//   (generate_atom, node_id, pool_id, agent, engine, pool)  from admission: the task was placed
//                                 (engine and pool: the pool's actors, null when unknown)
//   engine_done                   from the stream router (after it ended the stream, unless the
//                                 attempt failed), or from the node (the stream failed there)
//   (subscribe_atom, std::shared_ptr<net::http_exchange>)  an SSE client, for the task's stream
//   (cancel_atom)                 -> bool (false: the task had already ended)
//   (caf::get_atom)               -> std::string (the task as JSON, CONTRACT GET /v2/tasks/{id})
//   (fail_atom, code, message)    from admission: it could not be placed before its deadline
#include "actors/control/task_stream.hpp"
#include "runtime/messages.hpp"

#include <memory>

namespace llorch::metrics {
class registry;
}

namespace llorch::net {
class http_exchange;
}

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::shared_ptr<llorch::net::http_exchange>)

namespace llorch {

struct task_settings {
  task_spec spec;
  std::uint64_t engine_id = 0; // the id admission knows the task by
  caf::actor admission;
  caf::actor stream_router;    // where engines send the task's stream
  std::shared_ptr<task_stream> stream = std::make_shared<task_stream>();
  std::int64_t queue_position = 0;
};

// The id of one attempt's stream, as the engine knows it: the engine id with the attempt in the
// low 16 bits. Tokens and ends of an earlier attempt (an engine the pool gave up on may still
// send some) are ignored, so an old attempt's end cannot end the resumed stream.
inline std::uint64_t stream_id(std::uint64_t engine_id, int attempt) {
  return engine_id << 16 | static_cast<std::uint64_t>(attempt & 0xffff);
}
inline std::uint64_t engine_id_of(std::uint64_t stream_id) { return stream_id >> 16; }

caf::actor spawn_task(caf::actor_system& sys, task_settings settings,
                      std::shared_ptr<metrics::registry> metrics);

} // namespace llorch
