// pool-managerd: a GPU host. Joins the cluster through its node_agent and serves the node API.
#include "actors/node/handoff_watcher.hpp"
#include "actors/node/node_agent.hpp"
#include "actors/node/pool.hpp"
#include "actors/node/pool_metrics.hpp"
#include "net/daemon_options.hpp"
#include "net/http_router.hpp"
#include "net/http_server.hpp"
#include "net/node_api.hpp"
#include "runtime/config.hpp"
#include "runtime/daemon.hpp"
#include "runtime/host_probe.hpp"
#include "runtime/log.hpp"
#include "runtime/metrics.hpp"
#include "runtime/supervisor.hpp"

#include <llorch_version.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <unistd.h>

using namespace llorch;

namespace {

// The pools of the config as they stand before any engine runs: not ready, no free slot.
std::vector<pool_status> configured_pools(const config::pool_managerd_config& cfg,
                                          const node_capabilities& caps) {
  std::vector<std::string> models;
  for (auto& m : cfg.models)
    models.push_back(m.id);
  std::vector<pool_status> out;
  for (auto& p : cfg.pools) {
    pool_status s;
    s.pool_id = p.id;
    s.node_id = cfg.node_id;
    s.state = "unloaded";
    s.slots_total = p.slots;
    s.engine = p.engine;
    s.model_id = p.model ? p.model->id : "";
    s.models = models;
    for (auto d : p.devices) {
      s.device_mask += (s.device_mask.empty() ? "" : ",") + std::to_string(d);
      for (auto& g : caps.gpus)
        if (g.device_id == std::to_string(d))
          s.vram_total_bytes += g.vram_total_bytes;
    }
    out.push_back(std::move(s));
  }
  return out;
}

// A binary installed beside this one (build/bin/, /usr/local/bin/).
std::string sibling_binary(const char* name) {
  char self[4096];
  auto n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0)
    return name;
  std::string path(self, static_cast<std::size_t>(n));
  return path.substr(0, path.rfind('/') + 1) + name;
}

} // namespace

int main(int argc, char** argv) {
  block_termination_signals();
  daemon_args args;
  if (auto rc = parse_daemon_args(argc, argv, "pool-managerd",
                                  "the llama-orch GPU node daemon", args))
    return *rc;
  if (args.config_path.empty()) {
    std::fprintf(stderr, "pool-managerd: --config FILE is required (see config/ for examples)\n");
    return 2;
  }
  auto loaded = config::load_pool_managerd_config(args.config_path);
  if (auto rc = settle_config(loaded, args))
    return *rc;
  auto cfg = std::move(*loaded.config);
  if (!cfg.http_listen.is_loopback() && cfg.auth.token.empty()) {
    std::fprintf(stderr,
                 "pool-managerd: refusing to listen on %s without a token: set LLORCH_API_TOKEN "
                 "(or auth.token in the config)\n",
                 cfg.http_listen.to_string().c_str());
    return 2;
  }

  log::level lvl = log::level::info;
  log::parse_level(cfg.log_level, lvl);
  log::init("pool-managerd", lvl);

  std::string gpu_note;
  auto caps = probe_host(gpu_note);
  log::info("host_probed", {{"node_id", cfg.node_id},
                            {"gpus", caps.gpus.size()},
                            {"cpu_cores", caps.cpu_cores},
                            {"ram_total_bytes", caps.ram_total_bytes},
                            {"note", gpu_note}});

  caf::actor_system_config sys_cfg;
  auto copts = net::cluster_options_from(cfg.orchestrator);
  net::configure_cluster(sys_cfg, copts);
  caf::actor_system sys{sys_cfg};

  auto metrics = std::make_shared<metrics::registry>();
  auto pools = configured_pools(cfg, caps);
  export_pool_metrics(*metrics, pools);

  net::http_router router;
  std::string error;
  auto hopts = net::http_options_from(cfg.http_listen, cfg.http_body_limit, cfg.auth,
                                      "pool-managerd");

  node_agent_settings as;
  as.identity.node_id = cfg.node_id;
  as.identity.machine_id = cfg.machine_id;
  as.identity.version = llorch::version;
  as.identity.capabilities = caps;
  as.identity.pools = pools;
  as.token = cfg.auth.token;
  as.orchestrator_host = cfg.orchestrator.listen_or_connect.host;
  as.orchestrator_port = cfg.orchestrator.listen_or_connect.port;
  as.heartbeat_interval = std::chrono::milliseconds(cfg.heartbeat.interval_ms);

  restart_limits limits;
  limits.max_restarts = cfg.restart.max_restarts;
  limits.within = std::chrono::seconds(cfg.restart.within_s);
  limits.backoff_initial = std::chrono::milliseconds(cfg.restart.backoff_initial_ms);
  limits.backoff_max = std::chrono::milliseconds(cfg.restart.backoff_max_ms);
  auto restarts = &metrics->counter_family("pool_actor_restarts_total",
                                           "Actors restarted by their supervisor", {"actor"});
  supervisor_hooks hooks;
  hooks.on_restart = [restarts](const std::string& name, int) { restarts->with({name}).inc(); };

  // Bind HTTP before any actor or engine starts: a port in use stops the daemon cleanly. The
  // routes find the agent by name; until it runs they answer 503, for the microseconds that takes.
  net::add_node_routes(router, sys, cfg.node_id, metrics);
  auto server = net::http_server::start(hopts, std::move(router), error);
  if (!server) {
    std::fprintf(stderr, "pool-managerd: http.listen: %s\n", error.c_str());
    return 1;
  }

  // Pools start their engines at once; the agent starts with the HTTP port (it reports the address).
  auto mm = net::cluster_middleman(sys, copts.tls);
  auto engine_binary = sibling_binary("llorch-engine");
  std::vector<child_spec> pool_children;
  for (std::size_t i = 0; i < cfg.pools.size(); ++i) {
    auto& p = cfg.pools[i];
    pool_settings ps;
    ps.initial = pools[i];
    ps.pool = p;
    ps.models = cfg.models;
    ps.handoff_dir = cfg.handoff_dir;
    ps.engine_binary = engine_binary;
    ps.engine_keepalive_ms = cfg.orchestrator.keepalive_ms;
    // the engine's own link to orchestratord, with the node's TLS files when it has them
    ps.orchestrator = cfg.orchestrator.listen_or_connect.to_string();
    ps.tls_certificate = cfg.orchestrator.tls.certificate;
    ps.tls_key = cfg.orchestrator.tls.key;
    ps.tls_ca = cfg.orchestrator.tls.ca;
    ps.restart = limits;
    ps.wedged_after = std::chrono::milliseconds(cfg.restart.wedged_after_ms);
    pool_children.push_back({p.id, [ps, metrics](caf::local_actor* sup) {
                               auto& s = sup->home_system();
                               return spawn_pool(s, ps, net::cluster_middleman(s, false), metrics);
                             }});
  }
  caf::actor pools_root;
  if (!pool_children.empty())
    pools_root = spawn_supervisor(sys, "pools", limits, std::move(pool_children), hooks);
  handoff_watcher_settings ws;
  ws.handoff_dir = cfg.handoff_dir;
  for (auto& p : cfg.pools)
    ws.known_pools.insert(p.id);
  auto forwarder = spawn_handoff_forwarder(sys);
  auto watcher = spawn_handoff_watcher(sys, ws, forwarder, metrics);
  as.pools = pools_root;

  caf::actor root;
  auto start_agent = [&](std::uint16_t http_port) {
    as.identity.address = cfg.advertise_address.empty()
                            ? config::default_advertise_address(cfg.http_listen, http_port)
                            : cfg.advertise_address;
    std::vector<child_spec> children;
    children.push_back({"node_agent", [as, mm](caf::local_actor* sup) {
                          return spawn_node_agent(sup->home_system(), as, mm);
                        }});
    root = spawn_supervisor(sys, "pool-managerd", limits, std::move(children), hooks);
  };

  start_agent(server->port());
  // The supervisor spawns the agent asynchronously; until it has registered, the HTTP API can
  // only answer 503. "listening" is the line operators and scripts wait for: say it once the
  // API can answer.
  for (int i = 0; i < 5000 && !current_node_agent(sys); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  log::info("listening", {{"node_id", cfg.node_id},
                          {"http", config::endpoint{cfg.http_listen.host, server->port()}.to_string()},
                          {"orchestrator", cfg.orchestrator.listen_or_connect.to_string()},
                          {"tls", copts.tls},
                          {"version", llorch::version}});

  auto sig = wait_for_termination();
  log::info("shutting_down", {{"signal", sig}, {"node_id", cfg.node_id}});
  server->stop();
  caf::anon_send_exit(root, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(watcher, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(forwarder, caf::exit_reason::user_shutdown);
  if (pools_root)
    caf::anon_send_exit(pools_root, caf::exit_reason::user_shutdown); // stops every engine
  return 0;
}
