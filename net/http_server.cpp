// The only translation unit that includes Beast. One connection object per TCP connection, all
// of its work on one strand; an exchange reaches its connection through a link that holds only
// a weak reference and a gate the server closes before it tears down, so a handler that answers
// late (after the client left, or after stop()) touches nothing that is gone.
#include "net/http_server.hpp"

#include "net/auth.hpp"
#include "runtime/log.hpp"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <unordered_map>

#include <sys/socket.h>

namespace llorch::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

namespace {

constexpr std::uint32_t header_limit = 16 * 1024;
constexpr std::size_t watch_buffer_limit = 64 * 1024;  // stop reading ahead beyond this
constexpr std::size_t outbox_limit = 8u << 20;          // a client this far behind is dropped
constexpr std::chrono::seconds linger_time{2};

struct gate {
  std::mutex mutex;
  bool open = true;
};

std::string generate_correlation_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  const std::uint64_t a = rng(), b = rng();
  char buf[40];
  std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%04x-%012llx", static_cast<unsigned>(a >> 32),
                static_cast<unsigned>((a >> 16) & 0xffff), static_cast<unsigned>(a & 0xffff),
                static_cast<unsigned>(b >> 48),
                static_cast<unsigned long long>(b & 0xffffffffffffULL));
  return buf;
}

// Echo only ids that are safe to put in a header and a log line.
bool acceptable_correlation_id(std::string_view s) {
  if (s.empty() || s.size() > 128)
    return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.' || c == ':';
  });
}

bool valid_header_name(std::string_view s) {
  if (s.empty())
    return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_';
  });
}

// Control characters would let a value start a new header line.
std::string clean_header_value(std::string_view s) {
  std::string out;
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f)
      out.push_back(c);
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
  return out;
}

bool status_without_body(int status) { return status < 200 || status == 204 || status == 304; }

std::string reason_phrase(int status) {
  auto r = http::obsolete_reason(static_cast<http::status>(status));
  return r.empty() ? std::string("Status") : std::string(r);
}

// Headers the server writes itself; a handler's copies are dropped.
bool reserved_header(std::string_view lower_name) {
  return lower_name == "content-length" || lower_name == "transfer-encoding" ||
         lower_name == "connection" || lower_name == "x-correlation-id" ||
         lower_name == "content-type" || lower_name == "server";
}

// One chunk of a chunked body.
std::string chunk_frame(const std::string& chunk) {
  char size[24];
  std::snprintf(size, sizeof size, "%zx\r\n", chunk.size());
  return size + chunk + "\r\n";
}

} // namespace

struct server_state;

class connection : public std::enable_shared_from_this<connection> {
 public:
  connection(tcp::socket socket, std::shared_ptr<server_state> state, bool reject);
  void start();
  void close();
  bool gone() const { return gone_.load(); }
  asio::any_io_executor executor() { return socket_.get_executor(); }

  // From any thread, under the gate: the first chunk of exchange `seq`'s stream, and its end
  // (`last`, with its last chunk), leave at once from the calling thread when nothing else is
  // queued or being written for this socket: a task's first token, and a short task's token with
  // its end, then skip a wake-up of the HTTP thread. The chunks between go through the strand,
  // where those that queue up leave in one write (writing each at once cost streams throughput).
  // What the socket does not take at once is queued on the strand, in order, and so is the end
  // of the exchange. False when the bytes must go through the strand (the caller posts them).
  bool write_now(std::uint64_t seq, const std::string& chunk, bool last);
  // The same for the answer of exchange `seq` while the connection waits for it with nothing
  // else to write: from the calling thread; the bookkeeping follows on the strand.
  bool respond_now(std::uint64_t seq, http_response& r);
  // Every handler the exchange's link posts is counted until it has run (and queued its bytes):
  // bytes written at once must not overtake one of them.
  void count_post() { posts_pending_.fetch_add(1); }
  void uncount_post() { posts_pending_.fetch_sub(1); }

  // Called on the strand through the exchange's link; `seq` names the exchange.
  void on_send(std::uint64_t seq, http_response r);
  void on_stream_head(std::uint64_t seq, int status, std::string content_type,
                      std::vector<std::pair<std::string, std::string>> headers);
  void on_stream_chunk(std::uint64_t seq, std::string chunk);
  void on_stream_end(std::uint64_t seq);

 private:
  void do_read();
  void on_header(error_code ec);
  void on_body(error_code ec);
  void on_read_error(error_code ec);
  void on_request();
  void dispatch(const std::shared_ptr<http_exchange>& ex, const route_match& m);
  void refuse_auth(const std::shared_ptr<http_exchange>& ex, auth_outcome outcome);
  void start_watch();
  void on_handler_timeout(std::uint64_t seq);
  void respond_and_close(int status, std::string_view code, std::string_view message);
  std::string head(int status, const std::string& content_type,
                   const std::vector<std::pair<std::string, std::string>>& headers,
                   const std::string& cid, bool keep_alive, std::optional<std::size_t> length,
                   bool chunked) const;
  void enqueue(std::string bytes);
  void do_write();
  void on_write(error_code ec);
  void finish_exchange();
  void linger();
  void drain();
  void end_exchange(std::shared_ptr<http_exchange> ex);
  void after_write_now(std::uint64_t seq, std::string rest, bool last);
  void after_respond_now(std::uint64_t seq, int status, bool keep, std::string rest);
  // Under direct_mutex_: sends what the socket takes of `bytes` now, and returns how much.
  std::size_t send_now_locked(const std::string& bytes) {
    // (close() takes the mutex before it closes the socket, so the descriptor is still this one)
    const auto n = ::send(socket_.native_handle(), bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    return n > 0 ? static_cast<std::size_t>(n) : 0;
  }
  // Under direct_mutex_: the strand takes over after a write at once (then(*this) runs there),
  // and nothing more is written at once until it has.
  template <class F>
  void hand_to_strand_locked(F then) {
    direct_seq_ = 0;
    posts_pending_.fetch_add(1);
    asio::post(executor(), [self = shared_from_this(), then = std::move(then)]() mutable {
      self->uncount_post();
      then(*self);
    });
  }
  // What another thread may write at once, and for which exchange (0: nothing).
  enum class direct_kind { stream, answer };
  void set_direct(std::uint64_t seq, direct_kind kind = direct_kind::stream) {
    // Nothing to change, and no one writing at once (a writer needs direct_seq_ set): no lock.
    if (seq == 0 && direct_seq_.load() == 0)
      return;
    std::lock_guard<std::mutex> lock(direct_mutex_); // (waits for a write at once in progress)
    direct_seq_ = seq;
    direct_kind_ = kind;
    direct_cid_ = cid_;
    direct_keep_ = keep_alive_;
  }
  bool current(std::uint64_t seq) const { return !closed_ && exchange_ && seq == seq_; }

  tcp::socket socket_;
  std::shared_ptr<server_state> state_;
  std::string peer_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  asio::steady_timer read_timer_, write_timer_, handler_timer_, linger_timer_;
  std::deque<std::string> outbox_;   // waiting to be written
  std::vector<std::string> sending_;  // being written, in one gathered write
  std::size_t outbox_bytes_ = 0;      // both together
  std::shared_ptr<http_exchange> exchange_;
  std::uint64_t seq_ = 0;
  std::string cid_;
  std::chrono::steady_clock::time_point started_;
  int status_ = 0;
  bool reject_ = false;
  bool keep_alive_ = false;
  bool chunked_ = true;
  bool writing_ = false;
  bool write_posted_ = false;  // a do_write waits behind the handlers queued before it
  bool watching_ = false;
  bool want_next_ = false;
  bool timed_out_ = false;
  bool exchange_done_after_write_ = false;
  bool close_after_write_ = false;
  bool closed_ = false;
  std::atomic<bool> gone_{false};
  bool streaming_ = false;  // the current exchange streams chunks
  std::mutex direct_mutex_;
  std::atomic<std::uint64_t> direct_seq_{0};  // the exchange whose stream or answer may be
                                               // written at once; set under direct_mutex_
  direct_kind direct_kind_ = direct_kind::stream;
  std::string direct_cid_;  // copies for the head of an answer written at once
  bool direct_keep_ = false;
  std::atomic<int> posts_pending_{0};
  std::uint64_t first_chunk_done_ = 0;  // the exchange whose first chunk was written at once
};

struct server_state {
  http_server_options options;
  http_router router;
  std::shared_ptr<gate> gate_ = std::make_shared<gate>();
  std::mutex conn_mutex;
  std::condition_variable conn_cv;
  std::unordered_map<connection*, std::weak_ptr<connection>> conns;
  std::atomic<bool> stopping{false};

  void remove(connection* c) {
    std::lock_guard<std::mutex> lock(conn_mutex);
    conns.erase(c);
    conn_cv.notify_all();
  }
};

namespace {

class connection_link final : public detail::exchange_link {
 public:
  connection_link(std::shared_ptr<gate> g, std::weak_ptr<connection> c, std::uint64_t seq)
      : gate_(std::move(g)), conn_(std::move(c)), seq_(seq) {}

  bool send(http_response r) override {
    return write_or_post([&](connection& c) { return c.respond_now(seq_, r); }, [&] {
      return [r = std::move(r)](connection& c, std::uint64_t seq) mutable { c.on_send(seq, std::move(r)); };
    });
  }
  bool stream_head(int status, std::string content_type,
                   std::vector<std::pair<std::string, std::string>> headers) override {
    return write_or_post([](connection&) { return false; }, [&] {
      return [status, ct = std::move(content_type), h = std::move(headers)](
                 connection& c, std::uint64_t seq) mutable {
        c.on_stream_head(seq, status, std::move(ct), std::move(h));
      };
    });
  }
  bool stream_chunk(std::string chunk) override {
    return write_or_post([&](connection& c) { return c.write_now(seq_, chunk, false); }, [&] {
      return [ch = std::move(chunk)](connection& c, std::uint64_t seq) mutable {
        c.on_stream_chunk(seq, std::move(ch));
      };
    });
  }
  bool stream_end(std::string last_chunk) override {
    return write_or_post([&](connection& c) { return c.write_now(seq_, last_chunk, true); }, [&] {
      return [last = std::move(last_chunk)](connection& c, std::uint64_t seq) mutable {
        if (!last.empty())
          c.on_stream_chunk(seq, std::move(last));
        c.on_stream_end(seq);
      };
    });
  }

 private:
  // Writes at once when the connection allows it (`now`: connection::write_now, respond_now),
  // else posts the handler that make() returns to the connection's strand.
  template <class Now, class Make>
  bool write_or_post(Now now, Make make) {
    // Under the gate: while it is open the io_context exists, so even dropping the last
    // reference to the connection here is safe.
    std::lock_guard<std::mutex> lock(gate_->mutex);
    if (!gate_->open)
      return false;
    auto c = conn_.lock();
    if (!c || c->gone())
      return false;
    if (now(*c))
      return true;
    c->count_post();
    asio::post(c->executor(), [c, seq = seq_, f = make()]() mutable {
      f(*c, seq);
      c->uncount_post();
    });
    return true;
  }

  std::shared_ptr<gate> gate_;
  std::weak_ptr<connection> conn_;
  std::uint64_t seq_;
};

} // namespace

connection::connection(tcp::socket socket, std::shared_ptr<server_state> state, bool reject)
    : socket_(std::move(socket)),
      state_(std::move(state)),
      read_timer_(socket_.get_executor()),
      write_timer_(socket_.get_executor()),
      handler_timer_(socket_.get_executor()),
      linger_timer_(socket_.get_executor()),
      reject_(reject) {
  error_code ec;
  auto ep = socket_.remote_endpoint(ec);
  if (!ec)
    peer_ = ep.address().to_string() + ":" + std::to_string(ep.port());
  // SSE writes are small and must leave at once: Nagle's algorithm with the client's delayed
  // ACK held each token back ~40 ms.
  socket_.set_option(tcp::no_delay(true), ec);
}

void connection::start() {
  if (reject_) {
    cid_ = generate_correlation_id();
    log::warn("http_connection_refused", {{"peer", peer_}, {"reason", "max_connections"}});
    respond_and_close(503, "OVERLOADED", "the server has too many open connections; retry later");
    return;
  }
  do_read();
}

void connection::do_read() {
  if (closed_)
    return;
  parser_.emplace();
  parser_->body_limit(state_->options.body_limit);
  parser_->header_limit(header_limit);
  timed_out_ = false;
  read_timer_.expires_after(state_->options.read_timeout);
  read_timer_.async_wait([self = shared_from_this()](error_code ec) {
    if (ec || self->closed_)
      return;
    self->timed_out_ = true;
    error_code ignored;
    self->socket_.cancel(ignored);
  });
  http::async_read_header(socket_, buffer_, *parser_,
                          [self = shared_from_this()](error_code ec, std::size_t) {
                            self->on_header(ec);
                          });
}

void connection::on_header(error_code ec) {
  if (closed_)
    return;
  if (ec)
    return on_read_error(ec);
  auto& req = parser_->get();
  if (!parser_->is_done()) {
    auto expect = req[http::field::expect];
    if (beast::iequals(expect, "100-continue"))
      enqueue("HTTP/1.1 100 Continue\r\n\r\n");
    http::async_read(socket_, buffer_, *parser_,
                     [self = shared_from_this()](error_code e, std::size_t) { self->on_body(e); });
    return;
  }
  read_timer_.cancel();
  on_request();
}

void connection::on_body(error_code ec) {
  if (closed_)
    return;
  if (ec)
    return on_read_error(ec);
  read_timer_.cancel();
  on_request();
}

void connection::on_read_error(error_code ec) {
  read_timer_.cancel();
  const bool got_some = parser_ && parser_->got_some();
  cid_.clear();
  if (parser_ && got_some) {  // fields parsed so far, even when the head was refused
    auto given = parser_->get()["x-correlation-id"];
    if (acceptable_correlation_id(given))
      cid_ = std::string(given);
  }
  if (cid_.empty())
    cid_ = generate_correlation_id();

  if (ec == http::error::body_limit) {
    return respond_and_close(413, "PAYLOAD_TOO_LARGE",
                             "the request body exceeds the limit of " +
                                 std::to_string(state_->options.body_limit) + " bytes");
  }
  if (ec == http::error::header_limit)
    return respond_and_close(431, "HEADERS_TOO_LARGE", "the request headers exceed 16 KiB");
  if (timed_out_) {
    if (!got_some)
      return close();  // an idle keep-alive connection
    return respond_and_close(408, "REQUEST_TIMEOUT",
                             "the request did not arrive completely within " +
                                 std::to_string(state_->options.read_timeout.count()) + " ms");
  }
  if (ec.category() == http::make_error_code(http::error::end_of_stream).category() &&
      ec != http::error::end_of_stream && ec != http::error::partial_message) {
    return respond_and_close(400, "BAD_REQUEST", "malformed HTTP request: " + ec.message());
  }
  close();  // the client went away (before or in the middle of a request)
}

void connection::on_request() {
  auto& req = parser_->get();
  http_request r;
  r.method = std::string(req.method_string());
  r.target = std::string(req.target());
  if (r.target.empty() || r.target.front() != '/') {
    cid_ = generate_correlation_id();
    return respond_and_close(400, "BAD_REQUEST", "the request target must be a path");
  }
  auto q = r.target.find('?');
  r.path = r.target.substr(0, q);
  if (q != std::string::npos)
    r.query = r.target.substr(q + 1);
  for (const auto& f : req)
    r.headers.emplace_back(lower(f.name_string()), std::string(f.value()));
  r.body = std::move(req.body());
  r.peer = peer_;
  auto given = r.header("x-correlation-id");
  r.correlation_id = acceptable_correlation_id(given) ? given : generate_correlation_id();
  cid_ = r.correlation_id;
  keep_alive_ = req.keep_alive();
  chunked_ = req.version() >= 11;
  started_ = std::chrono::steady_clock::now();
  status_ = 0;
  parser_.reset();
  const auto m = state_->router.match(r.method, r.path);
  r.params = m.params;

  ++seq_;
  exchange_ = std::make_shared<http_exchange>(
      std::move(r), std::make_shared<connection_link>(state_->gate_, weak_from_this(), seq_));
  start_watch();
  handler_timer_.expires_after(state_->options.handler_timeout);
  handler_timer_.async_wait([self = shared_from_this(), seq = seq_](error_code ec) {
    if (!ec)
      self->on_handler_timeout(seq);
  });
  auto ex = exchange_;
  dispatch(ex, m);
  // An answer that comes later from another thread may go out from there.
  if (exchange_ == ex && !closed_ && !ex->answered() && !writing_ && !write_posted_ && outbox_.empty())
    set_direct(seq_, direct_kind::answer);
}

void connection::dispatch(const std::shared_ptr<http_exchange>& ex, const route_match& m) {
  const auto& rq = ex->request();
  const auto& opts = state_->options;
  const bool found = m.result == route_match::outcome::found;
  const bool required = found && (m.access == route_access::token || opts.protect_reads);

  // A carried token is checked on every route, unknown ones included.
  const auto outcome = authorize(rq.header("authorization"), opts.token, required);
  if (outcome == auth_outcome::bad_token)
    return refuse_auth(ex, outcome);
  if (m.result == route_match::outcome::not_found)
    return ex->respond(error_response(404, "NOT_FOUND", "no route for " + rq.path));
  if (m.result == route_match::outcome::method_not_allowed) {
    auto r = error_response(405, "METHOD_NOT_ALLOWED",
                            rq.method + " is not allowed on " + rq.path + "; allowed: " + m.allow);
    r.headers.emplace_back("Allow", m.allow);
    return ex->respond(std::move(r));
  }
  if (outcome == auth_outcome::missing_token)
    return refuse_auth(ex, outcome);

  try {
    (*m.handler)(ex);
  } catch (const std::exception& e) {
    log::error("http_handler_failed", {{"method", rq.method}, {"path", rq.path},
                                       {"cid", rq.correlation_id}, {"what", e.what()}});
    ex->respond(error_response(500, "INTERNAL",
                               "internal error while handling the request (correlation id " +
                                   rq.correlation_id + " in the server log)"));
  } catch (...) {
    log::error("http_handler_failed", {{"method", rq.method}, {"path", rq.path},
                                       {"cid", rq.correlation_id}, {"what", "unknown exception"}});
    ex->respond(error_response(500, "INTERNAL",
                               "internal error while handling the request (correlation id " +
                                   rq.correlation_id + " in the server log)"));
  }
}

void connection::refuse_auth(const std::shared_ptr<http_exchange>& ex, auth_outcome outcome) {
  const auto& rq = ex->request();
  const auto header = rq.header("authorization");
  const auto b = parse_bearer(header);
  // The fingerprint of what was presented: the token, or the whole malformed header value.
  std::string fingerprint = "none";
  if (b.status == bearer_status::present)
    fingerprint = token_fingerprint(b.token);
  else if (b.status == bearer_status::malformed)
    fingerprint = token_fingerprint(header);
  const std::string_view code =
      outcome == auth_outcome::missing_token ? "MISSING_TOKEN" : "BAD_TOKEN";
  log::warn("auth_failed", {{"fingerprint", fingerprint}, {"peer", rq.peer}, {"path", rq.path},
                            {"cid", rq.correlation_id}, {"code", code}});
  if (state_->options.on_auth_failure) {
    try {
      state_->options.on_auth_failure(rq, code);
    } catch (...) {
      log::error("http_auth_hook_failed", {{"cid", rq.correlation_id}});
    }
  }
  auto r = outcome == auth_outcome::missing_token
               ? error_response(401, code, "this route needs Authorization: Bearer <LLORCH_API_TOKEN>")
           : b.status == bearer_status::malformed
               ? error_response(401, code,
                                "malformed Authorization header; expected 'Bearer <token>'")
               : error_response(401, code, "the bearer token is not valid for this server");
  r.headers.emplace_back("WWW-Authenticate", "Bearer");
  ex->respond(std::move(r));
}

void connection::start_watch() {
  // Reading ahead while a handler works is how a vanished client is noticed (its stream or
  // pending request is then closed); bytes that arrive are kept for the next request.
  if (watching_ || closed_ || buffer_.size() >= watch_buffer_limit)
    return;
  watching_ = true;
  socket_.async_read_some(buffer_.prepare(4096),
                          [self = shared_from_this()](error_code ec, std::size_t n) {
                            self->watching_ = false;
                            if (self->closed_)
                              return;
                            if (!ec)
                              self->buffer_.commit(n);
                            if (self->want_next_) {
                              self->want_next_ = false;
                              return self->do_read();
                            }
                            if (ec == asio::error::operation_aborted)
                              return;
                            if (ec)
                              return self->close();
                            if (self->exchange_)
                              self->start_watch();
                          });
}

void connection::on_handler_timeout(std::uint64_t seq) {
  if (!current(seq) || exchange_->answered())
    return;
  const auto ms = state_->options.handler_timeout.count();
  log::warn("http_handler_timeout", {{"method", exchange_->request().method},
                                     {"path", exchange_->request().path},
                                     {"cid", cid_}, {"timeout_ms", ms}});
  exchange_->respond(error_response(503, "TIMEOUT",
                                    "the request was not answered within " + std::to_string(ms) +
                                        " ms",
                                    true, 1000));
}

std::string connection::head(int status, const std::string& content_type,
                              const std::vector<std::pair<std::string, std::string>>& headers,
                              const std::string& cid, bool keep_alive,
                              std::optional<std::size_t> length, bool chunked) const {
  std::string h = "HTTP/1.1 " + std::to_string(status) + " " + reason_phrase(status) + "\r\n";
  if (!state_->options.server_name.empty())
    h += "Server: " + clean_header_value(state_->options.server_name) + "\r\n";
  h += "Content-Type: " +
       clean_header_value(content_type.empty() ? "application/octet-stream" : content_type) +
       "\r\n";
  h += "X-Correlation-Id: " + cid + "\r\n";
  for (const auto& [name, value] : headers) {
    if (!valid_header_name(name) || reserved_header(lower(name)))
      continue;
    h += name + ": " + clean_header_value(value) + "\r\n";
  }
  if (length)
    h += "Content-Length: " + std::to_string(*length) + "\r\n";
  if (chunked)
    h += "Transfer-Encoding: chunked\r\n";
  h += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  h += "\r\n";
  return h;
}

void connection::respond_and_close(int status, std::string_view code, std::string_view message) {
  // Not through an exchange: the request could not be read, so no handler ever sees it.
  auto r = error_response(status, code, message);
  status_ = status;
  close_after_write_ = true;
  keep_alive_ = false;
  log::debug("http_rejected", {{"peer", peer_}, {"status", status}, {"code", code}, {"cid", cid_}});
  enqueue(head(r.status, r.content_type, r.headers, cid_, false, r.body.size(), false) + r.body);
}

void connection::on_send(std::uint64_t seq, http_response r) {
  if (!current(seq))
    return;
  handler_timer_.cancel();
  status_ = r.status;
  const bool no_body = status_without_body(r.status);
  if (no_body)
    r.body.clear();
  const bool keep = keep_alive_ && !state_->stopping;
  keep_alive_ = keep;
  auto bytes = head(r.status, r.content_type, r.headers, cid_, keep,
                    no_body ? std::nullopt : std::optional<std::size_t>(r.body.size()), false);
  exchange_done_after_write_ = true;
  enqueue(std::move(bytes) + r.body);
}

void connection::on_stream_head(std::uint64_t seq, int status, std::string content_type,
                                std::vector<std::pair<std::string, std::string>> headers) {
  if (!current(seq))
    return;
  handler_timer_.cancel();
  status_ = status;
  headers.erase(std::remove_if(headers.begin(), headers.end(),
                               [](const auto& h) { return lower(h.first) == "cache-control"; }),
                headers.end());
  headers.emplace_back("Cache-Control", "no-cache");
  streaming_ = chunked_;
  if (!chunked_)
    keep_alive_ = false;  // an HTTP/1.0 client: the end of the stream is the end of the connection
  enqueue(head(status, content_type, headers, cid_, keep_alive_, std::nullopt, chunked_));
}

void connection::on_stream_chunk(std::uint64_t seq, std::string chunk) {
  if (!current(seq) || chunk.empty())
    return;
  if (outbox_bytes_ + chunk.size() > outbox_limit) {
    log::warn("http_client_too_slow", {{"peer", peer_}, {"cid", cid_}, {"queued_bytes", outbox_bytes_}});
    return close();
  }
  if (!chunked_)
    return enqueue(std::move(chunk));
  enqueue(chunk_frame(chunk));
}

void connection::on_stream_end(std::uint64_t seq) {
  if (!current(seq))
    return;
  streaming_ = false;
  set_direct(0);
  exchange_done_after_write_ = true;
  if (chunked_)
    enqueue("0\r\n\r\n");
  else if (!writing_ && outbox_.empty())
    finish_exchange();
}

bool connection::write_now(std::uint64_t seq, const std::string& chunk, bool last) {
  std::lock_guard<std::mutex> lock(direct_mutex_);
  if (seq == 0 || direct_seq_ != seq || direct_kind_ != direct_kind::stream || posts_pending_ != 0
      || (!last && first_chunk_done_ == seq))
    return false;
  if (!last)
    first_chunk_done_ = seq;
  const auto bytes = (chunk.empty() ? std::string() : chunk_frame(chunk)) + (last ? "0\r\n\r\n" : "");
  const auto sent = send_now_locked(bytes);
  if (sent == bytes.size() && !last)
    return true;
  // The rest (a full socket buffer, an error the strand will see) and the end go through the strand.
  hand_to_strand_locked([seq, rest = bytes.substr(sent), last](connection& c) mutable {
    c.after_write_now(seq, std::move(rest), last);
  });
  return true;
}

bool connection::respond_now(std::uint64_t seq, http_response& r) {
  std::lock_guard<std::mutex> lock(direct_mutex_);
  if (seq == 0 || direct_seq_ != seq || direct_kind_ != direct_kind::answer || posts_pending_ != 0)
    return false;
  const bool no_body = status_without_body(r.status);
  const bool keep = direct_keep_ && !state_->stopping;
  auto bytes = head(r.status, r.content_type, r.headers, direct_cid_, keep,
                    no_body ? std::nullopt : std::optional<std::size_t>(r.body.size()), false);
  if (!no_body)
    bytes += r.body;
  const auto sent = send_now_locked(bytes);
  hand_to_strand_locked([seq, status = r.status, keep, rest = bytes.substr(sent)](connection& c) mutable {
    c.after_respond_now(seq, status, keep, std::move(rest));
  });
  return true;
}

void connection::after_respond_now(std::uint64_t seq, int status, bool keep, std::string rest) {
  if (!current(seq))
    return;
  handler_timer_.cancel();
  status_ = status;
  keep_alive_ = keep;
  exchange_done_after_write_ = true;
  if (!rest.empty())
    enqueue(std::move(rest));
  else if (!writing_ && !write_posted_ && outbox_.empty())
    finish_exchange();
}

void connection::after_write_now(std::uint64_t seq, std::string rest, bool last) {
  if (!current(seq))
    return;
  if (!rest.empty())
    enqueue(std::move(rest));
  if (!last)
    return;
  streaming_ = false;
  exchange_done_after_write_ = true;
  if (!writing_ && !write_posted_ && outbox_.empty())
    finish_exchange();
}

void connection::enqueue(std::string bytes) {
  set_direct(0);
  if (closed_)
    return;
  outbox_bytes_ += bytes.size();
  outbox_.push_back(std::move(bytes));
  if (writing_ || write_posted_)
    return;
  // Not at once but after what is already queued: a task's events posted together (the
  // stream's head and log, its last token, end event and final chunk) leave in one write.
  write_posted_ = true;
  asio::post(executor(), [self = shared_from_this()] {
    self->write_posted_ = false;
    if (!self->writing_ && !self->closed_ && !self->outbox_.empty())
      self->do_write();
  });
}

void connection::do_write() {
  writing_ = true;
  // Everything queued goes out in one gathered write: many small SSE events, few syscalls.
  sending_.clear();
  std::vector<asio::const_buffer> buffers;
  while (!outbox_.empty() && sending_.size() < 64) {
    sending_.push_back(std::move(outbox_.front()));
    outbox_.pop_front();
  }
  for (const auto& s : sending_)
    buffers.push_back(asio::buffer(s));
  // A client that stops reading must not hold the connection forever.
  write_timer_.expires_after(std::max(state_->options.read_timeout, std::chrono::milliseconds(1000)));
  write_timer_.async_wait([self = shared_from_this()](error_code ec) {
    if (!ec && self->writing_)
      self->close();
  });
  asio::async_write(socket_, buffers,
                    [self = shared_from_this()](error_code ec, std::size_t) { self->on_write(ec); });
}

void connection::on_write(error_code ec) {
  writing_ = false;
  write_timer_.cancel();
  if (closed_)
    return;
  if (ec)
    return close();
  for (const auto& s : sending_)
    outbox_bytes_ -= s.size();
  sending_.clear();
  if (!outbox_.empty())
    return do_write();
  if (streaming_ && !write_posted_ && !close_after_write_ && !exchange_done_after_write_)
    set_direct(seq_);
  if (close_after_write_)
    return linger();
  if (exchange_done_after_write_)
    finish_exchange();
}

void connection::finish_exchange() {
  streaming_ = false;
  set_direct(0);
  exchange_done_after_write_ = false;
  auto ex = std::move(exchange_);
  exchange_.reset();
  handler_timer_.cancel();
  if (ex) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - started_)
                        .count();
    log::debug("http_request", {{"method", ex->request().method}, {"path", ex->request().path},
                                {"status", status_}, {"ms", ms}, {"peer", peer_}, {"cid", cid_}});
    end_exchange(std::move(ex));
  }
  if (closed_)
    return;
  if (!keep_alive_ || state_->stopping) {
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    return close();
  }
  if (watching_) {
    // The read-ahead must finish before the next request is parsed from the same buffer.
    want_next_ = true;
    error_code ignored;
    socket_.cancel(ignored);
    return;
  }
  do_read();
}

void connection::linger() {
  // Half-close and drain what the client is still sending, so that the error response is not
  // lost to a reset caused by unread data; give up after linger_time.
  error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_send, ignored);
  linger_timer_.expires_after(linger_time);
  linger_timer_.async_wait([self = shared_from_this()](error_code ec) {
    if (!ec)
      self->close();
  });
  drain();
}

void connection::drain() {
  auto buf = std::make_shared<std::array<char, 4096>>();
  socket_.async_read_some(asio::buffer(*buf),
                          [self = shared_from_this(), buf](error_code ec, std::size_t) {
                            if (ec || self->closed_)
                              return self->close();
                            self->drain();
                          });
}

void connection::end_exchange(std::shared_ptr<http_exchange> ex) {
  try {
    ex->mark_closed();
  } catch (const std::exception& e) {
    log::error("http_on_close_failed", {{"cid", ex->request().correlation_id}, {"what", e.what()}});
  } catch (...) {
    log::error("http_on_close_failed", {{"cid", ex->request().correlation_id}});
  }
}

void connection::close() {
  if (closed_)
    return;
  closed_ = true;
  gone_ = true;
  streaming_ = false;
  set_direct(0);  // before the socket closes: no other thread writes to it from here on
  error_code ignored;
  read_timer_.cancel();
  write_timer_.cancel();
  handler_timer_.cancel();
  linger_timer_.cancel();
  state_->remove(this);  // first: a client that sees the close may connect again at once
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
  outbox_.clear();
  outbox_bytes_ = 0;  // sending_ stays: a cancelled write may still refer to it
  if (auto ex = std::move(exchange_)) {
    exchange_.reset();
    end_exchange(std::move(ex));
  }
}

// ---------------------------------------------------------------------------------------------

class http_server::impl {
 public:
  explicit impl(http_server_options options, http_router router)
      : state_(std::make_shared<server_state>()),
        acceptor_(asio::make_strand(ioc_)),
        accept_retry_(acceptor_.get_executor()) {
    state_->options = std::move(options);
    state_->router = std::move(router);
  }

  bool listen(std::string& error) {
    const auto& o = state_->options;
    error_code ec;
    tcp::endpoint ep;
    auto addr = asio::ip::make_address(o.host, ec);
    if (!ec) {
      ep = tcp::endpoint(addr, o.port);
    } else {
      tcp::resolver resolver(ioc_);
      auto results = resolver.resolve(o.host, std::to_string(o.port), ec);
      if (ec || results.empty()) {
        error = "cannot resolve HTTP listen host '" + o.host + "': " + ec.message();
        return false;
      }
      ep = results.begin()->endpoint();
    }
    const auto where = o.host + ":" + std::to_string(o.port);
    acceptor_.open(ep.protocol(), ec);
    if (!ec)
      acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec)
      acceptor_.bind(ep, ec);
    if (!ec)
      acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      error = "cannot listen for HTTP on " + where + ": " + ec.message();
      return false;
    }
    port_ = acceptor_.local_endpoint(ec).port();
    return true;
  }

  void run() {
    do_accept();
    const int n = std::max(1, state_->options.threads);
    for (int i = 0; i < n; ++i) {
      threads_.emplace_back([this] {
        for (;;) {
          try {
            ioc_.run();
            return;
          } catch (const std::exception& e) {
            log::error("http_thread_exception", {{"what", e.what()}});
          } catch (...) {
            log::error("http_thread_exception", {{"what", "unknown"}});
          }
        }
      });
    }
  }

  void do_accept() {
    acceptor_.async_accept(asio::make_strand(ioc_), [this](error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open())
        return;
      if (ec) {
        // Out of descriptors and the like: wait a little instead of spinning.
        log::warn("http_accept_failed", {{"error", ec.message()}});
        accept_retry_.expires_after(std::chrono::milliseconds(100));
        accept_retry_.async_wait([this](error_code e) {
          if (!e)
            do_accept();
        });
        return;
      }
      std::shared_ptr<connection> c;
      {
        std::lock_guard<std::mutex> lock(state_->conn_mutex);
        if (state_->stopping) {
          error_code ignored;
          socket.close(ignored);
          return;
        }
        const bool reject = state_->conns.size() >= state_->options.max_connections;
        c = std::make_shared<connection>(std::move(socket), state_, reject);
        state_->conns.emplace(c.get(), c);
      }
      asio::dispatch(c->executor(), [c] { c->start(); });
      do_accept();
    });
  }

  void stop() {
    if (stopped_.exchange(true))
      return;
    {
      // From here on no late respond() reaches a connection.
      std::lock_guard<std::mutex> lock(state_->gate_->mutex);
      state_->gate_->open = false;
    }
    std::vector<std::shared_ptr<connection>> open;
    {
      std::lock_guard<std::mutex> lock(state_->conn_mutex);
      state_->stopping = true;
      for (auto& [ptr, weak] : state_->conns)
        if (auto c = weak.lock())
          open.push_back(std::move(c));
    }
    asio::post(acceptor_.get_executor(), [this] {
      error_code ignored;
      acceptor_.close(ignored);
      accept_retry_.cancel();
    });
    for (auto& c : open)
      asio::post(c->executor(), [c] { c->close(); });
    open.clear();
    if (!threads_.empty()) {
      std::unique_lock<std::mutex> lock(state_->conn_mutex);
      state_->conn_cv.wait_for(lock, std::chrono::seconds(3), [&] { return state_->conns.empty(); });
    }
    ioc_.stop();
    for (auto& t : threads_)
      if (t.joinable())
        t.join();
    threads_.clear();
  }

  std::uint16_t port() const { return port_; }

  ~impl() { stop(); }

 private:
  asio::io_context ioc_;  // first: destroyed last, after everything that refers to it
  std::shared_ptr<server_state> state_;
  tcp::acceptor acceptor_;
  asio::steady_timer accept_retry_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stopped_{false};
  std::uint16_t port_ = 0;
};

std::unique_ptr<http_server> http_server::start(http_server_options options, http_router router,
                                                std::string& error) {
  auto p = std::make_unique<impl>(std::move(options), std::move(router));
  if (!p->listen(error))
    return nullptr;
  p->run();
  return std::unique_ptr<http_server>(new http_server(std::move(p)));
}

http_server::http_server(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
http_server::~http_server() { stop(); }
std::uint16_t http_server::port() const { return impl_->port(); }
void http_server::stop() {
  if (impl_)
    impl_->stop();
}

} // namespace llorch::net
