#include "runtime/metrics.hpp"

#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <thread>

using namespace llorch::metrics;

namespace {

// Runs `promtool check metrics` on `text`; returns its exit status and output.
std::pair<int, std::string> promtool_check(const std::string& text) {
  char templ[] = "/tmp/llorch-metrics-XXXXXX";
  int fd = ::mkstemp(templ);
  REQUIRE(fd >= 0);
  ::close(fd);
  std::string file = templ;
  std::ofstream(file, std::ios::binary) << text;
  std::string out_file = file + ".out";
  std::string cmd = "promtool check metrics < " + file + " > " + out_file + " 2>&1";
  int status = std::system(cmd.c_str());
  std::ifstream in(out_file);
  std::stringstream output;
  output << in.rdbuf();
  std::filesystem::remove(file);
  std::filesystem::remove(out_file);
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return {code, output.str()};
}

// Parses the value of the sample line that starts with `series ` in an exposition.
double sample(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(series + " ", 0) == 0)
      return std::stod(line.substr(series.size() + 1));
  }
  FAIL("no sample " << series << " in:\n" << text);
  return 0;
}

} // namespace

TEST_CASE("exposition of counters, gauges and histograms, exactly") {
  registry reg;
  auto& registrations = reg.counter_family("orchd_node_registrations_total",
                                           "Node registrations by outcome.", {"outcome"});
  registrations.with({"accepted"}).inc();
  registrations.with({"accepted"}).inc(2);
  registrations.with({"bad_token"}).inc();
  auto& online = reg.gauge_family("orchd_nodes_online", "1 while the node is online.", {"node_id"});
  online.with({"gpu-node-2"}).set(0);
  online.with({"gpu-node-1"}).set(1);
  auto& latency = reg.histogram_family("orchd_pool_health_check_duration_seconds",
                                       "Pool health check duration.", {}, {0.005, 0.1, 1});
  latency.with({}).observe(0.005); // on a bound: le is inclusive
  latency.with({}).observe(0.05);
  latency.with({}).observe(2.5);

  CHECK(reg.expose()
        == "# HELP orchd_node_registrations_total Node registrations by outcome.\n"
           "# TYPE orchd_node_registrations_total counter\n"
           "orchd_node_registrations_total{outcome=\"accepted\"} 3\n"
           "orchd_node_registrations_total{outcome=\"bad_token\"} 1\n"
           "# HELP orchd_nodes_online 1 while the node is online.\n"
           "# TYPE orchd_nodes_online gauge\n"
           "orchd_nodes_online{node_id=\"gpu-node-1\"} 1\n"
           "orchd_nodes_online{node_id=\"gpu-node-2\"} 0\n"
           "# HELP orchd_pool_health_check_duration_seconds Pool health check duration.\n"
           "# TYPE orchd_pool_health_check_duration_seconds histogram\n"
           "orchd_pool_health_check_duration_seconds_bucket{le=\"0.005\"} 1\n"
           "orchd_pool_health_check_duration_seconds_bucket{le=\"0.1\"} 2\n"
           "orchd_pool_health_check_duration_seconds_bucket{le=\"1\"} 2\n"
           "orchd_pool_health_check_duration_seconds_bucket{le=\"+Inf\"} 3\n"
           "orchd_pool_health_check_duration_seconds_sum 2.555\n"
           "orchd_pool_health_check_duration_seconds_count 3\n");
}

TEST_CASE("a family without labels exposes its single child at 0 at once") {
  registry reg;
  reg.counter_family("pool_tokens_out_total", "Tokens generated.");
  reg.gauge_family("pool_slots_free", "Free slots.");
  reg.histogram_family("pool_handoff_processing_duration_seconds", "Handoff processing.", {}, {1});
  CHECK(reg.expose()
        == "# HELP pool_handoff_processing_duration_seconds Handoff processing.\n"
           "# TYPE pool_handoff_processing_duration_seconds histogram\n"
           "pool_handoff_processing_duration_seconds_bucket{le=\"1\"} 0\n"
           "pool_handoff_processing_duration_seconds_bucket{le=\"+Inf\"} 0\n"
           "pool_handoff_processing_duration_seconds_sum 0\n"
           "pool_handoff_processing_duration_seconds_count 0\n"
           "# HELP pool_slots_free Free slots.\n"
           "# TYPE pool_slots_free gauge\n"
           "pool_slots_free 0\n"
           "# HELP pool_tokens_out_total Tokens generated.\n"
           "# TYPE pool_tokens_out_total counter\n"
           "pool_tokens_out_total 0\n");
}

TEST_CASE("a labelled family with no children shows only HELP and TYPE") {
  registry reg;
  reg.gauge_family("pool_ready", "1 when the pool is ready.", {"pool_id"});
  CHECK(reg.expose() == "# HELP pool_ready 1 when the pool is ready.\n# TYPE pool_ready gauge\n");
}

TEST_CASE("label values and help texts are escaped") {
  CHECK(escape_label_value("plain") == "plain");
  CHECK(escape_label_value("a\\b") == "a\\\\b");
  CHECK(escape_label_value("say \"hi\"") == "say \\\"hi\\\"");
  CHECK(escape_label_value("two\nlines") == "two\\nlines");
  CHECK(escape_label_value("caf\xc3\xa9") == "caf\xc3\xa9");           // valid UTF-8 kept
  CHECK(escape_label_value("bad\xff") == "bad\xef\xbf\xbd");           // invalid byte replaced
  CHECK(escape_label_value("\xc0\xaf") == "\xef\xbf\xbd\xef\xbf\xbd"); // overlong form rejected
  CHECK(escape_label_value("\xed\xa0\x80") == "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); // surrogate

  registry reg;
  auto& f = reg.gauge_family("g", "Help with \\ and\nnewline and \"quotes\".", {"a", "b"});
  f.with({"x\"y", "p\\q\nr"}).set(2);
  CHECK(reg.expose()
        == "# HELP g Help with \\\\ and\\nnewline and \"quotes\".\n"
           "# TYPE g gauge\n"
           "g{a=\"x\\\"y\",b=\"p\\\\q\\nr\"} 2\n");
}

TEST_CASE("sample values are formatted the way Prometheus parses them") {
  CHECK(format_value(0) == "0");
  CHECK(format_value(42) == "42");
  CHECK(format_value(-0.5) == "-0.5");
  CHECK(format_value(0.1) == "0.1");
  CHECK(format_value(1e21) == "1e+21");
  CHECK(format_value(123456789012.0) == "123456789012");
  CHECK(format_value(std::numeric_limits<double>::quiet_NaN()) == "NaN");
  CHECK(format_value(std::numeric_limits<double>::infinity()) == "+Inf");
  CHECK(format_value(-std::numeric_limits<double>::infinity()) == "-Inf");
  CHECK(format_value(5e-324) == "5e-324");
  // Shortest form that reads back as the same double.
  double third = 1.0 / 3.0;
  CHECK(std::stod(format_value(third)) == third);
}

TEST_CASE("counters only go up, gauges move both ways") {
  counter c;
  c.inc();
  c.inc(0.5);
  CHECK(c.value() == 1.5);
  CHECK_THROWS_AS(c.inc(-1), std::invalid_argument);
  CHECK_THROWS_AS(c.inc(std::numeric_limits<double>::quiet_NaN()), std::invalid_argument);
  CHECK(c.value() == 1.5);

  gauge g;
  g.set(10);
  g.inc(2);
  g.dec(5);
  g.dec();
  CHECK(g.value() == 6);
  g.set(-3.25);
  CHECK(g.value() == -3.25);
}

TEST_CASE("histogram buckets are cumulative, le inclusive, +Inf catches the rest") {
  histogram h({1, 2, 5, std::numeric_limits<double>::infinity()}); // trailing +Inf is implied
  CHECK(h.upper_bounds() == std::vector<double>{1, 2, 5});
  for (double v : {0.5, 1.0, 1.5, 2.0, 4.0, 5.0, 7.0, -3.0})
    h.observe(v);
  h.observe(std::numeric_limits<double>::infinity());
  auto s = h.collect();
  CHECK(s.cumulative == std::vector<uint64_t>{3, 5, 7, 9});
  CHECK(s.count == 9);
  CHECK(std::isinf(s.sum));

  histogram n({1});
  n.observe(std::numeric_limits<double>::quiet_NaN());
  auto ns = n.collect();
  CHECK(ns.cumulative == std::vector<uint64_t>{0, 1});
  CHECK(std::isnan(ns.sum));

  CHECK_THROWS_AS(histogram({2, 1}), std::invalid_argument);
  CHECK_THROWS_AS(histogram({1, 1}), std::invalid_argument);
  CHECK_THROWS_AS(histogram({std::numeric_limits<double>::quiet_NaN()}), std::invalid_argument);
  CHECK_THROWS_AS(histogram({-std::numeric_limits<double>::infinity(), 1}), std::invalid_argument);
  CHECK_NOTHROW(histogram({}));

  CHECK(exponential_buckets(1, 2, 4) == std::vector<double>{1, 2, 4, 8});
  CHECK(linear_buckets(0, 5, 3) == std::vector<double>{0, 5, 10});
  CHECK_THROWS_AS(exponential_buckets(0, 2, 3), std::invalid_argument);
  CHECK_THROWS_AS(linear_buckets(0, 0, 3), std::invalid_argument);
}

TEST_CASE("programming errors throw invalid_argument") {
  registry reg;
  CHECK_THROWS_AS(reg.gauge_family("", "h"), std::invalid_argument);
  CHECK_THROWS_AS(reg.gauge_family("9lives", "h"), std::invalid_argument);
  CHECK_THROWS_AS(reg.gauge_family("has-dash", "h"), std::invalid_argument);
  CHECK_THROWS_AS(reg.gauge_family("no_help", ""), std::invalid_argument);
  CHECK_THROWS_AS(reg.counter_family("requests", "h"), std::invalid_argument); // not *_total
  CHECK_THROWS_AS(reg.gauge_family("g", "h", {"bad-label"}), std::invalid_argument);
  CHECK_THROWS_AS(reg.gauge_family("g", "h", {"__reserved"}), std::invalid_argument);
  CHECK_THROWS_AS(reg.gauge_family("g", "h", {"a", "a"}), std::invalid_argument);
  CHECK_THROWS_AS(reg.histogram_family("h", "h", {"le"}, {1}), std::invalid_argument);
  CHECK_THROWS_AS(reg.histogram_family("h", "h", {}, {3, 2}), std::invalid_argument);
  CHECK(reg.expose().empty()); // nothing half-registered

  auto& g = reg.gauge_family("pool_slots_total", "Slots.", {"pool_id"});
  CHECK_THROWS_AS(g.with({}), std::invalid_argument);
  CHECK_THROWS_AS(g.with({"a", "b"}), std::invalid_argument);
  CHECK_THROWS_AS(g.remove({}), std::invalid_argument);

  // Same definition again: the same family. Different definition: an error.
  CHECK(&reg.gauge_family("pool_slots_total", "Slots.", {"pool_id"}) == &g);
  CHECK_THROWS_AS(reg.gauge_family("pool_slots_total", "Slots.", {"node_id"}),
                  std::invalid_argument);
  CHECK_THROWS_AS(reg.counter_family("pool_slots_total", "Slots."), std::invalid_argument);
  auto& h = reg.histogram_family("lat_seconds", "Latency.", {}, {1, 2});
  CHECK(&reg.histogram_family("lat_seconds", "Latency.", {}, {1, 2}) == &h);
  CHECK_THROWS_AS(reg.histogram_family("lat_seconds", "Latency.", {}, {1, 3}),
                  std::invalid_argument);
  // Series names of a histogram are taken.
  CHECK_THROWS_AS(reg.gauge_family("lat_seconds_count", "x"), std::invalid_argument);
  CHECK_NOTHROW(reg.counter_family("lat_seconds_bucket_total", "x"));
  reg.gauge_family("other_sum", "x");
  CHECK_THROWS_AS(reg.histogram_family("other", "x", {}, {1}), std::invalid_argument);
}

TEST_CASE("children can be removed and cleared") {
  registry reg;
  auto& f = reg.gauge_family("orchd_pools_available", "Pool available.", {"node_id", "pool_id"});
  f.with({"n1", "p1"}).set(1);
  f.with({"n1", "p2"}).set(1);
  f.with({"n2", "p3"}).set(0);
  CHECK(f.size() == 3);
  f.remove({"n1", "p2"});
  f.remove({"absent", "x"}); // nothing to do
  auto text = reg.expose();
  CHECK(text.find("pool_id=\"p2\"") == std::string::npos);
  CHECK(sample(text, "orchd_pools_available{node_id=\"n1\",pool_id=\"p1\"}") == 1);
  CHECK(f.with({"n1", "p2"}).value() == 0); // a fresh child
  f.clear();
  CHECK(f.size() == 0);
  CHECK(reg.expose()
        == "# HELP orchd_pools_available Pool available.\n# TYPE orchd_pools_available gauge\n");

  auto& single = reg.counter_family("x_total", "x");
  single.with({}).inc(4);
  single.clear();
  CHECK(single.size() == 0);
  CHECK(single.with({}).value() == 0);
}

TEST_CASE("updates from many threads while exposing stay exact and well-formed") {
  registry reg;
  auto& requests = reg.counter_family("req_total", "Requests.", {"worker"});
  auto& level = reg.gauge_family("level", "Level.");
  auto& lat = reg.histogram_family("lat_seconds", "Latency.", {"worker"}, {0.25, 0.5, 0.75});
  constexpr int threads = 4;
  constexpr int per_thread = 20000;
  std::atomic<bool> done{false};
  std::atomic<int> scrapes{0};
  std::atomic<int> bad_scrapes{0};

  std::thread scraper([&] {
    do {
      auto text = reg.expose();
      // Every scrape: cumulative buckets never decrease and +Inf equals _count.
      std::istringstream in(text);
      std::string line;
      double previous = -1;
      double inf = -1;
      while (std::getline(in, line)) {
        if (line.rfind("lat_seconds_bucket", 0) == 0) {
          double v = std::stod(line.substr(line.rfind(' ') + 1));
          if (line.find("le=\"0.25\"") != std::string::npos)
            previous = -1;
          if (v < previous)
            bad_scrapes++;
          previous = v;
          if (line.find("+Inf") != std::string::npos)
            inf = v;
        } else if (line.rfind("lat_seconds_count", 0) == 0) {
          if (std::stod(line.substr(line.rfind(' ') + 1)) != inf)
            bad_scrapes++;
        }
      }
      scrapes++;
    } while (!done.load());
  });
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      std::string name = "w" + std::to_string(t);
      while (scrapes.load() == 0) // start once the scraper runs, so the two overlap
        std::this_thread::yield();
      for (int i = 0; i < per_thread; ++i) {
        requests.with({name}).inc(); // lookup each time: exercises the child map under load
        requests.with({"shared"}).inc(0.5);
        level.with({}).inc();
        level.with({}).dec(0.5);
        lat.with({name}).observe((i % 4) * 0.25);
      }
    });
  }
  for (auto& w : workers)
    w.join();
  done = true;
  scraper.join();

  CHECK(scrapes.load() > 0);
  CHECK(bad_scrapes.load() == 0);
  auto text = reg.expose();
  for (int t = 0; t < threads; ++t) {
    std::string name = "w" + std::to_string(t);
    CHECK(sample(text, "req_total{worker=\"" + name + "\"}") == per_thread);
    CHECK(sample(text, "lat_seconds_count{worker=\"" + name + "\"}") == per_thread);
    CHECK(sample(text, "lat_seconds_bucket{worker=\"" + name + "\",le=\"0.25\"}")
          == per_thread / 2);
    CHECK(sample(text, "lat_seconds_sum{worker=\"" + name + "\"}")
          == per_thread / 4 * (0.25 + 0.5 + 0.75));
  }
  CHECK(sample(text, "req_total{worker=\"shared\"}") == threads * per_thread * 0.5);
  CHECK(sample(text, "level") == threads * per_thread * 0.5);
}

TEST_CASE("promtool check metrics accepts every exposition") {
  registry reg;
  auto& online = reg.gauge_family("orchd_nodes_online", "1 while the node is online.", {"node_id"});
  online.with({"gpu-node-1"}).set(1);
  online.with({"weird \"node\"\\\nname\xff"}).set(0);
  reg.gauge_family("orchd_pools_available", "1 while the pool can take work.",
                   {"node_id", "pool_id"});
  auto& hb = reg.counter_family("orchd_node_heartbeats_total", "Heartbeats by outcome.",
                                {"node_id", "outcome"});
  hb.with({"gpu-node-1", "ok"}).inc(12);
  auto& values = reg.gauge_family("special_values", "NaN and infinities.", {"kind"});
  values.with({"nan"}).set(std::numeric_limits<double>::quiet_NaN());
  values.with({"pos"}).set(std::numeric_limits<double>::infinity());
  values.with({"neg"}).set(-std::numeric_limits<double>::infinity());
  values.with({"tiny"}).set(5e-324);
  values.with({"huge"}).set(1.7e308);
  auto& lat = reg.histogram_family("orchd_task_first_token_seconds", "Time to first token.",
                                   {"priority"}, exponential_buckets(0.001, 2, 12));
  lat.with({"interactive"}).observe(0.004);
  lat.with({"batch"}).observe(100);
  reg.counter_family("pool_tokens_out_total", "Tokens.");
  reg.histogram_family("no_buckets_seconds", "Only +Inf.", {}, {});

  auto [code, output] = promtool_check(reg.expose());
  INFO("exposition:\n" << reg.expose() << "\npromtool:\n" << output);
  CHECK(code == 0); // 127 when promtool is missing: a failure, not a skip

  // The check can fail: promtool rejects a malformed exposition.
  auto [bad_code, bad_output] = promtool_check("# TYPE x gauge\nx{a=\"unterminated} 1\n");
  INFO("promtool on bad input:\n" << bad_output);
  CHECK(bad_code != 0);
}
