#include "actors/control/admission_queue.hpp"

#include "actors/control/admission_queue_core.hpp"
#include "actors/control/node_registry.hpp"
#include "actors/control/placement_round.hpp"
#include "actors/control/stream_router.hpp"
#include "actors/control/task.hpp"
#include "runtime/clock.hpp"
#include "runtime/log.hpp"
#include "runtime/metrics.hpp"

#include <algorithm>
#include <deque>
#include <map>
#include <unordered_map>

namespace llorch {
namespace {

struct entry {
  task_spec spec;
  caf::actor task;
  std::string slot; // the pool it runs on ("node\npool") from placement until it ends
};

struct admission_state {
  static inline const char* name = "admission_queue";

  admission_settings settings;
  std::shared_ptr<metrics::registry> metrics;
  std::unique_ptr<admission_queue_core> queue;
  std::map<std::uint64_t, entry> tasks;            // every live task actor
  std::unordered_map<std::string, std::uint64_t> by_name; // task_id -> engine id
  std::map<caf::actor_addr, std::uint64_t> by_actor;
  caf::actor stream_router; // linked: it goes and comes back with admission
  std::uint64_t next_id = 1;
  placement_snapshot view;                          // the registry's, as of the last refresh
  std::chrono::steady_clock::time_point view_time;
  // Slots are counted where tasks are placed: a pool's free slots are its capacity less the
  // tasks placed on it that have not ended, so placement never waits for a heartbeat.
  std::map<std::string, int> busy;                  // "node\npool" -> tasks running there
  bool refresh_running = false;                     // a view is being fetched
  bool pass_pending = false;                        // a pass on the current view is queued
  bool tick_pending = false;
  bool saturated = false;                           // the last pass found no free slot
  std::deque<std::pair<std::uint64_t, std::chrono::steady_clock::time_point>> ended; // oldest first

  // Task actors outlive their end for late readers; when admission goes (shutdown, restart)
  // they go with it, or the actor system would wait for their retention to run out.
  ~admission_state() {
    for (auto& [id, e] : tasks) {
      settings.directory->remove(e.spec.task_id, id);
      caf::anon_send_exit(e.task, caf::exit_reason::user_shutdown);
    }
  }
};

using admission_actor = caf::stateful_actor<admission_state>;

void set_depth(admission_state& st) {
  auto& depth = st.metrics->gauge_family("orchd_admission_queue_depth",
                                         "Tasks waiting for a pool", {"priority"});
  depth.with({"interactive"}).set(static_cast<double>(st.queue->depth(true)));
  depth.with({"batch"}).set(static_cast<double>(st.queue->depth(false)));
}

void count_placement(admission_state& st, const std::string& outcome) {
  st.metrics->counter_family("orchd_placement_decisions_total", "Placement decisions by outcome",
                             {"outcome"})
    .with({outcome})
    .inc();
}

// Tasks still waiting after a pass are looked at again a tick later, with a fresh view. While no
// pool has a free slot, every ended task triggers a pass: the tick then only has to catch a
// deadline or a new pool, and at 200 per second it cost 3 % of orchestratord's CPU under load.
void schedule_pass(admission_actor* self) {
  auto& st = self->state;
  if (st.tick_pending || st.queue->size() == 0)
    return;
  st.tick_pending = true;
  auto delay = st.settings.tick;
  if (st.saturated) {
    auto to_deadline = std::chrono::milliseconds(st.queue->next_deadline_ms() - wall_clock_ms());
    delay = std::clamp(to_deadline, st.settings.tick, std::chrono::milliseconds(100));
  }
  self->delayed_send(self, delay, tick_timer_atom::value);
}

// A new task, or a freed slot, is placed at once on the view at hand: no tick of delay and no
// round trip to the registry on the hot path (the view is refreshed in the background).
void trigger_pass(admission_actor* self) {
  auto& st = self->state;
  if (st.pass_pending)
    return;
  st.pass_pending = true;
  self->send(self, pass_atom::value);
}

std::string slot_key(const std::string& node_id, const std::string& pool_id) {
  return node_id + '\n' + pool_id;
}

void release_slot(admission_state& st, entry& e) {
  if (e.slot.empty())
    return;
  auto it = st.busy.find(e.slot);
  if (it != st.busy.end() && --it->second <= 0)
    st.busy.erase(it);
  e.slot.clear();
}

// The registry's view with this queue's own count of busy slots.
std::vector<node_info> view_with_busy_slots(const admission_state& st) {
  auto nodes = st.view.nodes;
  for (auto& n : nodes)
    for (auto& p : n.pools) {
      auto it = st.busy.find(slot_key(n.node_id, p.pool_id));
      p.slots_free = std::max(0, p.slots_total - (it == st.busy.end() ? 0 : it->second));
    }
  return nodes;
}

placement_request request_of(const task_spec& spec) {
  placement_request r;
  r.model = spec.model;
  r.mode = spec.placement_mode;
  r.pool_id = spec.pin_pool;
  r.node_id = spec.pin_node;
  r.avoid_pools = spec.avoid_pools;
  return r;
}

void refresh_view(admission_actor* self);

void set_view(admission_state& st, placement_snapshot snap) {
  st.view = std::move(snap);
  st.view_time = std::chrono::steady_clock::now();
}

// One placement pass over the current view: expire, then place what fits.
void run_pass(admission_actor* self) {
  auto& st = self->state;
  auto now = wall_clock_ms();
  for (auto& t : st.queue->expire(now)) {
    auto it = st.tasks.find(t.task_id);
    if (it != st.tasks.end())
      self->send(it->second.task, fail_atom::value, std::string("NO_POOLS_AVAILABLE"),
                 std::string("no ready pool for model '" + it->second.spec.model
                             + "' before the task's deadline"));
  }
  placement_round round(view_with_busy_slots(st));
  while (round.any_free_slot()) {
    placement_decision decision;
    auto next = st.queue->pop_placeable([&](const queued_task& q) {
      auto it = st.tasks.find(q.task_id);
      if (it == st.tasks.end())
        return true; // a task actor that is gone: drop its queue entry
      decision = round.place(request_of(it->second.spec));
      return decision.placed;
    });
    if (!next)
      break;
    auto it = st.tasks.find(next->task_id);
    if (it == st.tasks.end())
      continue;
    st.queue->note_dequeued(now);
    caf::actor agent, engine, pool;
    for (std::size_t i = 0; i < st.view.nodes.size(); ++i)
      if (st.view.nodes[i].node_id == decision.node_id) {
        agent = st.view.agents[i];
        for (auto& p : st.view.nodes[i].pools)
          if (p.pool_id == decision.pool_id)
            engine = p.engine_actor, pool = p.pool_actor;
      }
    if (!agent) { // registered over HTTP only: no way to reach its pools
      count_placement(st, "unreachable_node");
      log::warn("placement_failed", {{"task_id", it->second.spec.task_id},
                                     {"node_id", decision.node_id},
                                     {"reason", "node has no cluster connection"}});
      st.queue->push({next->task_id, next->model, next->interactive, next->enqueued_ms,
                      next->deadline_ms});
      break;
    }
    count_placement(st, "placed");
    it->second.slot = slot_key(decision.node_id, decision.pool_id);
    ++st.busy[it->second.slot];
    self->send(it->second.task, generate_atom::value, decision.node_id, decision.pool_id, agent,
               engine, pool);
  }
  st.saturated = !round.any_free_slot();
  set_depth(st);
  schedule_pass(self);
  // a view older than this is refreshed behind the passes that use it
  if (std::chrono::steady_clock::now() - st.view_time > std::chrono::milliseconds(20))
    refresh_view(self);
}

// Asks the registry for a new view, then runs a pass over it.
void refresh_view(admission_actor* self) {
  auto& st = self->state;
  if (st.refresh_running)
    return;
  auto registry = current_node_registry(self->system());
  if (!registry) {
    schedule_pass(self);
    return;
  }
  st.refresh_running = true;
  self->request(registry, std::chrono::seconds(2), placement_atom::value)
    .then(
      [self](placement_snapshot& snap) {
        auto& cur = self->state;
        cur.refresh_running = false;
        set_view(cur, std::move(snap));
        run_pass(self);
      },
      [self](const caf::error&) {
        self->state.refresh_running = false;
        schedule_pass(self);
      });
}

// Ended tasks beyond the newest retained_tasks, or older than the retention, go.
void retire_ended(admission_actor* self) {
  auto& s = self->state;
  auto oldest = std::chrono::steady_clock::now() - s.settings.retention;
  while (!s.ended.empty()
         && (s.ended.size() > s.settings.retained_tasks || s.ended.front().second < oldest)) {
    auto it = s.tasks.find(s.ended.front().first);
    if (it != s.tasks.end())
      self->send(it->second.task, retire_atom::value);
    s.ended.pop_front();
  }
}

submit_reply admit(admission_actor* self, task_spec spec) {
  auto& s = self->state;
  if (s.by_name.count(spec.task_id))
    return {409, "TASK_EXISTS", "a task with this task_id exists", 0, spec.task_id, 0, -1, {}};
  if (!model_known(s.view.nodes, spec.model))
    return {404, "MODEL_NOT_FOUND", "no pool serves or has served model '" + spec.model + "'", 0,
            spec.task_id, 0, -1, {}};
  auto now = wall_clock_ms();
  if (spec.deadline_ms <= 0)
    spec.deadline_ms = now + s.settings.default_deadline.count();
  auto id = s.next_id++;
  if (s.queue->push({id, spec.model, spec.interactive, now, spec.deadline_ms})
      != admission_queue_core::admit_result::admitted) {
    s.metrics->counter_family("orchd_admission_rejections_total",
                              "Task submissions refused by admission", {"code"})
      .with({"QUEUE_FULL"})
      .inc();
    return {429, "QUEUE_FULL", "the admission queue is full", s.queue->retry_after_ms(now),
            spec.task_id, 0, -1, {}};
  }
  task_settings ts;
  ts.spec = spec;
  ts.engine_id = id;
  ts.admission = caf::actor_cast<caf::actor>(self);
  ts.stream_router = s.stream_router;
  ts.queue_position = static_cast<std::int64_t>(s.queue->position(id));
  auto actor = spawn_task(self->system(), ts, s.metrics);
  self->monitor(actor);
  s.tasks[id] = {spec, actor, {}};
  s.by_name[spec.task_id] = id;
  s.by_actor[actor.address()] = id;
  s.settings.directory->add(spec.task_id, id, actor, ts.stream);
  submit_reply r;
  r.task = actor;
  r.task_id = spec.task_id;
  r.queue_position = ts.queue_position;
  r.predicted_start_ms = s.queue->predicted_start_ms(id);
  set_depth(s);
  trigger_pass(self);
  return r;
}

caf::behavior admission_queue(admission_actor* self, admission_settings settings,
                              std::shared_ptr<metrics::registry> metrics) {
  auto& st = self->state;
  self->system().registry().put(admission_name, caf::actor_cast<caf::strong_actor_ptr>(self));
  st.settings = settings;
  st.metrics = std::move(metrics);
  st.queue = std::make_unique<admission_queue_core>(settings.capacity);
  st.stream_router = spawn_stream_router(self, st.settings.directory, st.metrics);
  set_depth(st);
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& s = self->state;
    auto it = s.by_actor.find(dm.source);
    if (it == s.by_actor.end())
      return;
    auto t = s.tasks.find(it->second);
    if (t != s.tasks.end()) {
      release_slot(s, t->second);
      s.settings.directory->remove(t->second.spec.task_id, t->first);
      s.by_name.erase(t->second.spec.task_id);
      s.queue->remove(t->first);
      s.tasks.erase(t);
    }
    s.by_actor.erase(it);
    set_depth(s);
  });
  // A registry view for admission decisions (unknown model) from the start.
  refresh_view(self);
  self->send(self, retire_atom::value);

  return {
    [self](submit_atom, task_spec& spec, submit_continuation& reply) {
      auto& s = self->state;
      auto registry = current_node_registry(self->system());
      if (model_known(s.view.nodes, spec.model) || !registry)
        return reply(admit(self, std::move(spec)));
      // The model may belong to a node that registered since the last refresh: look again first.
      self->request(registry, std::chrono::seconds(2), placement_atom::value)
        .then(
          [self, spec, reply](placement_snapshot& snap) mutable {
            set_view(self->state, std::move(snap));
            reply(admit(self, std::move(spec)));
          },
          [self, spec, reply](const caf::error&) mutable { reply(admit(self, std::move(spec))); });
    },
    [self](requeue_atom, std::uint64_t id) {
      auto& s = self->state;
      auto it = s.tasks.find(id);
      if (it == s.tasks.end())
        return;
      auto& spec = it->second.spec;
      // The pool it failed on is out of this view until the registry says otherwise.
      for (auto& n : s.view.nodes)
        for (auto& p : n.pools)
          if (slot_key(n.node_id, p.pool_id) == it->second.slot)
            p.ready = false;
      release_slot(s, it->second);
      // A fail-over is no new admission: it may exceed the capacity by the tasks in flight.
      if (s.queue->push({id, spec.model, true, wall_clock_ms(), spec.deadline_ms})
          != admission_queue_core::admit_result::admitted)
        self->send(it->second.task, fail_atom::value, std::string("WORKER_RESET"),
                   std::string("the worker failed and the queue is full"));
      set_depth(s);
      refresh_view(self);
    },
    [self](release_atom, std::uint64_t id) {
      auto& s = self->state;
      auto it = s.tasks.find(id);
      if (it == s.tasks.end())
        return;
      release_slot(s, it->second);
      if (s.queue->size() > 0)
        trigger_pass(self);
      s.ended.emplace_back(id, std::chrono::steady_clock::now());
      retire_ended(self);
    },
    [self](retire_atom) {
      retire_ended(self);
      self->delayed_send(self, std::chrono::seconds(1), retire_atom::value);
    },
    [self](cancel_atom, std::uint64_t id) {
      self->state.queue->remove(id);
      set_depth(self->state);
    },
    [self](tick_timer_atom) {
      self->state.tick_pending = false;
      refresh_view(self);
    },
    [self](pass_atom) {
      self->state.pass_pending = false;
      run_pass(self);
    },
  };
}

} // namespace

caf::actor current_admission(caf::actor_system& sys) {
  return caf::actor_cast<caf::actor>(sys.registry().get(admission_name));
}

caf::actor spawn_admission_queue(caf::actor_system& sys, admission_settings settings,
                                 std::shared_ptr<metrics::registry> metrics) {
  return sys.spawn(admission_queue, settings, std::move(metrics));
}

} // namespace llorch
