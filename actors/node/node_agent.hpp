#pragma once
// node_agent: a GPU host's member of the cluster. Connects to the control plane's node_registry
// (with a timeout, retrying with backoff forever), registers, heartbeats with pool status, and
// re-registers by itself when the control plane restarts or forgets the node.
//
// It is also the node's hub for its pools (children of the supervisor `pools`, named by pool id):
// pools report their state to it, the handoff watcher's findings and the node API's pool requests
// go through it to the pool.
//
// Messages:
//   (caf::get_atom) -> (bool registered, std::vector<pool_status> pools)
//   (caf::get_atom, pool_atom, pool_id) -> pool_runtime_view (status.pool_id empty: no such pool)
//   (preload_atom, pool_id, model_id, engine) -> registry_reply
//   (drain_atom, pool_id, deadline_ms)        -> registry_reply
//   (pool_update_atom, pool_status)                  from a pool
//   (generate_atom, pool_id, engine_generate), (cancel_atom, pool_id, engine_cancel) from tasks
//   (handoff_atom, handoff_record), (handoff_removed_atom, pool_id, replica_id) from the watcher
#include "runtime/messages.hpp"

#include <caf/io/middleman_actor.hpp>

#include <chrono>
#include <functional>
#include <string>

namespace llorch {

struct node_agent_settings {
  node_info identity; // what the node reports: ids, address, version, capabilities, pools
  std::string token;
  std::string orchestrator_host;
  std::uint16_t orchestrator_port = 0;
  std::chrono::milliseconds heartbeat_interval{10000};
  std::chrono::milliseconds request_timeout{2000}; // connect and register
  std::chrono::milliseconds reconnect_initial{100};
  std::chrono::milliseconds reconnect_max{5000};
  caf::actor pools; // supervisor of the pool actors; invalid when the node has none
  // Called with each heartbeat's round trip (benchmarks; may be empty). Runs in the actor.
  std::function<void(std::chrono::microseconds)> on_heartbeat_rtt;
};

// The agent enters itself in the actor system's registry under this name (see node_registry).
inline const caf::atom_value node_agent_name = caf::atom("nodeagent");
caf::actor current_node_agent(caf::actor_system& sys);

// Forwards the handoff watcher's findings to whichever node_agent is current (the agent may have
// been restarted since the watcher started).
caf::actor spawn_handoff_forwarder(caf::actor_system& sys);

// `middleman` is the plain or the TLS middleman actor (net/cluster_transport decides).
caf::actor spawn_node_agent(caf::actor_system& sys, node_agent_settings settings,
                            caf::io::middleman_actor middleman);

} // namespace llorch
