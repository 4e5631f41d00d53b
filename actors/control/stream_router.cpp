#include "actors/control/stream_router.hpp"

#include "actors/control/task.hpp"
#include "actors/control/task_directory.hpp"
#include "engines/engine_protocol.hpp"
#include "runtime/metrics.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <vector>

namespace llorch {
namespace {

caf::behavior stream_router(caf::event_based_actor* self, std::shared_ptr<const task_directory> tasks,
                            std::shared_ptr<metrics::registry> metrics) {
  // From admission to the first token: observed when a stream takes its first token.
  auto first_token = [metrics, &h = metrics
                                       ->histogram_family("orchd_task_first_token_seconds",
                                                          "From admission to the first token", {},
                                                          {0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                           0.25, 0.5, 1, 2.5, 5, 10})
                                       .with({})](const task_stream& s, task_stream::accepted a) {
    if (a == task_stream::accepted::first)
      h.observe(s.since_submitted());
  };
  auto on_token = [tasks, first_token](const engine::engine_token& tok) {
    auto task = tasks->find(engine_id_of(tok.task_id));
    if (task.stream)
      first_token(*task.stream, task.stream->token(tok.task_id, tok.index, tok.token_id, tok.piece));
  };
  // a stream's last token with its end (a token never comes with an error)
  auto on_last = [self, tasks, first_token](const engine::engine_token& tok, engine::engine_done& done) {
    auto task = tasks->find(engine_id_of(done.task_id));
    if (!task.task)
      return;
    first_token(*task.stream, task.stream->last_token(tok.task_id, tok.index, tok.token_id,
                                                       tok.piece, done.reason));
    self->send(task.task, std::move(done));
  };
  auto on_end = [self, tasks](engine::engine_done& done) {
    auto task = tasks->find(engine_id_of(done.task_id));
    if (!task.task)
      return;
    if (done.reason != "error")
      task.stream->end(done.task_id, done.reason);
    self->send(task.task, std::move(done));
  };
  return {
    on_token,
    on_last,
    on_end,
    [on_token, on_last, on_end](engine::engine_step& step) {
      // a stream's token and its end, if both came, go out together as above
      std::vector<bool> taken(step.ends.size());
      for (auto& tok : step.tokens) {
        auto end = std::find_if(step.ends.begin(), step.ends.end(),
                                [&](const engine::engine_done& d) { return d.task_id == tok.task_id; });
        if (end == step.ends.end()) {
          on_token(tok);
          continue;
        }
        taken[static_cast<std::size_t>(end - step.ends.begin())] = true;
        on_last(tok, *end);
      }
      for (std::size_t i = 0; i < step.ends.size(); ++i)
        if (!taken[i])
          on_end(step.ends[i]);
    },
  };
}

} // namespace

caf::actor spawn_stream_router(caf::local_actor* parent, std::shared_ptr<const task_directory> tasks,
                               std::shared_ptr<metrics::registry> metrics) {
  return parent->spawn<caf::linked>(stream_router, std::move(tasks), std::move(metrics));
}

} // namespace llorch
