#include "actors/control/stream_router.hpp"

#include "actors/control/task.hpp"
#include "actors/control/task_directory.hpp"
#include "engines/engine_protocol.hpp"
#include "runtime/metrics.hpp"

#include <caf/all.hpp>
#include <catch2/catch.hpp>

#include <map>

using namespace llorch;

namespace {

// The events a listener of a stream got within the timeout, as "name data".
std::vector<std::string> events(caf::scoped_actor& listener, std::size_t n) {
  std::vector<std::string> got;
  for (std::size_t i = 0; i < n; ++i)
    listener->receive(
      [&](task_event_atom, const std::string& name, const std::string& data) {
        got.push_back(name + " " + data);
      },
      caf::after(std::chrono::seconds(5)) >> [&] { got.push_back("timeout"); });
  return got;
}

struct router_config : caf::actor_system_config {
  router_config() {
    add_message_types<caf::id_block::llorch>();
    add_message_types<caf::id_block::llorch_engine>();
  }
};

// A task "t-<engine_id>" of actor `task` in the directory, its stream expecting that attempt.
std::shared_ptr<task_stream> add_task(task_directory& tasks, std::uint64_t engine_id,
                                      int attempt, const caf::scoped_actor& task) {
  auto stream = std::make_shared<task_stream>();
  stream->expect(stream_id(engine_id, attempt));
  tasks.add("t-" + std::to_string(engine_id), engine_id, caf::actor_cast<caf::actor>(task), stream);
  return stream;
}

} // namespace

TEST_CASE("stream router: tokens go into their task's stream, ends into it and on to the task") {
  router_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor task{sys};
  caf::scoped_actor listener{sys};
  auto metrics = std::make_shared<metrics::registry>();
  auto tasks = std::make_shared<task_directory>();
  auto stream = add_task(*tasks, 7, 2, task);
  stream->subscribe(caf::actor_cast<caf::actor>(listener));
  auto router = spawn_stream_router(task.ptr(), tasks, metrics);

  caf::anon_send(router, engine::engine_token{stream_id(8, 0), 0, 5, "gone"}); // no such task
  caf::anon_send(router, engine::engine_token{stream_id(7, 1), 0, 6, "old"});  // earlier attempt
  caf::anon_send(router, engine::engine_token{stream_id(7, 2), 0, 42, "hi"});
  caf::anon_send(router, engine::engine_token{stream_id(7, 2), 0, 42, "hi"});  // duplicate
  caf::anon_send(router, engine::engine_done{stream_id(7, 2), "length", 1, {}, {}});
  auto got = events(listener, 2);
  REQUIRE(got.size() == 2);
  CHECK(got[0] == R"(token {"t":"hi","i":0})");
  CHECK(got[1].rfind(R"(end {"tokens_out":1,)", 0) == 0);
  CHECK(got[1].find(R"("finish_reason":"length")") != std::string::npos);
  CHECK(stream->token_ids() == std::vector<std::int32_t>{42});
  CHECK(stream->outcome() == "completed");
  std::string done;
  task->receive([&](const engine::engine_done& d) { done = d.reason; },
                caf::after(std::chrono::seconds(5)) >> [] {});
  CHECK(done == "length");
  auto exposition = metrics->expose();
  CHECK(exposition.find("orchd_task_first_token_seconds_count 1") != std::string::npos);

  // A stream's last token with its end, as one message: both into the stream, the end on.
  auto last = add_task(*tasks, 5, 0, task);
  caf::anon_send(router, engine::engine_token{stream_id(5, 0), 0, 77, "z"},
                 engine::engine_done{stream_id(5, 0), "stop", 1, {}, {}});
  task->receive([&](const engine::engine_done& d) { done = d.reason; },
                caf::after(std::chrono::seconds(5)) >> [&] { done = "timeout"; });
  CHECK(done == "stop");
  CHECK(last->token_ids() == std::vector<std::int32_t>{77});
  CHECK(last->outcome() == "completed");
  CHECK(metrics->expose().find("orchd_task_first_token_seconds_count 2") != std::string::npos);

  // A failed attempt goes to the task actor (it fails the task over) and leaves the stream open.
  auto other = add_task(*tasks, 9, 0, task);
  caf::anon_send(router, engine::engine_done{stream_id(9, 0), "error", 0, "engine died", {}});
  task->receive([&](const engine::engine_done& d) { done = d.reason; },
                caf::after(std::chrono::seconds(5)) >> [&] { done = "timeout"; });
  CHECK(done == "error");
  CHECK(other->outcome().empty());

  // A task that is gone (admission removed it) gets nothing, and the router keeps going.
  tasks->remove("t-9", 9);
  caf::anon_send(router, engine::engine_done{stream_id(9, 0), "length", 0, {}, {}});
  bool late = false;
  task->receive([&](const engine::engine_done&) { late = true; },
                caf::after(std::chrono::milliseconds(200)) >> [] {});
  CHECK_FALSE(late);
}

TEST_CASE("stream router: a step's tokens and ends of several streams, in one message") {
  router_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor task{sys};
  auto metrics = std::make_shared<metrics::registry>();
  auto tasks = std::make_shared<task_directory>();
  auto a = add_task(*tasks, 1, 0, task), b = add_task(*tasks, 2, 0, task),
       c = add_task(*tasks, 3, 0, task);
  auto router = spawn_stream_router(task.ptr(), tasks, metrics);
  // 1 goes on; 2 takes its last token and ends; 3 ends with an error (no token)
  engine::engine_step step;
  step.tokens = {{stream_id(1, 0), 0, 11, "a"}, {stream_id(2, 0), 0, 22, "b"}};
  step.ends = {{stream_id(2, 0), "length", 1, {}, {}}, {stream_id(3, 0), "error", 0, "gone", {}}};
  caf::anon_send(router, step);
  std::map<std::uint64_t, std::string> done;
  for (int i = 0; i < 2; ++i)
    task->receive([&](const engine::engine_done& d) { done[d.task_id] = d.reason; },
                  caf::after(std::chrono::seconds(5)) >> [] {});
  CHECK(done == std::map<std::uint64_t, std::string>{{stream_id(2, 0), "length"},
                                                     {stream_id(3, 0), "error"}});
  CHECK(a->token_ids() == std::vector<std::int32_t>{11});
  CHECK(a->outcome().empty());
  CHECK(b->token_ids() == std::vector<std::int32_t>{22});
  CHECK(b->outcome() == "completed");
  CHECK(c->outcome().empty()); // an error is the task actor's to handle (fail-over)
}
