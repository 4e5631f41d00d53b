#include "actors/control/task.hpp"

#include "engines/engine_protocol.hpp"
#include "runtime/clock.hpp"
#include "runtime/log.hpp"
#include "runtime/metrics.hpp"

#include <boost/json.hpp>

namespace llorch {
namespace {

namespace json = boost::json;

struct task_state {
  static inline const char* name = "task";

  task_settings settings;
  std::shared_ptr<metrics::registry> metrics;
  std::string state = "queued"; // queued|running; the stream has the outcome once ended
  std::string node_id, pool_id;
  caf::actor agent;
  bool started = false;
  bool ended = false; // the bookkeeping of the end is done
  int failovers = 0;
  std::uint64_t stream_id = 0; // of the current attempt
  caf::actor engine;           // where the current attempt's request went; null: through the node
  caf::actor pool;             // told of that request (monitored: a restarted pool forgets it)
};

using task_actor = caf::stateful_actor<task_state>;

// Stops watching the node and the pool of the current attempt.
void unwatch(task_actor* self) {
  auto& st = self->state;
  if (st.agent)
    self->demonitor(st.agent);
  if (st.pool)
    self->demonitor(st.pool);
}

// The task has ended (its stream has the terminal event): count it, and tell admission, which
// frees its slot and retires it when it is no longer among the retained.
void settle(task_actor* self) {
  auto& st = self->state;
  auto outcome = st.settings.stream->outcome();
  if (st.ended || outcome.empty())
    return;
  st.ended = true;
  st.metrics->counter_family("orchd_tasks_total", "Tasks by how they ended", {"outcome"})
    .with({outcome})
    .inc();
  st.metrics
    ->histogram_family("orchd_task_duration_seconds", "From admission to the terminal event", {},
                       {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300})
    .with({})
    .observe(st.settings.stream->since_submitted());
  unwatch(self);
  self->send(st.settings.admission, release_atom::value, st.settings.engine_id);
}

void fail(task_actor* self, const std::string& code, const std::string& message, bool retriable) {
  auto& st = self->state;
  if (st.settings.stream->finish("failed", "error",
                                 json::serialize(json::object{{"code", code},
                                                              {"message", message},
                                                              {"retriable", retriable}})))
    log::warn("task_failed", {{"task_id", st.settings.spec.task_id},
                              {"code", code},
                              {"message", message}});
  settle(self);
}

// The node or engine went away mid-task: place it again and resume from where it was.
void fail_over(task_actor* self, const std::string& why) {
  auto& st = self->state;
  if (st.ended || !st.settings.stream->outcome().empty())
    return settle(self);
  auto now = wall_clock_ms();
  if (st.settings.spec.deadline_ms > 0 && now >= st.settings.spec.deadline_ms)
    return fail(self, "WORKER_RESET", "the worker failed (" + why + ") and the deadline has passed",
                true);
  ++st.failovers;
  log::warn("task_failed_over", {{"task_id", st.settings.spec.task_id},
                                 {"node_id", st.node_id},
                                 {"pool_id", st.pool_id},
                                 {"tokens_so_far", st.settings.stream->tokens()},
                                 {"reason", why}});
  unwatch(self);
  st.agent = nullptr;
  st.pool = nullptr;
  st.state = "queued";
  self->send(st.settings.admission, requeue_atom::value, st.settings.engine_id);
}

std::string view(const task_state& st) {
  auto& spec = st.settings.spec;
  auto outcome = st.settings.stream->outcome();
  return json::serialize(json::object{
    {"task_id", spec.task_id},
    {"state", outcome.empty() ? st.state : outcome},
    {"model", spec.model},
    {"pool_id", st.pool_id.empty() ? json::value(nullptr) : json::value(st.pool_id)},
    {"node_id", st.node_id.empty() ? json::value(nullptr) : json::value(st.node_id)},
    {"tokens_out", st.settings.stream->tokens()},
    {"max_tokens", spec.max_tokens},
    {"priority", spec.interactive ? "interactive" : "batch"},
    {"failovers", st.failovers}});
}

caf::behavior task(task_actor* self, task_settings settings,
                   std::shared_ptr<metrics::registry> metrics) {
  self->state.settings = std::move(settings);
  self->state.metrics = std::move(metrics);
  self->set_down_handler([self](caf::down_msg& dm) {
    if (dm.source == self->state.agent.address())
      fail_over(self, "node connection lost");
    else if (dm.source == self->state.pool.address())
      fail_over(self, "pool restarted");
  });
  return {
    [self](generate_atom, const std::string& node_id, const std::string& pool_id,
           const caf::actor& agent, const caf::actor& engine, const caf::actor& pool) {
      auto& st = self->state;
      auto& stream = *st.settings.stream;
      if (!stream.outcome().empty())
        return;
      st.node_id = node_id;
      st.pool_id = pool_id;
      st.agent = agent;
      st.state = "running";
      self->monitor(agent);
      auto& spec = st.settings.spec;
      auto resume_ids = stream.token_ids();
      log::info("task_placed", {{"task_id", spec.task_id}, {"node_id", node_id},
                                {"pool_id", pool_id}, {"resume_at", resume_ids.size()}});
      if (!st.started) {
        st.started = true;
        stream.start(json::serialize(json::object{{"queue_position", st.settings.queue_position},
                                                  {"pool_id", pool_id},
                                                  {"node_id", node_id}}));
      }
      st.stream_id = stream_id(st.settings.engine_id, st.failovers);
      stream.expect(st.stream_id);
      engine::engine_generate req;
      req.task_id = st.stream_id;
      req.prompt = spec.prompt;
      req.first_index = resume_ids.size();
      req.max_tokens = spec.max_tokens - static_cast<std::int32_t>(resume_ids.size());
      req.resume_ids = std::move(resume_ids);
      req.temperature = spec.temperature;
      req.top_k = spec.top_k;
      req.top_p = spec.top_p;
      req.seed = spec.seed;
      req.reply_to = st.settings.stream_router;
      // Anonymous: a sender would make the node announce a proxy of this actor (stream_router.hpp).
      // Straight to the engine when the pool said which it is: the pool learns of the stream
      // off the way to the first token, and fails it over if that engine is gone by then.
      st.engine = engine && pool ? engine : nullptr;
      if (!st.engine)
        return caf::anon_send(agent, generate_atom::value, pool_id, std::move(req));
      req.observer = pool;
      st.pool = pool;
      self->monitor(pool);
      caf::anon_send(pool, dispatched_atom::value, req.task_id, req.first_index, req.reply_to, engine);
      caf::anon_send(engine, std::move(req));
    },
    [self](const engine::engine_done& done) {
      // the router ended the stream already, unless the attempt failed
      auto& st = self->state;
      if (done.task_id != st.stream_id)
        return;
      if (done.reason == "error")
        return fail_over(self, done.error);
      settle(self);
    },
    [self](fail_atom, const std::string& code, const std::string& message) {
      fail(self, code, message, true);
    },
    [self](cancel_atom) {
      auto& st = self->state;
      // Terminal first: no token is taken after this point; then free the engine slot.
      if (!st.settings.stream->cancel())
        return false;
      settle(self);
      // the engine frees the slot at its next step; from the same sender as the request, so
      // it cannot overtake it
      if (st.engine)
        caf::anon_send(st.engine, engine::engine_cancel{st.stream_id});
      else if (st.agent)
        caf::anon_send(st.agent, cancel_atom::value, st.pool_id, engine::engine_cancel{st.stream_id});
      self->send(st.settings.admission, cancel_atom::value, st.settings.engine_id);
      return true;
    },
    [self](subscribe_atom, std::shared_ptr<net::http_exchange>& ex) {
      self->state.settings.stream->subscribe(std::move(ex));
    },
    [self](caf::get_atom) { return view(self->state); },
    [self](retire_atom) { self->quit(); },
  };
}

} // namespace

caf::actor spawn_task(caf::actor_system& sys, task_settings settings,
                      std::shared_ptr<metrics::registry> metrics) {
  return sys.spawn(task, std::move(settings), std::move(metrics));
}

} // namespace llorch
