#pragma once
// orchestratord's HTTP routes for health, metrics, nodes and pools (CONTRACT §2): each handler
// turns the request into a message to the node_registry and its reply into a response.
#include <caf/fwd.hpp>

#include <chrono>
#include <memory>

namespace llorch::metrics {
class registry;
}

namespace llorch::net {

class http_router;

// Handlers address the node registry by its name in the actor system's registry.
void add_control_routes(http_router& router, caf::actor_system& sys,
                        std::shared_ptr<metrics::registry> metrics,
                        std::chrono::steady_clock::time_point started);

} // namespace llorch::net
