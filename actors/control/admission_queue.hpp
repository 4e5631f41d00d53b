#pragma once
// admission_queue: admits tasks (bounded, interactive before batch, FIFO within a priority),
// spawns their task actors, and places queued tasks on pools with a free slot (the policy of
// placement_policy over the node registry's current view). A task waits while its model has no
// ready pool, up to its deadline; a task whose worker failed comes back here to be placed again.
//
// Messages:
//   (submit_atom, task_spec)              -> submit_reply
//   (caf::get_atom, task_atom, task_id)   -> caf::actor (invalid: no such task)
//   (requeue_atom, engine_id)             from a task actor (fail-over)
//   (release_atom, engine_id)             from a task actor: it ended, its pool slot is free
//   (cancel_atom, engine_id)              from a task actor (cancelled while queued)
#include "runtime/messages.hpp"

#include <chrono>
#include <memory>

namespace llorch::metrics {
class registry;
}

namespace llorch {

struct admission_settings {
  std::size_t capacity = 100;
  std::chrono::milliseconds default_deadline{60000}; // when a request names none
  std::chrono::milliseconds tick{5};                  // placement pass while tasks wait
};

inline const caf::atom_value admission_name = caf::atom("admission");
caf::actor current_admission(caf::actor_system& sys);

caf::actor spawn_admission_queue(caf::actor_system& sys, admission_settings settings,
                                 std::shared_ptr<metrics::registry> metrics);

} // namespace llorch
