#include "actors/node/pool.hpp"

#include "actors/node/engine_process.hpp"
#include "actors/node/node_agent.hpp"
#include "actors/node/handoff_messages.hpp"
#include "actors/node/pool_metrics.hpp"
#include "engines/engine_protocol.hpp"
#include "runtime/log.hpp"

#include <random>

namespace llorch {
namespace {

using ready_timer_atom = caf::atom_constant<caf::atom("readyt")>;
using restart_timer_atom = caf::atom_constant<caf::atom("restartt")>;
using wedge_timer_atom = caf::atom_constant<caf::atom("wedget")>;
using drain_timer_atom = caf::atom_constant<caf::atom("draint")>;

struct pool_state {
  static inline const char* name = "pool";

  pool_settings settings;
  caf::io::middleman_actor middleman;
  std::shared_ptr<metrics::registry> metrics;
  pool_status status;
  std::optional<config::model_entry> model; // what the engine serves (or will)
  std::unique_ptr<engine_process> process;
  caf::actor engine;
  std::unique_ptr<restart_policy> policy;
  std::uint64_t generation = 0; // bumped per process start: stale timers and files are ignored
  std::string endpoint;
  bool replacing = false; // the running engine was stopped to start another (preload)
  int restarts = 0;
  // Streams in flight. The engine streams tokens straight to the task's actor (CAF routes them
  // through this process's network thread, past this actor) and sends the pool a copy of each
  // engine_done, so the pool counts slots and fails streams over without relaying tokens.
  struct stream {
    caf::actor task;
    std::uint64_t first_index = 0;
  };
  std::map<std::uint64_t, stream> streams;
  // Ends of streams the pool has not heard of yet: a request orchestratord sends straight to the
  // engine can end before its dispatched_atom reaches the pool. By stream id: the end's
  // next_index and when it came (kept at least a minute).
  std::map<std::uint64_t, std::pair<std::uint64_t, std::chrono::steady_clock::time_point>> ended_early;
  // Wedge detection: the engine's token count, polled while streams run, and when it last moved.
  bool wedge_timer = false;
  std::uint64_t tokens_seen = 0;
  std::chrono::steady_clock::time_point last_progress;
  std::uint64_t drain_generation = 0; // 0: not draining

  ~pool_state() {
    if (process)
      process->stop(); // the pool is going away (node shutdown): take the replica with it
  }
};

using pool_actor = caf::stateful_actor<pool_state>;

std::string handoff_file(const pool_state& st) {
  return st.settings.handoff_dir + "/" + st.settings.pool.id + "-" + st.settings.replica_id + ".json";
}

void publish(pool_actor* self) {
  auto& st = self->state;
  st.status.restarts = st.restarts;
  st.status.engine_actor = st.status.ready ? st.engine : nullptr;
  st.status.pool_actor = st.status.ready ? caf::actor_cast<caf::actor>(self) : nullptr;
  export_pool_metrics(*st.metrics, {st.status});
  // The agent may be restarting; it asks every pool for its state when it starts.
  if (auto agent = current_node_agent(self->system()))
    self->send(agent, pool_update_atom::value, st.status);
}

void set_state(pool_actor* self, const char* state, std::string last_error = {}) {
  auto& st = self->state;
  st.status.state = state;
  st.status.ready = st.status.state == "ready";
  if (!st.status.ready)
    st.status.slots_free = 0;
  if (!last_error.empty() || st.status.ready)
    st.status.last_error = std::move(last_error);
  publish(self);
}

void start_engine(pool_actor* self) {
  auto& st = self->state;
  auto& s = st.settings;
  if (!st.model) {
    set_state(self, "unloaded");
    return;
  }
  std::vector<std::string> argv{s.engine_binary, "serve", "--model", st.model->path,
                                "--model-id", st.model->id, "--handoff-dir", s.handoff_dir,
                                "--pool-id", s.pool.id, "--replica-id", s.replica_id,
                                "--slots", std::to_string(s.pool.slots),
                                "--keepalive-ms", std::to_string(s.engine_keepalive_ms)};
  if (!s.orchestrator.empty()) {
    argv.push_back("--orchestrator");
    argv.push_back(s.orchestrator);
  }
  if (!s.tls_certificate.empty())
    argv.insert(argv.end(), {"--tls-certificate", s.tls_certificate, "--tls-key", s.tls_key,
                             "--tls-ca", s.tls_ca});
  if (s.pool.threads > 0) {
    argv.push_back("--threads");
    argv.push_back(std::to_string(s.pool.threads));
  }
  if (!st.status.device_mask.empty()) {
    argv.push_back("--device-mask");
    argv.push_back(st.status.device_mask);
  }
  std::string error;
  ++st.generation;
  st.process = engine_process::start(argv, caf::actor_cast<caf::actor>(self), error);
  st.status.model_id = st.model->id;
  if (!st.process) {
    log::error("engine_start_failed", {{"pool_id", s.pool.id}, {"error", error}});
    set_state(self, "failed", error);
    return;
  }
  log::info("engine_started", {{"pool_id", s.pool.id},
                               {"pid", st.process->pid()},
                               {"model_id", st.model->id},
                               {"replica_id", s.replica_id}});
  set_state(self, "loading", st.status.last_error);
  self->delayed_send(self, s.ready_timeout, ready_timer_atom::value, st.generation);
}

// Every stream in flight ends with an error the task actor can fail over from.
void fail_streams(pool_actor* self, const std::string& why) {
  auto& st = self->state;
  for (auto& [task_id, r] : st.streams)
    self->send(r.task, stream_failed(task_id, r.first_index, why));
  st.streams.clear();
}

// Draining is over when no stream is left (or at the deadline): stop the engine, unload.
void finish_drain(pool_actor* self) {
  auto& st = self->state;
  if (!st.drain_generation)
    return;
  fail_streams(self, "pool " + st.settings.pool.id + " drained");
  st.drain_generation = 0;
  st.status.draining = false;
  st.model.reset();
  log::info("pool_drained", {{"pool_id", st.settings.pool.id}});
  ++st.generation; // no restart of the engine we stop now
  if (st.process) {
    st.replacing = true; // its exit starts nothing: there is no model any more
    st.process->terminate();
  }
  set_state(self, "unloaded");
}

void watch_for_wedge(pool_actor* self) {
  auto& st = self->state;
  if (st.wedge_timer || st.streams.empty())
    return;
  st.wedge_timer = true;
  self->delayed_send(self, std::max(std::chrono::milliseconds(50), st.settings.wedged_after / 4),
                     wedge_timer_atom::value);
}

void update_slots(pool_actor* self) {
  auto& st = self->state;
  if (!st.status.ready)
    return;
  auto busy = static_cast<std::int32_t>(st.streams.size());
  auto free_slots = std::max(0, st.status.slots_total - busy);
  if (free_slots != st.status.slots_free) {
    st.status.slots_free = free_slots;
    publish(self);
  }
}

// A stream the engine runs: its slot is busy until its end comes, and an engine that dies
// fails it over.
void add_stream(pool_actor* self, std::uint64_t task_id, caf::actor reply_to,
                std::uint64_t first_index) {
  auto& st = self->state;
  if (st.streams.empty())
    st.last_progress = std::chrono::steady_clock::now(); // idle until now: not wedged
  st.streams[task_id] = {std::move(reply_to), first_index};
  update_slots(self);
  watch_for_wedge(self);
}

// The engine's copy of a stream's end: its slot is free.
void stream_ended(pool_actor* self, const engine::engine_done& done) {
  auto& s = self->state;
  auto it = s.streams.find(done.task_id);
  if (it == s.streams.end()) {
    auto now = std::chrono::steady_clock::now();
    // Most are claimed within milliseconds; the rest (ends of streams failed over) are swept
    // when there are many, not on every end.
    if (s.ended_early.size() >= 1024)
      for (auto e = s.ended_early.begin(); e != s.ended_early.end();)
        e = now - e->second.second > std::chrono::minutes(1) ? s.ended_early.erase(e) : std::next(e);
    s.ended_early[done.task_id] = {done.next_index, now};
    return;
  }
  count_tokens_out(*s.metrics, s.settings.pool.id,
                   std::max(done.next_index, it->second.first_index) - it->second.first_index);
  s.streams.erase(it);
  update_slots(self);
  if (s.drain_generation && s.streams.empty())
    finish_drain(self);
}

// The replica died, or never became ready: restart it per the policy, or give up.
void engine_failed(pool_actor* self, const std::string& why) {
  auto& st = self->state;
  st.engine = nullptr;
  fail_streams(self, why);
  auto delay = st.policy->on_failure(restart_policy::clock::now());
  if (!delay) {
    auto msg = "engine failed " + std::to_string(st.policy->restarts_in_window(
                                    restart_policy::clock::now()))
               + " times within " + std::to_string(st.policy->limits().within.count() / 1000)
               + " s; last: " + why + "; POST /pools/" + st.settings.pool.id
               + "/preload to try again";
    log::error("pool_failed", {{"pool_id", st.settings.pool.id}, {"reason", msg}});
    set_state(self, "failed", msg);
    return;
  }
  set_state(self, "loading", why);
  self->delayed_send(self, *delay, restart_timer_atom::value, st.generation);
  log::warn("engine_restart_scheduled",
            {{"pool_id", st.settings.pool.id}, {"delay_ms", delay->count()}, {"reason", why}});
}

caf::behavior pool(pool_actor* self, pool_settings settings, caf::io::middleman_actor middleman,
                   std::shared_ptr<metrics::registry> metrics) {
  auto& st = self->state;
  st.settings = std::move(settings);
  st.middleman = std::move(middleman);
  st.metrics = std::move(metrics);
  st.policy = std::make_unique<restart_policy>(st.settings.restart,
                                               std::hash<std::string>{}(st.settings.pool.id));
  st.status = st.settings.initial;
  st.model = st.settings.pool.model;

  self->set_down_handler([self](caf::down_msg& dm) {
    auto& s = self->state;
    if (dm.source != s.engine.address())
      return;
    s.engine = nullptr;
    // The engine actor is gone but its process may live on, wedged: end it; its exit restarts it.
    log::warn("engine_lost", {{"pool_id", s.settings.pool.id},
                              {"reason", self->system().render(dm.reason)}});
    if (s.process && !s.replacing)
      s.process->kill_now();
  });
  self->send(self, restart_timer_atom::value, st.generation); // the first start

  return {
    [self](restart_timer_atom, std::uint64_t gen) {
      auto& s = self->state;
      if (gen != s.generation || s.process)
        return;
      if (s.restarts > 0 || gen > 0)
        log::info("engine_restarted", {{"pool_id", s.settings.pool.id}, {"restarts", s.restarts}});
      start_engine(self);
    },
    [self](ready_timer_atom, std::uint64_t gen) {
      auto& s = self->state;
      if (gen == s.generation && s.process && !s.engine) {
        log::warn("engine_not_ready", {{"pool_id", s.settings.pool.id},
                                       {"timeout_ms", s.settings.ready_timeout.count()}});
        s.process->kill_now();
      }
    },
    [self](engine_exit_atom, std::int32_t pid, const std::string& how) {
      auto& s = self->state;
      if (!s.process || s.process->pid() != pid)
        return;
      s.process.reset();
      s.engine = nullptr;
      s.endpoint.clear();
      log::warn("engine_exited", {{"pool_id", s.settings.pool.id}, {"pid", pid}, {"how", how}});
      if (s.replacing) {
        s.replacing = false;
        start_engine(self);
        return;
      }
      ++s.restarts;
      count_engine_restart(*s.metrics, s.settings.pool.id);
      engine_failed(self, "engine " + how);
    },
    [self](handoff_atom, const handoff::handoff_record& rec) {
      auto& s = self->state;
      if (!s.process || rec.pid != s.process->pid() || rec.replica_id != s.settings.replica_id) {
        log::debug("handoff_ignored", {{"pool_id", s.settings.pool.id},
                                       {"reason", "not the running replica"},
                                       {"pid", rec.pid}});
        return;
      }
      auto gen = s.generation;
      self
        ->request(s.middleman, std::chrono::seconds(5), caf::connect_atom::value,
                  rec.endpoint_host, rec.endpoint_port)
        .then(
          [self, gen, rec](const caf::node_id&, caf::strong_actor_ptr& ptr,
                           const std::set<std::string>&) {
            auto& cur = self->state;
            if (gen != cur.generation || !ptr)
              return;
            cur.engine = caf::actor_cast<caf::actor>(std::move(ptr));
            self->monitor(cur.engine);
            cur.endpoint = rec.endpoint;
            cur.status.slots_total = rec.slots_total;
            cur.status.slots_free = rec.slots_total;
            cur.status.engine_version = rec.engine_version;
            cur.status.model_id = rec.model_id;
            log::info("pool_ready", {{"pool_id", cur.settings.pool.id},
                                     {"endpoint", rec.endpoint},
                                     {"slots", rec.slots_total}});
            set_state(self, "ready");
          },
          [self, gen](const caf::error& err) {
            auto& cur = self->state;
            if (gen != cur.generation)
              return;
            log::error("engine_connect_failed", {{"pool_id", cur.settings.pool.id},
                                                 {"error", self->system().render(err)}});
            if (cur.process)
              cur.process->kill_now();
          });
    },
    [](handoff_removed_atom, const std::string&, const std::string&) {
      // The replica removes its file when it stops; its exit drives what happens next.
    },
    [self](preload_atom, const std::string& model_id, const std::string& engine) {
      auto& s = self->state;
      if (engine != "llorch")
        return registry_reply::make(400, "ENGINE_NOT_AVAILABLE",
                     "engine '" + engine + "' is not available on this node; available: llorch");
      if (s.status.draining)
        return registry_reply::make(409, "POOL_DRAINING", "pool " + s.settings.pool.id + " is draining");
      auto it = std::find_if(s.settings.models.begin(), s.settings.models.end(),
                             [&](auto& m) { return m.id == model_id; });
      if (it == s.settings.models.end())
        return registry_reply::make(404, "MODEL_NOT_FOUND",
                     "model '" + model_id + "' is not in this node's models");
      s.model = *it;
      s.policy = std::make_unique<restart_policy>(s.settings.restart, s.generation + 1);
      s.status.last_error.clear();
      log::info("pool_preload", {{"pool_id", s.settings.pool.id}, {"model_id", model_id}});
      if (s.process) {
        s.replacing = true;
        s.process->terminate();
        set_state(self, "loading");
      } else {
        ++s.generation; // cancels a pending restart
        start_engine(self);
      }
      return registry_reply::make(202, "", "loading");
    },
    [self](engine::engine_generate& req) {
      auto& s = self->state;
      if (!s.engine || !s.status.ready || s.drain_generation) {
        self->send(req.reply_to, stream_failed(req.task_id, req.first_index,
                                               "pool " + s.settings.pool.id + " is not ready"));
        return;
      }
      auto task_id = req.task_id;
      auto reply_to = req.reply_to;
      auto first_index = req.first_index;
      req.observer = caf::actor_cast<caf::actor>(self);
      self->send(s.engine, std::move(req));
      add_stream(self, task_id, std::move(reply_to), first_index);
    },
    [self](dispatched_atom, std::uint64_t task_id, std::uint64_t first_index, caf::actor& reply_to,
           const caf::actor& engine) {
      // orchestratord sent the request to `engine` itself; the stream may even have ended
      auto& s = self->state;
      auto early = s.ended_early.find(task_id);
      if (early != s.ended_early.end()) {
        count_tokens_out(*s.metrics, s.settings.pool.id,
                         std::max(early->second.first, first_index) - first_index);
        s.ended_early.erase(early);
        return;
      }
      if (!s.engine || engine != s.engine) { // sent to an engine now gone
        self->send(reply_to, stream_failed(task_id, first_index,
                                           "pool " + s.settings.pool.id + " replaced its engine"));
        return;
      }
      if (s.drain_generation || !s.status.ready) { // it raced a drain: it runs elsewhere
        self->send(s.engine, engine::engine_cancel{task_id});
        self->send(reply_to, stream_failed(task_id, first_index,
                                           "pool " + s.settings.pool.id + " is not taking streams"));
        return;
      }
      add_stream(self, task_id, std::move(reply_to), first_index);
    },
    // the observer's copies: the task has its own
    [self](const engine::engine_done& done) { stream_ended(self, done); },
    [self](const engine::engine_step& step) {
      for (auto& done : step.ends)
        stream_ended(self, done);
    },
    [self](wedge_timer_atom) {
      auto& s = self->state;
      if (s.streams.empty() || !s.engine) {
        s.wedge_timer = false;
        return;
      }
      // A wedged engine either answers with a token count that no longer moves (its decode loop
      // is stuck) or does not answer at all (the whole process is stuck).
      auto gen = s.generation;
      auto check = [self, gen](std::optional<std::uint64_t> tokens) {
        auto& cur = self->state;
        cur.wedge_timer = false; // one poll at a time
        if (cur.streams.empty())
          return;
        if (gen != cur.generation) // the engine was replaced meanwhile: poll the new one
          return watch_for_wedge(self);
        auto now = std::chrono::steady_clock::now();
        if (tokens && *tokens != cur.tokens_seen) {
          cur.tokens_seen = *tokens;
          cur.last_progress = now;
        }
        if (now - cur.last_progress > cur.settings.wedged_after && cur.process) {
          log::error("engine_wedged", {{"pool_id", cur.settings.pool.id},
                                       {"pid", cur.process->pid()},
                                       {"streams", cur.streams.size()},
                                       {"idle_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                                     now - cur.last_progress).count()}});
          cur.process->kill_now(); // its exit fails the streams over and restarts it
          return;
        }
        watch_for_wedge(self);
      };
      self->request(s.engine, s.settings.wedged_after, engine::engine_status_atom::value)
        .then([check](const engine::engine_status& es) { check(es.tokens_total); },
              [check](const caf::error&) { check(std::nullopt); });
    },
    [self](drain_atom, std::int64_t deadline_ms) {
      auto& s = self->state;
      if (!s.drain_generation) {
        s.drain_generation = s.generation + 1;
        s.status.draining = true;
        log::info("pool_draining", {{"pool_id", s.settings.pool.id},
                                    {"deadline_ms", deadline_ms},
                                    {"streams", s.streams.size()}});
        set_state(self, "draining");
        if (s.streams.empty())
          finish_drain(self);
        else
          self->delayed_send(self, std::chrono::milliseconds(deadline_ms), drain_timer_atom::value,
                             s.drain_generation);
      }
      return registry_reply::make(202, "", "draining");
    },
    [self](drain_timer_atom, std::uint64_t gen) {
      if (gen == self->state.drain_generation)
        finish_drain(self);
    },
    [self](const engine::engine_cancel& c) {
      auto& s = self->state;
      if (s.engine && s.streams.count(c.task_id))
        self->send(s.engine, c);
    },
    [self](caf::get_atom) {
      auto& s = self->state;
      pool_runtime_view v;
      v.status = s.status;
      v.live = s.process != nullptr;
      v.pid = s.process ? s.process->pid() : 0;
      v.handoff_path = s.status.ready ? handoff_file(s) : std::string{};
      v.endpoint = s.endpoint;
      return v;
    },
  };
}

} // namespace

engine::engine_done stream_failed(std::uint64_t task_id, std::uint64_t next_index,
                                  std::string why) {
  engine::engine_done d;
  d.task_id = task_id;
  d.reason = "error";
  d.next_index = next_index;
  d.error = std::move(why);
  return d;
}

caf::actor spawn_pool(caf::actor_system& sys, pool_settings settings,
                      caf::io::middleman_actor middleman,
                      std::shared_ptr<metrics::registry> metrics) {
  return sys.spawn(pool, std::move(settings), std::move(middleman), std::move(metrics));
}

} // namespace llorch
