#include "net/http_types.hpp"

#include <cstdio>

namespace llorch::net {

std::string http_request::header(std::string_view lower_name) const {
  for (const auto& [name, value] : headers)
    if (name == lower_name)
      return value;
  return {};
}

std::string json_quote(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  out.push_back('"');
  for (char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
  return out;
}

http_response error_response(int status, std::string_view code, std::string_view message,
                             bool retriable, std::optional<std::int64_t> retry_after_ms) {
  http_response r;
  r.status = status;
  r.body = "{\"code\":" + json_quote(code) + ",\"message\":" + json_quote(message) +
           ",\"retriable\":" + (retriable ? "true" : "false");
  if (retry_after_ms) {
    const std::int64_t ms = *retry_after_ms < 0 ? 0 : *retry_after_ms;
    r.body += ",\"retry_after_ms\":" + std::to_string(ms);
    r.headers.emplace_back("Retry-After", std::to_string((ms + 999) / 1000));
  }
  r.body += "}";
  return r;
}

http_response json_response(int status, std::string body) {
  http_response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

http_exchange::http_exchange(http_request request, std::shared_ptr<detail::exchange_link> link)
    : request_(std::move(request)), link_(std::move(link)) {}

const http_request& http_exchange::request() const { return request_; }

void http_exchange::respond(http_response r) {
  // The link is called under the lock so that output from several threads keeps one order.
  std::lock_guard<std::mutex> lock(mutex_);
  if (phase_ != phase::pending || closed_)
    return;
  phase_ = phase::responded;
  if (link_)
    link_->send(std::move(r));
}

bool http_exchange::start_stream(int status, std::string content_type,
                                 std::vector<std::pair<std::string, std::string>> headers) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (phase_ != phase::pending || closed_)
    return false;
  phase_ = phase::streaming;
  return link_ && link_->stream_head(status, std::move(content_type), std::move(headers));
}

bool http_exchange::write(std::string chunk) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (phase_ != phase::streaming || closed_)
    return false;
  if (chunk.empty())
    return true;  // an empty chunk would end the chunked body
  return link_ && link_->stream_chunk(std::move(chunk));
}

void http_exchange::finish(std::string last_chunk) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (phase_ != phase::streaming || closed_)
    return;
  phase_ = phase::finished;
  if (link_)
    link_->stream_end(std::move(last_chunk));
}

void http_exchange::on_close(std::function<void()> callback) {
  if (!callback)
    return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!closed_) {
      on_close_.push_back(std::move(callback));
      return;
    }
  }
  callback();
}

bool http_exchange::closed() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return closed_;
}

bool http_exchange::answered() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return phase_ != phase::pending;
}

void http_exchange::mark_closed() {
  std::vector<std::function<void()>> callbacks;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_)
      return;
    closed_ = true;
    callbacks.swap(on_close_);
  }
  // Outside the lock: a callback may call back into this exchange.
  for (auto& cb : callbacks)
    cb();
}

} // namespace llorch::net
