#include "actors/control/node_registry.hpp"

#include "actors/control/node_table.hpp"
#include "net/auth.hpp"
#include "runtime/clock.hpp"
#include "runtime/log.hpp"
#include "runtime/metrics.hpp"

#include <map>
#include <optional>
#include <set>

namespace llorch {
namespace {

struct registry_metrics {
  metrics::family<metrics::gauge>& nodes_online;
  metrics::family<metrics::gauge>& pools_available;
  metrics::family<metrics::gauge>& last_heartbeat;
  metrics::family<metrics::counter>& registrations;
  metrics::family<metrics::counter>& heartbeats;
  metrics::family<metrics::counter>& deregistrations;
  metrics::family<metrics::counter>& health_checks;
  metrics::histogram& health_check;

  explicit registry_metrics(metrics::registry& r)
    : nodes_online(r.gauge_family("orchd_nodes_online", "1 if the node is online, else 0",
                                  {"node_id"})),
      pools_available(r.gauge_family("orchd_pools_available",
                                     "1 if the pool can take tasks (node online, pool ready, "
                                     "neither draining), else 0",
                                     {"node_id", "pool_id"})),
      last_heartbeat(r.gauge_family("orchd_node_last_heartbeat_timestamp_seconds",
                                    "Unix time of the node's last heartbeat or registration",
                                    {"node_id"})),
      registrations(r.counter_family("orchd_node_registrations_total",
                                     "Node registrations by outcome", {"outcome"})),
      heartbeats(r.counter_family("orchd_node_heartbeats_total",
                                  "Node heartbeats by outcome (missed: counted by the sweep)",
                                  {"node_id", "outcome"})),
      deregistrations(r.counter_family("orchd_node_deregistrations_total",
                                       "Forced node deregistrations by outcome", {"outcome"})),
      health_checks(r.counter_family("orchd_pool_health_checks_total",
                                     "Pool status reports received with heartbeats, by outcome",
                                     {"pool_id", "outcome"})),
      // CONTRACT §6 says orchd_pool_health_check_duration_ms, but promtool rejects abbreviated
      // units in names, so the histogram uses the base unit (docs/metrics.md).
      health_check(r.histogram_family("orchd_pool_health_check_duration_seconds",
                                      "Heartbeat round trip as measured by the node", {},
                                      {0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                       2.5, 5})
                     .with({})) {
  }
};

struct registry_state {
  static inline const char* name = "node_registry";

  std::unique_ptr<node_table> table;
  std::unique_ptr<registry_metrics> m;
  node_registry_settings settings;
  std::map<caf::actor_addr, std::string> agents;       // monitored agent -> node_id
  std::map<std::string, caf::actor> agent_of;          // node_id -> monitored agent
  std::map<std::string, std::set<std::string>> exported_pools; // gauges we have set
};

using registry_actor = caf::stateful_actor<registry_state>;

void refresh_gauges(registry_state& st, const std::string& node_id) {
  auto found = st.table->find(node_id);
  auto& exported = st.exported_pools[node_id];
  if (!found.found) {
    st.m->nodes_online.remove({node_id});
    st.m->last_heartbeat.remove({node_id});
    for (auto& pool_id : exported)
      st.m->pools_available.remove({node_id, pool_id});
    st.exported_pools.erase(node_id);
    return;
  }
  auto& node = found.node;
  st.m->nodes_online.with({node_id}).set(node.online ? 1 : 0);
  st.m->last_heartbeat.with({node_id}).set(static_cast<double>(node.last_heartbeat_ms) / 1000.0);
  std::set<std::string> now_pools;
  for (auto& p : node.pools) {
    now_pools.insert(p.pool_id);
    st.m->pools_available.with({node_id, p.pool_id})
      .set(node_table::pool_available(node, p) ? 1 : 0);
  }
  for (auto& pool_id : exported)
    if (!now_pools.count(pool_id))
      st.m->pools_available.remove({node_id, pool_id});
  exported = std::move(now_pools);
}

void report(registry_state& st, const std::vector<node_table::event>& events) {
  using ev = node_table::event;
  std::set<std::string> touched;
  for (auto& e : events) {
    touched.insert(e.node_id);
    switch (e.what) {
      case ev::registered:
        log::info("node_registered", {{"node_id", e.node_id}});
        break;
      case ev::reregistered:
        log::info("node_registered", {{"node_id", e.node_id}, {"again", true}});
        break;
      case ev::online:
        log::info("node_online", {{"node_id", e.node_id}, {"reason", e.reason}});
        break;
      case ev::offline:
        log::warn("node_offline", {{"node_id", e.node_id}, {"reason", e.reason}});
        break;
      case ev::deregistered:
        log::info("node_deregistered", {{"node_id", e.node_id}, {"reason", e.reason}});
        break;
      case ev::heartbeat_missed:
        log::warn("heartbeat_missed", {{"node_id", e.node_id}});
        st.m->heartbeats.with({e.node_id, "missed"}).inc();
        break;
    }
  }
  for (auto& id : touched)
    refresh_gauges(st, id);
}

// Same rule as the HTTP facade: no configured token means none is required; otherwise a missing
// or different token is refused, compared in constant time, and logged by fingerprint only.
std::optional<registry_reply> check_token(const registry_state& st, const std::string& token,
                                          const char* what, const std::string& node_id) {
  if (st.settings.token.empty())
    return std::nullopt;
  if (token.empty()) {
    log::warn("auth_failed", {{"fingerprint", "none"}, {"peer", "cluster"}, {"path", what},
                              {"node_id", node_id}});
    return registry_reply::make(401, "MISSING_TOKEN", "a token is required");
  }
  if (!net::constant_time_equals(token, st.settings.token)) {
    log::warn("auth_failed", {{"fingerprint", net::token_fingerprint(token)}, {"peer", "cluster"},
                              {"path", what}, {"node_id", node_id}});
    return registry_reply::make(401, "BAD_TOKEN", "the token does not match LLORCH_API_TOKEN");
  }
  return std::nullopt;
}

std::optional<registry_reply> check_cloud_profile(const registry_state& st, const char* what,
                                                  const std::string& node_id) {
  if (st.settings.cloud_profile)
    return std::nullopt;
  log::warn("registration_refused",
            {{"node_id", node_id},
             {"path", what},
             {"reason", "cloud profile disabled"},
             {"hint", "set ORCHESTRATORD_CLOUD_PROFILE=true (or cloud_profile: true) and restart"}});
  return registry_reply::make(503, "CLOUD_PROFILE_DISABLED",
                 "the cloud profile is disabled on this orchestratord; set "
                 "ORCHESTRATORD_CLOUD_PROFILE=true to accept nodes");
}

void watch_agent(registry_actor* self, const std::string& node_id, const caf::actor& agent) {
  auto& st = self->state;
  auto old = st.agent_of.find(node_id);
  if (old != st.agent_of.end()) {
    if (agent && old->second == agent)
      return;
    self->demonitor(old->second);
    st.agents.erase(old->second.address());
    st.agent_of.erase(old);
  }
  if (!agent)
    return;
  self->monitor(agent);
  st.agents[agent.address()] = node_id;
  st.agent_of[node_id] = agent;
}

caf::behavior node_registry(registry_actor* self, node_registry_settings settings,
                            std::shared_ptr<metrics::registry> metrics_registry) {
  auto& st = self->state;
  self->system().registry().put(node_registry_name, caf::actor_cast<caf::strong_actor_ptr>(self));
  st.settings = settings;
  st.table = std::make_unique<node_table>(settings.heartbeat_interval, settings.heartbeat_timeout);
  st.m = std::make_unique<registry_metrics>(*metrics_registry);
  // Keep the registry alive as long as its metrics can be scraped.
  self->attach_functor([keep = metrics_registry] {});
  for (auto outcome : {"success", "auth_failed", "invalid", "disabled"})
    st.m->registrations.with({outcome});
  for (auto outcome : {"success", "not_found", "auth_failed"})
    st.m->deregistrations.with({outcome});

  self->set_down_handler([self](caf::down_msg& dm) {
    auto& s = self->state;
    auto it = s.agents.find(dm.source);
    if (it == s.agents.end())
      return;
    auto node_id = it->second;
    s.agents.erase(it);
    s.agent_of.erase(node_id);
    std::vector<node_table::event> events;
    s.table->connection_lost(node_id, events);
    report(s, events);
  });

  auto sweep_period = std::max(std::chrono::milliseconds(20),
                               std::min(settings.heartbeat_interval, settings.heartbeat_timeout / 4));
  self->send(self, sweep_atom::value);

  return {
    [self](register_atom, const std::string& token, node_info& info,
           const caf::actor& agent) -> registry_reply {
      auto& s = self->state;
      if (auto r = check_cloud_profile(s, "register", info.node_id)) {
        s.m->registrations.with({"disabled"}).inc();
        return *r;
      }
      if (auto r = check_token(s, token, "register", info.node_id)) {
        s.m->registrations.with({"auth_failed"}).inc();
        return *r;
      }
      std::vector<node_table::event> events;
      auto node_id = info.node_id;
      auto r = s.table->upsert(std::move(info), node_table::clock::now(), wall_clock_ms(), events);
      if (!r.ok()) {
        s.m->registrations.with({"invalid"}).inc();
        log::warn("registration_rejected", {{"node_id", node_id}, {"reason", r.message}});
        return r;
      }
      s.m->registrations.with({"success"}).inc();
      watch_agent(self, node_id, agent);
      report(s, events);
      return r;
    },
    [self](heartbeat_atom, const std::string& token, const node_heartbeat& hb) -> registry_reply {
      auto& s = self->state;
      // Unknown ids share one label value so that garbage cannot grow the metric without bound.
      auto label = s.table->contains(hb.node_id) ? hb.node_id : std::string("unknown");
      if (auto r = check_cloud_profile(s, "heartbeat", hb.node_id)) {
        s.m->heartbeats.with({label, "disabled"}).inc();
        return *r;
      }
      if (auto r = check_token(s, token, "heartbeat", hb.node_id)) {
        s.m->heartbeats.with({label, "auth_failed"}).inc();
        return *r;
      }
      std::vector<node_table::event> events;
      auto r = s.table->heartbeat(hb, node_table::clock::now(), wall_clock_ms(), events);
      if (!r.ok()) {
        s.m->heartbeats.with({label, r.status == 404 ? "unknown_node" : "invalid"}).inc();
        return r;
      }
      s.m->heartbeats.with({label, "success"}).inc();
      for (auto& p : hb.pools)
        s.m->health_checks.with({p.pool_id, p.ready ? "ready" : "not_ready"}).inc();
      if (hb.rtt_ms >= 0)
        s.m->health_check.observe(hb.rtt_ms / 1000.0);
      report(s, events);
      // The heartbeat time and the pools it reports change the gauges even without an event.
      refresh_gauges(s, hb.node_id);
      return r;
    },
    [self](deregister_atom, const std::string& token, const std::string& node_id) {
      auto& s = self->state;
      if (auto r = check_token(s, token, "deregister", node_id)) {
        s.m->deregistrations.with({"auth_failed"}).inc();
        return *r;
      }
      std::vector<node_table::event> events;
      auto r = s.table->remove(node_id, events);
      s.m->deregistrations.with({r.ok() ? "success" : "not_found"}).inc();
      if (r.ok())
        watch_agent(self, node_id, caf::actor{});
      report(s, events);
      return r;
    },
    [self](drain_atom, const std::string& token, const std::string& node_id,
           std::int64_t deadline_ms) {
      auto& s = self->state;
      if (auto r = check_token(s, token, "drain", node_id))
        return *r;
      auto r = s.table->drain_node(node_id, deadline_ms);
      if (r.ok()) {
        log::info("node_draining", {{"node_id", node_id}, {"deadline_ms", deadline_ms}});
        refresh_gauges(s, node_id);
        // The node's pools let running tasks finish (or hand them back at the deadline).
        if (auto it = s.agent_of.find(node_id); it != s.agent_of.end())
          for (auto& p : s.table->find(node_id).node.pools)
            caf::anon_send(it->second, drain_atom::value, p.pool_id, deadline_ms);
      }
      return r;
    },
    [self](drain_atom, pool_atom, const std::string& token, const std::string& pool_id,
           const std::string& node_id, std::int64_t deadline_ms) {
      auto& s = self->state;
      if (auto r = check_token(s, token, "drain_pool", node_id))
        return *r;
      auto r = s.table->drain_pool(pool_id, node_id, deadline_ms);
      if (r.ok()) {
        for (auto& [id, agent] : s.agent_of)
          if (node_id.empty() || id == node_id)
            for (auto& p : s.table->find(id).node.pools)
              if (p.pool_id == pool_id)
                caf::anon_send(agent, drain_atom::value, pool_id, deadline_ms);
        log::info("pool_draining",
                  {{"pool_id", pool_id}, {"node_id", node_id}, {"deadline_ms", deadline_ms}});
        for (auto& n : s.table->list())
          refresh_gauges(s, n.node_id);
      }
      return r;
    },
    [self](caf::get_atom) { return self->state.table->list(); },
    [self](caf::get_atom, const std::string& node_id) { return self->state.table->find(node_id); },
    [self](summary_atom) { return self->state.table->summary(); },
    [self](placement_atom) {
      auto& s = self->state;
      placement_snapshot snap;
      snap.nodes = s.table->list();
      for (auto& n : snap.nodes) {
        auto it = s.agent_of.find(n.node_id);
        snap.agents.push_back(it != s.agent_of.end() ? it->second : caf::actor{});
      }
      return snap;
    },
    [self, sweep_period](sweep_atom) {
      std::vector<node_table::event> events;
      self->state.table->sweep(node_table::clock::now(), events);
      report(self->state, events);
      self->delayed_send(self, sweep_period, sweep_atom::value);
    },
  };
}

} // namespace

void count_http_auth_failure(metrics::registry& metrics, const std::string& path) {
  auto ends_with = [&](const std::string& suffix) {
    return path.size() >= suffix.size()
           && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (path == "/v2/nodes/register")
    registry_metrics(metrics).registrations.with({"auth_failed"}).inc();
  else if (path.rfind("/v2/nodes/", 0) == 0 && ends_with("/heartbeat"))
    registry_metrics(metrics).heartbeats.with({"unknown", "auth_failed"}).inc();
}

caf::actor current_node_registry(caf::actor_system& sys) {
  return caf::actor_cast<caf::actor>(sys.registry().get(node_registry_name));
}

caf::actor spawn_node_registry(caf::actor_system& sys, node_registry_settings settings,
                               std::shared_ptr<metrics::registry> metrics) {
  return sys.spawn(node_registry, std::move(settings), std::move(metrics));
}

} // namespace llorch
