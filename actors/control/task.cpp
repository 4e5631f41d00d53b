#include "actors/control/task.hpp"

#include "engines/engine_protocol.hpp"
#include "net/http_types.hpp"
#include "runtime/clock.hpp"
#include "runtime/log.hpp"
#include "runtime/metrics.hpp"

#include <boost/json.hpp>

namespace llorch {
namespace {

namespace json = boost::json;

struct sse_event {
  std::string name;
  std::string data; // JSON
};

struct task_state {
  static inline const char* name = "task";

  task_settings settings;
  std::shared_ptr<metrics::registry> metrics;
  std::string state = "queued"; // queued|running|completed|cancelled|failed
  std::vector<sse_event> log;
  std::vector<std::int32_t> token_ids; // for resumption
  std::vector<std::shared_ptr<net::http_exchange>> subscribers;
  std::vector<caf::actor> listeners;
  std::string node_id, pool_id;
  caf::actor agent;
  bool started = false;
  bool terminal = false;
  int failovers = 0;
  std::uint64_t stream_id = 0; // of the current attempt: messages of earlier ones are ignored
  std::chrono::steady_clock::time_point submitted = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point first_token_at;
  std::chrono::steady_clock::time_point decode_started;
};

using task_actor = caf::stateful_actor<task_state>;

std::string sse_frame(const sse_event& e) {
  return "event: " + e.name + "\ndata: " + e.data + "\n\n";
}

// Appends events to the log and hands them on: one write per subscriber for all of them.
void emit(task_actor* self, std::vector<sse_event> events) {
  auto& st = self->state;
  std::string frames;
  for (auto& e : events)
    frames += sse_frame(e);
  auto& subs = st.subscribers;
  subs.erase(std::remove_if(subs.begin(), subs.end(),
                            [&](auto& ex) { return !ex->write(frames); }),
             subs.end());
  for (auto& e : events) {
    for (auto& l : st.listeners)
      self->send(l, task_event_atom::value, e.name, e.data);
    st.log.push_back(std::move(e));
  }
}

void emit(task_actor* self, std::string name, std::string data) {
  std::vector<sse_event> one;
  one.push_back({std::move(name), std::move(data)});
  emit(self, std::move(one));
}

metrics::family<metrics::counter>& tasks_total(metrics::registry& r) {
  return r.counter_family("orchd_tasks_total", "Tasks by how they ended", {"outcome"});
}

void finish(task_actor* self, std::string state, std::string name, std::string data) {
  auto& st = self->state;
  if (st.terminal)
    return;
  st.terminal = true;
  st.state = std::move(state);
  emit(self, std::move(name), std::move(data));
  for (auto& ex : st.subscribers)
    ex->finish();
  st.subscribers.clear();
  st.listeners.clear();
  tasks_total(*st.metrics).with({st.state}).inc();
  st.metrics
    ->histogram_family("orchd_task_duration_seconds", "From admission to the terminal event", {},
                       {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300})
    .with({})
    .observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - st.submitted)
               .count());
  if (st.agent)
    self->demonitor(st.agent);
  // admission frees its slot, and retires it when it is no longer among the retained
  self->send(st.settings.admission, release_atom::value, st.settings.engine_id);

}

void fail(task_actor* self, const std::string& code, const std::string& message, bool retriable) {
  log::warn("task_failed", {{"task_id", self->state.settings.spec.task_id},
                            {"code", code},
                            {"message", message}});
  finish(self, "failed", "error",
         json::serialize(json::object{{"code", code}, {"message", message},
                                      {"retriable", retriable}}));
}

// The node or engine went away mid-task: place it again and resume from where it was.
void fail_over(task_actor* self, const std::string& why) {
  auto& st = self->state;
  if (st.terminal)
    return;
  auto now = wall_clock_ms();
  if (st.settings.spec.deadline_ms > 0 && now >= st.settings.spec.deadline_ms)
    return fail(self, "WORKER_RESET", "the worker failed (" + why + ") and the deadline has passed",
                true);
  ++st.failovers;
  log::warn("task_failed_over", {{"task_id", st.settings.spec.task_id},
                                 {"node_id", st.node_id},
                                 {"pool_id", st.pool_id},
                                 {"tokens_so_far", st.token_ids.size()},
                                 {"reason", why}});
  if (st.agent)
    self->demonitor(st.agent);
  st.agent = nullptr;
  st.state = "queued";
  self->send(st.settings.admission, requeue_atom::value, st.settings.engine_id);
}

std::string view(const task_state& st) {
  auto& spec = st.settings.spec;
  return json::serialize(json::object{
    {"task_id", spec.task_id},
    {"state", st.state},
    {"model", spec.model},
    {"pool_id", st.pool_id.empty() ? json::value(nullptr) : json::value(st.pool_id)},
    {"node_id", st.node_id.empty() ? json::value(nullptr) : json::value(st.node_id)},
    {"tokens_out", st.token_ids.size()},
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
  });
  return {
    [self](generate_atom, const std::string& node_id, const std::string& pool_id,
           const caf::actor& agent) {
      auto& st = self->state;
      if (st.terminal)
        return;
      st.node_id = node_id;
      st.pool_id = pool_id;
      st.agent = agent;
      st.state = "running";
      self->monitor(agent);
      auto& spec = st.settings.spec;
      log::info("task_placed", {{"task_id", spec.task_id}, {"node_id", node_id},
                                {"pool_id", pool_id}, {"resume_at", st.token_ids.size()}});
      if (!st.started) {
        st.started = true;
        st.decode_started = std::chrono::steady_clock::now();
        emit(self, "started",
             json::serialize(json::object{{"queue_position", st.settings.queue_position},
                                          {"pool_id", pool_id},
                                          {"node_id", node_id}}));
      }
      st.stream_id = stream_id(st.settings.engine_id, st.failovers);
      engine::engine_generate req;
      req.task_id = st.stream_id;
      req.prompt = spec.prompt;
      req.resume_ids = st.token_ids;
      req.max_tokens = spec.max_tokens - static_cast<std::int32_t>(st.token_ids.size());
      req.temperature = spec.temperature;
      req.top_k = spec.top_k;
      req.top_p = spec.top_p;
      req.seed = spec.seed;
      req.first_index = st.token_ids.size();
      req.reply_to = st.settings.stream_router ? st.settings.stream_router
                                               : caf::actor_cast<caf::actor>(self);
      // anonymous: a sender would make the node announce a proxy of this actor (stream_router.hpp)
      caf::anon_send(agent, generate_atom::value, pool_id, std::move(req));
    },
    [self](const engine::engine_token& tok) {
      auto& st = self->state;
      // Indices make duplicates after a resumption harmless; nothing follows the terminal event.
      if (st.terminal || tok.task_id != st.stream_id || tok.index != st.token_ids.size())
        return;
      if (st.token_ids.empty()) {
        st.first_token_at = std::chrono::steady_clock::now();
        st.metrics
          ->histogram_family("orchd_task_first_token_seconds", "From admission to the first token",
                             {}, {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10})
          .with({})
          .observe(std::chrono::duration<double>(st.first_token_at - st.submitted).count());
      }
      st.token_ids.push_back(tok.token_id);
      emit(self, "token", json::serialize(json::object{{"t", tok.piece}, {"i", tok.index}}));
    },
    [self](const engine::engine_done& done) {
      auto& st = self->state;
      if (st.terminal || done.task_id != st.stream_id)
        return;
      if (done.reason == "error")
        return fail_over(self, done.error);
      auto reason = done.reason == "context" ? "length" : done.reason;
      auto decode_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::steady_clock::now() - st.decode_started)
                         .count();
      finish(self, done.reason == "cancelled" ? "cancelled" : "completed", "end",
             json::serialize(json::object{{"tokens_out", st.token_ids.size()},
                                          {"decode_ms", decode_ms},
                                          {"finish_reason", reason}}));
    },
    [self](fail_atom, const std::string& code, const std::string& message) {
      fail(self, code, message, true);
    },
    [self](subscribe_atom, std::shared_ptr<net::http_exchange>& ex) {
      auto& st = self->state;
      if (!ex->start_stream(200, "text/event-stream"))
        return;
      for (auto& e : st.log)
        if (!ex->write(sse_frame(e)))
          return;
      if (st.terminal)
        ex->finish();
      else
        st.subscribers.push_back(std::move(ex));
    },
    [self](subscribe_atom, const caf::actor& listener) {
      auto& st = self->state;
      for (auto& e : st.log)
        self->send(listener, task_event_atom::value, e.name, e.data);
      if (!st.terminal)
        st.listeners.push_back(listener);
    },
    [self](cancel_atom) {
      auto& st = self->state;
      if (st.terminal)
        return false;
      // Terminal first: no token is forwarded after this point; then free the engine slot.
      finish(self, "cancelled", "end",
             json::serialize(json::object{{"tokens_out", st.token_ids.size()},
                                          {"decode_ms", 0},
                                          {"finish_reason", "cancelled"}}));
      if (st.agent)
        caf::anon_send(st.agent, cancel_atom::value, st.pool_id, engine::engine_cancel{st.stream_id});
      self->send(st.settings.admission, cancel_atom::value, st.settings.engine_id);
      return true;
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
