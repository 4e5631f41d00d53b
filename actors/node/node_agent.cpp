#include "actors/node/node_agent.hpp"

#include "actors/node/handoff_messages.hpp"
#include "actors/node/pool.hpp"
#include "engines/engine_protocol.hpp"
#include "runtime/clock.hpp"
#include "runtime/log.hpp"

#include <map>
#include <random>

namespace llorch {
namespace {

struct agent_state {
  static inline const char* name = "node_agent";

  node_agent_settings settings;
  caf::io::middleman_actor middleman;
  caf::actor registry;
  bool registered = false;
  // A pool's readiness changed after the registration went out: told at once when it is accepted.
  bool unreported_change = false;
  std::uint64_t generation = 0; // bumped on every (re)connect: stale timers and replies are ignored
  std::chrono::milliseconds backoff{0};
  std::int32_t last_rtt_ms = -1;
  std::minstd_rand jitter{std::random_device{}()};
  std::map<std::string, caf::actor> pool_actors; // pool id -> its actor, while it lives
};

using agent_actor = caf::stateful_actor<agent_state>;

void schedule_connect(agent_actor* self);
void send_heartbeat(agent_actor* self);

void lose_orchestrator(agent_actor* self, const char* reason) {
  auto& st = self->state;
  if (st.registry)
    self->demonitor(st.registry);
  st.registry = nullptr;
  st.registered = false;
  ++st.generation;
  log::warn("orchestrator_lost", {{"node_id", st.settings.identity.node_id}, {"reason", reason}});
  schedule_connect(self);
}

// Retry delay: starts small so a restarted control plane is found within a second, doubles up to
// reconnect_max, with +/-20 % jitter so that a fleet does not reconnect in lockstep.
void schedule_connect(agent_actor* self) {
  auto& st = self->state;
  auto& s = st.settings;
  st.backoff = st.backoff.count() == 0 ? s.reconnect_initial
                                       : std::min(st.backoff * 2, s.reconnect_max);
  std::uniform_real_distribution<double> spread(0.8, 1.2);
  auto delay = std::chrono::milliseconds(
    static_cast<std::int64_t>(static_cast<double>(st.backoff.count()) * spread(st.jitter)));
  self->delayed_send(self, delay, connect_timer_atom::value, st.generation);
}

void schedule_heartbeat(agent_actor* self) {
  auto& st = self->state;
  self->delayed_send(self, st.settings.heartbeat_interval, beat_timer_atom::value, st.generation);
}

void register_node(agent_actor* self) {
  auto& st = self->state;
  auto gen = st.generation;
  st.unreported_change = false; // the registration carries the pools as they are now
  self
    ->request(st.registry, st.settings.request_timeout, register_atom::value, st.settings.token,
              st.settings.identity, caf::actor_cast<caf::actor>(self))
    .then(
      [self, gen](const registry_reply& r) {
        auto& s = self->state;
        if (gen != s.generation)
          return;
        if (!r.ok()) {
          log::error("registration_refused", {{"node_id", s.settings.identity.node_id},
                                              {"status", r.status},
                                              {"code", r.code},
                                              {"message", r.message}});
          lose_orchestrator(self, "registration refused");
          return;
        }
        s.registered = true;
        s.backoff = std::chrono::milliseconds(0);
        log::info("node_registered", {{"node_id", s.settings.identity.node_id},
                                      {"orchestrator", s.settings.orchestrator_host + ":"
                                                         + std::to_string(
                                                           s.settings.orchestrator_port)}});
        if (s.unreported_change) { // else the control plane would wait for the next beat
          s.unreported_change = false;
          send_heartbeat(self);
        }
        schedule_heartbeat(self);
      },
      [self, gen](const caf::error& err) {
        if (gen != self->state.generation)
          return;
        log::warn("registration_failed", {{"node_id", self->state.settings.identity.node_id},
                                          {"error", self->system().render(err)}});
        lose_orchestrator(self, "registration failed");
      });
}

void connect(agent_actor* self) {
  auto& st = self->state;
  auto gen = st.generation;
  self
    ->request(st.middleman, st.settings.request_timeout, caf::connect_atom::value,
              st.settings.orchestrator_host, st.settings.orchestrator_port)
    .then(
      [self, gen](const caf::node_id&, caf::strong_actor_ptr& ptr, const std::set<std::string>&) {
        auto& s = self->state;
        if (gen != s.generation)
          return;
        if (!ptr) {
          log::warn("connect_failed", {{"node_id", s.settings.identity.node_id},
                                       {"error", "nothing is published on that port"}});
          schedule_connect(self);
          return;
        }
        s.registry = caf::actor_cast<caf::actor>(std::move(ptr));
        self->monitor(s.registry);
        register_node(self);
      },
      [self, gen](const caf::error& err) {
        auto& s = self->state;
        if (gen != s.generation)
          return;
        log::debug("connect_failed", {{"node_id", s.settings.identity.node_id},
                                      {"error", self->system().render(err)}});
        schedule_connect(self);
      });
}

void send_heartbeat(agent_actor* self) {
  auto& st = self->state;
  node_heartbeat hb;
  hb.node_id = st.settings.identity.node_id;
  hb.timestamp_ms = wall_clock_ms();
  hb.pools = st.settings.identity.pools;
  hb.rtt_ms = st.last_rtt_ms;
  auto gen = st.generation;
  auto sent = std::chrono::steady_clock::now();
  self->request(st.registry, st.settings.heartbeat_interval, heartbeat_atom::value,
                st.settings.token, std::move(hb))
    .then(
      [self, gen, sent](const registry_reply& r) {
        auto& s = self->state;
        if (gen != s.generation)
          return;
        auto rtt = std::chrono::duration_cast<std::chrono::microseconds>(
          std::chrono::steady_clock::now() - sent);
        s.last_rtt_ms = static_cast<std::int32_t>(rtt.count() / 1000);
        if (s.settings.on_heartbeat_rtt)
          s.settings.on_heartbeat_rtt(rtt);
        if (r.status == 404) {
          // The control plane forgot us (restart, forced deregistration): register again.
          log::info("heartbeat_rejected", {{"node_id", s.settings.identity.node_id},
                                           {"code", r.code}, {"action", "re-register"}});
          s.registered = false;
          ++s.generation; // the running heartbeat timer stops; registration starts a new one
          register_node(self);
        } else if (!r.ok()) {
          log::error("heartbeat_rejected", {{"node_id", s.settings.identity.node_id},
                                            {"status", r.status}, {"code", r.code},
                                            {"message", r.message}});
        }
      },
      [self, gen](const caf::error& err) {
        if (gen != self->state.generation)
          return;
        log::warn("heartbeat_failed", {{"node_id", self->state.settings.identity.node_id},
                                       {"error", self->system().render(err)}});
      });
}

void heartbeat(agent_actor* self) {
  send_heartbeat(self);
  schedule_heartbeat(self);
}

// Runs `f(pool)` with the current handle of the named pool, or `missing()` when there is none.
template <class F, class G>
void with_pool(agent_actor* self, const std::string& pool_id, F f, G missing) {
  auto& st = self->state;
  if (auto it = st.pool_actors.find(pool_id); it != st.pool_actors.end())
    return f(it->second); // no round trip to the supervisor per task
  if (!st.settings.pools)
    return missing();
  self->request(st.settings.pools, std::chrono::seconds(5), caf::get_atom::value, pool_id)
    .then(
      [self, pool_id, f](const caf::actor& pool) mutable {
        if (pool && self->state.pool_actors.emplace(pool_id, pool).second)
          self->monitor(pool); // a restarted pool is a new actor: looked up again
        f(pool);
      },
      [missing](const caf::error&) mutable { missing(); });
}

void update_pool(agent_actor* self, pool_status ps) {
  auto& st = self->state;
  auto& pools = st.settings.identity.pools;
  auto it = std::find_if(pools.begin(), pools.end(),
                         [&](auto& p) { return p.pool_id == ps.pool_id; });
  // Readiness drives placement: tell the control plane now, not at the next beat. Busy slots
  // need not: admission counts the tasks it placed; beats carry the figure for /v2/nodes.
  bool changed = it == pools.end() || it->state != ps.state || it->ready != ps.ready
                 || it->draining != ps.draining || it->model_id != ps.model_id;
  if (it == pools.end())
    pools.push_back(std::move(ps));
  else
    *it = std::move(ps);
  if (changed && st.registered)
    send_heartbeat(self);
  else if (changed)
    st.unreported_change = true;
}

caf::behavior node_agent(agent_actor* self, node_agent_settings settings,
                         caf::io::middleman_actor middleman) {
  self->system().registry().put(node_agent_name, caf::actor_cast<caf::strong_actor_ptr>(self));
  self->state.settings = std::move(settings);
  self->state.middleman = std::move(middleman);
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& pools = self->state.pool_actors;
    for (auto it = pools.begin(); it != pools.end();)
      it = it->second.address() == dm.source ? pools.erase(it) : std::next(it);
    if (dm.source == self->state.registry.address())
      lose_orchestrator(self, "connection lost");
  });
  self->send(self, connect_timer_atom::value, self->state.generation);
  // After a restart of this agent the pools' states would be unknown until they change: ask.
  for (auto& p : self->state.settings.identity.pools)
    with_pool(
      self, p.pool_id,
      [self](const caf::actor& pool) {
        self->request(pool, std::chrono::seconds(5), caf::get_atom::value)
          .then([self](pool_runtime_view& v) { update_pool(self, std::move(v.status)); },
                [](const caf::error&) {});
      },
      [] {});
  return {
    [self](connect_timer_atom, std::uint64_t gen) {
      if (gen == self->state.generation && !self->state.registry)
        connect(self);
    },
    [self](beat_timer_atom, std::uint64_t gen) {
      if (gen == self->state.generation && self->state.registered)
        heartbeat(self);
    },
    [self](caf::get_atom) {
      return std::make_tuple(self->state.registered, self->state.settings.identity.pools);
    },
    [self](pool_update_atom, pool_status& ps) { update_pool(self, std::move(ps)); },
    [self](generate_atom, const std::string& pool_id, const engine::engine_generate& req) {
      with_pool(
        self, pool_id, [self, req](const caf::actor& p) { self->send(p, req); },
        [self, req, pool_id] {
          self->send(req.reply_to, stream_failed(req.task_id, req.first_index,
                                                 "no pool '" + pool_id + "' on this node"));
        });
    },
    [self](drain_atom, const std::string& pool_id, std::int64_t deadline_ms) {
      auto rp = self->make_response_promise<registry_reply>();
      with_pool(
        self, pool_id,
        [rp, deadline_ms](const caf::actor& p) mutable {
          rp.delegate(p, drain_atom::value, deadline_ms);
        },
        [rp, pool_id]() mutable {
          rp.deliver(registry_reply::make(404, "POOL_NOT_FOUND",
                                          "no pool '" + pool_id + "' on this node"));
        });
      return rp;
    },
    [self](cancel_atom, const std::string& pool_id, const engine::engine_cancel& c) {
      with_pool(
        self, pool_id, [self, c](const caf::actor& p) { self->send(p, c); }, [] {});
    },
    [self](handoff_atom, const handoff::handoff_record& rec) {
      with_pool(
        self, rec.pool_id, [self, rec](const caf::actor& p) { self->send(p, handoff_atom::value, rec); },
        [] {});
    },
    [self](handoff_removed_atom, const std::string& pool_id, const std::string& replica_id) {
      with_pool(
        self, pool_id,
        [self, pool_id, replica_id](const caf::actor& p) {
          self->send(p, handoff_removed_atom::value, pool_id, replica_id);
        },
        [] {});
    },
    [self](caf::get_atom, pool_atom, const std::string& pool_id) {
      auto rp = self->make_response_promise<pool_runtime_view>();
      with_pool(
        self, pool_id, [rp](const caf::actor& p) mutable { rp.delegate(p, caf::get_atom::value); },
        [rp]() mutable { rp.deliver(pool_runtime_view{}); });
      return rp;
    },
    [self](preload_atom, const std::string& pool_id, const std::string& model_id,
           const std::string& engine) {
      auto rp = self->make_response_promise<registry_reply>();
      with_pool(
        self, pool_id,
        [rp, model_id, engine](const caf::actor& p) mutable {
          rp.delegate(p, preload_atom::value, model_id, engine);
        },
        [rp, pool_id]() mutable {
          rp.deliver(registry_reply::make(404, "POOL_NOT_FOUND",
                                          "no pool '" + pool_id + "' on this node"));
        });
      return rp;
    },
  };
}

} // namespace

caf::actor current_node_agent(caf::actor_system& sys) {
  return caf::actor_cast<caf::actor>(sys.registry().get(node_agent_name));
}

caf::actor spawn_handoff_forwarder(caf::actor_system& sys) {
  return sys.spawn([](caf::event_based_actor* self) -> caf::behavior {
    return {
      [self](handoff_atom, const handoff::handoff_record& rec) {
        if (auto agent = current_node_agent(self->system()))
          self->send(agent, handoff_atom::value, rec);
      },
      [self](handoff_removed_atom, const std::string& pool_id, const std::string& replica_id) {
        if (auto agent = current_node_agent(self->system()))
          self->send(agent, handoff_removed_atom::value, pool_id, replica_id);
      },
    };
  });
}

caf::actor spawn_node_agent(caf::actor_system& sys, node_agent_settings settings,
                            caf::io::middleman_actor middleman) {
  return sys.spawn(node_agent, std::move(settings), std::move(middleman));
}

} // namespace llorch
