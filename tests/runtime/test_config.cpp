#include "runtime/config.hpp"

#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

using namespace llorch::config;
namespace fs = std::filesystem;

namespace {

std::string joined(const std::vector<std::string>& errors) {
  std::string out;
  for (const auto& e : errors)
    out += e + "\n";
  return out;
}

// True when one error line starts with "t.json: <path>: " and contains `fragment`.
bool has_error(const std::vector<std::string>& errors, const std::string& path,
               const std::string& fragment, const std::string& file = "t.json") {
  std::string prefix = file + ": " + path + ": ";
  for (const auto& e : errors)
    if (e.rfind(prefix, 0) == 0 && e.find(fragment) != std::string::npos)
      return true;
  return false;
}

#define CHECK_ERROR(errors, path, fragment)                                                        \
  do {                                                                                             \
    INFO("errors:\n" << joined(errors));                                                           \
    CHECK(has_error(errors, path, fragment));                                                      \
  } while (0)

std::vector<std::string> orch_errors(const std::string& text) {
  auto r = parse_orchestratord_config(text, "t.json");
  CHECK_FALSE(r.ok());
  return r.errors;
}

const char* pm_base = R"({"node_id": "gpu-node-1", "orchestrator": {"cluster": "127.0.0.1:7070"})";

// A valid pool-managerd document with `extra` members appended to the top-level object.
std::string pm_with(const std::string& extra) {
  return std::string(pm_base) + (extra.empty() ? "" : ", " + extra) + "}";
}

std::vector<std::string> pm_errors(const std::string& text) {
  auto r = parse_pool_managerd_config(text, "t.json");
  CHECK_FALSE(r.ok());
  return r.errors;
}

// A scratch directory removed at the end of the test.
struct temp_dir {
  fs::path path;
  temp_dir() {
    std::string templ = (fs::temp_directory_path() / "llorch-config-XXXXXX").string();
    path = ::mkdtemp(templ.data());
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string write(const std::string& name, const std::string& content) const {
    auto p = path / name;
    std::ofstream(p, std::ios::binary) << content;
    return p.string();
  }
};

} // namespace

TEST_CASE("endpoints parse host:port, bracketed IPv6 and port 0") {
  auto a = parse_endpoint("0.0.0.0:8080");
  REQUIRE(a);
  CHECK(a->host == "0.0.0.0");
  CHECK(a->port == 8080);
  CHECK(a->is_wildcard());
  CHECK_FALSE(a->is_loopback());

  auto b = parse_endpoint("[::1]:7070");
  REQUIRE(b);
  CHECK(b->host == "::1");
  CHECK(b->to_string() == "[::1]:7070");
  CHECK(b->is_loopback());

  auto c = parse_endpoint("orchestratord:0");
  REQUIRE(c);
  CHECK(c->port == 0);
  CHECK(c->to_string() == "orchestratord:0");
  CHECK(parse_endpoint("127.0.0.2:1")->is_loopback());
  CHECK(parse_endpoint("localhost:1")->is_loopback());
  CHECK_FALSE(parse_endpoint("127.example.com:1")->is_loopback());
  CHECK(parse_endpoint("[::]:65535")->is_wildcard());

  std::string why;
  CHECK_FALSE(parse_endpoint("localhost", &why));
  CHECK(why == "\"host:port\"");
  CHECK_FALSE(parse_endpoint("::1:80", &why));
  CHECK(why.find("IPv6 addresses need brackets") != std::string::npos);
  CHECK_FALSE(parse_endpoint("host:65536", &why));
  CHECK(why == "a port from 0 to 65535 after the colon");
  CHECK_FALSE(parse_endpoint("host:", &why));
  CHECK_FALSE(parse_endpoint("host:8o", &why));
  CHECK_FALSE(parse_endpoint(":80", &why));
  CHECK_FALSE(parse_endpoint("[::1]80", &why));
  CHECK_FALSE(parse_endpoint("[zz]:80", &why));
  CHECK_FALSE(parse_endpoint("bad host:80", &why));
  CHECK_FALSE(parse_endpoint("host:-1", &why));
}

TEST_CASE("an empty orchestratord object gives the runbook defaults") {
  auto r = parse_orchestratord_config("{}", "t.json");
  REQUIRE(r.ok());
  const auto& c = *r.config;
  CHECK(c.http_listen.to_string() == "0.0.0.0:8080");
  CHECK(c.http_body_limit == (1u << 20));
  CHECK(c.cluster.listen_or_connect.to_string() == "0.0.0.0:7070");
  CHECK_FALSE(c.cluster.tls.enabled());
  CHECK(c.cluster.keepalive_ms == 1000);
  CHECK(c.cluster.dead_after_ms == 5000);
  CHECK(c.heartbeat.interval_ms == 10000);
  CHECK(c.heartbeat.timeout_ms == 30000);
  CHECK(c.admission_capacity == 100);
  CHECK(c.admission_policy == "reject");
  CHECK(c.admission_retained_tasks == 10000);
  CHECK(c.placement_strategy == "least-loaded");
  CHECK(c.log_level == "info");
  CHECK(c.cloud_profile);
  CHECK(c.auth.token.empty());
  CHECK_FALSE(c.auth.protect_reads);
}

TEST_CASE("orchestratord config with comments and trailing commas") {
  const char* text = R"(// control plane
  {
    "http": { "listen": "127.0.0.1:0", "body_limit_bytes": 4096, },
    /* cluster link */
    "cluster": { "listen": "[::1]:7071", "keepalive_ms": 100, "dead_after_ms": 1000 },
    "heartbeat": { "interval_ms": 1000, "timeout_ms": 3000 },
    "admission": { "capacity": 5, "policy": "reject", "retained_tasks": 7 },
    "placement": { "strategy": "least-loaded" },
    "log": { "level": "debug" },
    "cloud_profile": false,
    "auth": { "token": "s3cret-token", "protect_reads": true },
  })";
  auto r = parse_orchestratord_config(text, "t.json");
  INFO(joined(r.errors));
  REQUIRE(r.ok());
  const auto& c = *r.config;
  CHECK(c.http_listen == endpoint{"127.0.0.1", 0});
  CHECK(c.http_body_limit == 4096);
  CHECK(c.cluster.listen_or_connect == endpoint{"::1", 7071});
  CHECK(c.cluster.keepalive_ms == 100);
  CHECK(c.cluster.dead_after_ms == 1000);
  CHECK(c.heartbeat.interval_ms == 1000);
  CHECK(c.heartbeat.timeout_ms == 3000);
  CHECK(c.admission_capacity == 5);
  CHECK(c.admission_retained_tasks == 7);
  CHECK(c.log_level == "debug");
  CHECK_FALSE(c.cloud_profile);
  CHECK(c.auth.token == "s3cret-token");
  CHECK(c.auth.protect_reads);
}

TEST_CASE("orchestratord validation names the path and what was expected") {
  struct bad_case {
    const char* text;
    const char* path;
    const char* fragment;
  };
  const bad_case cases[] = {
    {R"({"http": {"listen": "localhost"}})", "$.http.listen",
     "expected \"host:port\", found \"localhost\""},
    {R"({"http": {"listen": 8080}})", "$.http.listen", "expected \"host:port\", found 8080"},
    {R"({"http": {"listen": "h:99999"}})", "$.http.listen", "a port from 0 to 65535"},
    {R"({"http": {"lisen": "h:1"}})", "$.http.lisen",
     "found an unknown key (did you mean \"listen\"?)"},
    {R"({"http": {"body_limit_bytes": 10}})", "$.http.body_limit_bytes",
     "expected an integer from 1024 to 1073741824, found 10"},
    {R"({"http": []})", "$.http", "expected an object, found an array"},
    {R"({"cluster": {"listen": "::1:7070"}})", "$.cluster.listen", "IPv6 addresses need brackets"},
    {R"({"cluster": {"keepalive_ms": 2000, "dead_after_ms": 1000}})", "$.cluster.dead_after_ms",
     "expected more than keepalive_ms (2000), found 1000"},
    {R"({"cluster": {"keepalive_ms": 6000}})", "$.cluster.dead_after_ms",
     "found 5000 (the default)"},
    {R"({"cluster": {"keepalive_ms": 1.5}})", "$.cluster.keepalive_ms",
     "expected an integer from 10 to 600000, found 1.5"},
    {R"({"heartbeat": {"interval_ms": 5000, "timeout_ms": 5000}})", "$.heartbeat.timeout_ms",
     "expected more than interval_ms (5000), found 5000"},
    {R"({"heartbeat": {"interval_ms": -1}})", "$.heartbeat.interval_ms",
     "expected an integer from 10 to 3600000, found -1"},
    {R"({"heartbeat": {"interval_ms": "10s"}})", "$.heartbeat.interval_ms", "found \"10s\""},
    {R"({"heartbeat": {"interval_ms": null}})", "$.heartbeat.interval_ms", "found null"},
    {R"({"admission": {"retained_tasks": -1}})", "$.admission.retained_tasks",
     "expected an integer from 0 to 1000000, found -1"},
    {R"({"admission": {"capacity": 0}})", "$.admission.capacity",
     "expected an integer from 1 to 1000000, found 0"},
    {R"({"admission": {"policy": "drop"}})", "$.admission.policy",
     "expected one of reject, found \"drop\""},
    {R"({"placement": {"strategy": "random"}})", "$.placement.strategy",
     "expected one of least-loaded, found \"random\""},
    {R"({"log": {"level": "verbose"}})", "$.log.level",
     "expected one of trace, debug, info, warn, error, critical, off, found \"verbose\""},
    {R"({"log": "info"})", "$.log", "expected an object, found \"info\""},
    {R"({"cloud_profile": "yes"})", "$.cloud_profile", "expected true or false, found \"yes\""},
    {R"({"auth": {"protect_reads": 1}})", "$.auth.protect_reads",
     "expected true or false, found 1"},
    {R"({"auth": {"token": 42}})", "$.auth.token", "expected a string, found a non-string value"},
    {R"({"node_id": "x"})", "$.node_id", "found an unknown key"},
    {R"({"weird key": 1})", "$[\"weird key\"]", "found an unknown key"},
    {R"({"cluster": {"tls": {"certificate": "/c.pem"}}})", "$.cluster.tls",
     "found only certificate set (missing: key, ca)"},
    {R"({"cluster": {"tls": {"certificate": 1, "key": "", "ca": ""}}})",
     "$.cluster.tls.certificate", "expected a file path, found 1"},
  };
  for (const auto& bad : cases) {
    INFO("config: " << bad.text);
    auto errors = orch_errors(bad.text);
    CHECK_ERROR(errors, bad.path, bad.fragment);
  }
}

TEST_CASE("a secret token is never echoed in an error") {
  auto errors = orch_errors(R"({"auth": {"token": "has space secret"}})");
  CHECK_ERROR(errors, "$.auth.token", "expected 1 to 4096 visible ASCII characters (no spaces)");
  CHECK(joined(errors).find("secret") == std::string::npos);
}

TEST_CASE("every problem is reported, not just the first") {
  auto errors = orch_errors(R"({
    "http": {"listen": "nope"},
    "admission": {"capacity": -3, "polcy": "reject"},
    "log": {"level": "loud"},
    "extra": true
  })");
  CHECK(errors.size() == 5);
  CHECK_ERROR(errors, "$.http.listen", "expected");
  CHECK_ERROR(errors, "$.admission.capacity", "found -3");
  CHECK_ERROR(errors, "$.admission.polcy", "did you mean \"policy\"?");
  CHECK_ERROR(errors, "$.log.level", "found \"loud\"");
  CHECK_ERROR(errors, "$.extra", "found an unknown key");
}

TEST_CASE("hostile input is a clear error, never a crash") {
  SECTION("empty and blank files") {
    CHECK(orch_errors("")
          == std::vector<std::string>{"t.json: $: expected a JSON object, found an empty file"});
    CHECK(orch_errors(" \n\t ")
          == std::vector<std::string>{"t.json: $: expected a JSON object, found an empty file"});
  }
  SECTION("a comment alone is incomplete JSON") {
    auto errors = orch_errors("// nothing here\n");
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].find("t.json:2:1: expected valid JSON") == 0);
    CHECK(errors[0].find("incomplete JSON") != std::string::npos);
  }
  SECTION("syntax errors carry line and column") {
    auto errors = orch_errors("{\n  \"http\": {\n    \"listen\": x\n  }\n}");
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].find("t.json:3:15: expected valid JSON") == 0);
    CHECK(errors[0].find("found 'x'") != std::string::npos);
  }
  SECTION("text after the value") {
    auto errors = orch_errors("{} {}");
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].find("t.json:1:4:") == 0);
    CHECK(errors[0].find("text after the end of the JSON value") != std::string::npos);
  }
  SECTION("top level must be an object") {
    CHECK(orch_errors("[1, 2]")
          == std::vector<std::string>{"t.json: $: expected an object, found an array"});
    CHECK(orch_errors("\"x\"")
          == std::vector<std::string>{"t.json: $: expected an object, found \"x\""});
  }
  SECTION("deep nesting") {
    std::string deep(100000, '[');
    auto errors = orch_errors("{\"http\": " + deep);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].find("too deep") != std::string::npos);
  }
  SECTION("nesting within the limit but in the wrong place") {
    std::string nested =
      "{\"http\": {\"listen\": " + std::string(40, '[') + std::string(40, ']') + "}}";
    CHECK_ERROR(orch_errors(nested), "$.http.listen", "found an array");
  }
  SECTION("huge numbers") {
    CHECK_ERROR(orch_errors(R"({"admission": {"capacity": 1e400}})"), "$.admission.capacity",
                "found a number too large to represent");
    CHECK_ERROR(orch_errors(R"({"admission": {"capacity": 99999999999999999999999}})"),
                "$.admission.capacity", "found 1e+23");
    CHECK_ERROR(orch_errors(R"({"admission": {"capacity": 18446744073709551615}})"),
                "$.admission.capacity", "found 18446744073709551615");
    CHECK_ERROR(orch_errors(R"({"http": {"body_limit_bytes": -9223372036854775808}})"),
                "$.http.body_limit_bytes", "found -9223372036854775808");
  }
  SECTION("integral doubles are integers") {
    auto r = parse_orchestratord_config(R"({"admission": {"capacity": 1e3}})", "t.json");
    REQUIRE(r.ok());
    CHECK(r.config->admission_capacity == 1000);
  }
  SECTION("NUL bytes") {
    std::string raw("{\"log\": {\"level\": \"info\"}}\0", 27);
    auto errors = orch_errors(raw);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].find("found a NUL byte") != std::string::npos);
    std::string in_string("{\"log\": {\"level\": \"in\0fo\"}}", 27);
    errors = orch_errors(in_string);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].find("found a NUL byte") != std::string::npos);
    // An escaped NUL is valid JSON and must be shown escaped, not cut the message.
    CHECK_ERROR(orch_errors(R"({"log": {"level": "in\u0000fo"}})"), "$.log.level",
                "found \"in\\x00fo\"");
  }
  SECTION("invalid UTF-8") {
    auto errors = orch_errors("{\"log\": {\"level\": \"\xff\xfe\"}}");
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].find("t.json:1:20:") == 0);
    CHECK(errors[0].find("the byte \\xff (not valid UTF-8 here)") != std::string::npos);
  }
  SECTION("duplicate keys are reported where they repeat") {
    auto errors =
      orch_errors(R"({"log": {"level": "info", "level": "debug"}, "pools": [{"a": 1, "a": 2}]})");
    CHECK_ERROR(errors, "$.log.level", "expected each key once, found it repeated");
    CHECK_ERROR(errors, "$.pools[0].a", "expected each key once, found it repeated");
  }
  SECTION("control characters in keys are escaped in messages") {
    auto errors = orch_errors("{\"a\\nb\": 1}");
    CHECK_ERROR(errors, "$[\"a\\nb\"]", "found an unknown key");
  }
}

TEST_CASE("pool-managerd config with models and pools") {
  const char* text = R"({
    "node_id": "gpu-node-1",
    "machine_id": "m-123",
    "http": { "listen": "127.0.0.1:9201" },
    "orchestrator": { "cluster": "127.0.0.1:7070", "keepalive_ms": 100, "dead_after_ms": 1000 },
    "heartbeat": { "interval_ms": 1000, "timeout_ms": 3000 },
    "handoff_dir": "/tmp/llama-orch/gpu-node-1/engines",
    "restart": { "max_restarts": 3, "within_s": 10, "backoff_initial_ms": 50, "backoff_max_ms": 500 },
    "models": [ { "id": "tiny", "path": "models/tiny.gguf" } ],
    "pools": [
      { "id": "pool-0", "devices": [0, 1], "slots": 4, "threads": 2, "model": "tiny", "engine": "llorch" },
      { "id": "pool-1", "model": { "id": "other", "path": "/srv/other.gguf" } },
      { "id": "pool-2", "devices": [] },
    ],
    "log": { "level": "warn" },
    "auth": { "token": "abc" }
  })";
  auto r = parse_pool_managerd_config(text, "t.json");
  INFO(joined(r.errors));
  REQUIRE(r.ok());
  const auto& c = *r.config;
  CHECK(c.node_id == "gpu-node-1");
  CHECK(c.machine_id == "m-123");
  CHECK(c.advertise_address == "http://127.0.0.1:9201");
  CHECK(c.orchestrator.listen_or_connect == endpoint{"127.0.0.1", 7070});
  CHECK(c.orchestrator.keepalive_ms == 100);
  CHECK(c.orchestrator.dead_after_ms == 1000);
  CHECK(c.heartbeat.timeout_ms == 3000);
  CHECK(c.handoff_dir == "/tmp/llama-orch/gpu-node-1/engines");
  CHECK(c.restart.max_restarts == 3);
  CHECK(c.restart.within_s == 10);
  CHECK(c.restart.backoff_initial_ms == 50);
  CHECK(c.restart.backoff_max_ms == 500);
  REQUIRE(c.models.size() == 2);
  CHECK(c.models[0].id == "tiny");
  CHECK(c.models[1].id == "other"); // declared inline by pool-1, joins the catalogue
  CHECK(c.models[1].path == "/srv/other.gguf");
  REQUIRE(c.pools.size() == 3);
  CHECK(c.pools[0].devices == std::vector<int>{0, 1});
  CHECK(c.pools[0].slots == 4);
  CHECK(c.pools[0].threads == 2);
  REQUIRE(c.pools[0].model);
  CHECK(c.pools[0].model->path == "models/tiny.gguf");
  CHECK(c.pools[1].slots == 1);
  CHECK(c.pools[1].threads == 0);
  CHECK(c.pools[1].engine == "llorch");
  CHECK(c.pools[1].model->id == "other");
  CHECK_FALSE(c.pools[2].model);
  CHECK(c.pools[2].devices.empty());
  CHECK(c.log_level == "warn");
  CHECK(c.auth.token == "abc");
}

TEST_CASE("pool-managerd defaults") {
  auto r = parse_pool_managerd_config(pm_with(""), "t.json");
  INFO(joined(r.errors));
  REQUIRE(r.ok());
  const auto& c = *r.config;
  CHECK(c.http_listen.to_string() == "0.0.0.0:9200");
  CHECK(c.heartbeat.interval_ms == 10000);
  CHECK(c.heartbeat.timeout_ms == 30000);
  CHECK(c.handoff_dir == "/var/lib/llama-orch/engines");
  CHECK(c.restart.max_restarts == 5);
  CHECK(c.restart.within_s == 60);
  CHECK(c.restart.backoff_initial_ms == 200);
  CHECK(c.restart.backoff_max_ms == 30000);
  CHECK(c.models.empty());
  CHECK(c.pools.empty());
  CHECK_FALSE(c.machine_id.empty());
  std::ifstream machine_id_file("/etc/machine-id");
  std::string expected;
  if (machine_id_file && std::getline(machine_id_file, expected) && !expected.empty())
    CHECK(c.machine_id == expected);
  // Listening on all interfaces: the node advertises its host name.
  char host[256] = {};
  REQUIRE(::gethostname(host, sizeof host - 1) == 0);
  CHECK(c.advertise_address == "http://" + std::string(host) + ":9200");
}

TEST_CASE("port 0 leaves the advertised address to the daemon") {
  auto r = parse_pool_managerd_config(pm_with(R"("http": {"listen": "127.0.0.1:0"})"), "t.json");
  REQUIRE(r.ok());
  CHECK(r.config->advertise_address.empty());
  CHECK(default_advertise_address(r.config->http_listen, 43210) == "http://127.0.0.1:43210");
  CHECK(default_advertise_address(endpoint{"::1", 0}, 9200) == "http://[::1]:9200");
}

TEST_CASE("pool-managerd validation names the path and what was expected") {
  struct bad_case {
    std::string text;
    const char* path;
    const char* fragment;
  };
  const bad_case cases[] = {
    {R"({"orchestrator": {"cluster": "h:1"}})", "$.node_id",
     "found nothing (this key is required)"},
    {R"({"node_id": "gpu-node-1"})", "$.orchestrator", "found nothing (this key is required)"},
    {R"({"node_id": "gpu-node-1", "orchestrator": {}})", "$.orchestrator.cluster",
     "expected \"host:port\", found nothing"},
    {R"({"node_id": "gpu-node-1", "orchestrator": {"cluster": "h:0"}})", "$.orchestrator.cluster",
     "expected a port from 1 to 65535"},
    {R"({"node_id": "gpu node", "orchestrator": {"cluster": "h:1"}})", "$.node_id",
     "expected an id of 1 to 64 characters from A-Z a-z 0-9 . _ -, found \"gpu node\""},
    {R"({"node_id": "", "orchestrator": {"cluster": "h:1"}})", "$.node_id", "found \"\""},
    {R"({"node_id": ")" + std::string(65, 'a') + R"(", "orchestrator": {"cluster": "h:1"}})",
     "$.node_id", "expected an id of 1 to 64"},
    {R"({"node_id": "../etc", "orchestrator": {"cluster": "h:1"}})", "$.node_id",
     "found \"../etc\""},
    {pm_with(R"("machine_id": "")"), "$.machine_id", "expected 1 to 128 visible ASCII characters"},
    {pm_with(R"("advertise_address": "gpu-node-1:9200")"), "$.advertise_address",
     "expected a URL such as"},
    {pm_with(R"("orchestrator": 1)"), "$.orchestrator", "expected each key once"},
    {pm_with(R"("handoff_dir": "")"), "$.handoff_dir",
     "expected a file path without control characters"},
    {pm_with(R"("restart": {"max_restarts": -1})"), "$.restart.max_restarts",
     "expected an integer from 0 to 1000, found -1"},
    {pm_with(R"("restart": {"within_s": 0})"), "$.restart.within_s",
     "expected an integer from 1 to 86400, found 0"},
    {pm_with(R"("restart": {"backoff_initial_ms": 1000, "backoff_max_ms": 10})"),
     "$.restart.backoff_max_ms", "expected at least backoff_initial_ms (1000), found 10"},
    {pm_with(R"("heartbeat": {"interval_ms": 40000})"), "$.heartbeat.timeout_ms",
     "found 30000 (the default)"},
    {pm_with(R"("models": {})"), "$.models",
     "expected an array of {\"id\", \"path\"}, found an object"},
    {pm_with(R"("models": [{"id": "a"}])"), "$.models[0].path",
     "expected a model file path, found nothing"},
    {pm_with(R"("models": [{"path": "/m"}])"), "$.models[0].id",
     "expected a model id, found nothing"},
    {pm_with(R"("models": [{"id": "a", "path": "/m"}, {"id": "a", "path": "/n"}])"),
     "$.models[1].id", "expected a model id not used before in $.models, found \"a\" again"},
    {pm_with(R"("models": [{"id": "a b", "path": "/m"}])"), "$.models[0].id", "found \"a b\""},
    {pm_with(R"("models": [{"id": "a", "path": "/m", "sha": "x"}])"), "$.models[0].sha",
     "found an unknown key"},
    {pm_with(R"("models": [7])"), "$.models[0]", "expected an object, found 7"},
    {pm_with(R"("pools": [{"devices": [0]}])"), "$.pools[0].id",
     "found nothing (this key is required)"},
    {pm_with(R"("pools": [{"id": "p"}, {"id": "p"}])"), "$.pools[1].id",
     "expected a pool id not used before in $.pools, found \"p\" again"},
    {pm_with(R"("pools": [{"id": "p/1"}])"), "$.pools[0].id", "found \"p/1\""},
    {pm_with(R"("pools": [{"id": "p", "devices": [0, -1]}])"), "$.pools[0].devices[1]",
     "expected a GPU device number from 0 to 1023, found -1"},
    {pm_with(R"("pools": [{"id": "p", "devices": [1, 1]}])"), "$.pools[0].devices[1]",
     "expected each device once, found 1 again"},
    {pm_with(R"("pools": [{"id": "p", "devices": 0}])"), "$.pools[0].devices",
     "expected an array of GPU device numbers, found 0"},
    {pm_with(R"("pools": [{"id": "p", "slots": 0}])"), "$.pools[0].slots",
     "expected an integer from 1 to 1024, found 0"},
    {pm_with(R"("pools": [{"id": "p", "threads": 1000}])"), "$.pools[0].threads",
     "expected an integer from 1 to 256, found 1000"},
    {pm_with(R"("pools": [{"id": "p", "engine": "vllm"}])"), "$.pools[0].engine",
     "expected one of llorch, found \"vllm\""},
    {pm_with(R"("pools": [{"id": "p", "model": "missing"}])"), "$.pools[0].model",
     "expected the id of an entry in $.models (none declared), found \"missing\""},
    {pm_with(R"("models": [{"id": "a", "path": "/a"}], "pools": [{"id": "p", "model": "b"}])"),
     "$.pools[0].model", "expected the id of an entry in $.models (a), found \"b\""},
    {pm_with(
       R"("models": [{"id": "a", "path": "/a"}], "pools": [{"id": "p", "model": {"id": "a", "path": "/other"}}])"),
     "$.pools[0].model.path",
     "expected \"/a\" (the path of model \"a\" in $.models), found \"/other\""},
    {pm_with(R"("pools": [{"id": "p", "model": {"id": "a"}}])"), "$.pools[0].model.path",
     "found nothing (this key is required)"},
    {pm_with(R"("pools": [{"id": "p", "model": 3}])"), "$.pools[0].model",
     "expected a model id or an object {\"id\", \"path\"}, found 3"},
    {pm_with(R"("pools": [{"id": "p", "modle": "a"}])"), "$.pools[0].modle",
     "did you mean \"model\"?"},
    {pm_with(R"("orchestrator_": 1)"), "$.orchestrator_", "did you mean \"orchestrator\"?"},
    {std::string(R"({"node_id": "n", "orchestrator": {"cluster": "h:1", "keepalive_ms": 5000}})"),
     "$.orchestrator.dead_after_ms", "expected more than keepalive_ms (5000)"},
    {std::string(
       R"({"node_id": "n", "orchestrator": {"cluster": "h:1", "tls": {"key": "/k", "ca": "/c"}}})"),
     "$.orchestrator.tls", "found only key and ca set (missing: certificate)"},
  };
  for (const auto& bad : cases) {
    INFO("config: " << bad.text);
    auto errors = pm_errors(bad.text);
    CHECK_ERROR(errors, bad.path, bad.fragment);
  }
}

TEST_CASE("TLS files must exist and are named when they do not") {
  temp_dir dir;
  auto cert = dir.write("cert.pem", "-----BEGIN CERTIFICATE-----\n");
  auto key = dir.write("key.pem", "-----BEGIN PRIVATE KEY-----\n");
  auto ca = dir.write("ca.pem", "-----BEGIN CERTIFICATE-----\n");
  auto tls = [](const std::string& c, const std::string& k, const std::string& a) {
    return R"({"cluster": {"tls": {"certificate": ")" + c + R"(", "key": ")" + k + R"(", "ca": ")"
           + a + R"("}}})";
  };
  auto good = parse_orchestratord_config(tls(cert, key, ca), "t.json");
  INFO(joined(good.errors));
  REQUIRE(good.ok());
  CHECK(good.config->cluster.tls.enabled());
  CHECK(good.config->cluster.tls.key == key);

  auto missing = (dir.path / "nope.pem").string();
  auto errors = orch_errors(tls(cert, missing, dir.path.string()));
  CHECK(errors.size() == 2);
  CHECK_ERROR(errors, "$.cluster.tls.key",
              "expected an existing PEM file, found \"" + missing + "\" (no such file)");
  CHECK_ERROR(errors, "$.cluster.tls.ca", "(not a regular file)");

  auto all_empty = parse_orchestratord_config(tls("", "", ""), "t.json");
  REQUIRE(all_empty.ok());
  CHECK_FALSE(all_empty.config->cluster.tls.enabled());

  auto node = parse_pool_managerd_config(
    R"({"node_id": "n", "orchestrator": {"cluster": "h:1", "tls": {"certificate": ")" + cert
      + R"(", "key": ")" + key + R"(", "ca": ")" + ca + R"("}}})",
    "t.json");
  INFO(joined(node.errors));
  REQUIRE(node.ok());
  CHECK(node.config->orchestrator.tls.ca == ca);
}

TEST_CASE("loading files: unreadable files are one clear error") {
  temp_dir dir;
  auto r = load_orchestratord_config((dir.path / "absent.json").string());
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0]
        == (dir.path / "absent.json").string()
             + ": expected a configuration file, found no such file");

  r = load_orchestratord_config(dir.path.string());
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0] == dir.path.string() + ": expected a configuration file, found a directory");

  auto bad = dir.write("bad.json", "{\"log\": {\"level\": 3}}");
  r = load_orchestratord_config(bad);
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0] == bad + ": $.log.level: expected a log level, found 3");

  if (::geteuid() != 0) { // root reads any file, so this only fails for other users
    auto locked = dir.write("locked.json", "{}");
    fs::permissions(locked, fs::perms::none);
    r = load_orchestratord_config(locked);
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].find("cannot be opened (Permission denied)") != std::string::npos);
  }

  auto good = dir.write("pm.json", pm_with(""));
  auto pm = load_pool_managerd_config(good);
  CHECK(pm.ok());
}

TEST_CASE("every file in config/ loads without errors") {
  fs::path dir = fs::path(LLORCH_SOURCE_DIR) / "config";
  REQUIRE(fs::is_directory(dir));
  std::map<std::string, std::size_t> loaded;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".json")
      continue;
    auto name = entry.path().filename().string();
    INFO("file: " << entry.path().string());
    if (name.rfind("orchestratord", 0) == 0) {
      auto r = load_orchestratord_config(entry.path().string());
      INFO(joined(r.errors));
      CHECK(r.ok());
      loaded[name] = r.errors.size();
    } else if (name.rfind("pool-managerd", 0) == 0) {
      auto r = load_pool_managerd_config(entry.path().string());
      INFO(joined(r.errors));
      CHECK(r.ok());
      loaded[name] = r.errors.size();
    } else {
      FAIL("config/" << name << " does not name its role (orchestratord* or pool-managerd*)");
    }
  }
  CHECK(loaded.count("orchestratord.json") == 1);
  CHECK(loaded.count("orchestratord.example.json") == 1);
  CHECK(loaded.count("pool-managerd-1.json") == 1);
  CHECK(loaded.count("pool-managerd-2.json") == 1);
  CHECK(loaded.count("pool-managerd.example.json") == 1);
}

TEST_CASE("the local cluster files describe a loopback cluster") {
  fs::path dir = fs::path(LLORCH_SOURCE_DIR) / "config";
  auto orch = load_orchestratord_config((dir / "orchestratord.json").string());
  REQUIRE(orch.ok());
  CHECK(orch.config->http_listen == endpoint{"127.0.0.1", 8080});
  CHECK(orch.config->cluster.listen_or_connect == endpoint{"127.0.0.1", 7070});
  CHECK(orch.config->heartbeat.interval_ms == 1000);
  CHECK(orch.config->heartbeat.timeout_ms == 3000);
  for (int i = 1; i <= 2; ++i) {
    auto node =
      load_pool_managerd_config((dir / ("pool-managerd-" + std::to_string(i) + ".json")).string());
    REQUIRE(node.ok());
    const auto& c = *node.config;
    CHECK(c.node_id == "gpu-node-" + std::to_string(i));
    CHECK(c.http_listen == endpoint{"127.0.0.1", static_cast<uint16_t>(9200 + i)});
    CHECK(c.orchestrator.listen_or_connect == orch.config->cluster.listen_or_connect);
    // Both ends of the cluster link must use the same middleman timings.
    CHECK(c.orchestrator.keepalive_ms == orch.config->cluster.keepalive_ms);
    CHECK(c.orchestrator.dead_after_ms == orch.config->cluster.dead_after_ms);
    CHECK(c.handoff_dir == "/tmp/llama-orch/" + c.node_id + "/engines");
    CHECK(c.heartbeat.interval_ms == 1000);
    CHECK(c.heartbeat.timeout_ms == 3000);
  }
}

TEST_CASE("environment overrides") {
  std::map<std::string, std::string> env;
  auto getenv_fn = [&](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  orchestratord_config c;
  c.auth.token = "from-file";
  CHECK(apply_env(c, getenv_fn).empty());
  CHECK(c.auth.token == "from-file");
  CHECK(c.cloud_profile);

  env["LLORCH_API_TOKEN"] = "from-env";
  env["ORCHESTRATORD_CLOUD_PROFILE"] = "false";
  CHECK(apply_env(c, getenv_fn).empty());
  CHECK(c.auth.token == "from-env");
  CHECK_FALSE(c.cloud_profile);

  for (const char* yes : {"true", "1", "TRUE"}) {
    env["ORCHESTRATORD_CLOUD_PROFILE"] = yes;
    CHECK(apply_env(c, getenv_fn).empty());
    CHECK(c.cloud_profile);
  }
  env["ORCHESTRATORD_CLOUD_PROFILE"] = "0";
  CHECK(apply_env(c, getenv_fn).empty());
  CHECK_FALSE(c.cloud_profile);

  env["ORCHESTRATORD_CLOUD_PROFILE"] = "yes";
  auto errors = apply_env(c, getenv_fn);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0]
        == "environment ORCHESTRATORD_CLOUD_PROFILE: expected true, false, 1 or 0, found \"yes\"");
  CHECK_FALSE(c.cloud_profile); // unchanged

  env["ORCHESTRATORD_CLOUD_PROFILE"] = "";
  env["LLORCH_API_TOKEN"] = "bad token";
  errors = apply_env(c, getenv_fn);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].find("environment LLORCH_API_TOKEN: expected 1 to 4096 visible ASCII") == 0);
  CHECK(errors[0].find("bad token") == std::string::npos);
  CHECK(c.auth.token == "from-env");

  pool_managerd_config node;
  env["LLORCH_API_TOKEN"] = "node-token";
  CHECK(apply_env(node, getenv_fn).empty());
  CHECK(node.auth.token == "node-token");
  env["LLORCH_API_TOKEN"] = ""; // set but empty counts as unset
  CHECK(apply_env(node, getenv_fn).empty());
  CHECK(node.auth.token == "node-token");
}

TEST_CASE("ids used in URLs and file names") {
  CHECK(is_valid_id("gpu-node-1"));
  CHECK(is_valid_id("a.b_c-D9"));
  CHECK(is_valid_id(std::string(64, 'x')));
  CHECK_FALSE(is_valid_id(std::string(65, 'x')));
  CHECK_FALSE(is_valid_id(""));
  CHECK_FALSE(is_valid_id("a/b"));
  CHECK_FALSE(is_valid_id("a b"));
  CHECK_FALSE(is_valid_id(std::string("a\0b", 3)));
}

TEST_CASE("seeded mutations of the shipped files never crash the parser") {
  // Byte flips, deletions, insertions and truncations of real files: every result is either a
  // valid config or a list of errors that each name the file.
  fs::path dir = fs::path(LLORCH_SOURCE_DIR) / "config";
  std::vector<std::pair<std::string, bool>> seeds; // text, is pool-managerd
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::ifstream in(entry.path(), std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    seeds.emplace_back(text.str(), entry.path().filename().string().rfind("pool-managerd", 0) == 0);
  }
  REQUIRE_FALSE(seeds.empty());
  const char interesting[] = {'{', '}',  '[',  ']', '"', ',', ':',    '\\',   '/',
                              '*', '\0', '\n', '0', '-', 'e', '\xff', '\xc3', ' '};
  uint64_t state = 0x9e3779b97f4a7c15ULL;
  auto next = [&state] { // xorshift64*: fixed seed, same run every time
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 2685821657736338717ULL;
  };
  std::size_t valid = 0, invalid = 0;
  for (int round = 0; round < 20000; ++round) {
    const auto& [seed, is_node] = seeds[next() % seeds.size()];
    std::string text = seed;
    int edits = 1 + static_cast<int>(next() % 4);
    for (int e = 0; e < edits && !text.empty(); ++e) {
      std::size_t at = next() % text.size();
      switch (next() % 4) {
        case 0: text[at] = interesting[next() % sizeof interesting]; break;
        case 1: text.erase(at, 1 + next() % 8); break;
        case 2: text.insert(at, 1, interesting[next() % sizeof interesting]); break;
        case 3: text.resize(at); break;
      }
    }
    std::vector<std::string> errors;
    bool ok = false;
    if (is_node) {
      auto r = parse_pool_managerd_config(text, "m.json");
      ok = r.ok();
      errors = r.errors;
    } else {
      auto r = parse_orchestratord_config(text, "m.json");
      ok = r.ok();
      errors = r.errors;
    }
    CHECK(ok == errors.empty());
    for (const auto& e : errors) {
      CHECK(e.rfind("m.json", 0) == 0);
      CHECK(e.find('\n') == std::string::npos); // one line per problem
      CHECK(e.find('\0') == std::string::npos);
    }
    (ok ? valid : invalid)++;
  }
  CHECK(invalid > 0);
  INFO("valid mutants: " << valid);
}
