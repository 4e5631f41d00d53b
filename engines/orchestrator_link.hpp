#pragma once
// The engine's own connection to orchestratord's cluster port (with the node's TLS files when the
// cluster uses TLS). Without it CAF routes everything between orchestratord and the engine (a
// placed task's request, each token) through pool-managerd's network thread, which costs the node
// ~8 us of CPU per token. The engine sends nothing of its own over it. When it is down
// (orchestratord restarting, unreachable), that traffic goes through the node as before, and the
// link is tried again.
#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include <cstdint>
#include <string>

namespace llorch::engine {

// Splits "host:port" or "[ipv6]:port"; false when it is neither.
bool split_host_port(const std::string& endpoint, std::string& host, std::uint16_t& port);

// With `tls`, the link is made by the system's openssl manager (mutual TLS, the node's files).
caf::actor spawn_orchestrator_link(caf::actor_system& sys, std::string host, std::uint16_t port,
                                   bool tls);

} // namespace llorch::engine
