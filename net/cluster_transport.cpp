#include "net/cluster_transport.hpp"

#include "actors/node/handoff_messages.hpp"
#include "actors/node/pool.hpp"
#include "engines/engine_protocol.hpp"
#include "runtime/messages.hpp"

#include <caf/io/all.hpp>
#include <caf/openssl/all.hpp>

#include <algorithm>
#include <thread>

namespace llorch::net {

void configure_cluster(caf::actor_system_config& cfg, const cluster_options& opts) {
  cfg.add_message_types<caf::id_block::llorch>();
  cfg.add_message_types<caf::id_block::llorch_pool>();
  cfg.add_message_types<caf::id_block::llorch_node>();
  cfg.add_message_types<caf::id_block::llorch_engine>();
  cfg.load<caf::io::middleman>();
  // Both sides must use the same values: each side's timeout must exceed the other's interval.
  cfg.set("middleman.heartbeat-interval", caf::timespan{std::chrono::milliseconds(opts.keepalive_ms)});
  cfg.set("middleman.connection-timeout",
          caf::timespan{std::chrono::milliseconds(opts.dead_after_ms)});
  // CAF's workers poll every 50 us for 25 ms after each job before they sleep on a condition
  // variable; with a steady trickle of heartbeats that polling alone cost a third of a core.
  // Sleeping (and being woken by the next enqueue) right after the fast spin costs tens of
  // microseconds of latency instead.
  cfg.set("work-stealing.moderate-poll-attempts", std::size_t{opts.moderate_poll_attempts});
  // CAF would start max(4, cores) workers. The daemons' actors do little work per message; what
  // costs is handing messages between threads, and every extra worker adds such hand-offs (with
  // 64 clients on 2 cores, 4 workers cost 1.5x the CPU per task of 1). Half the cores leaves the
  // rest to the HTTP and network threads.
  auto workers = opts.scheduler_threads;
  if (workers == 0)
    workers = std::max<std::size_t>(1, std::thread::hardware_concurrency() / 2);
  cfg.set("scheduler.max-threads", workers);
  if (opts.tls) {
    cfg.openssl_certificate = opts.certificate;
    cfg.openssl_key = opts.key;
    cfg.openssl_cafile = opts.ca;
    cfg.load<caf::openssl::manager>();
  }
}

caf::io::middleman_actor cluster_middleman(caf::actor_system& sys, bool tls) {
  if (tls)
    return sys.openssl_manager().actor_handle();
  return sys.middleman().actor_handle();
}

bool publish_on(caf::actor_system& sys, const caf::actor& whom, const std::string& host,
                std::uint16_t port, bool tls, std::uint16_t& bound_port, std::string& error) {
  auto result = tls ? caf::openssl::publish(whom, port, host.c_str(), true)
                    : sys.middleman().publish(whom, port, host.c_str(), true);
  if (!result) {
    error = "cannot listen on " + host + ":" + std::to_string(port) + ": "
            + sys.render(result.error());
    return false;
  }
  bound_port = *result;
  return true;
}

} // namespace llorch::net
