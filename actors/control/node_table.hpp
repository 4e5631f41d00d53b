#pragma once
// The node registry's state and its transitions, free of actors and clocks so that every
// transition is unit-tested: nodes register (idempotent upsert), heartbeat, go offline (dropped
// connection or silence), come back, drain and are deregistered.
#include "runtime/messages.hpp"

#include <chrono>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace llorch {

class node_table {
public:
  using clock = std::chrono::steady_clock;

  // What changed, for the caller to log and count.
  struct event {
    enum kind { registered, reregistered, online, offline, deregistered, heartbeat_missed };
    kind what;
    std::string node_id;
    std::string reason;
  };

  node_table(std::chrono::milliseconds heartbeat_interval, std::chrono::milliseconds heartbeat_timeout);

  // Register or re-register; the node's pools replace the old ones.
  registry_reply upsert(node_info info, clock::time_point now, std::int64_t wall_ms,
                        std::vector<event>& events);

  // Liveness plus the pools it lists (pools it does not list keep their last state).
  registry_reply heartbeat(const node_heartbeat& hb, clock::time_point now, std::int64_t wall_ms,
                           std::vector<event>& events);

  registry_reply remove(const std::string& node_id, std::vector<event>& events);
  // Stop placing on a node, or on a pool (on one node, or every pool with that id when node_id is
  // empty). The deadline is kept for the task layer; the registry only stops new placements.
  registry_reply drain_node(const std::string& node_id, std::int64_t deadline_ms);
  registry_reply drain_pool(const std::string& pool_id, const std::string& node_id,
                            std::int64_t deadline_ms);

  // The node's connection dropped: offline at once.
  void connection_lost(const std::string& node_id, std::vector<event>& events);

  // Marks silent nodes offline and reports heartbeats missed since the last sweep.
  void sweep(clock::time_point now, std::vector<event>& events);

  std::vector<node_info> list() const;
  node_lookup find(const std::string& node_id) const;
  cluster_summary summary() const;
  bool contains(const std::string& node_id) const { return nodes_.count(node_id) > 0; }

  // A pool takes work when its node is online and not draining, and it is ready and not draining
  // (as the node reports it, or drained here). Works on views returned by list()/find().
  static bool pool_available(const node_info& node, const pool_status& pool);

  // Heartbeats the sweep counted as missed for this node so far (for tests and metrics).
  std::int64_t missed_heartbeats(const std::string& node_id) const;

  static bool valid_node_id(const std::string& id);

private:
  struct entry {
    node_info info; // status/online here are derived by view(), the flags below are the truth
    bool online = false;
    bool draining = false;
    clock::time_point last_seen;
    std::int64_t missed = 0; // whole intervals without a heartbeat, counted by sweep
  };

  node_info view(const entry& e) const;
  void mark_online(entry& e, const char* reason, std::vector<event>& events);

  std::chrono::milliseconds interval_;
  std::chrono::milliseconds timeout_;
  std::map<std::string, entry> nodes_; // ordered: stable output for /v2/nodes
  std::set<std::pair<std::string, std::string>> drained_pools_; // (node_id, pool_id)
};

} // namespace llorch
