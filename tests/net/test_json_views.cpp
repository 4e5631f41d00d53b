#include "net/json_views.hpp"

#include <catch2/catch.hpp>

using namespace llorch;
using namespace llorch::net;

TEST_CASE("the runbook's registration body parses") {
  node_info n;
  std::string error;
  REQUIRE(parse_registration(R"({"node_id":"test","machine_id":"test","address":"http://test:9200",)"
                             R"("pools":[],"capabilities":{},"version":"0.1.0"})",
                             n, error));
  CHECK(n.node_id == "test");
  CHECK(n.address == "http://test:9200");
  CHECK(n.version == "0.1.0");
  CHECK(n.pools.empty());
}

TEST_CASE("registration bodies with pools and GPUs parse with their types checked") {
  node_info n;
  std::string error;
  REQUIRE(parse_registration(
    R"({"node_id":"n","capabilities":{"cpu_cores":8,"ram_total_bytes":1024,)"
    R"("gpus":[{"device_id":"0","name":"H200","vram_total_bytes":150000000000,"compute_capability":"9.0"}]},)"
    R"("pools":[{"pool_id":"pool-0","ready":true,"slots_total":4,"slots_free":3,"models":["m"]}]})",
    n, error));
  CHECK(n.capabilities.gpus.at(0).vram_total_bytes == 150000000000ULL);
  CHECK(n.pools.at(0).state == "ready");
  CHECK(n.pools.at(0).slots_free == 3);
  CHECK(n.pools.at(0).models == std::vector<std::string>{"m"});
}

TEST_CASE("bad registration bodies name the offending field") {
  auto err = [](const char* body) {
    node_info n;
    std::string error;
    CHECK_FALSE(parse_registration(body, n, error));
    return error;
  };
  CHECK_THAT(err("{"), Catch::Contains("not valid JSON"));
  CHECK_THAT(err("[]"), Catch::Contains("must be a JSON object"));
  CHECK_THAT(err("{}"), Catch::Contains("node_id is required"));
  CHECK_THAT(err(R"({"node_id":1})"), Catch::Contains("node_id must be a string"));
  CHECK_THAT(err(R"({"node_id":"n","pools":[{"pool_id":"p","slots_total":-1}]})"),
             Catch::Contains("pools[0].slots_total is out of range"));
  CHECK_THAT(err(R"({"node_id":"n","pools":[1]})"), Catch::Contains("pools[0] must be an object"));
  CHECK_THAT(err(R"({"node_id":"n","capabilities":{"gpus":[{"name":7}]}})"),
             Catch::Contains("capabilities.gpus[0].name must be a string"));
  CHECK_THAT(err(R"({"node_id":"n","pools":[{"pool_id":"p","ready":"yes"}]})"),
             Catch::Contains("pools[0].ready must be true or false"));
  CHECK_THAT(err(std::string(1000, '[').c_str()), Catch::Contains("not valid JSON"));
  CHECK_THAT(err(R"({"node_id":"n","capabilities":{"cpu_cores":1e400}})"),
             Catch::Contains("capabilities.cpu_cores must be an integer"));
}

TEST_CASE("heartbeat bodies: the runbook's, a bare one, and bad ones") {
  node_heartbeat hb;
  std::string error;
  REQUIRE(parse_heartbeat(R"({"timestamp":"2025-10-01T00:00:00Z","pools":[]})", "gpu-node-1", hb,
                          error));
  CHECK(hb.node_id == "gpu-node-1");
  REQUIRE(parse_heartbeat("", "n", hb, error));
  REQUIRE(parse_heartbeat(R"({"timestamp":1700000000000,"rtt_ms":3})", "n", hb, error));
  CHECK(hb.rtt_ms == 3);
  CHECK_FALSE(parse_heartbeat(R"({"timestamp":[]})", "n", hb, error));
  CHECK_THAT(error, Catch::Contains("timestamp must be a string or a number"));
}

TEST_CASE("nodes serialise to the CONTRACT's Node shape") {
  node_info n;
  n.node_id = "n";
  n.online = true;
  n.status = "online";
  pool_status p;
  p.pool_id = "pool-0";
  p.node_id = "n";
  n.pools.push_back(p);
  auto text = to_json(std::vector<node_info>{n}, 1);
  CHECK_THAT(text, Catch::StartsWith(R"({"count":1,"nodes":[{"node_id":"n",)"));
  CHECK_THAT(text, Catch::Contains(R"("capabilities":{"gpus":[],"cpu_cores":0,"ram_total_bytes":0})"));
  CHECK_THAT(text, Catch::Contains(R"("last_error":null)"));
  CHECK_THAT(text, Catch::Contains(R"("ready":false,"draining":false)"));
}
