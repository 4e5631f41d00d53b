#include "actors/control/node_table.hpp"

#include <algorithm>
#include <cctype>

namespace llorch {
namespace {

registry_reply node_not_found(const std::string& node_id) {
  return registry_reply::make(404, "NODE_NOT_FOUND", "no node with id '" + node_id + "' is registered", node_id);
}

} // namespace

node_table::node_table(std::chrono::milliseconds heartbeat_interval,
                       std::chrono::milliseconds heartbeat_timeout)
  : interval_(heartbeat_interval), timeout_(heartbeat_timeout) {
}

bool node_table::valid_node_id(const std::string& id) {
  if (id.empty() || id.size() > 64)
    return false;
  return std::all_of(id.begin(), id.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '-' || c == '_' || c == '.';
  });
}

registry_reply node_table::upsert(node_info info, clock::time_point now, std::int64_t wall_ms,
                                  std::vector<event>& events) {
  if (!valid_node_id(info.node_id))
    return registry_reply::make(400, "INVALID_PARAMS", "node_id must be 1-64 characters of [A-Za-z0-9._-]",
                 info.node_id);
  for (auto& p : info.pools) {
    if (p.pool_id.empty())
      return registry_reply::make(400, "INVALID_PARAMS", "every pool needs a pool_id", info.node_id);
    p.node_id = info.node_id;
  }
  auto id = info.node_id;
  auto [it, inserted] = nodes_.try_emplace(id);
  auto& e = it->second;
  bool was_online = e.online;
  e.info = std::move(info);
  e.info.registered_at_ms = wall_ms;
  e.info.last_heartbeat_ms = wall_ms;
  e.online = true;
  e.last_seen = now;
  e.missed = 0;
  // A drained node stays drained across re-registration (its agent reconnecting is no operator
  // decision to undrain it).
  if (inserted)
    events.push_back({event::registered, id, "register"});
  else
    events.push_back({was_online ? event::reregistered : event::online, id, "register"});
  auto r = registry_reply::make(200, "", inserted ? "node registered" : "node re-registered", id);
  r.next_heartbeat_ms = interval_.count();
  return r;
}

void node_table::mark_online(entry& e, const char* reason, std::vector<event>& events) {
  if (e.online)
    return;
  e.online = true;
  events.push_back({event::online, e.info.node_id, reason});
}

registry_reply node_table::heartbeat(const node_heartbeat& hb, clock::time_point now,
                                     std::int64_t wall_ms, std::vector<event>& events) {
  auto it = nodes_.find(hb.node_id);
  if (it == nodes_.end())
    return node_not_found(hb.node_id);
  for (auto& reported : hb.pools)
    if (reported.pool_id.empty())
      return registry_reply::make(400, "INVALID_PARAMS", "every pool needs a pool_id", hb.node_id);
  auto& e = it->second;
  for (auto reported : hb.pools) {
    reported.node_id = hb.node_id;
    auto known = std::find_if(e.info.pools.begin(), e.info.pools.end(),
                              [&](auto& p) { return p.pool_id == reported.pool_id; });
    if (known != e.info.pools.end())
      *known = std::move(reported);
    else
      e.info.pools.push_back(std::move(reported));
  }
  e.last_seen = now;
  e.missed = 0;
  e.info.last_heartbeat_ms = wall_ms;
  mark_online(e, "heartbeat", events);
  auto r = registry_reply::make(200, "", "ok", hb.node_id);
  r.next_heartbeat_ms = interval_.count();
  return r;
}

registry_reply node_table::remove(const std::string& node_id, std::vector<event>& events) {
  if (nodes_.erase(node_id) == 0)
    return node_not_found(node_id);
  for (auto it = drained_pools_.begin(); it != drained_pools_.end();)
    it = it->first == node_id ? drained_pools_.erase(it) : std::next(it);
  events.push_back({event::deregistered, node_id, "forced"});
  return registry_reply::make(204, "", "node deregistered", node_id);
}

registry_reply node_table::drain_node(const std::string& node_id, std::int64_t) {
  auto it = nodes_.find(node_id);
  if (it == nodes_.end())
    return node_not_found(node_id);
  it->second.draining = true;
  return registry_reply::make(202, "", "node draining: no new tasks are placed on it", node_id);
}

registry_reply node_table::drain_pool(const std::string& pool_id, const std::string& node_id,
                                      std::int64_t) {
  int matched = 0;
  for (auto& [id, e] : nodes_) {
    if (!node_id.empty() && id != node_id)
      continue;
    for (auto& p : e.info.pools)
      if (p.pool_id == pool_id) {
        drained_pools_.emplace(id, pool_id);
        ++matched;
      }
  }
  if (matched == 0)
    return registry_reply::make(404, "POOL_NOT_FOUND", "no registered node has a pool '" + pool_id + "'", node_id);
  return registry_reply::make(202, "", "pool draining on " + std::to_string(matched) + " node(s)", node_id);
}

void node_table::connection_lost(const std::string& node_id, std::vector<event>& events) {
  auto it = nodes_.find(node_id);
  if (it == nodes_.end() || !it->second.online)
    return;
  it->second.online = false;
  events.push_back({event::offline, node_id, "connection_lost"});
}

void node_table::sweep(clock::time_point now, std::vector<event>& events) {
  for (auto& [id, e] : nodes_) {
    if (!e.online)
      continue;
    auto silent = now - e.last_seen;
    // A heartbeat is missed once a whole interval plus half of one has passed without it.
    auto missed = static_cast<std::int64_t>((silent - interval_ / 2) / interval_);
    if (missed > e.missed) {
      for (auto n = e.missed; n < missed; ++n)
        events.push_back({event::heartbeat_missed, id, "silent"});
      e.missed = missed;
    }
    if (silent > timeout_) {
      e.online = false;
      events.push_back({event::offline, id, "heartbeat_timeout"});
    }
  }
}

node_info node_table::view(const entry& e) const {
  node_info v = e.info;
  v.online = e.online;
  v.status = !e.online ? "offline" : e.draining ? "draining" : "online";
  for (auto& p : v.pools)
    if (drained_pools_.count({v.node_id, p.pool_id}))
      p.draining = true;
  return v;
}

std::vector<node_info> node_table::list() const {
  std::vector<node_info> out;
  out.reserve(nodes_.size());
  for (auto& [id, e] : nodes_)
    out.push_back(view(e));
  return out;
}

node_lookup node_table::find(const std::string& node_id) const {
  node_lookup r;
  auto it = nodes_.find(node_id);
  if (it != nodes_.end()) {
    r.found = true;
    r.node = view(it->second);
  }
  return r;
}

bool node_table::pool_available(const node_info& node, const pool_status& pool) {
  return node.online && node.status != "draining" && pool.ready && !pool.draining;
}

cluster_summary node_table::summary() const {
  cluster_summary s;
  for (auto& [id, e] : nodes_) {
    if (!e.online)
      continue;
    ++s.nodes_online;
    auto v = view(e);
    for (auto& p : v.pools)
      s.pools_available += pool_available(v, p) ? 1 : 0;
  }
  return s;
}

std::int64_t node_table::missed_heartbeats(const std::string& node_id) const {
  auto it = nodes_.find(node_id);
  return it == nodes_.end() ? 0 : it->second.missed;
}

} // namespace llorch
