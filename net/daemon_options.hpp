#pragma once
// The transport and HTTP settings both daemons derive from their config files.
#include "net/cluster_transport.hpp"
#include "net/http_server.hpp"
#include "runtime/config.hpp"

#include <llorch_version.hpp>

namespace llorch::net {

inline cluster_options cluster_options_from(const config::cluster_settings& s) {
  cluster_options o;
  o.tls = s.tls.enabled();
  o.certificate = s.tls.certificate;
  o.key = s.tls.key;
  o.ca = s.tls.ca;
  o.keepalive_ms = s.keepalive_ms;
  o.dead_after_ms = s.dead_after_ms;
  return o;
}

inline http_server_options http_options_from(const config::endpoint& listen, std::size_t body_limit,
                                             const config::auth_settings& auth,
                                             const std::string& daemon) {
  http_server_options o;
  o.host = listen.host;
  o.port = listen.port;
  o.body_limit = body_limit;
  o.token = auth.token;
  o.protect_reads = auth.protect_reads;
  o.server_name = daemon + "/" + llorch::version;
  return o;
}

} // namespace llorch::net
