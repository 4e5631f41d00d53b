#include "net/node_api.hpp"

#include "actors/node/node_agent.hpp"
#include "actors/node/pool.hpp"
#include "net/actor_bridge.hpp"
#include "net/http_router.hpp"
#include "net/json_views.hpp"
#include "net/metrics_route.hpp"
#include "runtime/messages.hpp"
#include "runtime/metrics.hpp"

#include <llorch_version.hpp>

#include <boost/json.hpp>

namespace llorch::net {

namespace {
// 202 {"pool_id", "state"} for a pool request the pool took, else its error.
auto accepted(std::shared_ptr<http_exchange> ex, std::string pool_id, const char* state) {
  return [ex, pool_id, state](const registry_reply& r) {
    if (!r.ok())
      return ex->respond(error_response(r.status, r.code, r.message));
    ex->respond(json_response(202, boost::json::serialize(boost::json::object{
                                     {"pool_id", pool_id}, {"state", state}})));
  };
}
} // namespace

void add_node_routes(http_router& router, caf::actor_system& sys, std::string node_id,
                     std::shared_ptr<metrics::registry> metrics) {
  using exchange_ptr = std::shared_ptr<http_exchange>;
  auto* system = &sys;

  router.add("GET", "/health", route_access::open_read, [=](exchange_ptr ex) {
    ask(*system, current_node_agent(*system), ex,
        [ex, node_id](bool registered, const std::vector<pool_status>&) {
          ex->respond(json_response(200, boost::json::serialize(boost::json::object{
                                           {"status", "ok"},
                                           {"version", llorch::version},
                                           {"node_id", node_id},
                                           {"registered", registered}})));
        },
        caf::get_atom::value);
  });

  add_metrics_route(router, metrics);

  router.add("GET", "/pools", route_access::open_read, [=](exchange_ptr ex) {
    ask(*system, current_node_agent(*system), ex,
        [ex](bool, const std::vector<pool_status>& pools) {
          ex->respond(json_response(200, pools_to_json(pools)));
        },
        caf::get_atom::value);
  });

  router.add("GET", "/pools/{id}/status", route_access::open_read, [=](exchange_ptr ex) {
    auto id = ex->request().params.at("id");
    ask(*system, current_node_agent(*system), ex,
        [ex, id](const pool_runtime_view& v) {
          if (v.status.pool_id.empty())
            return ex->respond(
              error_response(404, "POOL_NOT_FOUND", "no pool '" + id + "' on this node"));
          auto obj = boost::json::parse(to_json(v.status)).as_object();
          obj["live"] = v.live;
          obj["pid"] = v.pid > 0 ? boost::json::value(v.pid) : boost::json::value(nullptr);
          obj["handoff_path"] = v.handoff_path.empty() ? boost::json::value(nullptr)
                                                       : boost::json::value(v.handoff_path);
          obj["endpoint"] = v.endpoint.empty() ? boost::json::value(nullptr)
                                               : boost::json::value(v.endpoint);
          ex->respond(json_response(200, boost::json::serialize(obj)));
        },
        caf::get_atom::value, pool_atom::value, id);
  });

  router.add("POST", "/pools/{id}/drain", route_access::token, [=](exchange_ptr ex) {
    auto id = ex->request().params.at("id");
    std::int64_t deadline_ms = 0;
    std::string ignored, error;
    if (!parse_drain(ex->request().body, deadline_ms, ignored, error))
      return ex->respond(error_response(400, "INVALID_PARAMS", error));
    ask(*system, current_node_agent(*system), ex,
        accepted(ex, id, "draining"),
        drain_atom::value, id, deadline_ms);
  });

  router.add("POST", "/pools/{id}/preload", route_access::token, [=](exchange_ptr ex) {
    auto id = ex->request().params.at("id");
    std::string model_id, engine, error;
    if (!parse_preload(ex->request().body, model_id, engine, error))
      return ex->respond(error_response(400, "INVALID_PARAMS", error));
    ask(*system, current_node_agent(*system), ex,
        accepted(ex, id, "loading"),
        preload_atom::value, id, model_id, engine);
  });
}

} // namespace llorch::net
