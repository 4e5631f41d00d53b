#include "actors/control/node_table.hpp"

#include <catch2/catch.hpp>

using namespace llorch;
using namespace std::chrono_literals;
using ev = node_table::event;

namespace {

node_info make_node(const std::string& id, std::vector<std::string> pool_ids = {"pool-0"}) {
  node_info n;
  n.node_id = id;
  n.machine_id = "m-" + id;
  n.address = "http://127.0.0.1:9200";
  for (auto& p : pool_ids) {
    pool_status s;
    s.pool_id = p;
    s.ready = true;
    s.state = "ready";
    n.pools.push_back(s);
  }
  return n;
}

std::vector<ev::kind> kinds(const std::vector<ev>& events) {
  std::vector<ev::kind> out;
  for (auto& e : events)
    out.push_back(e.what);
  return out;
}

} // namespace

TEST_CASE("registration is an idempotent upsert") {
  node_table t(1000ms, 3000ms);
  auto now = node_table::clock::now();
  std::vector<ev> events;
  auto r = t.upsert(make_node("gpu-node-1"), now, 1000, events);
  CHECK(r.status == 200);
  CHECK(r.next_heartbeat_ms == 1000);
  CHECK(kinds(events) == std::vector<ev::kind>{ev::registered});
  events.clear();
  r = t.upsert(make_node("gpu-node-1", {"pool-0", "pool-1"}), now, 2000, events);
  CHECK(r.status == 200);
  CHECK(kinds(events) == std::vector<ev::kind>{ev::reregistered});
  auto nodes = t.list();
  REQUIRE(nodes.size() == 1);
  CHECK(nodes[0].pools.size() == 2);
  CHECK(nodes[0].pools[1].node_id == "gpu-node-1");
  CHECK(nodes[0].online);
  CHECK(nodes[0].status == "online");
  CHECK(nodes[0].registered_at_ms == 2000);
}

TEST_CASE("invalid registrations are refused and change nothing") {
  node_table t(1000ms, 3000ms);
  std::vector<ev> events;
  auto now = node_table::clock::now();
  CHECK(t.upsert(make_node(""), now, 0, events).status == 400);
  CHECK(t.upsert(make_node("bad id"), now, 0, events).status == 400);
  CHECK(t.upsert(make_node(std::string(65, 'a')), now, 0, events).status == 400);
  CHECK(t.upsert(make_node("ok", {""}), now, 0, events).status == 400);
  CHECK(events.empty());
  CHECK(t.list().empty());
}

TEST_CASE("heartbeats update listed pools and keep the others") {
  node_table t(1000ms, 3000ms);
  std::vector<ev> events;
  auto now = node_table::clock::now();
  t.upsert(make_node("n1", {"pool-0", "pool-1"}), now, 0, events);
  node_heartbeat hb;
  hb.node_id = "n1";
  pool_status p1;
  p1.pool_id = "pool-1";
  p1.ready = false;
  p1.last_error = "engine crashed";
  hb.pools.push_back(p1);
  CHECK(t.heartbeat(hb, now + 500ms, 500, events).status == 200);
  auto n = t.find("n1").node;
  CHECK(n.pools[0].ready);
  CHECK_FALSE(n.pools[1].ready);
  CHECK(n.pools[1].last_error == "engine crashed");
  CHECK(n.last_heartbeat_ms == 500);
  CHECK(t.summary().pools_available == 1);
}

TEST_CASE("a heartbeat from an unknown node is 404 so that it re-registers") {
  node_table t(1000ms, 3000ms);
  std::vector<ev> events;
  node_heartbeat hb;
  hb.node_id = "ghost";
  auto r = t.heartbeat(hb, node_table::clock::now(), 0, events);
  CHECK(r.status == 404);
  CHECK(r.code == "NODE_NOT_FOUND");
  CHECK(t.list().empty());
}

TEST_CASE("a dropped connection makes a node offline at once; a heartbeat brings it back") {
  node_table t(1000ms, 3000ms);
  std::vector<ev> events;
  auto now = node_table::clock::now();
  t.upsert(make_node("n1"), now, 0, events);
  events.clear();
  t.connection_lost("n1", events);
  CHECK(kinds(events) == std::vector<ev::kind>{ev::offline});
  CHECK(events[0].reason == "connection_lost");
  auto n = t.find("n1").node;
  CHECK_FALSE(n.online);
  CHECK(n.status == "offline");
  CHECK(t.summary().nodes_online == 0);
  CHECK(t.summary().pools_available == 0);
  events.clear();
  t.connection_lost("n1", events); // already offline: nothing new
  CHECK(events.empty());
  node_heartbeat hb;
  hb.node_id = "n1";
  t.heartbeat(hb, now + 10ms, 10, events);
  CHECK(kinds(events) == std::vector<ev::kind>{ev::online});
  CHECK(t.find("n1").node.online);
}

TEST_CASE("the sweep counts missed heartbeats and marks silent nodes offline after the timeout") {
  node_table t(1000ms, 3000ms);
  std::vector<ev> events;
  auto t0 = node_table::clock::now();
  t.upsert(make_node("n1"), t0, 0, events);
  events.clear();
  t.sweep(t0 + 1400ms, events);
  CHECK(events.empty()); // within one interval and a half
  t.sweep(t0 + 1600ms, events);
  CHECK(kinds(events) == std::vector<ev::kind>{ev::heartbeat_missed});
  events.clear();
  t.sweep(t0 + 2900ms, events);
  CHECK(kinds(events) == std::vector<ev::kind>{ev::heartbeat_missed});
  CHECK(t.find("n1").node.online);
  events.clear();
  t.sweep(t0 + 3100ms, events);
  CHECK(kinds(events) == std::vector<ev::kind>{ev::offline});
  CHECK(events[0].reason == "heartbeat_timeout");
  CHECK_FALSE(t.find("n1").node.online);
  events.clear();
  t.sweep(t0 + 9000ms, events); // offline nodes are not counted again
  CHECK(events.empty());
}

TEST_CASE("forced deregistration removes the node; a second one is 404") {
  node_table t(1000ms, 3000ms);
  std::vector<ev> events;
  t.upsert(make_node("n1"), node_table::clock::now(), 0, events);
  CHECK(t.remove("n1", events).status == 204);
  CHECK(t.remove("n1", events).status == 404);
  CHECK_FALSE(t.find("n1").found);
}

TEST_CASE("drain stops placement on a node or a pool and survives re-registration") {
  node_table t(1000ms, 3000ms);
  std::vector<ev> events;
  auto now = node_table::clock::now();
  t.upsert(make_node("n1", {"pool-0", "pool-1"}), now, 0, events);
  t.upsert(make_node("n2", {"pool-0"}), now, 0, events);
  CHECK(t.summary().pools_available == 3);
  CHECK(t.drain_pool("pool-0", "n2", 0).status == 202);
  CHECK(t.summary().pools_available == 2);
  CHECK(t.find("n2").node.pools[0].draining);
  CHECK(t.drain_node("n1", 5000).status == 202);
  CHECK(t.find("n1").node.status == "draining");
  CHECK(t.summary().pools_available == 0);
  CHECK(t.summary().nodes_online == 2);
  t.upsert(make_node("n1", {"pool-0", "pool-1"}), now, 0, events);
  CHECK(t.find("n1").node.status == "draining");
  CHECK(t.drain_node("nope", 0).status == 404);
  CHECK(t.drain_pool("nope", "", 0).status == 404);
}
