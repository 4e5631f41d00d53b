// orchestratord: the control plane. Owns the node registry (published on the cluster port) and
// the HTTP API; everything else is an actor message.
#include "actors/control/admission_queue.hpp"
#include "actors/control/node_registry.hpp"
#include "net/control_api.hpp"
#include "net/daemon_options.hpp"
#include "net/http_router.hpp"
#include "net/http_server.hpp"
#include "net/openai_api.hpp"
#include "net/task_api.hpp"
#include "runtime/config.hpp"
#include "runtime/daemon.hpp"
#include "runtime/log.hpp"
#include "runtime/metrics.hpp"
#include "runtime/supervisor.hpp"

#include <llorch_version.hpp>

#include <caf/io/all.hpp>

#include <cstdio>
#include <cstdlib>

using namespace llorch;

namespace {

// Re-publishes a restarted registry on the port its predecessor had: nodes see their registry
// proxy die, reconnect and register again by themselves.
struct publication {
  caf::io::middleman_actor middleman;
  std::string host;
  std::uint16_t port = 0;
  caf::actor_addr current;
};

} // namespace

int main(int argc, char** argv) {
  block_termination_signals();
  daemon_args args;
  if (auto rc = parse_daemon_args(argc, argv, "orchestratord",
                                  "the llama-orch control plane", args))
    return *rc;

  config::load_result<config::orchestratord_config> loaded;
  if (args.config_path.empty())
    loaded.config = config::orchestratord_config{};
  else
    loaded = config::load_orchestratord_config(args.config_path);
  if (auto rc = settle_config(loaded, args))
    return *rc;
  auto cfg = std::move(*loaded.config);
  for (auto* ep : {&cfg.http_listen, &cfg.cluster.listen_or_connect})
    if (!ep->is_loopback() && cfg.auth.token.empty()) {
      std::fprintf(stderr,
                   "orchestratord: refusing to listen on %s without a token: set "
                   "LLORCH_API_TOKEN (or auth.token in the config)\n",
                   ep->to_string().c_str());
      return 2;
    }

  log::level lvl = log::level::info;
  log::parse_level(cfg.log_level, lvl);
  log::init("orchestratord", lvl);
  if (!cfg.cluster.listen_or_connect.is_loopback() && !cfg.cluster.tls.enabled())
    log::warn("insecure_cluster_transport",
              {{"cluster", cfg.cluster.listen_or_connect.to_string()},
               {"hint", "configure cluster.tls (certificate, key, ca) for mutual TLS"}});
  if (!cfg.cloud_profile)
    log::warn("cloud_profile_disabled",
              {{"effect", "node registrations and heartbeats are refused"},
               {"hint", "set ORCHESTRATORD_CLOUD_PROFILE=true to accept nodes"}});

  caf::actor_system_config sys_cfg;
  auto copts = net::cluster_options_from(cfg.cluster);
  net::configure_cluster(sys_cfg, copts);
  caf::actor_system sys{sys_cfg};

  auto metrics = std::make_shared<metrics::registry>();
  node_registry_settings rs;
  rs.token = cfg.auth.token;
  rs.heartbeat_interval = std::chrono::milliseconds(cfg.heartbeat.interval_ms);
  rs.heartbeat_timeout = std::chrono::milliseconds(cfg.heartbeat.timeout_ms);
  rs.cloud_profile = cfg.cloud_profile;

  // Publish the first registry synchronously so that a port already in use stops the daemon.
  auto pub = std::make_shared<publication>();
  pub->middleman = net::cluster_middleman(sys, copts.tls);
  pub->host = cfg.cluster.listen_or_connect.host;

  auto restarts = &metrics->counter_family("orchd_actor_restarts_total",
                                           "Actors restarted by their supervisor", {"actor"});
  supervisor_hooks hooks;
  hooks.on_started = [pub](const std::string&, const caf::actor& registry) {
    if (pub->port == 0)
      return; // the first start: main() publishes below
    caf::anon_send(pub->middleman, caf::unpublish_atom::value, pub->current, pub->port);
    caf::anon_send(pub->middleman, caf::publish_atom::value, pub->port,
                   caf::actor_cast<caf::strong_actor_ptr>(registry), std::set<std::string>{},
                   pub->host, true);
    pub->current = registry.address();
  };
  hooks.on_restart = [restarts](const std::string& name, int) { restarts->with({name}).inc(); };
  restart_limits limits; // the registry restarts fast: its state is rebuilt by the nodes
  limits.backoff_initial = std::chrono::milliseconds(50);
  limits.backoff_max = std::chrono::milliseconds(2000);

  admission_settings adm;
  adm.capacity = static_cast<std::size_t>(cfg.admission_capacity);
  adm.retained_tasks = static_cast<std::size_t>(cfg.admission_retained_tasks);
  std::vector<child_spec> children;
  children.push_back({"node_registry", [rs, metrics](caf::local_actor* sup) {
                        return spawn_node_registry(sup->home_system(), rs, metrics);
                      }});
  children.push_back({"admission_queue", [adm, metrics](caf::local_actor* sup) {
                        return spawn_admission_queue(sup->home_system(), adm, metrics);
                      }});
  auto root = spawn_supervisor(sys, "orchestratord", limits, std::move(children), hooks);

  caf::actor registry;
  {
    caf::scoped_actor self{sys};
    self->request(root, std::chrono::seconds(5), caf::get_atom::value, std::string("node_registry"))
      .receive([&](caf::actor& a) { registry = a; },
               [&](caf::error& err) {
                 std::fprintf(stderr, "orchestratord: node_registry did not start: %s\n",
                              sys.render(err).c_str());
               });
  }
  if (!registry)
    return 1;
  std::uint16_t cluster_port = 0;
  std::string error;
  if (!net::publish_on(sys, registry, pub->host, cfg.cluster.listen_or_connect.port, copts.tls,
                       cluster_port, error)) {
    std::fprintf(stderr, "orchestratord: cluster.listen: %s\n", error.c_str());
    caf::anon_send_exit(root, caf::exit_reason::user_shutdown);
    return 1;
  }
  pub->port = cluster_port;
  pub->current = registry.address();

  net::http_router router;
  net::add_control_routes(router, sys, metrics, std::chrono::steady_clock::now());
  net::add_task_routes(router, sys, adm.directory);
  net::add_openai_routes(router, sys, adm.directory);
  auto hopts = net::http_options_from(cfg.http_listen, cfg.http_body_limit, cfg.auth,
                                      "orchestratord");
  hopts.on_auth_failure = [metrics](const net::http_request& req, std::string_view) {
    count_http_auth_failure(*metrics, req.path);
  };
  auto server = net::http_server::start(hopts, std::move(router), error);
  if (!server) {
    std::fprintf(stderr, "orchestratord: http.listen: %s\n", error.c_str());
    caf::anon_send_exit(root, caf::exit_reason::user_shutdown);
    return 1;
  }
  log::info("listening", {{"http", config::endpoint{cfg.http_listen.host, server->port()}.to_string()},
                          {"cluster", config::endpoint{pub->host, cluster_port}.to_string()},
                          {"tls", copts.tls},
                          {"version", llorch::version}});

  auto sig = wait_for_termination();
  log::info("shutting_down", {{"signal", sig}});
  server->stop();
  caf::anon_send_exit(root, caf::exit_reason::user_shutdown);
  return 0;
}
