#pragma once
// Method + path pattern -> handler. Patterns are '/'-separated segments, a segment "{name}"
// binds a parameter: "/v2/nodes/{id}/heartbeat". Among the routes whose pattern fits the path
// and whose method matches, the most specific wins (a literal segment beats a parameter at the
// first place they differ), so "/v2/nodes/register" is not taken for a node id.
#include "net/http_types.hpp"

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace llorch::net {

enum class route_access { open_read, token };  // open_read: open unless protect_reads

struct route_match {
  enum class outcome { found, not_found, method_not_allowed };
  outcome result = outcome::not_found;
  const http_handler* handler = nullptr;  // valid while the router lives, when found
  route_access access = route_access::token;
  std::map<std::string, std::string> params;  // percent-decoded
  std::string allow;  // for method_not_allowed: "GET, DELETE"
};

class http_router {
 public:
  // A later add with the same method and pattern replaces the earlier one.
  void add(std::string method, std::string pattern, route_access access, http_handler h);

  // `path` without the query string. Empty segments are ignored ("/v2//nodes/" is "/v2/nodes").
  route_match match(std::string_view method, std::string_view path) const;

  std::size_t size() const { return routes_.size(); }

 private:
  struct segment {
    std::string text;
    bool param = false;
  };
  struct route {
    std::string method;
    std::vector<segment> segments;
    route_access access;
    http_handler handler;
  };

  std::vector<route> routes_;
};

} // namespace llorch::net
