#include "runtime/log.hpp"
#include "runtime/supervisor.hpp"

#include <caf/all.hpp>
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <unistd.h>

using namespace llorch;
using namespace std::chrono_literals;
using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

namespace {

using crash_atom = caf::atom_constant<caf::atom("crash")>;
using finish_atom = caf::atom_constant<caf::atom("finish")>;
using ping_atom = caf::atom_constant<caf::atom("ping")>;
using pong_atom = caf::atom_constant<caf::atom("pong")>;

// A worker that crashes (abnormal exit) or finishes (normal exit) when told to.
caf::behavior worker(caf::event_based_actor* self) {
  return {
    [self](crash_atom) { self->quit(caf::make_error(caf::sec::runtime_error, "told to crash")); },
    [self](finish_atom) { self->quit(); },
    [](ping_atom) { return pong_atom::value; },
  };
}

// A worker that crashes as soon as it runs, the way a child with a broken dependency does.
caf::behavior crash_on_start(caf::event_based_actor* self) {
  self->send(self, crash_atom::value);
  return worker(self);
}

// What the hooks saw, written on supervisor threads and read by the test.
struct hook_log {
  std::mutex mtx;
  std::vector<std::pair<std::string, caf::actor>> started;
  std::vector<std::pair<std::string, int>> restarts;
  std::vector<std::string> gave_up;
  std::vector<steady::time_point> start_times;

  supervisor_hooks hooks() {
    supervisor_hooks h;
    h.on_started = [this](const std::string& name, const caf::actor& a) {
      std::lock_guard<std::mutex> g(mtx);
      started.emplace_back(name, a);
      start_times.push_back(steady::now());
    };
    h.on_restart = [this](const std::string& name, int n) {
      std::lock_guard<std::mutex> g(mtx);
      restarts.emplace_back(name, n);
    };
    h.on_give_up = [this](const std::string& name) {
      std::lock_guard<std::mutex> g(mtx);
      gave_up.push_back(name);
    };
    return h;
  }
  std::size_t started_count() {
    std::lock_guard<std::mutex> g(mtx);
    return started.size();
  }
};

restart_limits fast_limits(int max_restarts = 5, milliseconds initial = 10ms,
                           milliseconds max = 40ms) {
  restart_limits l;
  l.max_restarts = max_restarts;
  l.within = 10s;
  l.backoff_initial = initial;
  l.backoff_max = max;
  l.jitter = 0.0;
  return l;
}

child_spec worker_spec(std::string name, std::shared_ptr<std::atomic<int>> starts = nullptr) {
  return {std::move(name), [starts](caf::local_actor* sup) {
            if (starts)
              ++*starts;
            return sup->home_system().spawn(worker);
          }};
}

// Asks `sup` for a child; the error, if any, goes to `err`.
caf::actor get_child(caf::actor_system& sys, const caf::actor& sup, const std::string& name,
                     caf::error* err = nullptr) {
  caf::scoped_actor self{sys};
  caf::actor out;
  self->request(sup, 2s, caf::get_atom::value, name)
    .receive([&](caf::actor& a) { out = std::move(a); },
             [&](caf::error& e) {
               if (err)
                 *err = std::move(e);
             });
  return out;
}

// Polls until the supervisor hands out a running child other than `previous`.
caf::actor wait_for_new_child(caf::actor_system& sys, const caf::actor& sup,
                              const std::string& name, const caf::actor& previous,
                              milliseconds limit = 3000ms) {
  auto deadline = steady::now() + limit;
  while (steady::now() < deadline) {
    auto a = get_child(sys, sup, name);
    if (a && a != previous)
      return a;
    std::this_thread::sleep_for(2ms);
  }
  return {};
}

// Waits for the down message of `who`; returns its reason, or sec::request_timeout if none came.
caf::error wait_down(caf::scoped_actor& self, const caf::actor& who, milliseconds limit = 3000ms) {
  self->monitor(who);
  caf::error reason = caf::make_error(caf::sec::request_timeout);
  bool done = false;
  while (!done)
    self->receive(
      [&](caf::down_msg& dm) {
        if (dm.source == who.address()) {
          reason = dm.reason;
          done = true;
        }
      },
      caf::after(limit) >> [&] { done = true; });
  return reason;
}

bool is_supervisor_error(const caf::error& e, supervisor_errc code) {
  return e.category() == supervisor_error_category() && e.code() == static_cast<std::uint8_t>(code);
}

bool answers_ping(caf::actor_system& sys, const caf::actor& a) {
  caf::scoped_actor self{sys};
  bool ok = false;
  self->request(a, 2s, ping_atom::value).receive([&](pong_atom) { ok = true; }, [](caf::error&) {});
  return ok;
}

// Every test stops what it spawned, else the actor_system destructor waits forever.
struct stop_on_exit {
  caf::actor sup;
  ~stop_on_exit() { caf::anon_send_exit(sup, caf::exit_reason::kill); }
};

void quiet_logs() {
  static bool done = false;
  if (!done) // before any actor runs: log::event's lazy set-up is not meant for racing threads
    log::init("test_supervisor", log::level::critical);
  done = true;
}

} // namespace

TEST_CASE("supervisor: a crashed child is restarted and get returns the new handle") {
  quiet_logs();
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  hook_log hl;
  std::vector<child_spec> children;
  children.push_back(worker_spec("a"));
  children.push_back(worker_spec("b"));
  auto sup = spawn_supervisor(sys, "s1", fast_limits(), std::move(children), hl.hooks());
  stop_on_exit guard{sup};

  auto a1 = get_child(sys, sup, "a");
  auto b1 = get_child(sys, sup, "b");
  REQUIRE(a1);
  REQUIRE(b1);
  REQUIRE(answers_ping(sys, a1));

  caf::anon_send(a1, crash_atom::value);
  auto a2 = wait_for_new_child(sys, sup, "a", a1);
  REQUIRE(a2);
  CHECK(a2 != a1);
  CHECK(answers_ping(sys, a2));
  CHECK(get_child(sys, sup, "b") == b1); // one-for-one: the sibling is untouched

  std::lock_guard<std::mutex> g(hl.mtx);
  REQUIRE(hl.started.size() == 3);
  CHECK(hl.started[2].first == "a");
  CHECK(hl.started[2].second == a2);
  REQUIRE(hl.restarts.size() == 1);
  CHECK(hl.restarts[0] == std::make_pair(std::string("a"), 1));
  CHECK(hl.gave_up.empty());
}

TEST_CASE("supervisor: a killed child is restarted too") {
  quiet_logs();
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  std::vector<child_spec> children;
  children.push_back(worker_spec("a"));
  auto sup = spawn_supervisor(sys, "s", fast_limits(), std::move(children));
  stop_on_exit guard{sup};
  auto a1 = get_child(sys, sup, "a");
  REQUIRE(a1);
  caf::anon_send_exit(a1, caf::exit_reason::kill);
  CHECK(wait_for_new_child(sys, sup, "a", a1));
}

TEST_CASE("supervisor: the backoff delay is respected and grows") {
  quiet_logs();
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  hook_log hl;
  std::vector<child_spec> children;
  children.push_back(worker_spec("a"));
  auto sup = spawn_supervisor(sys, "s", fast_limits(5, 150ms, 1000ms), std::move(children),
                              hl.hooks());
  stop_on_exit guard{sup};
  auto a1 = get_child(sys, sup, "a");
  REQUIRE(a1);

  auto crashed = steady::now();
  caf::anon_send(a1, crash_atom::value);
  // While the restart is pending, get says so instead of handing out a dead actor.
  std::this_thread::sleep_for(50ms);
  caf::error err;
  CHECK_FALSE(get_child(sys, sup, "a", &err));
  CHECK(is_supervisor_error(err, supervisor_errc::child_restarting));

  auto a2 = wait_for_new_child(sys, sup, "a", a1);
  REQUIRE(a2);
  steady::time_point second_start;
  {
    std::lock_guard<std::mutex> g(hl.mtx);
    REQUIRE(hl.start_times.size() == 2);
    second_start = hl.start_times[1];
  }
  auto first_delay = second_start - crashed;
  CHECK(first_delay >= 150ms);
  CHECK(first_delay < 1000ms);

  crashed = steady::now();
  caf::anon_send(a2, crash_atom::value);
  REQUIRE(wait_for_new_child(sys, sup, "a", a2));
  std::lock_guard<std::mutex> g(hl.mtx);
  REQUIRE(hl.start_times.size() == 3);
  auto second_delay = hl.start_times[2] - crashed;
  CHECK(second_delay >= 300ms); // doubled
  CHECK(second_delay < 1300ms);
}

TEST_CASE("supervisor: too many failures make it give up with an abnormal exit") {
  quiet_logs();
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  hook_log hl;
  auto starts = std::make_shared<std::atomic<int>>(0);
  auto sibling_starts = std::make_shared<std::atomic<int>>(0);
  std::vector<child_spec> children;
  children.push_back(worker_spec("steady", sibling_starts));
  children.push_back({"flaky", [starts](caf::local_actor* sup) {
                        ++*starts;
                        return sup->home_system().spawn(crash_on_start);
                      }});
  caf::scoped_actor self{sys};
  auto sup = spawn_supervisor(sys, "s", fast_limits(3, 5ms, 20ms), std::move(children),
                              hl.hooks());
  stop_on_exit guard{sup};
  // The sibling must go down with its supervisor.
  auto sibling = get_child(sys, sup, "steady");
  REQUIRE(sibling);
  self->monitor(sibling);

  auto reason = wait_down(self, sup);
  CHECK(is_supervisor_error(reason, supervisor_errc::gave_up));
  CHECK(sys.render(reason).find("flaky") != std::string::npos);
  CHECK(*starts == 4); // the first start and 3 restarts; the 4th failure exceeds the limit
  CHECK(*sibling_starts == 1);
  CHECK(is_supervisor_error(wait_down(self, sibling), supervisor_errc::gave_up));
  std::lock_guard<std::mutex> g(hl.mtx);
  CHECK(hl.gave_up == std::vector<std::string>{"flaky"});
  CHECK(hl.restarts.size() == 3);
}

TEST_CASE("supervisor: a factory that returns no actor counts as a failure") {
  quiet_logs();
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto attempts = std::make_shared<std::atomic<int>>(0);
  std::vector<child_spec> children;
  children.push_back({"broken", [attempts](caf::local_actor*) {
                        ++*attempts;
                        return caf::actor{};
                      }});
  caf::scoped_actor self{sys};
  auto sup = spawn_supervisor(sys, "s", fast_limits(2, 5ms, 5ms), std::move(children));
  stop_on_exit guard{sup};
  CHECK(is_supervisor_error(wait_down(self, sup), supervisor_errc::gave_up));
  CHECK(*attempts == 3);
}

TEST_CASE("supervisor: max_restarts = 0 gives up at the first failure, even during start") {
  quiet_logs();
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto later = std::make_shared<std::atomic<int>>(0);
  std::vector<child_spec> children;
  children.push_back({"broken", [](caf::local_actor*) { return caf::actor{}; }});
  children.push_back(worker_spec("never", later));
  caf::scoped_actor self{sys};
  auto sup = spawn_supervisor(sys, "s", fast_limits(0), std::move(children));
  stop_on_exit guard{sup};
  CHECK(is_supervisor_error(wait_down(self, sup), supervisor_errc::gave_up));
  CHECK(*later == 0); // nothing is started after giving up
}

TEST_CASE("supervisor: escalation through two levels gives up at the top") {
  quiet_logs();
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  hook_log outer_hooks;
  auto worker_starts = std::make_shared<std::atomic<int>>(0);
  auto inner_limits = fast_limits(2, 5ms, 10ms);
  std::vector<child_spec> outer_children;
  outer_children.push_back({"inner", [worker_starts, inner_limits](caf::local_actor* sup) {
                              std::vector<child_spec> inner_children;
                              inner_children.push_back(
                                {"worker", [worker_starts](caf::local_actor* inner) {
                                   ++*worker_starts;
                                   return inner->home_system().spawn(crash_on_start);
                                 }});
                              return spawn_supervisor(sup->home_system(), "inner", inner_limits,
                                                      std::move(inner_children));
                            }});
  caf::scoped_actor self{sys};
  auto outer = spawn_supervisor(sys, "outer", fast_limits(1, 5ms, 10ms), std::move(outer_children),
                                outer_hooks.hooks());
  stop_on_exit guard{outer};
  auto reason = wait_down(self, outer);
  CHECK(is_supervisor_error(reason, supervisor_errc::gave_up));
  // Each inner incarnation starts its worker 3 times (start + 2 restarts) before giving up; the
  // outer restarts the inner once, then gives up itself.
  CHECK(*worker_starts == 6);
  std::lock_guard<std::mutex> g(outer_hooks.mtx);
  CHECK(outer_hooks.restarts == std::vector<std::pair<std::string, int>>{{"inner", 1}});
  CHECK(outer_hooks.gave_up == std::vector<std::string>{"inner"});
}

TEST_CASE("supervisor: escalation restarts the whole subtree, which then recovers") {
  quiet_logs();
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  hook_log outer_hooks;
  auto worker_starts = std::make_shared<std::atomic<int>>(0);
  auto steady_starts = std::make_shared<std::atomic<int>>(0);
  auto inner_limits = fast_limits(2, 5ms, 10ms);
  std::vector<child_spec> outer_children;
  outer_children.push_back(
    {"inner", [worker_starts, steady_starts, inner_limits](caf::local_actor* sup) {
       std::vector<child_spec> inner_children;
       inner_children.push_back(worker_spec("steady", steady_starts));
       // The first three starts crash (the inner supervisor gives up), later ones run.
       inner_children.push_back({"worker", [worker_starts](caf::local_actor* inner) {
                                   auto n = ++*worker_starts;
                                   return n <= 3 ? inner->home_system().spawn(crash_on_start)
                                                 : inner->home_system().spawn(worker);
                                 }});
       return spawn_supervisor(sup->home_system(), "inner", inner_limits,
                               std::move(inner_children));
     }});
  auto outer = spawn_supervisor(sys, "outer", fast_limits(3, 5ms, 10ms), std::move(outer_children),
                                outer_hooks.hooks());
  stop_on_exit guard{outer};

  caf::actor inner;
  auto deadline = steady::now() + 3s;
  while (steady::now() < deadline) {
    {
      std::lock_guard<std::mutex> g(outer_hooks.mtx);
      if (!outer_hooks.restarts.empty())
        break;
    }
    std::this_thread::sleep_for(2ms);
  }
  inner = wait_for_new_child(sys, outer, "inner", caf::actor{});
  REQUIRE(inner);
  auto w = wait_for_new_child(sys, inner, "worker", caf::actor{});
  REQUIRE(w);
  CHECK(answers_ping(sys, w));
  CHECK(*worker_starts == 4);
  CHECK(*steady_starts == 2); // the healthy sibling was restarted with its subtree
  std::lock_guard<std::mutex> g(outer_hooks.mtx);
  CHECK(outer_hooks.restarts == std::vector<std::pair<std::string, int>>{{"inner", 1}});
  CHECK(outer_hooks.gave_up.empty());
}

TEST_CASE("supervisor: a normal exit or a user shutdown is not restarted") {
  quiet_logs();
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  hook_log hl;
  auto a_starts = std::make_shared<std::atomic<int>>(0);
  auto b_starts = std::make_shared<std::atomic<int>>(0);
  std::vector<child_spec> children;
  children.push_back(worker_spec("a", a_starts));
  children.push_back(worker_spec("b", b_starts));
  caf::scoped_actor self{sys};
  auto sup = spawn_supervisor(sys, "s", fast_limits(5, 5ms, 5ms), std::move(children), hl.hooks());
  stop_on_exit guard{sup};
  auto a = get_child(sys, sup, "a");
  auto b = get_child(sys, sup, "b");
  REQUIRE(a);
  REQUIRE(b);

  caf::anon_send(a, finish_atom::value);
  CHECK(is_clean_exit(wait_down(self, a)));
  caf::anon_send_exit(b, caf::exit_reason::user_shutdown);
  CHECK(is_clean_exit(wait_down(self, b)));

  std::this_thread::sleep_for(150ms); // 30 backoff periods: a restart would have happened
  CHECK(*a_starts == 1);
  CHECK(*b_starts == 1);
  caf::error err;
  CHECK_FALSE(get_child(sys, sup, "a", &err));
  CHECK(is_supervisor_error(err, supervisor_errc::child_stopped));
  std::lock_guard<std::mutex> g(hl.mtx);
  CHECK(hl.restarts.empty());
}

TEST_CASE("supervisor: get of an unknown child is an error that names it") {
  quiet_logs();
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  std::vector<child_spec> children;
  children.push_back(worker_spec("a"));
  auto sup = spawn_supervisor(sys, "s", fast_limits(), std::move(children));
  stop_on_exit guard{sup};
  caf::error err;
  CHECK_FALSE(get_child(sys, sup, "nope", &err));
  CHECK(is_supervisor_error(err, supervisor_errc::unknown_child));
  CHECK(sys.render(err).find("nope") != std::string::npos);
}

TEST_CASE("supervisor: stopping the supervisor stops its children") {
  quiet_logs();
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  for (auto reason : {caf::exit_reason::user_shutdown, caf::exit_reason::kill}) {
    std::vector<child_spec> children;
    children.push_back(worker_spec("a"));
    children.push_back(worker_spec("b"));
    caf::scoped_actor self{sys};
    auto sup = spawn_supervisor(sys, "s", fast_limits(), std::move(children));
    auto a = get_child(sys, sup, "a");
    auto b = get_child(sys, sup, "b");
    REQUIRE(a);
    REQUIRE(b);
    self->monitor(a);
    caf::anon_send_exit(sup, reason);
    CHECK(wait_down(self, sup) == reason);
    CHECK(wait_down(self, a) == reason);
    CHECK(wait_down(self, b) == reason);
  }
}

TEST_CASE("supervisor: a supervisor that stops itself normally shuts its children down") {
  quiet_logs();
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  // A nested supervisor stopped with user_shutdown takes its own children down with it.
  caf::scoped_actor self{sys};
  std::vector<child_spec> inner_children;
  inner_children.push_back(worker_spec("w"));
  auto inner = spawn_supervisor(sys, "inner", fast_limits(), std::move(inner_children));
  auto w = get_child(sys, inner, "w");
  REQUIRE(w);
  self->monitor(w);
  caf::anon_send_exit(inner, caf::exit_reason::user_shutdown);
  CHECK(wait_down(self, w) == caf::exit_reason::user_shutdown);
}

TEST_CASE("supervisor: each restart is logged as actor_restarted") {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  // Capture stderr (where the event log goes) for the duration of one restart.
  char path[] = "/tmp/llorch_supervisor_logXXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  std::fflush(stderr);
  int saved = dup(2);
  dup2(fd, 2);
  log::init("test_supervisor", log::level::info);
  {
    std::vector<child_spec> children;
    children.push_back(worker_spec("logged"));
    auto sup = spawn_supervisor(sys, "logsup", fast_limits(5, 20ms, 20ms), std::move(children));
    stop_on_exit guard{sup};
    auto a1 = get_child(sys, sup, "logged");
    REQUIRE(a1);
    caf::anon_send(a1, crash_atom::value);
    REQUIRE(wait_for_new_child(sys, sup, "logged", a1));
  }
  log::init("test_supervisor", log::level::critical);
  std::fflush(stderr);
  dup2(saved, 2);
  close(saved);
  close(fd);
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  std::remove(path);
  auto log_text = text.str();
  CHECK(log_text.find("child_down supervisor=logsup child=logged reason=") != std::string::npos);
  CHECK(log_text.find("actor_restarted supervisor=logsup child=logged reason=")
        != std::string::npos);
  CHECK(log_text.find("told to crash") != std::string::npos);
  CHECK(log_text.find("delay_ms=20 restarts=1") != std::string::npos);
}

TEST_CASE("supervisor: reasons are described on one line without nested quoting") {
  CHECK(describe_reason(caf::error{}) == "normal");
  CHECK(describe_reason(caf::make_error(caf::exit_reason::kill)) == "exit: kill");
  CHECK(describe_reason(caf::make_error(caf::sec::runtime_error, "disk full"))
        == "system: runtime_error: disk full");
  auto inner = make_supervisor_error(supervisor_errc::gave_up,
                                     "child 'w' failed, last reason: "
                                       + describe_reason(caf::make_error(caf::exit_reason::kill)));
  CHECK(describe_reason(inner) == "llorch_sup: gave_up: child 'w' failed, last reason: exit: kill");
  CHECK(is_clean_exit(caf::error{}));
  CHECK(is_clean_exit(caf::make_error(caf::exit_reason::normal)));
  CHECK(is_clean_exit(caf::make_error(caf::exit_reason::user_shutdown)));
  CHECK_FALSE(is_clean_exit(caf::make_error(caf::exit_reason::kill)));
  CHECK_FALSE(is_clean_exit(caf::make_error(caf::exit_reason::unhandled_exception)));
  CHECK_FALSE(is_clean_exit(inner));
}

TEST_CASE("supervisor: the error category can be registered for actor_system::render") {
  caf::actor_system_config cfg;
  add_supervisor_error_category(cfg);
  caf::actor_system sys{cfg};
  auto err = make_supervisor_error(supervisor_errc::unknown_child, "no child 'x'");
  CHECK(sys.render(err) == "llorch_sup: unknown_child: no child 'x'");
}
