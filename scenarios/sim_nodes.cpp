// llorch-sim-nodes: many real node_agents in one process, for the heartbeat benchmark. Each agent
// registers with 4 pools and heartbeats like a pool-managerd would; the process prints the
// heartbeat round trips it measured when it receives SIGTERM.
#include "actors/node/node_agent.hpp"
#include "net/cluster_transport.hpp"
#include "runtime/daemon.hpp"
#include "runtime/log.hpp"

#include <llorch_version.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

using namespace llorch;

int main(int argc, char** argv) {
  block_termination_signals();
  if (argc < 6) {
    std::fprintf(stderr,
                 "usage: llorch-sim-nodes HOST PORT PREFIX COUNT INTERVAL_MS [TOKEN]\n"
                 "  starts COUNT node_agents named PREFIX-<i> with 4 pools each\n");
    return 2;
  }
  std::string host = argv[1];
  auto port = static_cast<std::uint16_t>(std::atoi(argv[2]));
  std::string prefix = argv[3];
  int count = std::atoi(argv[4]);
  int interval_ms = std::atoi(argv[5]);
  std::string token = argc > 6 ? argv[6] : "";
  if (count <= 0 || interval_ms <= 0 || port == 0) {
    std::fprintf(stderr, "llorch-sim-nodes: COUNT, INTERVAL_MS and PORT must be positive\n");
    return 2;
  }
  log::init("sim-nodes", log::level::warn);

  caf::actor_system_config cfg;
  net::cluster_options opts;
  opts.scheduler_threads = 1;
  net::configure_cluster(cfg, opts);
  caf::actor_system sys{cfg};

  std::mutex mtx;
  std::vector<std::int64_t> rtts_us;
  auto mm = net::cluster_middleman(sys, false);
  std::vector<caf::actor> agents;
  for (int i = 0; i < count; ++i) {
    node_agent_settings s;
    s.identity.node_id = prefix + "-" + std::to_string(i);
    s.identity.machine_id = s.identity.node_id;
    s.identity.address = "http://127.0.0.1:0";
    s.identity.version = llorch::version;
    for (int p = 0; p < 4; ++p) {
      pool_status ps;
      ps.pool_id = "pool-" + std::to_string(p);
      ps.slots_total = 4;
      ps.slots_free = 4;
      ps.ready = true;
      ps.state = "ready";
      s.identity.pools.push_back(ps);
    }
    s.token = token;
    s.orchestrator_host = host;
    s.orchestrator_port = port;
    s.heartbeat_interval = std::chrono::milliseconds(interval_ms);
    s.request_timeout = std::chrono::seconds(10);
    s.on_heartbeat_rtt = [&](std::chrono::microseconds rtt) {
      std::lock_guard<std::mutex> guard(mtx);
      rtts_us.push_back(rtt.count());
    };
    agents.push_back(spawn_node_agent(sys, std::move(s), mm));
    // Real nodes start at unrelated times: spread the agents over one interval so their
    // heartbeats do not arrive in lockstep bursts.
    std::this_thread::sleep_for(std::chrono::microseconds(interval_ms * 1000 / count));
  }
  wait_for_termination();
  for (auto& a : agents)
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  std::lock_guard<std::mutex> guard(mtx);
  std::sort(rtts_us.begin(), rtts_us.end());
  auto pct = [&](double q) {
    return rtts_us.empty() ? 0.0
                           : static_cast<double>(rtts_us[static_cast<std::size_t>(
                               q * static_cast<double>(rtts_us.size() - 1))])
                               / 1000.0;
  };
  std::printf("heartbeats=%zu p50_ms=%.3f p99_ms=%.3f max_ms=%.3f\n", rtts_us.size(), pct(0.5),
              pct(0.99), pct(1.0));
  return 0;
}
