#include "actors/control/stream_router.hpp"

#include "actors/control/task.hpp"
#include "actors/control/task_directory.hpp"
#include "engines/engine_protocol.hpp"

namespace llorch {
namespace {

caf::behavior stream_router(caf::event_based_actor* self, std::shared_ptr<const task_directory> tasks) {
  return {
    [self, tasks](engine::engine_token& tok) {
      if (auto task = tasks->find(engine_id_of(tok.task_id)))
        self->send(task, std::move(tok));
    },
    [self, tasks](engine::engine_done& done) {
      if (auto task = tasks->find(engine_id_of(done.task_id)))
        self->send(task, std::move(done));
    },
  };
}

} // namespace

caf::actor spawn_stream_router(caf::local_actor* parent, std::shared_ptr<const task_directory> tasks) {
  return parent->spawn<caf::linked>(stream_router, std::move(tasks));
}

} // namespace llorch
