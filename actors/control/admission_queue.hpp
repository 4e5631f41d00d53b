#pragma once
// admission_queue: admits tasks (bounded, interactive before batch, FIFO within a priority),
// spawns their task actors, and places queued tasks on pools with a free slot (the policy of
// placement_policy over the node registry's current view). A task waits while its model has no
// ready pool, up to its deadline; a task whose worker failed comes back here to be placed again.
//
// Messages:
//   (submit_atom, task_spec, submit_continuation)  the continuation gets the submit_reply
//                                         (run by admission: it must be quick)
//   (requeue_atom, engine_id)             from a task actor (fail-over)
//   (release_atom, engine_id)             from a task actor: it ended, its pool slot is free
//   (cancel_atom, engine_id)              from a task actor (cancelled while queued)
#include "actors/control/task_directory.hpp"
#include "runtime/messages.hpp"

#include <chrono>
#include <functional>
#include <memory>

namespace llorch::metrics {
class registry;
}

namespace llorch {

struct admission_settings {
  std::size_t capacity = 100;
  std::chrono::milliseconds default_deadline{60000}; // when a request names none
  std::chrono::milliseconds tick{5};                  // placement pass while tasks wait
  // Ended tasks stay for late readers (GET, SSE replay): the newest retained_tasks of them, for
  // at most `retention`.
  std::size_t retained_tasks = 10000;
  std::chrono::milliseconds retention{600000};
  std::shared_ptr<task_directory> directory = std::make_shared<task_directory>();
};

// What a submitter does with its reply (an HTTP route answers its client); admission runs it.
using submit_continuation = std::function<void(const submit_reply&)>;

inline const caf::atom_value admission_name = caf::atom("admission");
caf::actor current_admission(caf::actor_system& sys);

caf::actor spawn_admission_queue(caf::actor_system& sys, admission_settings settings,
                                 std::shared_ptr<metrics::registry> metrics);

} // namespace llorch

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(llorch::submit_continuation)
