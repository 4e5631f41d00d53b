#include "actors/node/handoff_messages.hpp"
#include "actors/node/handoff_watcher.hpp"
#include "actors/node/pool_metrics.hpp"
#include "runtime/log.hpp"
#include "runtime/metrics.hpp"

#include <catch2/catch.hpp>

#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <dirent.h>
#include <fstream>
#include <mutex>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

using namespace llorch;
using namespace std::chrono_literals;
using handoff::handoff_record;
using clock_type = std::chrono::steady_clock;
namespace json = boost::json;

namespace {

void quiet_logs() {
  static bool done = false;
  if (!done)
    log::init("test_handoff", log::level::critical);
  done = true;
}

// What the sink actor received, in order.
struct recorder {
  std::mutex m;
  std::condition_variable cv;
  std::vector<handoff_record> records;
  std::vector<clock_type::time_point> record_times;
  std::vector<std::pair<std::string, std::string>> removed;

  template <class Pred>
  bool wait(Pred pred, std::chrono::milliseconds limit = 3000ms) {
    std::unique_lock<std::mutex> l(m);
    return cv.wait_for(l, limit, [&] { return pred(); });
  }
  std::size_t record_count() {
    std::lock_guard<std::mutex> l(m);
    return records.size();
  }
};

caf::behavior sink_actor(caf::event_based_actor*, std::shared_ptr<recorder> rec) {
  return {
      [rec](handoff_atom, const handoff_record& r) {
        std::lock_guard<std::mutex> l(rec->m);
        rec->records.push_back(r);
        rec->record_times.push_back(clock_type::now());
        rec->cv.notify_all();
      },
      [rec](handoff_removed_atom, const std::string& pool, const std::string& replica) {
        std::lock_guard<std::mutex> l(rec->m);
        rec->removed.emplace_back(pool, replica);
        rec->cv.notify_all();
      },
  };
}

std::string make_temp_dir() {
  char tmpl[] = "/tmp/llorch-handoff-watch-XXXXXX";
  REQUIRE(::mkdtemp(tmpl) != nullptr);
  return tmpl;
}

std::string handoff_text(const std::string& pool, const std::string& replica, int slots = 4) {
  json::object o{
      {"pool_id", pool},
      {"replica_id", replica},
      {"engine", "llorch"},
      {"engine_version", "0.1.0"},
      {"model", json::object{{"id", "tiny"}, {"path", "/srv/models/tiny.gguf"}}},
      {"endpoint", "127.0.0.1:41234"},
      {"pid", 4242},
      {"device_mask", "cpu"},
      {"slots_total", slots},
      {"ctx_max", 256},
      {"written_at", "2026-11-29T04:40:00.123Z"},
  };
  return json::serialize(o);
}

void write_plain(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
}

// As an engine does it: a temp file in the same directory, then rename.
void write_atomic(const std::string& dir, const std::string& name, const std::string& text) {
  const std::string tmp = dir + "/" + name + ".tmp." + std::to_string(::getpid());
  write_plain(tmp, text);
  REQUIRE(::rename(tmp.c_str(), (dir + "/" + name).c_str()) == 0);
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..")
        out.push_back(n);
    }
    ::closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// For conditions nobody signals (the file system, the watcher's answers): poll.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = 3000ms) {
  auto until = clock_type::now() + limit;
  while (!pred()) {
    if (clock_type::now() > until)
      return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

bool exists(const std::string& path) {
  struct stat sb {};
  return ::lstat(path.c_str(), &sb) == 0;
}

double processed(metrics::registry& r, const std::string& pool, const std::string& outcome) {
  return r
      .counter_family("pool_handoff_files_processed_total", "Handoff files processed, by outcome",
                      {"pool_id", "outcome"})
      .with({pool, outcome})
      .value();
}

std::uint64_t duration_count(metrics::registry& r) {
  return r
      .histogram_family("pool_handoff_processing_duration_seconds",
                        "Time from a handoff file appearing to its pool being ready", {},
                        {0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5})
      .with({})
      .collect()
      .count;
}

struct fixture {
  std::string root = make_temp_dir();
  std::shared_ptr<recorder> rec = std::make_shared<recorder>();
  std::shared_ptr<metrics::registry> registry = std::make_shared<metrics::registry>();
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  caf::actor sink;
  caf::actor watcher;

  fixture() {
    quiet_logs();
    cfg.add_message_types<caf::id_block::llorch_node>();
    sys = std::make_unique<caf::actor_system>(cfg);
    sink = sys->spawn(sink_actor, rec);
    // As in pool-managerd: the pool metrics exist first; the watcher must define its families
    // identically or the registry throws.
    export_pool_metrics(*registry, {});
  }
  ~fixture() {
    if (watcher)
      caf::anon_send_exit(watcher, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(sink, caf::exit_reason::user_shutdown);
    watcher = nullptr;
    sink = nullptr;
    sys.reset();
    std::system(("chmod -R u+rwx '" + root + "' 2>/dev/null; rm -rf '" + root + "'").c_str());
  }

  // Spawns the watcher and waits until its first scan is done; returns (usable, watching).
  std::pair<bool, bool> start(const std::string& dir, std::chrono::milliseconds rescan,
                              std::set<std::string> pools = {"pool-0"}) {
    handoff_watcher_settings s;
    s.handoff_dir = dir;
    s.known_pools = std::move(pools);
    s.rescan_interval = rescan;
    watcher = spawn_handoff_watcher(*sys, s, sink, registry);
    return status();
  }

  std::pair<bool, bool> status() {
    caf::scoped_actor self{*sys};
    std::pair<bool, bool> out{false, false};
    self->request(watcher, caf::infinite, caf::get_atom::value)
        .receive(
            [&](bool usable, bool watching) {
              out = {usable, watching};
            },
            [&](const caf::error&) { FAIL("the watcher did not answer"); });
    return out;
  }
};

} // namespace

TEST_CASE("handoff_watcher: a missing directory is created and a new file arrives within 2 s") {
  fixture f;
  const std::string dir = f.root + "/var/lib/engines";
  // A long rescan interval: only inotify can deliver the file in time.
  auto [usable, watching] = f.start(dir, 60s);
  CHECK(usable);
  CHECK(watching);
  CHECK(exists(dir + "/rejected"));

  auto t0 = clock_type::now();
  write_atomic(dir, "pool-0-0.json", handoff_text("pool-0", "0"));
  REQUIRE(f.rec->wait([&] { return f.rec->records.size() == 1; }, 2000ms));
  auto latency = std::chrono::duration<double, std::milli>(f.rec->record_times[0] - t0).count();
  std::printf("handoff_watcher: rename to record at the sink: %.3f ms\n", latency);
  CHECK(latency < 2000);
  const auto& r = f.rec->records[0];
  CHECK(r.pool_id == "pool-0");
  CHECK(r.replica_id == "0");
  CHECK(r.slots_total == 4);
  CHECK(r.endpoint_port == 41234);
  CHECK(r.path == dir + "/pool-0-0.json");
  CHECK(processed(*f.registry, "pool-0", "valid") == 1);
  CHECK(duration_count(*f.registry) == 1);
  const std::string exposition = f.registry->expose();
  CHECK(exposition.find(
            "pool_handoff_files_processed_total{pool_id=\"pool-0\",outcome=\"valid\"} 1\n") !=
        std::string::npos);
  CHECK(exposition.find("pool_handoff_processing_duration_seconds_count 1\n") != std::string::npos);
  // The second replica, written in place (open, write, close) rather than renamed.
  write_plain(dir + "/pool-0-1.json", handoff_text("pool-0", "1"));
  REQUIRE(f.rec->wait([&] { return f.rec->records.size() == 2; }, 2000ms));
  CHECK(f.rec->records[1].replica_id == "1");
  CHECK(list_dir(dir + "/rejected").empty());
}

TEST_CASE("handoff_watcher: files present before the start are found by the first scan") {
  fixture f;
  const std::string dir = f.root + "/handoff";
  REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
  write_atomic(dir, "pool-0-0.json", handoff_text("pool-0", "0"));
  write_plain(dir + "/pool-0-1.json", "{");
  // No inotify event will come for these, and the next rescan is a minute away.
  f.start(dir, 60s);
  REQUIRE(f.rec->wait([&] { return f.rec->records.size() == 1; }, 2000ms));
  CHECK(f.rec->records[0].replica_id == "0");
  CHECK(exists(dir + "/rejected/pool-0-1.json"));
  CHECK(processed(*f.registry, "pool-0", "invalid") == 1);
}

TEST_CASE("handoff_watcher: files present at start, unchanged files, rewrites and deletions") {
  fixture f;
  const std::string dir = f.root + "/handoff";
  REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
  write_atomic(dir, "pool-0-0.json", handoff_text("pool-0", "0"));
  write_atomic(dir, "pool-0-1.json", handoff_text("pool-0", "1"));
  // Not handoff files: left alone, neither read nor rejected.
  write_plain(dir + "/pool-0-2.json.tmp.99", "{half");
  write_plain(dir + "/.pool-0-3.json", "{half");
  write_plain(dir + "/notes.txt", "hello");

  f.start(dir, 50ms);
  REQUIRE(f.rec->wait([&] { return f.rec->records.size() == 2; }, 2000ms));
  std::this_thread::sleep_for(500ms); // about ten rescans
  CHECK(f.rec->record_count() == 2);
  CHECK(processed(*f.registry, "pool-0", "valid") == 2);
  CHECK(list_dir(dir) == std::vector<std::string>{".pool-0-3.json", "notes.txt", "pool-0-0.json",
                                                  "pool-0-1.json", "pool-0-2.json.tmp.99",
                                                  "rejected"});
  CHECK(list_dir(dir + "/rejected").empty());

  // A replica that restarts rewrites its file: the new contents are sent again.
  write_atomic(dir, "pool-0-0.json", handoff_text("pool-0", "0", 8));
  REQUIRE(f.rec->wait([&] { return f.rec->records.size() == 3; }));
  CHECK(f.rec->records[2].slots_total == 8);

  REQUIRE(::unlink((dir + "/pool-0-1.json").c_str()) == 0);
  REQUIRE(f.rec->wait([&] { return f.rec->removed.size() == 1; }));
  CHECK(f.rec->removed[0] == std::make_pair(std::string("pool-0"), std::string("1")));
  std::this_thread::sleep_for(200ms);
  std::lock_guard<std::mutex> l(f.rec->m);
  CHECK(f.rec->records.size() == 3);
  CHECK(f.rec->removed.size() == 1);
}

TEST_CASE("handoff_watcher: bad files are quarantined and counted, and good ones still arrive") {
  fixture f;
  const std::string dir = f.root + "/handoff";
  auto [usable, watching] = f.start(dir, 60s, {"pool-0", "pool-1"});
  REQUIRE(usable);
  REQUIRE(watching);

  std::string wrong_types = handoff_text("pool-0", "b");
  wrong_types.replace(wrong_types.find("\"slots_total\":4"), 15, "\"slots_total\":\"4\"");
  std::string big = handoff_text("pool-0", "d");
  big.insert(1, "\"pad\":\"" + std::string(70000, 'x') + "\",");

  write_atomic(dir, "pool-0-a.json", "{\"pool_id\": \"pool-0\", ");    // malformed
  write_atomic(dir, "pool-0-b.json", wrong_types);                     // wrong type
  write_atomic(dir, "pool-9-0.json", handoff_text("pool-9", "0"));     // foreign pool
  write_atomic(dir, "pool-1-c.json", handoff_text("pool-1", "other")); // name mismatch
  write_atomic(dir, "pool-0-d.json", big);                             // too big
  REQUIRE(::mkfifo((dir + "/pool-0-e.json").c_str(), 0644) == 0);      // unreadable: a FIFO
  REQUIRE(::mkdir((dir + "/pool-1-f.json").c_str(), 0755) == 0);       // unreadable: a directory
  write_atomic(dir, "pool-1-0.json", handoff_text("pool-1", "0"));     // good, after all of them

  REQUIRE(f.rec->wait([&] { return f.rec->records.size() == 1; }, 2000ms));
  CHECK(f.rec->records[0].pool_id == "pool-1");
  CHECK(f.rec->records[0].replica_id == "0");
  // Events are handled in order: every bad file was dealt with before the good one.
  CHECK(list_dir(dir) == std::vector<std::string>{"pool-1-0.json", "rejected"});
  CHECK(list_dir(dir + "/rejected") ==
        std::vector<std::string>{"pool-0-a.json", "pool-0-b.json", "pool-0-d.json", "pool-0-e.json",
                                 "pool-1-c.json", "pool-1-f.json", "pool-9-0.json"});
  CHECK(processed(*f.registry, "pool-0", "invalid") == 4);
  CHECK(processed(*f.registry, "pool-1", "invalid") == 2);
  CHECK(processed(*f.registry, "unknown", "invalid") == 1);
  CHECK(processed(*f.registry, "pool-1", "valid") == 1);
  CHECK(f.rec->removed.empty());

  // The same name rejected again does not overwrite the first one.
  write_atomic(dir, "pool-0-a.json", "not json at all");
  write_atomic(dir, "pool-0-0.json", handoff_text("pool-0", "0"));
  REQUIRE(f.rec->wait([&] { return f.rec->records.size() == 2; }, 2000ms));
  CHECK(exists(dir + "/rejected/pool-0-a.json.1"));
  std::ifstream first(dir + "/rejected/pool-0-a.json");
  std::string first_text((std::istreambuf_iterator<char>(first)), std::istreambuf_iterator<char>());
  CHECK(first_text == "{\"pool_id\": \"pool-0\", ");
  CHECK(processed(*f.registry, "pool-0", "invalid") == 5);
}

TEST_CASE("handoff_watcher: a valid file replaced by a bad one is removed and quarantined") {
  fixture f;
  const std::string dir = f.root + "/handoff";
  f.start(dir, 60s);
  write_atomic(dir, "pool-0-0.json", handoff_text("pool-0", "0"));
  REQUIRE(f.rec->wait([&] { return f.rec->records.size() == 1; }));
  write_atomic(dir, "pool-0-0.json", "{");
  REQUIRE(f.rec->wait([&] { return f.rec->removed.size() == 1; }));
  CHECK(f.rec->removed[0] == std::make_pair(std::string("pool-0"), std::string("0")));
  CHECK(eventually([&] { return exists(dir + "/rejected/pool-0-0.json"); }));
}

TEST_CASE("handoff_watcher: a directory that cannot be created is retried on every rescan") {
  fixture f;
  const std::string blocker = f.root + "/blocker";
  write_plain(blocker, "a file where a directory should be");
  const std::string dir = blocker + "/handoff";
  auto [usable, watching] = f.start(dir, 50ms);
  CHECK_FALSE(usable);
  CHECK_FALSE(watching);
  std::this_thread::sleep_for(150ms);
  CHECK(f.status().first == false); // still alive and answering

  REQUIRE(::unlink(blocker.c_str()) == 0);
  REQUIRE(eventually([&] { return exists(dir + "/rejected"); }, 2000ms));
  auto [usable2, watching2] = f.status();
  CHECK(usable2);
  CHECK(watching2);
  write_atomic(dir, "pool-0-0.json", handoff_text("pool-0", "0"));
  REQUIRE(f.rec->wait([&] { return f.rec->records.size() == 1; }, 2000ms));
}

TEST_CASE("handoff_watcher: a handoff directory removed while running is recreated") {
  fixture f;
  const std::string dir = f.root + "/handoff";
  f.start(dir, 100ms);
  write_atomic(dir, "pool-0-0.json", handoff_text("pool-0", "0"));
  REQUIRE(f.rec->wait([&] { return f.rec->records.size() == 1; }));
  REQUIRE(std::system(("rm -rf '" + dir + "'").c_str()) == 0);
  REQUIRE(f.rec->wait([&] { return f.rec->removed.size() == 1; }));
  REQUIRE(eventually([&] { return exists(dir + "/rejected"); }, 2000ms));
  REQUIRE(eventually([&] { return f.status().second; }, 2000ms));
  write_atomic(dir, "pool-0-0.json", handoff_text("pool-0", "0"));
  REQUIRE(f.rec->wait([&] { return f.rec->records.size() == 2; }, 2000ms));
}

TEST_CASE("handoff_watcher: processing latency over many files") {
  fixture f;
  const std::string dir = f.root + "/handoff";
  f.start(dir, 60s);
  constexpr int files = 50;
  std::vector<clock_type::time_point> written;
  for (int i = 0; i < files; ++i) {
    written.push_back(clock_type::now());
    write_atomic(dir, "pool-0-" + std::to_string(i) + ".json",
                 handoff_text("pool-0", std::to_string(i)));
  }
  REQUIRE(f.rec->wait([&] { return f.rec->records.size() == files; }, 5000ms));
  std::vector<double> ms;
  {
    std::lock_guard<std::mutex> l(f.rec->m);
    for (std::size_t k = 0; k < f.rec->records.size(); ++k) {
      auto i = std::stoul(f.rec->records[k].replica_id);
      ms.push_back(
          std::chrono::duration<double, std::milli>(f.rec->record_times[k] - written[i]).count());
    }
  }
  std::sort(ms.begin(), ms.end());
  std::printf("handoff_watcher: %d files, write-to-sink latency p50 %.3f ms, max %.3f ms\n", files,
              ms[ms.size() / 2], ms.back());
  CHECK(ms.back() < 2000);
  CHECK(duration_count(*f.registry) == files);
}

TEST_CASE("handoff_watcher: a symbolic link is quarantined, not followed") {
  fixture f;
  const std::string dir = f.root + "/handoff";
  f.start(dir, 60s);
  const std::string target = f.root + "/elsewhere.json";
  write_plain(target, handoff_text("pool-0", "0"));
  REQUIRE(::symlink(target.c_str(), (dir + "/pool-0-0.json").c_str()) == 0);
  REQUIRE(eventually([&] { return exists(dir + "/rejected/pool-0-0.json"); }, 2000ms));
  CHECK(processed(*f.registry, "pool-0", "invalid") == 1);
  CHECK(f.rec->record_count() == 0);
  CHECK(exists(target)); // the link moved, not what it points to
}

namespace {

int thread_count() {
  return static_cast<int>(list_dir("/proc/self/task").size());
}

} // namespace

TEST_CASE("handoff_watcher: stopping the watcher stops its reader thread") {
  fixture f;
  const int before = thread_count();
  f.start(f.root + "/handoff", 60s);
  CHECK(thread_count() == before + 1);
  caf::scoped_actor self{*f.sys};
  self->monitor(f.watcher);
  caf::anon_send_exit(f.watcher, caf::exit_reason::user_shutdown);
  bool down = false;
  self->receive([&](const caf::down_msg&) { down = true; },
                caf::after(std::chrono::seconds(3)) >> [] {});
  REQUIRE(down);
  CHECK(eventually([&] { return thread_count() == before; }, 2000ms));
  f.watcher = nullptr;
}

// Rewrites faster than the file system's timestamp granularity, with equal sizes and inode numbers
// that the file system may hand out again: the last version must still be the one delivered.
TEST_CASE("handoff_watcher: rapid rewrites of one file end with its last version") {
  fixture f;
  const std::string dir = f.root + "/handoff";
  f.start(dir, 20ms);
  constexpr int rewrites = 300;
  for (int i = 0; i < rewrites; ++i) {
    auto text = handoff_text("pool-0", "0", 100 + i % 900); // always three digits: equal sizes
    write_atomic(dir, "pool-0-0.json", text);
  }
  const int last = 100 + (rewrites - 1) % 900;
  REQUIRE(f.rec->wait(
      [&] { return !f.rec->records.empty() && f.rec->records.back().slots_total == last; },
      3000ms));
  std::this_thread::sleep_for(200ms); // ten rescans: nothing more arrives
  std::lock_guard<std::mutex> l(f.rec->m);
  CHECK(f.rec->records.back().slots_total == last);
  CHECK(f.rec->records.size() <= static_cast<std::size_t>(rewrites));
  CHECK(f.rec->removed.empty());
  CHECK(processed(*f.registry, "pool-0", "invalid") == 0);
  std::printf("handoff_watcher: %d rapid rewrites, %zu records delivered\n", rewrites,
              f.rec->records.size());
}
