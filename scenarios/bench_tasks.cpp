// llorch-bench-tasks: the task path's benchmark driver. Measures, against a running cluster,
//   paired   time to first token and tokens/s of each request sent straight to the engine
//            process (CAF, like the pool does), then through orchestratord (POST /v2/tasks + SSE
//            on a keep-alive socket), alternately
//   load     tasks/s with max_tokens 1 from C concurrent clients (one epoll thread) through
//            admission and placement (load-completions: each task one POST /v1/completions)
//   direct-streams / orch-streams   aggregate tokens/s of S concurrent streams (N tasks in all),
//            straight to the engine and through orchestratord: does the control plane keep up?
// and prints one line of key=value per mode for scenarios/bench_tasks.sh.
#include "engines/engine_protocol.hpp"
#include "net/cluster_transport.hpp"

#include <caf/io/all.hpp>

#include <algorithm>
#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace llorch;
using clk = std::chrono::steady_clock;

namespace {

// User and system CPU time of this process so far, in microseconds.
double process_cpu_us() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return 1e6 * static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec)
         + static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

double ms(clk::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

double pct(std::vector<double> v, double q) {
  if (v.empty())
    return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(q * static_cast<double>(v.size() - 1))];
}

int dial(const std::string& host, int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  inet_pton(AF_INET, host.c_str(), &a.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

bool send_all(int fd, const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    auto n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0)
      return false;
    off += static_cast<std::size_t>(n);
  }
  return true;
}

// Reads until `needle` has arrived; returns false if the connection ends first.
bool read_until(int fd, std::string& buf, const std::string& needle) {
  char tmp[8192];
  while (buf.find(needle) == std::string::npos) {
    auto n = ::recv(fd, tmp, sizeof(tmp), 0);
    if (n <= 0)
      return false;
    buf.append(tmp, static_cast<std::size_t>(n));
  }
  return true;
}

struct sse_result {
  double ttft_ms = 0;
  double total_ms = 0;
  int tokens = 0;
  bool ok = false;
};

enum class parsed { incomplete, done, malformed };

// Takes one Content-Length response off the front of buf, its body into `body`.
parsed take_response(std::string& buf, std::string& body) {
  auto head_end = buf.find("\r\n\r\n");
  if (head_end == std::string::npos)
    return parsed::incomplete;
  auto at = buf.find("Content-Length: ");
  if (at == std::string::npos || at > head_end)
    return parsed::malformed;
  auto length = std::stoul(buf.substr(at + 16));
  if (buf.size() < head_end + 4 + length)
    return parsed::incomplete;
  body = buf.substr(head_end + 4, length);
  buf.erase(0, head_end + 4 + length);
  return parsed::done;
}

// The task id of a 202 reply to POST /v2/tasks; empty for a refusal (429, 503).
std::string task_id_of(const std::string& reply) {
  auto at = reply.find("\"task_id\":\"");
  if (at == std::string::npos)
    return {};
  return reply.substr(at + 11, reply.find('"', at + 11) - at - 11);
}

// One keep-alive HTTP/1.1 connection of a client, reused task after task like an HTTP client
// library's pool does; reopened when the server closes it.
struct connection {
  std::string host;
  int port = 0;
  int fd = -1;
  std::string buf; // bytes received past the last response

  ~connection() { drop(); }
  void drop() {
    if (fd >= 0)
      close(fd);
    fd = -1;
    buf.clear();
  }
  bool send(const std::string& request) {
    if (fd < 0 && (fd = dial(host, port)) < 0)
      return false;
    return send_all(fd, request);
  }
  // The body of a Content-Length response.
  bool read_response(std::string& body) {
    while (true) {
      auto p = take_response(buf, body);
      if (p != parsed::incomplete)
        return p == parsed::done;
      char tmp[8192];
      auto n = ::recv(fd, tmp, sizeof(tmp), 0);
      if (n <= 0)
        return false;
      buf.append(tmp, static_cast<std::size_t>(n));
    }
  }
};

// POST /v2/tasks, then GET its events until the terminal event, on the client's connection.
sse_result orch_task(connection& c, const std::string& token, const std::string& body) {
  sse_result r;
  auto auth = "Authorization: Bearer " + token + "\r\n";
  auto t0 = clk::now();
  std::string reply;
  if (!c.send("POST /v2/tasks HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Length: "
              + std::to_string(body.size()) + "\r\n\r\n" + body)
      || !c.read_response(reply)) {
    c.drop();
    return r;
  }
  auto id = task_id_of(reply);
  if (id.empty())
    return r;
  if (!c.send("GET /v2/tasks/" + id + "/events HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n")
      || !read_until(c.fd, c.buf, "event: token")) {
    c.drop();
    return r;
  }
  r.ttft_ms = ms(clk::now() - t0);
  // the stream is chunked: its last chunk (size 0) ends the response, the connection stays
  bool ended = read_until(c.fd, c.buf, "\r\n0\r\n\r\n");
  r.total_ms = ms(clk::now() - t0);
  std::size_t at = 0;
  while ((at = c.buf.find("event: token", at)) != std::string::npos) {
    ++r.tokens;
    at += 12;
  }
  r.ok = ended && c.buf.find("event: end") != std::string::npos;
  if (!ended || c.buf.find("Connection: close") != std::string::npos)
    c.drop();
  else
    c.buf.erase(0, c.buf.find("\r\n0\r\n\r\n") + 7);
  return r;
}

// Runs f(sys, engine) with the engine process published at host:port.
template <class F>
int with_engine(const std::string& host, int port, F f) {
  caf::actor_system_config cfg;
  net::cluster_options opts;
  net::configure_cluster(cfg, opts);
  caf::actor_system sys{cfg};
  auto engine = sys.middleman().remote_actor(host, static_cast<std::uint16_t>(port));
  if (!engine) {
    std::fprintf(stderr, "cannot reach the engine: %s\n", sys.render(engine.error()).c_str());
    return 1;
  }
  return f(sys, *engine);
}

// One request straight to the engine, as the pool sends it.
sse_result direct_task(caf::scoped_actor& self, const caf::actor& engine, const std::string& prompt,
                       int max_tokens, std::uint64_t id) {
  sse_result r;
  engine::engine_generate req;
  req.task_id = id;
  req.prompt = prompt;
  req.max_tokens = max_tokens;
  req.seed = 1;
  req.reply_to = caf::actor_cast<caf::actor>(self);
  auto t0 = clk::now();
  self->send(engine, req);
  bool done = false;
  while (!done)
    self->receive(
      [&](const engine::engine_token&) {
        if (r.tokens++ == 0)
          r.ttft_ms = ms(clk::now() - t0);
      },
      [&](const engine::engine_done& d) {
        done = true;
        r.ok = d.reason != "error";
      },
      [&](const engine::engine_token&, const engine::engine_done& d) { // the last token, with the end
        if (r.tokens++ == 0)
          r.ttft_ms = ms(clk::now() - t0);
        done = true;
        r.ok = d.reason != "error";
      },
      [&](const engine::engine_step&) { done = true; }); // one stream: never a step of several
  r.total_ms = ms(clk::now() - t0);
  return r;
}

// Aggregate tokens/s of `streams` concurrent requests straight to the engine, n in all.
int direct_streams(caf::actor_system& sys, const caf::actor& engine, const std::string& prompt,
                   int n, int max_tokens, int streams) {
  caf::scoped_actor self{sys};
  int sent = 0, finished = 0;
  long tokens = 0;
  auto submit = [&] {
    engine::engine_generate req;
    req.task_id = static_cast<std::uint64_t>(++sent);
    req.prompt = prompt;
    req.max_tokens = max_tokens;
    req.seed = 1;
    req.reply_to = caf::actor_cast<caf::actor>(self);
    self->send(engine, req);
  };
  auto t0 = clk::now();
  while (sent < std::min(streams, n))
    submit();
  while (finished < n)
    self->receive([&](const engine::engine_token&) { ++tokens; },
                  [&](const engine::engine_done&) {
                    ++finished;
                    if (sent < n)
                      submit();
                  },
                  [&](const engine::engine_token&, const engine::engine_done&) {
                    ++tokens;
                    ++finished;
                    if (sent < n)
                      submit();
                  },
                  [&](const engine::engine_step& step) { // a step's tokens and ends of several streams
                    tokens += static_cast<long>(step.tokens.size());
                    for (std::size_t i = 0; i < step.ends.size(); ++i) {
                      ++finished;
                      if (sent < n)
                        submit();
                    }
                  });
  auto secs = std::chrono::duration<double>(clk::now() - t0).count();
  std::printf("mode=direct-streams streams=%d tokens=%ld tok_s=%.1f\n", streams, tokens,
              static_cast<double>(tokens) / secs);
  return 0;
}

// tasks/s of `clients` keep-alive connections, each submitting a task and reading its events to
// the end, again and again, for `seconds`. One thread drives them all with epoll, like an
// event-driven HTTP client: 64 blocking threads would cost the machine under test more CPU in
// context switches than the requests themselves. With `completions`, each task is one
// POST /v1/completions (stream false) instead of POST /v2/tasks and a GET of its events.
int load(const std::string& host, int port, int seconds, int clients, const std::string& token,
         const std::string& body, bool completions) {
  const std::string auth = "Authorization: Bearer " + token + "\r\n";
  const std::string post = std::string(completions ? "POST /v1/completions" : "POST /v2/tasks")
                           + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth
                           + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  struct client {
    int fd = -1;
    bool awaiting_events = false; // false: the POST's response
    std::string in;
  };
  std::vector<client> cs(static_cast<std::size_t>(clients));
  int ep = epoll_create1(0);
  long done = 0, failed = 0;
  auto submit = [&](std::size_t i) {
    auto& c = cs[i];
    if (c.fd < 0) {
      if ((c.fd = dial(host, port)) < 0)
        return false;
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = i;
      epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
    }
    c.awaiting_events = false;
    return send_all(c.fd, post);
  };
  auto reconnect = [&](std::size_t i) {
    auto& c = cs[i];
    if (c.fd >= 0) {
      epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
      close(c.fd);
    }
    c.fd = -1;
    c.in.clear();
  };
  for (std::size_t i = 0; i < cs.size(); ++i)
    if (!submit(i)) {
      std::fprintf(stderr, "cannot connect to %s:%d\n", host.c_str(), port);
      return 1;
    }
  auto t0 = clk::now();
  const auto cpu0_us = process_cpu_us();
  const auto stop = t0 + std::chrono::seconds(seconds);
  std::vector<epoll_event> events(cs.size());
  while (clk::now() < stop) {
    int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), 100);
    for (int k = 0; k < n; ++k) {
      auto i = static_cast<std::size_t>(events[k].data.u64);
      auto& c = cs[i];
      char tmp[16384];
      auto got = ::recv(c.fd, tmp, sizeof(tmp), MSG_DONTWAIT);
      if (got <= 0) { // the server closed the connection: a failed task, then a new connection
        ++failed;
        reconnect(i);
        submit(i);
        continue;
      }
      c.in.append(tmp, static_cast<std::size_t>(got));
      if (!c.awaiting_events) {
        std::string reply;
        auto p = take_response(c.in, reply);
        if (p == parsed::incomplete)
          continue;
        if (p == parsed::malformed) {
          ++failed;
          reconnect(i);
          submit(i);
          continue;
        }
        if (completions) { // the whole task in one response
          (reply.find("\"choices\"") != std::string::npos ? done : failed)++;
          submit(i);
          continue;
        }
        auto id = task_id_of(reply);
        if (id.empty()) { // refused (429, 503): counted, and the next one
          ++failed;
          submit(i);
          continue;
        }
        c.awaiting_events = true;
        send_all(c.fd, "GET /v2/tasks/" + id + "/events HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n");
        continue;
      }
      // the stream is chunked: its last chunk (size 0) ends the response
      auto end = c.in.find("\r\n0\r\n\r\n");
      if (end == std::string::npos)
        continue;
      (c.in.find("event: end") < end ? done : failed)++;
      bool closing = c.in.find("Connection: close") < end;
      c.in.erase(0, end + 7);
      if (closing)
        reconnect(i);
      submit(i);
    }
  }
  auto secs = std::chrono::duration<double>(clk::now() - t0).count();
  auto cpu_us = process_cpu_us() - cpu0_us;
  for (std::size_t i = 0; i < cs.size(); ++i)
    reconnect(i);
  close(ep);
  std::printf("mode=%s clients=%d tasks=%ld failed=%ld tasks_s=%.1f client_cpu_us_per_task=%.1f\n",
              completions ? "load-completions" : "load", clients, done, failed,
              static_cast<double>(done) / secs, cpu_us / static_cast<double>(std::max(done, 1L)));
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr,
                 "usage: llorch-bench-tasks paired ENGINE_HOST ENGINE_PORT N MAX_TOKENS TOKEN MODEL HTTP_HOST HTTP_PORT\n"
                 "       llorch-bench-tasks load|load-completions HTTP_HOST HTTP_PORT SECONDS CLIENTS TOKEN MODEL\n"
                 "       llorch-bench-tasks direct-streams ENGINE_HOST ENGINE_PORT N MAX_TOKENS STREAMS\n"
                 "       llorch-bench-tasks orch-streams HTTP_HOST HTTP_PORT N MAX_TOKENS TOKEN MODEL STREAMS\n");
    return 2;
  }
  std::string mode = argv[1], host = argv[2];
  int port = std::atoi(argv[3]);
  int n = std::atoi(argv[4]);
  int max_tokens = std::atoi(argv[5]);
  std::string prompt = "Once upon a time";

  if (mode == "direct-streams")
    return with_engine(host, port, [&](caf::actor_system& sys, const caf::actor& engine) {
      return direct_streams(sys, engine, prompt, n, max_tokens, argc > 6 ? std::atoi(argv[6]) : 8);
    });
  if (argc < 8)
    return 2;
  std::string token = argv[6], model = argv[7];
  auto body = [&](int max) {
    return "{\"model\":\"" + model + "\",\"prompt\":\"" + prompt
           + "\",\"max_tokens\":" + std::to_string(max) + ",\"seed\":1}";
  };
  if (mode == "paired") {
    // The same request straight to the engine, then through orchestratord, n times: both see
    // the machine in the same state, which two runs one after the other on a shared VM do not.
    // Each time also a request of a quarter the tokens, each way: the difference of the two
    // lengths' times is what the tokens between them cost, without the fixed time to the first
    // token and to the end (the stream's own rate).
    if (argc < 10)
      return 2;
    return with_engine(host, port, [&](caf::actor_system& sys, const caf::actor& engine) {
      caf::scoped_actor self{sys};
      connection c{argv[8], std::atoi(argv[9]), -1, {}};
      const int short_tokens = std::max(1, max_tokens / 4);
      std::vector<double> d_ttft, d_tps, o_ttft, o_tps, added; // added: per pair, orchd - engine
      // each pair's own ratio of the engine's rate to orchestratord's: the machine's drift from
      // one pair to the next cancels out
      std::vector<double> whole_share, stream_share;
      std::uint64_t id = 0;
      for (int i = 0; i < n; ++i) {
        auto d = direct_task(self, engine, prompt, max_tokens, ++id);
        auto o = orch_task(c, token, body(max_tokens));
        auto ds = direct_task(self, engine, prompt, short_tokens, ++id);
        auto os = orch_task(c, token, body(short_tokens));
        if (!d.ok || !o.ok || !ds.ok || !os.ok)
          continue;
        d_ttft.push_back(d.ttft_ms);
        d_tps.push_back(d.tokens / (d.total_ms / 1000.0));
        o_ttft.push_back(o.ttft_ms);
        o_tps.push_back(o.tokens / (o.total_ms / 1000.0));
        added.push_back(o.ttft_ms - d.ttft_ms);
        auto rate = [](const sse_result& r) { return r.tokens / r.total_ms; };
        auto stream_rate = [](const sse_result& l, const sse_result& s) {
          return (l.tokens - s.tokens) / (l.total_ms - s.total_ms);
        };
        whole_share.push_back(100 * rate(o) / rate(d));
        stream_share.push_back(100 * stream_rate(o, os) / stream_rate(d, ds));
      }
      std::printf("mode=paired ok=%zu direct_ttft_p50_ms=%.3f direct_ttft_p99_ms=%.3f direct_tok_s=%.1f "
                  "orch_ttft_p50_ms=%.3f orch_ttft_p99_ms=%.3f orch_tok_s=%.1f added_p50_ms=%.3f "
                  "added_p99_ms=%.3f short_tokens=%d whole_share_p50=%.1f stream_share_p50=%.1f\n",
                  d_ttft.size(), pct(d_ttft, 0.5), pct(d_ttft, 0.99), pct(d_tps, 0.5), pct(o_ttft, 0.5),
                  pct(o_ttft, 0.99), pct(o_tps, 0.5), pct(added, 0.5), pct(added, 0.99), short_tokens,
                  pct(whole_share, 0.5), pct(stream_share, 0.5));
      return 0;
    });
  }
  if (mode == "orch-streams") {
    int streams = argc > 8 ? std::atoi(argv[8]) : 8;
    std::atomic<int> next{0};
    std::atomic<long> tokens{0}, failed{0};
    std::vector<std::thread> threads;
    auto t0 = clk::now();
    for (int c = 0; c < streams; ++c)
      threads.emplace_back([&] {
        connection conn{host, port, -1, {}};
        while (next++ < n) {
          auto r = orch_task(conn, token, body(max_tokens));
          tokens += r.tokens;
          failed += r.ok ? 0 : 1;
        }
      });
    for (auto& t : threads)
      t.join();
    auto secs = std::chrono::duration<double>(clk::now() - t0).count();
    std::printf("mode=orch-streams streams=%d tokens=%ld failed=%ld tok_s=%.1f\n", streams,
                tokens.load(), failed.load(), static_cast<double>(tokens.load()) / secs);
    return 0;
  }
  if (mode == "load")
    return load(host, port, n, max_tokens, token, body(1), false);
  if (mode == "load-completions")
    return load(host, port, n, max_tokens, token,
                "{\"model\":\"" + model + "\",\"prompt\":\"" + prompt + "\",\"max_tokens\":1,\"seed\":1}", true);
  std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
  return 2;
}
