#pragma once
// stream_router: where engines send the tokens and ends of orchestratord's tasks. Were each task
// actor's own handle passed to the nodes, CAF would announce a proxy of it from every process
// that receives the handle (the node and the engine) and send each of them a down message when the
// task retires: four cluster messages per task besides the five that carry it. The router is one
// long-lived handle for all tasks; it finds a message's task by the engine id its stream id
// carries (see stream_id in task.hpp). A token goes straight into the task's stream (and on to its
// SSE clients), not through the task actor. A normal end ends the stream there too, then goes to
// the task actor, which settles the task; an error goes to the task actor, which fails the task
// over. Admission spawns it, linked.
//
// Messages:
//   engine_token, engine_done   of a task's stream; dropped when the task is gone
//   engine_step                 a decode step's tokens and ends of several streams
#include <caf/fwd.hpp>

#include <memory>

namespace llorch::metrics {
class registry;
}

namespace llorch {

class task_directory;

caf::actor spawn_stream_router(caf::local_actor* parent, std::shared_ptr<const task_directory> tasks,
                               std::shared_ptr<metrics::registry> metrics);

} // namespace llorch
