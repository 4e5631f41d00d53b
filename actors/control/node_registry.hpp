#pragma once
// node_registry: the only actor published on the cluster port. Registrations and heartbeats arrive
// here as actor messages from node_agents and, through the HTTP facade, from curl: one code path.
//
// Messages (every mutation carries the shared token; BASP itself authenticates nobody):
//   (register_atom, token, node_info, caf::actor agent)  -> registry_reply   agent may be invalid (HTTP)
//   (heartbeat_atom, token, node_heartbeat)              -> registry_reply
//   (deregister_atom, token, node_id)                    -> registry_reply
//   (drain_atom, token, node_id, deadline_ms)            -> registry_reply
//   (drain_atom, pool_atom, token, pool_id, node_id, deadline_ms) -> registry_reply
//   (caf::get_atom)                                      -> std::vector<node_info>
//   (caf::get_atom, node_id)                             -> node_lookup
//   (summary_atom)                                       -> cluster_summary
//   (placement_atom)                                     -> placement_snapshot
#include "runtime/messages.hpp"

#include <chrono>
#include <memory>
#include <string>

namespace llorch::metrics {
class registry;
}

namespace llorch {

struct node_registry_settings {
  std::string token; // empty: no token required (loopback-only deployments)
  std::chrono::milliseconds heartbeat_interval{10000};
  std::chrono::milliseconds heartbeat_timeout{30000};
  bool cloud_profile = true;
};

// The registry enters itself in the actor system's registry under this name, so the HTTP facade
// always reaches the current incarnation, also after a supervisor restarted it.
inline const caf::atom_value node_registry_name = caf::atom("nodereg");

// The current registry, or an invalid handle while it is restarting.
caf::actor current_node_registry(caf::actor_system& sys);

// Counts a registration or heartbeat that the HTTP facade refused for its token before it reached
// the registry, in the same series as refusals on the cluster port.
void count_http_auth_failure(metrics::registry& metrics, const std::string& path);

caf::actor spawn_node_registry(caf::actor_system& sys, node_registry_settings settings,
                               std::shared_ptr<metrics::registry> metrics);

} // namespace llorch
