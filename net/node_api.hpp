#pragma once
// pool-managerd's HTTP routes (CONTRACT §3): health, metrics, pools, preload. Handlers ask the
// node_agent, which forwards pool requests to the pool.
#include <caf/fwd.hpp>

#include <memory>
#include <string>

namespace llorch::metrics {
class registry;
}

namespace llorch::net {

class http_router;

// Handlers address the node_agent by its name in the actor system's registry.
void add_node_routes(http_router& router, caf::actor_system& sys, std::string node_id,
                     std::shared_ptr<metrics::registry> metrics);

} // namespace llorch::net
