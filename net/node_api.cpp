#include "net/node_api.hpp"

#include "actors/node/node_agent.hpp"
#include "net/actor_bridge.hpp"
#include "net/http_router.hpp"
#include "net/json_views.hpp"
#include "runtime/messages.hpp"
#include "runtime/metrics.hpp"

#include <llorch_version.hpp>

#include <boost/json.hpp>

namespace llorch::net {

void add_node_routes(http_router& router, caf::actor_system& sys, std::string node_id, std::string handoff_dir,
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

  router.add("GET", "/metrics", route_access::open_read, [metrics](exchange_ptr ex) {
    http_response r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = metrics->expose();
    ex->respond(std::move(r));
  });

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
        [ex, id, handoff_dir](bool, const std::vector<pool_status>& pools) {
          for (auto& p : pools) {
            if (p.pool_id != id)
              continue;
            auto obj = boost::json::parse(to_json(p)).as_object();
            // No engine process runs for a pool until one is started for it: not live, no pid,
            // no handoff file yet.
            obj["live"] = false;
            obj["pid"] = nullptr;
            obj["handoff_path"] = nullptr;
            obj["handoff_dir"] = handoff_dir;
            return ex->respond(json_response(200, boost::json::serialize(obj)));
          }
          ex->respond(error_response(404, "POOL_NOT_FOUND", "no pool '" + id + "' on this node"));
        },
        caf::get_atom::value);
  });
}

} // namespace llorch::net
