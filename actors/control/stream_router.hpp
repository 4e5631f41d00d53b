#pragma once
// stream_router: where engines send the tokens and ends of orchestratord's tasks. Were each task
// actor's own handle passed to the nodes, CAF would announce a proxy of it from every process
// that receives the handle (the node and the engine) and send each of them a down message when the
// task retires: four cluster messages per task besides the five that carry it. The router is one
// long-lived handle for all tasks; it forwards each message to the task whose engine id the stream
// id carries (see stream_id in task.hpp). Admission spawns it, linked, with the task directory.
//
// Messages:
//   engine_token, engine_done   forwarded to their task; dropped when the task is gone
#include <caf/fwd.hpp>

#include <memory>

namespace llorch {

class task_directory;

caf::actor spawn_stream_router(caf::local_actor* parent, std::shared_ptr<const task_directory> tasks);

} // namespace llorch
