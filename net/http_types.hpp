#pragma once
// The HTTP facade's vocabulary: a parsed request, a response, the error envelope of CONTRACT §1,
// and the exchange a handler completes (now or later, from any thread). No Beast here.
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace llorch::net {

struct http_request {
  std::string method, target, path, query;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-case
  std::string body;
  std::string peer;            // "ip:port"
  std::string correlation_id;  // echoed X-Correlation-Id or generated (uuid-like hex)
  std::map<std::string, std::string> params;  // route parameters, e.g. {"id": "gpu-node-1"}

  // The first header with that (lower-case) name, or "" when there is none.
  std::string header(std::string_view lower_name) const;
};

struct http_response {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

// The error envelope of CONTRACT §1; with retry_after_ms also sets the Retry-After header
// (seconds, rounded up).
http_response error_response(int status, std::string_view code, std::string_view message,
                             bool retriable = false,
                             std::optional<std::int64_t> retry_after_ms = {});
http_response json_response(int status, std::string body);

// A JSON string literal (quotes included) for `text`, for building small bodies by hand.
std::string json_quote(std::string_view text);

namespace detail {
// Where an exchange's output goes: the server's connection, or whatever a test wants. Each call
// returns false when the output can no longer be delivered (connection gone, server stopped).
class exchange_link {
 public:
  virtual ~exchange_link() = default;
  virtual bool send(http_response r) = 0;
  virtual bool stream_head(int status, std::string content_type,
                           std::vector<std::pair<std::string, std::string>> headers) = 0;
  virtual bool stream_chunk(std::string chunk) = 0;
  virtual bool stream_end(std::string last_chunk) = 0;
};
} // namespace detail

// One request in flight. Thread-safe: handlers complete it later from any thread (actor replies).
class http_exchange {
 public:
  http_exchange(http_request request, std::shared_ptr<detail::exchange_link> link);
  http_exchange(const http_exchange&) = delete;
  http_exchange& operator=(const http_exchange&) = delete;

  const http_request& request() const;

  // First call wins (respond or start_stream); later calls are ignored.
  void respond(http_response r);

  // Streaming (SSE): headers now (chunked, Cache-Control: no-cache), then chunks flushed as they
  // come; false once the client is gone or the stream was finished.
  bool start_stream(int status, std::string content_type,
                    std::vector<std::pair<std::string, std::string>> headers = {});
  bool write(std::string chunk);
  // Ends the stream; `last_chunk`, when given, is written together with the end.
  void finish(std::string last_chunk = {});

  // Called once when the exchange ends: the response or the stream's end was handed to the
  // connection, the client disconnected, or the server stopped. Registered after that point:
  // called at once.
  void on_close(std::function<void()> callback);
  bool closed() const;

  // True once respond or start_stream won.
  bool answered() const;

  // For the connection that owns the exchange: the exchange is over; runs the close callbacks.
  void mark_closed();

 private:
  enum class phase { pending, responded, streaming, finished };

  http_request request_;
  std::shared_ptr<detail::exchange_link> link_;
  mutable std::mutex mutex_;
  phase phase_ = phase::pending;
  bool closed_ = false;
  std::vector<std::function<void()>> on_close_;
};

using http_handler = std::function<void(std::shared_ptr<http_exchange>)>;

} // namespace llorch::net
