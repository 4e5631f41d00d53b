#include "net/control_api.hpp"

#include "actors/control/node_registry.hpp"
#include "net/actor_bridge.hpp"
#include "net/auth.hpp"
#include "net/http_router.hpp"
#include "net/json_views.hpp"
#include "net/metrics_route.hpp"
#include "runtime/messages.hpp"
#include "runtime/metrics.hpp"

#include <llorch_version.hpp>

#include <boost/json.hpp>

namespace llorch::net {
namespace {

using exchange_ptr = std::shared_ptr<http_exchange>;

// The token the request carried (the server has already checked it where one is required).
std::string bearer_of(const http_exchange& ex) {
  auto b = parse_bearer(ex.request().header("authorization"));
  return b.status == bearer_status::present ? b.token : std::string{};
}

http_response from_reply(const registry_reply& r) {
  if (!r.ok())
    return error_response(r.status, r.code, r.message, r.status == 503,
                          r.status == 503 ? std::optional<std::int64_t>(5000) : std::nullopt);
  if (r.status == 204) {
    http_response resp;
    resp.status = 204;
    return resp;
  }
  return json_response(r.status, to_json(r));
}

auto reply_handler(exchange_ptr ex) {
  return [ex](const registry_reply& r) { ex->respond(from_reply(r)); };
}

} // namespace

void add_control_routes(http_router& router, caf::actor_system& sys,
                        std::shared_ptr<metrics::registry> metrics,
                        std::chrono::steady_clock::time_point started) {
  auto* system = &sys;
  router.add("GET", "/health", route_access::open_read, [=](exchange_ptr ex) {
    ask(*system, current_node_registry(*system), ex,
        [ex, started](const cluster_summary& s) {
          auto uptime = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::steady_clock::now() - started)
                          .count();
          ex->respond(json_response(200, boost::json::serialize(boost::json::object{
                                           {"status", "ok"},
                                           {"version", llorch::version},
                                           {"nodes_online", s.nodes_online},
                                           {"pools_available", s.pools_available},
                                           {"uptime_s", uptime}})));
        },
        summary_atom::value);
  });

  add_metrics_route(router, metrics);

  router.add("GET", "/v2/nodes", route_access::open_read, [=](exchange_ptr ex) {
    ask(*system, current_node_registry(*system), ex,
        [ex](const std::vector<node_info>& nodes) {
          std::int32_t online = 0;
          for (auto& n : nodes)
            online += n.online ? 1 : 0;
          ex->respond(json_response(200, to_json(nodes, online)));
        },
        caf::get_atom::value);
  });

  router.add("GET", "/v2/nodes/{id}", route_access::open_read, [=](exchange_ptr ex) {
    auto id = ex->request().params.at("id");
    ask(*system, current_node_registry(*system), ex,
        [ex, id](const node_lookup& r) {
          if (!r.found)
            ex->respond(error_response(404, "NODE_NOT_FOUND",
                                       "no node with id '" + id + "' is registered"));
          else
            ex->respond(json_response(200, to_json(r.node)));
        },
        caf::get_atom::value, id);
  });

  router.add("POST", "/v2/nodes/register", route_access::token, [=](exchange_ptr ex) {
    node_info info;
    std::string error;
    if (!parse_registration(ex->request().body, info, error))
      return ex->respond(error_response(400, "INVALID_PARAMS", error));
    ask(*system, current_node_registry(*system), ex, reply_handler(ex), register_atom::value, bearer_of(*ex),
        std::move(info), caf::actor{});
  });

  router.add("POST", "/v2/nodes/{id}/heartbeat", route_access::token, [=](exchange_ptr ex) {
    node_heartbeat hb;
    std::string error;
    if (!parse_heartbeat(ex->request().body, ex->request().params.at("id"), hb, error))
      return ex->respond(error_response(400, "INVALID_PARAMS", error));
    ask(*system, current_node_registry(*system), ex, reply_handler(ex), heartbeat_atom::value, bearer_of(*ex),
        std::move(hb));
  });

  router.add("DELETE", "/v2/nodes/{id}", route_access::token, [=](exchange_ptr ex) {
    ask(*system, current_node_registry(*system), ex, reply_handler(ex), deregister_atom::value, bearer_of(*ex),
        ex->request().params.at("id"));
  });

  router.add("POST", "/v2/nodes/{id}/drain", route_access::token, [=](exchange_ptr ex) {
    std::int64_t deadline_ms = 0;
    std::string node_id, error;
    if (!parse_drain(ex->request().body, deadline_ms, node_id, error))
      return ex->respond(error_response(400, "INVALID_PARAMS", error));
    ask(*system, current_node_registry(*system), ex, reply_handler(ex), drain_atom::value, bearer_of(*ex),
        ex->request().params.at("id"), deadline_ms);
  });

  router.add("POST", "/v2/pools/{id}/drain", route_access::token, [=](exchange_ptr ex) {
    std::int64_t deadline_ms = 0;
    std::string node_id, error;
    if (!parse_drain(ex->request().body, deadline_ms, node_id, error))
      return ex->respond(error_response(400, "INVALID_PARAMS", error));
    ask(*system, current_node_registry(*system), ex, reply_handler(ex), drain_atom::value, pool_atom::value,
        bearer_of(*ex), ex->request().params.at("id"), node_id, deadline_ms);
  });
}

} // namespace llorch::net
