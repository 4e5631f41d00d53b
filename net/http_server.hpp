#pragma once
// The HTTP/1.1 server of both daemons (Beast lives in the .cpp only). It enforces what CONTRACT §1
// asks of every endpoint, so handlers only see requests that passed: auth per route, the body
// limit (413), 404/405 with Allow, malformed HTTP (400, connection closed), correlation ids, the
// error envelope for handlers that throw (500) or never answer (503 TIMEOUT).
#include "net/http_router.hpp"
#include "net/http_types.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace llorch::net {

struct http_server_options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;  // 0: any free port, see http_server::port()
  std::size_t body_limit = 1 << 20;
  std::string token;  // empty: tokens are not checked (the caller only allows that on loopback)
  bool protect_reads = false;
  int threads = 1;
  std::string server_name;  // the Server header when not empty
  std::chrono::milliseconds read_timeout{30000};  // a request (or an idle keep-alive) must arrive within
  std::chrono::milliseconds handler_timeout{30000};  // then 503 TIMEOUT for an unanswered exchange
  std::size_t max_connections = 1024;  // beyond: 503 OVERLOADED and the connection closed
  std::function<void(const http_request&, std::string_view code)> on_auth_failure;  // metrics
};

class http_server {
 public:
  // nullptr and `error` set when the address cannot be bound.
  static std::unique_ptr<http_server> start(http_server_options options, http_router router,
                                            std::string& error);

  std::uint16_t port() const;

  // Closes the listener and every connection (their exchanges' on_close callbacks run), then
  // joins the server threads. Idempotent. Must not be called from a handler.
  void stop();
  ~http_server();

  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  class impl;

 private:
  explicit http_server(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace llorch::net
