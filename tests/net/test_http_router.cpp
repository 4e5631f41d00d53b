#include "net/http_router.hpp"
#include "net/http_types.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <thread>

using namespace llorch::net;

namespace {
http_handler tagged(std::string* out, std::string tag) {
  return [out, tag](std::shared_ptr<http_exchange>) { *out = tag; };
}

// Records what an exchange hands to its connection.
struct recording_link : detail::exchange_link {
  std::vector<std::string> events;
  std::vector<http_response> responses;
  bool accept = true;
  bool send(http_response r) override {
    events.push_back("send " + std::to_string(r.status));
    responses.push_back(std::move(r));
    return accept;
  }
  bool stream_head(int status, std::string, std::vector<std::pair<std::string, std::string>>) override {
    events.push_back("head " + std::to_string(status));
    return accept;
  }
  bool stream_chunk(std::string chunk) override {
    events.push_back("chunk " + chunk);
    return accept;
  }
  bool stream_end(std::string last) override {
    events.push_back(last.empty() ? "end" : "end " + last);
    return accept;
  }
};
} // namespace

TEST_CASE("router: exact segments win over parameters, params are bound and decoded") {
  http_router router;
  std::string hit;
  router.add("GET", "/v2/nodes", route_access::open_read, tagged(&hit, "list"));
  router.add("GET", "/v2/nodes/{id}", route_access::open_read, tagged(&hit, "one"));
  router.add("DELETE", "/v2/nodes/{id}", route_access::token, tagged(&hit, "delete"));
  router.add("POST", "/v2/nodes/register", route_access::token, tagged(&hit, "register"));
  router.add("POST", "/v2/nodes/{id}/heartbeat", route_access::token, tagged(&hit, "heartbeat"));
  router.add("POST", "/v2/{kind}/{id}/drain", route_access::token, tagged(&hit, "generic drain"));
  router.add("POST", "/v2/nodes/{id}/drain", route_access::token, tagged(&hit, "node drain"));
  CHECK(router.size() == 7);

  auto m = router.match("POST", "/v2/nodes/register");
  REQUIRE(m.result == route_match::outcome::found);
  (*m.handler)(nullptr);
  CHECK(hit == "register");
  CHECK(m.access == route_access::token);
  CHECK(m.params.empty());

  m = router.match("POST", "/v2/nodes/gpu-node-1/heartbeat");
  REQUIRE(m.result == route_match::outcome::found);
  (*m.handler)(nullptr);
  CHECK(hit == "heartbeat");
  CHECK(m.params == std::map<std::string, std::string>{{"id", "gpu-node-1"}});

  m = router.match("GET", "/v2/nodes/gpu%2Dnode%201");
  REQUIRE(m.result == route_match::outcome::found);
  CHECK(m.params.at("id") == "gpu-node 1");
  CHECK(m.access == route_access::open_read);

  // A GET of the literal path falls back to the parameter route of that method.
  m = router.match("GET", "/v2/nodes/register");
  REQUIRE(m.result == route_match::outcome::found);
  (*m.handler)(nullptr);
  CHECK(hit == "one");
  CHECK(m.params.at("id") == "register");

  m = router.match("POST", "/v2/nodes/n1/drain");
  REQUIRE(m.result == route_match::outcome::found);
  (*m.handler)(nullptr);
  CHECK(hit == "node drain");
  m = router.match("POST", "/v2/pools/p1/drain");
  REQUIRE(m.result == route_match::outcome::found);
  (*m.handler)(nullptr);
  CHECK(hit == "generic drain");
  CHECK(m.params.at("kind") == "pools");
  CHECK(m.params.at("id") == "p1");

  // Trailing and doubled slashes do not change the route.
  CHECK(router.match("GET", "/v2/nodes/").result == route_match::outcome::found);
  CHECK(router.match("GET", "//v2//nodes").result == route_match::outcome::found);
}

TEST_CASE("router: unknown paths are not found, wrong methods list what is allowed") {
  http_router router;
  std::string hit;
  router.add("GET", "/v2/nodes/{id}", route_access::open_read, tagged(&hit, "one"));
  router.add("DELETE", "/v2/nodes/{id}", route_access::token, tagged(&hit, "delete"));
  router.add("GET", "/health", route_access::open_read, tagged(&hit, "health"));

  CHECK(router.match("GET", "/nope").result == route_match::outcome::not_found);
  CHECK(router.match("GET", "/v2/nodes/a/b").result == route_match::outcome::not_found);
  CHECK(router.match("GET", "/").result == route_match::outcome::not_found);

  auto m = router.match("PUT", "/v2/nodes/x");
  CHECK(m.result == route_match::outcome::method_not_allowed);
  CHECK(m.allow == "GET, DELETE");
  m = router.match("POST", "/health");
  CHECK(m.result == route_match::outcome::method_not_allowed);
  CHECK(m.allow == "GET");
  CHECK(router.match("get", "/health").result == route_match::outcome::method_not_allowed);
}

TEST_CASE("router: adding the same method and pattern replaces the handler") {
  http_router router;
  std::string hit;
  router.add("GET", "/a/{x}", route_access::open_read, tagged(&hit, "first"));
  router.add("GET", "/a/{y}", route_access::token, tagged(&hit, "second"));
  CHECK(router.size() == 1);
  auto m = router.match("GET", "/a/1");
  REQUIRE(m.result == route_match::outcome::found);
  (*m.handler)(nullptr);
  CHECK(hit == "second");
  CHECK(m.params.count("y") == 1);
}

TEST_CASE("error_response builds the CONTRACT §1 envelope") {
  auto r = error_response(404, "NODE_NOT_FOUND", "no node \"x\"\n");
  CHECK(r.status == 404);
  CHECK(r.content_type == "application/json");
  CHECK(r.body == R"({"code":"NODE_NOT_FOUND","message":"no node \"x\"\n","retriable":false})");
  CHECK(r.headers.empty());

  r = error_response(429, "QUEUE_FULL", "later", true, 1500);
  CHECK(r.body == R"({"code":"QUEUE_FULL","message":"later","retriable":true,"retry_after_ms":1500})");
  REQUIRE(r.headers.size() == 1);
  CHECK(r.headers[0] == std::pair<std::string, std::string>{"Retry-After", "2"});
  CHECK(error_response(503, "X", "m", true, 1000).headers[0].second == "1");
  CHECK(error_response(503, "X", "m", true, 1).headers[0].second == "1");
  CHECK(error_response(503, "X", "m", true, 0).headers[0].second == "0");

  CHECK(json_quote(std::string("a\x01" "b\\", 4)) == "\"a\\u0001b\\\\\"");
  auto j = json_response(201, "{}");
  CHECK(j.status == 201);
  CHECK(j.body == "{}");
}

TEST_CASE("http_exchange: the first answer wins, streams keep order, on_close runs once") {
  auto link = std::make_shared<recording_link>();
  http_request rq;
  rq.headers = {{"x-a", "1"}, {"x-b", "2"}, {"x-a", "3"}};
  auto ex = std::make_shared<http_exchange>(rq, link);
  CHECK(ex->request().header("x-a") == "1");
  CHECK(ex->request().header("x-c").empty());

  int closes = 0;
  ex->on_close([&] { ++closes; });
  CHECK_FALSE(ex->answered());
  ex->respond(json_response(200, "{}"));
  ex->respond(json_response(500, "{}"));
  CHECK_FALSE(ex->start_stream(200, "text/event-stream"));
  CHECK_FALSE(ex->write("x"));
  CHECK(ex->answered());
  CHECK(link->events == std::vector<std::string>{"send 200"});
  CHECK_FALSE(ex->closed());
  ex->mark_closed();
  ex->mark_closed();
  CHECK(ex->closed());
  CHECK(closes == 1);
  ex->on_close([&] { ++closes; });  // after the end: runs at once
  CHECK(closes == 2);

  auto link2 = std::make_shared<recording_link>();
  auto sx = std::make_shared<http_exchange>(http_request{}, link2);
  CHECK_FALSE(sx->write("early"));
  CHECK(sx->start_stream(200, "text/event-stream"));
  CHECK(sx->write("a"));
  CHECK(sx->write(""));  // nothing to send, not an error
  CHECK(sx->write("b"));
  sx->respond(json_response(200, "{}"));  // ignored: the stream won
  sx->finish();
  CHECK_FALSE(sx->write("late"));
  sx->finish();
  CHECK(link2->events == std::vector<std::string>{"head 200", "chunk a", "chunk b", "end"});

  // Writes after the connection is gone report false.
  auto link3 = std::make_shared<recording_link>();
  auto gx = std::make_shared<http_exchange>(http_request{}, link3);
  CHECK(gx->start_stream(200, "text/event-stream"));
  gx->mark_closed();
  CHECK_FALSE(gx->write("x"));
}

TEST_CASE("http_exchange: concurrent responders, exactly one wins") {
  for (int round = 0; round < 50; ++round) {
    auto link = std::make_shared<recording_link>();
    auto ex = std::make_shared<http_exchange>(http_request{}, link);
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i)
      threads.emplace_back([&, i] {
        while (!go.load()) {
        }
        if (i % 2)
          ex->respond(json_response(200 + i, "{}"));
        else if (ex->start_stream(200 + i, "text/plain"))
          ex->finish();
      });
    go = true;
    for (auto& t : threads)
      t.join();
    const bool one_send = link->events.size() == 1 && link->events[0].rfind("send", 0) == 0;
    const bool one_stream = link->events.size() == 2 && link->events[0].rfind("head", 0) == 0 &&
                            link->events[1] == "end";
    CHECK((one_send || one_stream));
  }
}
