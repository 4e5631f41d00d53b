#pragma once
// The cluster transport: CAF's io middleman (BASP over TCP), with mutual TLS through CAF's openssl
// module when certificates are configured, and transport heartbeats so that a frozen or partitioned
// peer is noticed (CAF never notices one without them).
#include <caf/fwd.hpp>
#include <caf/io/middleman_actor.hpp>

#include <cstdint>
#include <string>

namespace llorch::net {

struct cluster_options {
  bool tls = false; // certificate, key and ca are then all set (the config validates that)
  std::string certificate;
  std::string key;
  std::string ca;
  int keepalive_ms = 1000;   // middleman.heartbeat-interval
  int dead_after_ms = 5000;  // middleman.connection-timeout
  std::size_t scheduler_threads = 0; // 0: half the cores, at least 1
  std::size_t moderate_poll_attempts = 0; // CAF's default is 500 (see configure_cluster)
};

// Registers llama-orch's message types and loads the middleman (and openssl for TLS) into `cfg`.
// Call before constructing the actor_system.
void configure_cluster(caf::actor_system_config& cfg, const cluster_options& opts);

// The middleman actor that makes connections of the right kind (plain or TLS).
caf::io::middleman_actor cluster_middleman(caf::actor_system& sys, bool tls);

// Publishes `whom` on host:port (that address only; port 0 picks a free one). Returns the port, or
// a message a user can act on.
bool publish_on(caf::actor_system& sys, const caf::actor& whom, const std::string& host,
                std::uint16_t port, bool tls, std::uint16_t& bound_port, std::string& error);

} // namespace llorch::net
