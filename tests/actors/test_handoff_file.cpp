#include "actors/node/handoff_file.hpp"

#include <catch2/catch.hpp>

#include <boost/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <sys/stat.h>
#include <unistd.h>

using namespace llorch::handoff;
namespace json = boost::json;

namespace {

json::object valid_object() {
  return json::object{
      {"pool_id", "pool-0"},
      {"replica_id", "r1"},
      {"engine", "llorch"},
      {"engine_version", "0.1.0"},
      {"model", json::object{{"id", "tiny"}, {"path", "/srv/models/tiny.gguf"}}},
      {"endpoint", "127.0.0.1:41234"},
      {"pid", 4242},
      {"device_mask", "0,1"},
      {"slots_total", 4},
      {"ctx_max", 2048},
      {"written_at", "2026-11-29T04:40:00.123Z"},
  };
}

std::string text_of(const json::object& o) {
  return json::serialize(o);
}

const char* const good_name = "pool-0-r1.json";

// The reason for `o` with `key` set to `v` (under model. when `in_model`); "" when accepted.
std::string reason_with(const std::string& key, json::value v, bool in_model = false) {
  auto o = valid_object();
  if (in_model)
    o["model"].as_object()[key] = std::move(v);
  else
    o[key] = std::move(v);
  auto r = parse_handoff(text_of(o), good_name);
  return r ? std::string() : r.error();
}

std::string reason_without(const std::string& key, bool in_model = false) {
  auto o = valid_object();
  if (in_model)
    o["model"].as_object().erase(key);
  else
    o.erase(key);
  auto r = parse_handoff(text_of(o), good_name);
  return r ? std::string() : r.error();
}

struct temp_dir {
  std::string path;
  temp_dir() {
    char tmpl[] = "/tmp/llorch-handoff-file-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~temp_dir() { std::system(("rm -rf '" + path + "'").c_str()); }
};

void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
}

} // namespace

TEST_CASE("handoff_file: a valid file parses into every field") {
  auto o = valid_object();
  o["model"].as_object()["digest"] = "sha256:abc123";
  auto r = parse_handoff(text_of(o), good_name);
  REQUIRE(r);
  const auto& h = r.record();
  CHECK(h.pool_id == "pool-0");
  CHECK(h.replica_id == "r1");
  CHECK(h.engine == "llorch");
  CHECK(h.engine_version == "0.1.0");
  CHECK(h.model_id == "tiny");
  CHECK(h.model_path == "/srv/models/tiny.gguf");
  CHECK(h.model_digest == "sha256:abc123");
  CHECK(h.endpoint == "127.0.0.1:41234");
  CHECK(h.endpoint_host == "127.0.0.1");
  CHECK(h.endpoint_port == 41234);
  CHECK(h.pid == 4242);
  CHECK(h.device_mask == "0,1");
  CHECK(h.slots_total == 4);
  CHECK(h.ctx_max == 2048);
  CHECK(h.written_at == "2026-11-29T04:40:00.123Z");
  CHECK(h.written_at_ms == 1795927200123LL);
}

TEST_CASE("handoff_file: digest is optional, null counts as absent, unknown fields are allowed") {
  CHECK(reason_without("digest", true).empty());
  CHECK(reason_with("digest", nullptr, true).empty());
  CHECK(reason_with("future_field", json::array{1, 2}).empty());
  CHECK(reason_with("endpoint", "[::1]:7000").empty());
  CHECK(reason_with("endpoint", "gpu-node-1.local:7000").empty());
}

TEST_CASE("handoff_file: every required field is required") {
  for (const char* key : {"pool_id", "replica_id", "engine", "engine_version", "model", "endpoint",
                          "pid", "device_mask", "slots_total", "ctx_max", "written_at"}) {
    INFO(key);
    auto why = reason_without(key);
    CHECK(why == std::string("missing field \"") + key + "\"");
  }
  CHECK(reason_without("id", true) == "missing field \"model.id\"");
  CHECK(reason_without("path", true) == "missing field \"model.path\"");
}

TEST_CASE("handoff_file: hostile values are rejected with the field named") {
  struct bad {
    const char* key;
    json::value value;
    bool in_model;
  };
  const std::string long_id(65, 'a');
  std::vector<bad> cases = {
      {"pool_id", 7, false},
      {"pool_id", "", false},
      {"pool_id", "pool/0", false},
      {"pool_id", "../etc", false},
      {"pool_id", "pool 0", false},
      {"pool_id", long_id.c_str(), false},
      {"pool_id", nullptr, false},
      {"replica_id", json::array{}, false},
      {"replica_id", "r\n1", false},
      {"engine", true, false},
      {"engine", "llo rch", false},
      {"engine_version", "", false},
      {"engine_version", std::string(129, 'v').c_str(), false},
      {"engine_version", "1.0\x1b[31m", false},
      {"model", "tiny", false},
      {"model", json::array{}, false},
      {"id", 3, true},
      {"id", "", true},
      {"path", "", true},
      {"path", std::string(4097, 'p').c_str(), true},
      {"path", json::object{}, true},
      {"digest", 12, true},
      {"digest", "sha256: spaced", true},
      {"digest", "", true},
      {"endpoint", "127.0.0.1", false},
      {"endpoint", "127.0.0.1:0", false},
      {"endpoint", "127.0.0.1:65536", false},
      {"endpoint", "127.0.0.1:-1", false},
      {"endpoint", "0.0.0.0:7000", false},
      {"endpoint", ":7000", false},
      {"endpoint", "::1:7000", false},
      {"endpoint", "[::1:7000", false},
      {"endpoint", "host:70x0", false},
      {"endpoint", 7000, false},
      {"pid", 0, false},
      {"pid", -5, false},
      {"pid", 4242.0, false},
      {"pid", "4242", false},
      {"pid", 2147483648LL, false},
      {"pid", 18446744073709551615ULL, false},
      {"pid", true, false},
      {"device_mask", "", false},
      {"device_mask", "0;rm -rf", false},
      {"device_mask", 0, false},
      {"slots_total", 0, false},
      {"slots_total", 1025, false},
      {"slots_total", -1, false},
      {"slots_total", 4.5, false},
      {"slots_total", "4", false},
      {"slots_total", nullptr, false},
      {"ctx_max", 0, false},
      {"ctx_max", -2048, false},
      {"ctx_max", 4294967296LL, false},
      {"ctx_max", 1e9, false},
      {"written_at", "", false},
      {"written_at", "yesterday", false},
      {"written_at", "2026-13-01T00:00:00Z", false},
      {"written_at", "2026-02-29T00:00:00Z", false},
      {"written_at", "2026-11-29T24:00:00Z", false},
      {"written_at", "2026-11-29T04:40:00", false},
      {"written_at", "2026-11-29T04:40:00.Z", false},
      {"written_at", "2026-11-29T04:40:00+0100", false},
      {"written_at", "2026-11-29 04:40:00Z", false},
      {"written_at", 1795927200123LL, false},
  };
  for (auto& c : cases) {
    const std::string shown = json::serialize(c.value);
    INFO(c.key << " = " << shown.substr(0, 80));
    auto why = reason_with(c.key, c.value, c.in_model);
    REQUIRE_FALSE(why.empty());
    const std::string field = std::string(c.in_model ? "model." : "") + c.key;
    CHECK(why.find("field \"" + field + "\"") != std::string::npos);
    CHECK(why.size() < 400); // a hostile value is quoted shortened
    for (char ch : why)
      CHECK(static_cast<unsigned char>(ch) >= 0x20);
  }
}

TEST_CASE("handoff_file: boundary values are accepted") {
  CHECK(reason_with("slots_total", 1).empty());
  CHECK(reason_with("slots_total", 1024).empty());
  CHECK(reason_with("pid", 2147483647).empty());
  CHECK(reason_with("ctx_max", 1).empty());
  auto o = valid_object();
  const std::string id64(64, 'a');
  o["pool_id"] = id64;
  CHECK(parse_handoff(text_of(o), id64 + "-r1.json"));
  CHECK(reason_with("written_at", "2024-02-29T23:59:60+05:30").empty());
  CHECK(reason_with("written_at", "2026-11-29T04:40:00Z").empty());
  CHECK(reason_with("written_at", "2026-11-29T04:40:00.123456789Z").empty());
}

TEST_CASE("handoff_file: RFC 3339 times convert with their offset") {
  CHECK(parse_rfc3339_ms("1970-01-01T00:00:00Z") == 0);
  CHECK(parse_rfc3339_ms("1970-01-01T01:00:00+01:00") == 0);
  CHECK(parse_rfc3339_ms("1969-12-31T23:00:00-01:00") == 0);
  CHECK(parse_rfc3339_ms("2000-03-01T00:00:00.5Z") == 951868800500LL);
  CHECK_FALSE(parse_rfc3339_ms("2100-02-29T00:00:00Z"));
  CHECK(parse_rfc3339_ms("2000-02-29T00:00:00Z"));
}

TEST_CASE("handoff_file: the file name must match pool_id and replica_id") {
  auto text = text_of(valid_object());
  CHECK(parse_handoff(text, "pool-0-r1.json"));
  for (const char* name :
       {"pool-0-r2.json", "pool-1-r1.json", "pool-0.json", "x.json", "pool-0-r1.JSON"}) {
    INFO(name);
    auto r = parse_handoff(text, name);
    REQUIRE_FALSE(r);
    CHECK(r.error().find("does not match its contents") != std::string::npos);
    CHECK(r.error().find("pool-0-r1.json") != std::string::npos);
  }
}

TEST_CASE("handoff_file: not JSON, not an object, not UTF-8, empty, too big") {
  CHECK(parse_handoff("", good_name).error().find("empty") != std::string::npos);
  CHECK(parse_handoff("{\"pool_id\":", good_name).error().find("not valid JSON") !=
        std::string::npos);
  CHECK(parse_handoff("[1,2]", good_name).error().find("JSON object") != std::string::npos);
  CHECK(parse_handoff("\"x\"", good_name).error().find("JSON object") != std::string::npos);
  std::string text = text_of(valid_object());
  std::string bad_utf8 = text;
  bad_utf8.insert(bad_utf8.find("0.1.0"), "\xC0\xAF"); // overlong '/'
  CHECK(parse_handoff(bad_utf8, good_name).error() == "not valid UTF-8");
  std::string big = text;
  big.insert(1, "\"pad\":\"" + std::string(max_file_bytes, 'x') + "\",");
  CHECK(parse_handoff(big, good_name).error().find("larger than 65536") != std::string::npos);
  std::string deep(100, '[');
  CHECK_FALSE(parse_handoff(deep + std::string(100, ']'), good_name));
  // a UTF-8 value that is well-formed is fine
  CHECK(reason_with("engine_version", "1.0 \xC3\xA9t\xC3\xA9").empty());
}

TEST_CASE("handoff_file: UTF-8 validation") {
  CHECK(valid_utf8("plain"));
  CHECK(valid_utf8("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"));
  CHECK_FALSE(valid_utf8("\x80"));
  CHECK_FALSE(valid_utf8("\xC3"));
  CHECK_FALSE(valid_utf8("\xE0\x80\x80"));     // overlong
  CHECK_FALSE(valid_utf8("\xED\xA0\x80"));     // surrogate
  CHECK_FALSE(valid_utf8("\xF4\x90\x80\x80")); // above U+10FFFF
  CHECK_FALSE(valid_utf8("\xFF"));
}

TEST_CASE("handoff_file: which names are candidates") {
  CHECK(is_handoff_candidate("pool-0-0.json"));
  CHECK(is_handoff_candidate("x.json"));
  CHECK_FALSE(is_handoff_candidate(".json"));
  CHECK_FALSE(is_handoff_candidate(".pool-0-0.json"));
  CHECK_FALSE(is_handoff_candidate("pool-0-0.json.tmp.1234"));
  CHECK_FALSE(is_handoff_candidate("pool-0-0.tmp.json"));
  CHECK_FALSE(is_handoff_candidate("pool-0-0.txt"));
  CHECK_FALSE(is_handoff_candidate("rejected"));
  CHECK_FALSE(is_handoff_candidate(""));
}

TEST_CASE("handoff_file: reading refuses what is not a small regular file") {
  temp_dir d;
  const std::string good = d.path + "/" + good_name;
  write_file(good, text_of(valid_object()));
  file_identity id;
  auto r = read_handoff_file(good, &id);
  REQUIRE(r);
  CHECK(r.record().path == good);
  CHECK(id.size == static_cast<std::int64_t>(text_of(valid_object()).size()));
  CHECK(identify(good) == id);

  const std::string fifo = d.path + "/fifo.json";
  REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
  auto start = std::chrono::steady_clock::now();
  auto rf = read_handoff_file(fifo);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(1)); // did not block
  REQUIRE_FALSE(rf);
  CHECK(rf.error() == "is a FIFO, not a regular file");

  const std::string dir = d.path + "/dir.json";
  REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
  CHECK(read_handoff_file(dir).error() == "is a directory, not a regular file");

  const std::string link = d.path + "/link.json";
  REQUIRE(::symlink(good.c_str(), link.c_str()) == 0);
  CHECK(read_handoff_file(link).error().find("symbolic link") != std::string::npos);

  const std::string big = d.path + "/big.json";
  write_file(big, std::string(max_file_bytes + 1, ' '));
  CHECK(read_handoff_file(big).error().find("larger than 65536 bytes (65537 bytes)") !=
        std::string::npos);

  CHECK(read_handoff_file(d.path + "/absent.json").error().find("cannot open") !=
        std::string::npos);
  CHECK_FALSE(identify(d.path + "/absent.json"));
}

// Random damage to a valid file, from byte flips to whole values of the wrong kind: parsing must
// never crash or hang, and whatever it accepts must satisfy every rule.
TEST_CASE("handoff_file: seeded mutation loop") {
  std::mt19937 rng(20261129);
  const std::string base = text_of(valid_object());
  const std::vector<std::string> keys = {"pool_id",     "replica_id", "engine",    "engine_version",
                                         "model",       "endpoint",   "pid",       "device_mask",
                                         "slots_total", "ctx_max",    "written_at"};
  const std::vector<json::value> values = {nullptr,
                                           true,
                                           0,
                                           -1,
                                           1025,
                                           1,
                                           3.25,
                                           "",
                                           "pool-0",
                                           "r1",
                                           std::string(300, 'z').c_str(),
                                           json::array{},
                                           json::object{},
                                           "127.0.0.1:1",
                                           "\xE2\x82\xAC",
                                           9223372036854775807LL,
                                           18446744073709551615ULL,
                                           "2026-11-29T04:40:00Z"};
  auto start = std::chrono::steady_clock::now();
  int accepted = 0, rejected = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string text;
    if (i % 2 == 0) {
      text = base;
      int edits = 1 + static_cast<int>(rng() % 4);
      for (int e = 0; e < edits && !text.empty(); ++e) {
        std::size_t pos = rng() % text.size();
        switch (rng() % 4) {
        case 0:
          text[pos] = static_cast<char>(rng() % 256);
          break;
        case 1:
          text.erase(pos, 1 + rng() % 8);
          break;
        case 2:
          text.insert(pos, 1, static_cast<char>(rng() % 256));
          break;
        default:
          text.resize(pos);
          break;
        }
      }
    } else {
      auto o = valid_object();
      int edits = 1 + static_cast<int>(rng() % 3);
      for (int e = 0; e < edits; ++e) {
        const auto& key = keys[rng() % keys.size()];
        if (rng() % 5 == 0)
          o.erase(key);
        else
          o[key] = values[rng() % values.size()];
      }
      text = text_of(o);
    }
    auto r = parse_handoff(text, good_name);
    if (r) {
      ++accepted;
      const auto& h = r.record();
      CHECK(h.pool_id + "-" + h.replica_id + ".json" == good_name);
      CHECK(h.slots_total >= 1);
      CHECK(h.slots_total <= 1024);
      CHECK(h.pid > 0);
      CHECK(h.ctx_max > 0);
      CHECK(h.endpoint_port > 0);
      CHECK_FALSE(h.engine.empty());
      CHECK_FALSE(h.model_path.empty());
    } else {
      ++rejected;
      CHECK_FALSE(r.error().empty());
    }
  }
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  start)
                .count();
  std::printf("handoff_file mutation loop: 20000 inputs, %d accepted, %d rejected, %lld ms\n",
              accepted, rejected, static_cast<long long>(ms));
  CHECK(rejected > 10000);
  CHECK(ms < 20000);
}
