#pragma once
// GET /metrics: the registry's Prometheus text exposition, the same on both daemons.
#include "net/http_router.hpp"
#include "runtime/metrics.hpp"

#include <memory>

namespace llorch::net {

inline void add_metrics_route(http_router& router, std::shared_ptr<metrics::registry> metrics) {
  router.add("GET", "/metrics", route_access::open_read,
             [metrics](std::shared_ptr<http_exchange> ex) {
               http_response r;
               r.content_type = metrics::registry::content_type();
               r.body = metrics->expose();
               ex->respond(std::move(r));
             });
}

} // namespace llorch::net
