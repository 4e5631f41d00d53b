#include "actors/control/stream_router.hpp"

#include "actors/control/task.hpp"
#include "actors/control/task_directory.hpp"
#include "engines/engine_protocol.hpp"

#include <caf/all.hpp>
#include <catch2/catch.hpp>

using namespace llorch;

TEST_CASE("stream router: a stream's tokens and end reach its task; other streams' are dropped") {
  caf::actor_system_config cfg;
  cfg.add_message_types<caf::id_block::llorch_engine>();
  caf::actor_system sys{cfg};
  caf::scoped_actor task{sys};
  auto tasks = std::make_shared<task_directory>();
  tasks->add("t-7", 7, caf::actor_cast<caf::actor>(task));
  auto router = spawn_stream_router(task.ptr(), tasks);

  caf::anon_send(router, engine::engine_token{stream_id(8, 0), 0, 5, "gone"}); // no such task
  caf::anon_send(router, engine::engine_token{stream_id(7, 2), 3, 42, "hi"});
  caf::anon_send(router, engine::engine_done{stream_id(7, 2), "length", 4, {}, {}});
  std::vector<std::string> got;
  for (int i = 0; i < 2; ++i)
    task->receive(
      [&](const engine::engine_token& t) {
        CHECK(t.task_id == stream_id(7, 2));
        got.push_back("token " + std::to_string(t.index) + " " + t.piece);
      },
      [&](const engine::engine_done& d) { got.push_back("done " + d.reason); },
      caf::after(std::chrono::seconds(5)) >> [&] { got.push_back("timeout"); });
  CHECK(got == std::vector<std::string>{"token 3 hi", "done length"});
  CHECK(engine_id_of(stream_id(7, 2)) == 7);

  // A task that is gone (admission removed it) gets nothing, and the router keeps going.
  tasks->remove("t-7", 7);
  caf::anon_send(router, engine::engine_token{stream_id(7, 2), 4, 43, "late"});
  bool late = false;
  task->receive([&](const engine::engine_token&) { late = true; },
                caf::after(std::chrono::milliseconds(200)) >> [] {});
  CHECK_FALSE(late);
}
