#include "actors/control/admission_queue_core.hpp"
#include "actors/control/node_table.hpp"
#include "actors/control/placement_policy.hpp"
#include "actors/control/placement_round.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>

using namespace llorch;

namespace {

constexpr std::uint64_t gib = 1ULL << 30;

pool_status make_pool(const std::string& id, const std::string& model, std::uint64_t vram_free,
                      int slots_free = 2, int slots_total = 4) {
  pool_status p;
  p.pool_id = id;
  p.state = "ready";
  p.ready = true;
  p.model_id = model;
  p.models = {model};
  p.slots_total = slots_total;
  p.slots_free = slots_free;
  p.vram_total_bytes = 80 * gib;
  p.vram_free_bytes = vram_free;
  return p;
}

node_info make_node(const std::string& id, std::vector<pool_status> pools) {
  node_info n;
  n.node_id = id;
  n.status = "online";
  n.online = true;
  for (auto& p : pools)
    p.node_id = id;
  n.pools = std::move(pools);
  return n;
}

placement_request req(const std::string& model, const std::string& mode = "auto",
                      const std::string& pool_id = "", const std::string& node_id = "") {
  placement_request r;
  r.model = model;
  r.mode = mode;
  r.pool_id = pool_id;
  r.node_id = node_id;
  return r;
}

std::string where(const placement_decision& d) { return d.node_id + "/" + d.pool_id; }

} // namespace

TEST_CASE("placement: an empty cluster places nothing") {
  std::vector<node_info> none;
  auto d = place(none, req("llama"));
  CHECK_FALSE(d.placed);
  CHECK(d.outcome == "no_pool_for_model");
  CHECK(d.reason.find("llama") != std::string::npos);
  CHECK(d.node_id.empty());
  CHECK(d.pool_id.empty());
  CHECK_FALSE(model_known(none, "llama"));
}

TEST_CASE("placement: a single eligible pool is placed with a reason") {
  std::vector<node_info> nodes{make_node("n1", {make_pool("p0", "llama", 10 * gib, 1, 4)})};
  auto d = place(nodes, req("llama"));
  REQUIRE(d.placed);
  CHECK(d.outcome == "placed");
  CHECK(where(d) == "n1/p0");
  CHECK(d.reason.find("n1/p0") != std::string::npos);
  CHECK(d.reason.find("10.0 GiB") != std::string::npos);
  CHECK(d.reason.find("3/4 slots busy") != std::string::npos);
}

TEST_CASE("placement filter: each availability rule excludes the pool") {
  auto base = [] {
    return std::vector<node_info>{make_node("n1", {make_pool("p0", "llama", 50 * gib)}),
                                  make_node("n2", {make_pool("p0", "llama", 10 * gib)})};
  };
  // n1/p0 wins when nothing is wrong with it.
  REQUIRE(where(place(base(), req("llama"))) == "n1/p0");

  SECTION("node offline") {
    auto nodes = base();
    nodes[0].online = false;
    nodes[0].status = "offline";
    CHECK(where(place(nodes, req("llama"))) == "n2/p0");
  }
  SECTION("node draining") {
    auto nodes = base();
    nodes[0].status = "draining";
    CHECK(where(place(nodes, req("llama"))) == "n2/p0");
  }
  SECTION("pool not ready") {
    auto nodes = base();
    nodes[0].pools[0].ready = false;
    nodes[0].pools[0].state = "loading";
    CHECK(where(place(nodes, req("llama"))) == "n2/p0");
  }
  SECTION("pool draining") {
    auto nodes = base();
    nodes[0].pools[0].draining = true;
    CHECK(where(place(nodes, req("llama"))) == "n2/p0");
  }
  SECTION("no free slot") {
    auto nodes = base();
    nodes[0].pools[0].slots_free = 0;
    CHECK(where(place(nodes, req("llama"))) == "n2/p0");
  }
  SECTION("negative free slots are no free slot") {
    auto nodes = base();
    nodes[0].pools[0].slots_free = -1;
    CHECK(where(place(nodes, req("llama"))) == "n2/p0");
  }
  SECTION("another model loaded") {
    auto nodes = base();
    nodes[0].pools[0].model_id = "mistral";
    CHECK(where(place(nodes, req("llama"))) == "n2/p0");
    CHECK(where(place(nodes, req("mistral"))) == "n1/p0");
  }
  SECTION("avoid_pools excludes the pool id on every node") {
    auto nodes = base();
    nodes[1].pools.push_back(make_pool("p1", "llama", 1 * gib));
    nodes[1].pools.back().node_id = "n2";
    auto r = req("llama");
    r.avoid_pools = {"p0"};
    CHECK(where(place(nodes, r)) == "n2/p1");
  }
}

TEST_CASE("placement filter agrees with node_table::pool_available") {
  // Every combination of the four availability flags: the policy places exactly when the
  // registry calls the pool available.
  for (int bits = 0; bits < 16; ++bits) {
    auto n = make_node("n1", {make_pool("p0", "llama", gib)});
    n.online = (bits & 1) != 0;
    n.status = (bits & 2) != 0 ? "draining" : (n.online ? "online" : "offline");
    n.pools[0].ready = (bits & 4) != 0;
    n.pools[0].draining = (bits & 8) != 0;
    std::vector<node_info> nodes{n};
    INFO("bits " << bits);
    CHECK(place(nodes, req("llama")).placed == node_table::pool_available(n, n.pools[0]));
  }
}

TEST_CASE("placement: which pools serve a model") {
  SECTION("model_id decides when the pool has a loaded model") {
    auto p = make_pool("p0", "llama", gib);
    p.models = {"llama", "mistral"};
    CHECK(pool_serves(p, "llama"));
    CHECK_FALSE(pool_serves(p, "mistral"));
  }
  SECTION("models decides when model_id is empty") {
    auto p = make_pool("p0", "", gib);
    p.models = {"llama", "mistral"};
    CHECK(pool_serves(p, "llama"));
    CHECK(pool_serves(p, "mistral"));
    CHECK_FALSE(pool_serves(p, "phi"));
  }
  SECTION("an empty model is never served") {
    auto p = make_pool("p0", "", gib);
    p.models = {""};
    CHECK_FALSE(pool_serves(p, ""));
    std::vector<node_info> nodes{make_node("n1", {p})};
    auto d = place(nodes, req(""));
    CHECK_FALSE(d.placed);
    CHECK(d.outcome == "invalid_request");
  }
}

TEST_CASE("placement score: most free VRAM first") {
  std::vector<node_info> nodes{
      make_node("a", {make_pool("p0", "llama", 10 * gib, 4, 4)}),
      make_node("b", {make_pool("p0", "llama", 30 * gib, 1, 4)}),
      make_node("c", {make_pool("p0", "llama", 20 * gib, 4, 4)})};
  // b has the most busy slots but the most free VRAM: VRAM comes first.
  CHECK(where(place(nodes, req("llama"))) == "b/p0");
  nodes[1].pools[0].vram_free_bytes = 5 * gib;
  CHECK(where(place(nodes, req("llama"))) == "c/p0");
}

TEST_CASE("placement score: equal VRAM, fewest busy slots") {
  std::vector<node_info> nodes{
      make_node("a", {make_pool("p0", "llama", 10 * gib, 1, 4)}),  // 3 busy
      make_node("b", {make_pool("p0", "llama", 10 * gib, 7, 8)}),  // 1 busy
      make_node("c", {make_pool("p0", "llama", 10 * gib, 2, 2)})}; // 0 busy
  CHECK(where(place(nodes, req("llama"))) == "c/p0");
  nodes[2].pools[0].slots_free = 1; // c: 1 busy, ties with b; "b" < "c" decides
  CHECK(where(place(nodes, req("llama"))) == "b/p0");
}

TEST_CASE("placement score: full ties break on (node_id, pool_id)") {
  std::vector<node_info> nodes{
      make_node("n2", {make_pool("p0", "llama", gib), make_pool("p1", "llama", gib)}),
      make_node("n1", {make_pool("p1", "llama", gib), make_pool("p0", "llama", gib)}),
      make_node("n10", {make_pool("a", "llama", gib)})};
  // Lexicographic: "n1" < "n10" < "n2", then "p0" < "p1".
  CHECK(where(place(nodes, req("llama"))) == "n1/p0");
  nodes[1].pools[1].slots_free = 0; // n1/p0 full
  CHECK(where(place(nodes, req("llama"))) == "n1/p1");
  nodes[1].pools[0].slots_free = 0; // n1 full
  CHECK(where(place(nodes, req("llama"))) == "n10/a");
}

TEST_CASE("placement is deterministic across input order") {
  std::mt19937_64 rng(42);
  std::vector<node_info> nodes;
  // Few distinct VRAM and slot values so that ties are common and the tie-break matters.
  for (int n = 0; n < 40; ++n) {
    std::vector<pool_status> pools;
    for (int p = 0; p < 4; ++p) {
      auto pool = make_pool("pool-" + std::to_string(p), (rng() % 3 == 0) ? "mistral" : "llama",
                            (rng() % 3) * gib, static_cast<int>(rng() % 3), 4);
      pool.ready = rng() % 5 != 0;
      pools.push_back(pool);
    }
    nodes.push_back(make_node("node-" + std::to_string(n), pools));
    nodes.back().online = rng() % 6 != 0;
  }
  for (const char* model : {"llama", "mistral", "phi"}) {
    for (const char* mode : {"auto", "prefer", "pin"}) {
      auto r = req(model, mode, "pool-1", std::string(mode) == "auto" ? "" : "node-7");
      r.avoid_pools = {"pool-3"};
      const auto expected = place(nodes, r);
      auto shuffled = nodes;
      for (int round = 0; round < 20; ++round) {
        std::shuffle(shuffled.begin(), shuffled.end(), rng);
        for (auto& n : shuffled)
          std::shuffle(n.pools.begin(), n.pools.end(), rng);
        auto d = place(shuffled, r);
        INFO(model << " " << mode << " round " << round);
        CHECK(d.placed == expected.placed);
        CHECK(d.outcome == expected.outcome);
        CHECK(where(d) == where(expected));
      }
    }
  }
}

TEST_CASE("placement matches a brute-force sort over random clusters") {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<node_info> nodes;
    const int n_nodes = static_cast<int>(rng() % 6);
    for (int n = 0; n < n_nodes; ++n) {
      std::vector<pool_status> pools;
      const int n_pools = static_cast<int>(rng() % 4);
      for (int p = 0; p < n_pools; ++p) {
        auto pool = make_pool("p" + std::to_string(rng() % 4), rng() % 2 ? "llama" : "mistral",
                              (rng() % 3) * gib, static_cast<int>(rng() % 3) - 0,
                              static_cast<int>(rng() % 3) + 2);
        pool.ready = rng() % 4 != 0;
        pool.draining = rng() % 5 == 0;
        pools.push_back(pool);
      }
      nodes.push_back(make_node("n" + std::to_string(rng() % 8), pools));
      nodes.back().online = rng() % 4 != 0;
      if (rng() % 6 == 0)
        nodes.back().status = "draining";
    }
    auto r = req("llama");
    if (rng() % 3 == 0)
      r.avoid_pools = {"p" + std::to_string(rng() % 4)};

    // Reference: collect every eligible pool, sort by the documented key, take the first.
    struct key {
      std::uint64_t vram;
      std::int64_t busy;
      std::string node, pool;
    };
    std::vector<key> eligible;
    for (auto& n : nodes)
      for (auto& p : n.pools)
        if (n.online && n.status != "draining" && p.ready && !p.draining && p.model_id == "llama" &&
            p.slots_free > 0 &&
            std::find(r.avoid_pools.begin(), r.avoid_pools.end(), p.pool_id) == r.avoid_pools.end())
          eligible.push_back({p.vram_free_bytes, std::int64_t{p.slots_total} - p.slots_free,
                              n.node_id, p.pool_id});
    std::sort(eligible.begin(), eligible.end(), [](const key& a, const key& b) {
      if (a.vram != b.vram)
        return a.vram > b.vram;
      if (a.busy != b.busy)
        return a.busy < b.busy;
      return std::tie(a.node, a.pool) < std::tie(b.node, b.pool);
    });
    auto d = place(nodes, r);
    INFO("trial " << trial);
    REQUIRE(d.placed == !eligible.empty());
    if (d.placed)
      CHECK(where(d) == eligible.front().node + "/" + eligible.front().pool);
  }
}

TEST_CASE("placement outcomes when nothing is placed") {
  SECTION("no pool anywhere serves the model") {
    std::vector<node_info> nodes{make_node("n1", {make_pool("p0", "mistral", gib)})};
    auto d = place(nodes, req("llama"));
    CHECK(d.outcome == "no_pool_for_model");
    CHECK(d.reason == "no pool serves model 'llama'");
  }
  SECTION("serving pools exist but none is available") {
    std::vector<node_info> nodes{make_node("n1", {make_pool("p0", "llama", gib)}),
                                 make_node("n2", {make_pool("p0", "llama", gib)}),
                                 make_node("n3", {make_pool("p0", "llama", gib)})};
    nodes[0].online = false;
    nodes[1].pools[0].ready = false;
    nodes[2].pools[0].draining = true;
    auto d = place(nodes, req("llama"));
    CHECK(d.outcome == "no_pool_for_model");
    CHECK(d.reason.find("3 pools serve it") != std::string::npos);
    CHECK(d.reason.find("1 on an offline node") != std::string::npos);
    CHECK(d.reason.find("1 not ready") != std::string::npos);
    CHECK(d.reason.find("1 draining") != std::string::npos);
    CHECK(model_known(nodes, "llama"));
  }
  SECTION("available pools are all full") {
    std::vector<node_info> nodes{make_node("n1", {make_pool("p0", "llama", gib, 0, 4)}),
                                 make_node("n2", {make_pool("p0", "llama", gib, 0, 2)})};
    auto d = place(nodes, req("llama"));
    CHECK(d.outcome == "no_capacity");
    CHECK(d.reason.find("2 without a free slot") != std::string::npos);
  }
  SECTION("full and avoided: waiting can help, so no_capacity") {
    std::vector<node_info> nodes{make_node("n1", {make_pool("p0", "llama", gib, 0, 4)}),
                                 make_node("n2", {make_pool("p1", "llama", gib, 2, 2)})};
    auto r = req("llama");
    r.avoid_pools = {"p1"};
    CHECK(place(nodes, r).outcome == "no_capacity");
  }
  SECTION("only avoided pools could take it") {
    std::vector<node_info> nodes{make_node("n1", {make_pool("p0", "llama", gib, 3, 4)})};
    auto r = req("llama");
    r.avoid_pools = {"p0"};
    auto d = place(nodes, r);
    CHECK(d.outcome == "all_avoided");
    CHECK(d.reason.find("avoid_pools") != std::string::npos);
  }
  SECTION("an unknown mode and a target-less pin are invalid") {
    std::vector<node_info> nodes{make_node("n1", {make_pool("p0", "llama", gib)})};
    auto d = place(nodes, req("llama", "nearest"));
    CHECK(d.outcome == "invalid_request");
    CHECK(d.reason.find("nearest") != std::string::npos);
    CHECK(place(nodes, req("llama", "pin")).outcome == "invalid_request");
    CHECK(place(nodes, req("llama", "prefer")).outcome == "invalid_request");
  }
}

TEST_CASE("placement mode pin") {
  std::vector<node_info> nodes{
      make_node("n1", {make_pool("p0", "llama", 50 * gib), make_pool("p1", "llama", 40 * gib)}),
      make_node("n2", {make_pool("p0", "llama", 10 * gib), make_pool("p1", "llama", 5 * gib)})};
  CHECK(where(place(nodes, req("llama"))) == "n1/p0");

  SECTION("pool and node: exactly that pool even when another scores higher") {
    auto d = place(nodes, req("llama", "pin", "p1", "n2"));
    CHECK(where(d) == "n2/p1");
    CHECK(d.reason.find("pinned") != std::string::npos);
  }
  SECTION("node only: the best pool of that node") {
    CHECK(where(place(nodes, req("llama", "pin", "", "n2"))) == "n2/p0");
  }
  SECTION("pool only: the best node with that pool id") {
    CHECK(where(place(nodes, req("llama", "pin", "p1"))) == "n1/p1");
    nodes[0].pools[1].slots_free = 0;
    CHECK(where(place(nodes, req("llama", "pin", "p1"))) == "n2/p1");
  }
  SECTION("pinned pool unavailable: not placed, no fallback") {
    nodes[1].pools[1].ready = false;
    auto d = place(nodes, req("llama", "pin", "p1", "n2"));
    CHECK_FALSE(d.placed);
    CHECK(d.outcome == "pinned_unavailable");
    CHECK(d.reason.find("not ready") != std::string::npos);
  }
  SECTION("pinned node offline") {
    nodes[1].online = false;
    auto d = place(nodes, req("llama", "pin", "", "n2"));
    CHECK(d.outcome == "pinned_unavailable");
    CHECK(d.reason.find("offline") != std::string::npos);
  }
  SECTION("pinned pool does not exist") {
    auto d = place(nodes, req("llama", "pin", "p9", "n2"));
    CHECK(d.outcome == "pinned_unavailable");
    CHECK(d.reason.find("does not exist") != std::string::npos);
  }
  SECTION("pinned pool serves another model") {
    nodes[1].pools[1].model_id = "mistral";
    auto d = place(nodes, req("llama", "pin", "p1", "n2"));
    CHECK(d.outcome == "pinned_unavailable");
    CHECK(d.reason.find("does not serve") != std::string::npos);
  }
  SECTION("pinned pool in avoid_pools") {
    auto r = req("llama", "pin", "p1", "n2");
    r.avoid_pools = {"p1"};
    CHECK(place(nodes, r).outcome == "pinned_unavailable");
  }
  SECTION("pinned pool busy: no_capacity, the task waits for it") {
    nodes[1].pools[1].slots_free = 0;
    auto d = place(nodes, req("llama", "pin", "p1", "n2"));
    CHECK_FALSE(d.placed);
    CHECK(d.outcome == "no_capacity");
  }
}

TEST_CASE("placement mode prefer") {
  std::vector<node_info> nodes{
      make_node("n1", {make_pool("p0", "llama", 50 * gib)}),
      make_node("n2", {make_pool("p0", "llama", 10 * gib), make_pool("p1", "llama", 5 * gib)})};

  SECTION("the preferred pool when it passes the filter") {
    auto d = place(nodes, req("llama", "prefer", "p1", "n2"));
    CHECK(where(d) == "n2/p1");
    CHECK(d.reason.find("preferred") != std::string::npos);
  }
  SECTION("the best pool of a preferred node") {
    CHECK(where(place(nodes, req("llama", "prefer", "", "n2"))) == "n2/p0");
  }
  SECTION("falls back to auto when the preferred pool is full") {
    nodes[1].pools[1].slots_free = 0;
    auto d = place(nodes, req("llama", "prefer", "p1", "n2"));
    CHECK(where(d) == "n1/p0");
    CHECK(d.reason.find("fell back") != std::string::npos);
  }
  SECTION("falls back when the preferred node is draining") {
    nodes[1].status = "draining";
    CHECK(where(place(nodes, req("llama", "prefer", "", "n2"))) == "n1/p0");
  }
  SECTION("falls back when the preferred pool does not exist") {
    CHECK(where(place(nodes, req("llama", "prefer", "p7"))) == "n1/p0");
  }
  SECTION("falls back when the preferred pool is avoided") {
    auto r = req("llama", "prefer", "p1", "n2");
    r.avoid_pools = {"p1"};
    CHECK(where(place(nodes, r)) == "n1/p0");
  }
  SECTION("nothing eligible anywhere: the auto outcome") {
    for (auto& n : nodes)
      for (auto& p : n.pools)
        p.slots_free = 0;
    CHECK(place(nodes, req("llama", "prefer", "p1", "n2")).outcome == "no_capacity");
  }
}

TEST_CASE("model_known looks at every pool of every node, online or not") {
  auto p = make_pool("p0", "", gib);
  p.models = {"llama", "mistral"};
  p.ready = false;
  std::vector<node_info> nodes{make_node("n1", {p}),
                               make_node("n2", {make_pool("p0", "phi", gib)})};
  nodes[0].online = false;
  nodes[0].status = "offline";
  CHECK(model_known(nodes, "llama"));
  CHECK(model_known(nodes, "mistral"));
  CHECK(model_known(nodes, "phi"));
  CHECK_FALSE(model_known(nodes, "gemma"));
  CHECK_FALSE(model_known(nodes, ""));
  // A pool whose loaded model is not in its configured list still makes it known.
  nodes[1].pools[0].models.clear();
  CHECK(model_known(nodes, "phi"));
}

namespace {

// Decisions per second for `n_nodes` nodes of 4 pools, half of them serving the requested model.
void bench_placement(int n_nodes, int ms) {
  std::mt19937_64 rng(1);
  std::vector<node_info> nodes;
  for (int n = 0; n < n_nodes; ++n) {
    std::vector<pool_status> pools;
    for (int p = 0; p < 4; ++p)
      pools.push_back(make_pool("pool-" + std::to_string(p), p % 2 ? "llama-3-8b" : "mistral-7b",
                                (rng() % 80) * gib, static_cast<int>(rng() % 5), 4));
    nodes.push_back(make_node("gpu-node-" + std::to_string(n), pools));
  }
  auto r = req("llama-3-8b");
  r.avoid_pools = {"pool-9"};
  const auto expected = place(nodes, r);
  REQUIRE(expected.placed);

  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  long decisions = 0;
  bool same = true;
  while (clock::now() - start < std::chrono::milliseconds(ms)) {
    for (int i = 0; i < 20; ++i) {
      auto d = place(nodes, r);
      same = same && d.pool_id == expected.pool_id && d.node_id == expected.node_id;
      ++decisions;
    }
  }
  const double secs = std::chrono::duration<double>(clock::now() - start).count();
  CHECK(same);
  std::printf("placement benchmark: %ld decisions in %.3f s = %.0f decisions/s over %d nodes x 4 "
              "pools (%.2f us each)\n",
              decisions, secs, static_cast<double>(decisions) / secs, n_nodes,
              secs * 1e6 / static_cast<double>(decisions));
}

} // namespace

TEST_CASE("placement benchmark: decisions per second over 1,000 nodes x 4 pools") {
  bench_placement(1000, 300);
  bench_placement(10, 100);
}

// --- placement_round ----------------------------------------------------------------------------

TEST_CASE("placement round: placements take slots, so a pool is never oversubscribed") {
  std::vector<node_info> nodes{make_node("n1", {make_pool("p0", "llama", 40 * gib, 2, 4)}),
                               make_node("n2", {make_pool("p0", "llama", 40 * gib, 1, 4)})};
  placement_round round(nodes);
  CHECK(round.any_free_slot());
  // Equal VRAM: n1 (2 busy) beats n2 (3 busy); then both have 3 busy and "n1" < "n2" decides;
  // then n1 is full.
  CHECK(where(round.place(req("llama"))) == "n1/p0");
  CHECK(where(round.place(req("llama"))) == "n1/p0");
  CHECK(where(round.place(req("llama"))) == "n2/p0");
  const auto& d = round.place(req("llama"));
  CHECK_FALSE(d.placed);
  CHECK(d.outcome == "no_capacity");
  CHECK(round.placements() == 3);
  CHECK_FALSE(round.any_free_slot()); // a pass stops looking at the queue here
  CHECK(round.view()[0].pools[0].slots_free == 0);
  CHECK(round.view()[1].pools[0].slots_free == 0);
  // The snapshot given to the round is not touched.
  CHECK(nodes[0].pools[0].slots_free == 2);
}

TEST_CASE("placement round: fewest busy slots spreads a burst over equal pools") {
  std::vector<node_info> nodes{make_node("a", {make_pool("p0", "llama", 40 * gib, 4, 4)}),
                               make_node("b", {make_pool("p0", "llama", 40 * gib, 4, 4)})};
  placement_round round(nodes);
  std::vector<std::string> got;
  for (int i = 0; i < 8; ++i)
    got.push_back(round.place(req("llama")).node_id);
  CHECK(got == std::vector<std::string>{"a", "b", "a", "b", "a", "b", "a", "b"});
  CHECK_FALSE(round.place(req("llama")).placed);
}

TEST_CASE("placement round: a failed request is evaluated once per round") {
  std::vector<node_info> nodes{make_node("n1", {make_pool("p0", "llama", gib, 1, 4)})};
  placement_round round(nodes);
  for (int i = 0; i < 5; ++i) {
    const auto& d = round.place(req("mistral"));
    CHECK(d.outcome == "no_pool_for_model");
  }
  CHECK(round.evaluations() == 1);
  // Another avoid list or target is another request.
  auto r = req("llama");
  r.avoid_pools = {"p0"};
  CHECK(round.place(r).outcome == "all_avoided");
  CHECK(round.evaluations() == 2);
  CHECK(round.place(req("llama", "pin", "p0", "n9")).outcome == "pinned_unavailable");
  CHECK(round.place(req("llama")).placed);
  CHECK(round.evaluations() == 4);
  CHECK(round.place(req("llama")).outcome == "no_capacity");
  CHECK(round.place(req("llama")).outcome == "no_capacity");
  CHECK(round.evaluations() == 5);
}

TEST_CASE("placement round drains an admission queue without head-of-line blocking") {
  // llama: 3 free slots over two nodes; mistral: known but its only pool is loading.
  auto loading = make_pool("p1", "mistral", 70 * gib, 4, 4);
  loading.ready = false;
  std::vector<node_info> nodes{
      make_node("n1", {make_pool("p0", "llama", 20 * gib, 2, 4), loading}),
      make_node("n2", {make_pool("p0", "llama", 10 * gib, 1, 4)})};
  admission_queue_core q(100);
  std::uint64_t id = 0;
  for (int i = 0; i < 40; ++i) { // 40 mistral tasks ahead of everything
    queued_task t;
    t.task_id = id++;
    t.model = "mistral";
    q.push(t);
  }
  for (int i = 0; i < 5; ++i) {
    queued_task t;
    t.task_id = id++;
    t.model = "llama";
    t.interactive = i % 2 == 0;
    q.push(t);
  }

  placement_round round(nodes);
  std::vector<std::pair<std::uint64_t, std::string>> dispatched;
  placement_decision last;
  while (auto t = q.pop_placeable([&](const queued_task& task) {
    const auto& d = round.place(req(task.model));
    if (d.placed)
      last = d;
    return d.placed;
  }))
    dispatched.emplace_back(t->task_id, where(last));

  // The interactive llama tasks 40, 42, 44 pass the 40 mistral tasks and take the three slots;
  // the batch llama tasks 41 and 43 wait behind every interactive task.
  using p = std::pair<std::uint64_t, std::string>;
  CHECK(dispatched == std::vector<p>{{40, "n1/p0"}, {42, "n1/p0"}, {44, "n2/p0"}});
  CHECK(q.size() == 42);
  CHECK(q.depth(true) == 40);
  CHECK(q.position(0) == 0);
  CHECK(q.position(41) == 40);
  CHECK(q.position(43) == 41);
  // Three placements, plus one failed evaluation for mistral and one for llama once full.
  CHECK(round.placements() == 3);
  CHECK(round.evaluations() == 5);
  CHECK(model_known(nodes, "mistral"));
}
