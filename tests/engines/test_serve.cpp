// The engine actor: streamed tokens equal the library's single-stream output, across a real
// loopback connection too; cancel ends a stream at the next step; status reports the slots.
#include <catch2/catch.hpp>

#include <caf/io/all.hpp>

#include "engines/batch_decoder.hpp"
#include "engines/engine_worker.hpp"
#include "engines/serve.hpp"
#include "engines/tokenizer.hpp"
#include "engines/utf8.hpp"
#include "support.hpp"

#include <fstream>
#include <iterator>
#include <map>
#include <numeric>

using namespace llorch::engine;
using llorch::engine::testing::test_model;

namespace {

struct config : caf::actor_system_config {
  config() {
    add_message_types<caf::id_block::llorch_engine>();
    load<caf::io::middleman>();
  }
};

std::shared_ptr<const model> tiny() {
  auto m = load_model(test_model("tiny", "gguf"));
  REQUIRE(m.ok());
  return *m;
}

std::vector<int> expected_ids(std::shared_ptr<const model> m, const std::string& prompt, int n, sampling_params sp) {
  const tokenizer t(m->vocab);
  batch_decoder d(m, 1, 1, 0);
  decode_request r;
  r.prompt = t.encode(prompt, true);
  r.max_tokens = n;
  r.ignore_eos = true;
  r.sampling = sp;
  REQUIRE(d.submit(r).ok());
  std::vector<int> out;
  while (d.active() > 0)
    for (const auto& e : d.step()) out.push_back(e.token);
  return out;
}

struct collected {
  std::vector<int> ids;
  std::vector<std::uint64_t> indices;
  std::string text;
  engine_done done;
  int ends_with_token = 0; // 1 when the last token came with the end, as one message
};

collected collect(caf::scoped_actor& self, std::uint64_t task, int limit_tokens = -1,
                  const std::function<void()>& after_limit = {}) {
  collected c;
  bool finished = false;
  while (!finished) {
    self->receive(
        [&](const engine_token& t) {
          REQUIRE(t.task_id == task);
          c.ids.push_back(t.token_id);
          c.indices.push_back(t.index);
          c.text += t.piece;
          if (static_cast<int>(c.ids.size()) == limit_tokens && after_limit) after_limit();
        },
        [&](const engine_done& d) {
          REQUIRE(d.task_id == task);
          c.done = d;
          c.text += d.tail;
          finished = true;
        },
        [&](const engine_token& t, const engine_done& d) { // the last token with the end
          REQUIRE(t.task_id == task);
          REQUIRE(d.task_id == task);
          c.ids.push_back(t.token_id);
          c.indices.push_back(t.index);
          c.text += t.piece + d.tail;
          c.done = d;
          ++c.ends_with_token;
          finished = true;
        },
        caf::after(std::chrono::seconds(20)) >> [&] { FAIL("no message from the engine for 20 s"); });
  }
  return c;
}

engine_generate request(std::uint64_t id, const std::string& prompt, int n, caf::actor to) {
  engine_generate g;
  g.task_id = id;
  g.prompt = prompt;
  g.max_tokens = n;
  g.ignore_eos = true;
  g.reply_to = std::move(to);
  return g;
}

} // namespace

TEST_CASE("the engine actor streams the single-stream tokens, one message per index") {
  config cfg;
  caf::actor_system sys{cfg};
  auto m = tiny();
  auto engine = sys.spawn(engine_actor, std::make_shared<engine_worker>(m, 2, 2, 0, "tiny"));
  caf::scoped_actor self{sys};
  auto g = request(7, "the quick brown fox", 25, caf::actor_cast<caf::actor>(self));
  g.temperature = 0.8f;
  g.top_p = 0.9f;
  g.seed = 99;
  self->send(engine, g);
  const auto c = collect(self, 7);
  CHECK(c.ids == expected_ids(m, "the quick brown fox", 25, {0.8f, 0, 0.9f, 99}));
  for (std::size_t i = 0; i < c.indices.size(); ++i) CHECK(c.indices[i] == i);
  CHECK(c.done.reason == "length");
  CHECK(c.done.next_index == 25);
  CHECK(c.ends_with_token == 1);
  CHECK(utf8_valid(c.text));

  // resumption: prompt + the first 10 tokens, first_index 10, continues identically
  auto r = g;
  r.task_id = 8;
  r.resume_ids.assign(c.ids.begin(), c.ids.begin() + 10);
  r.first_index = 10;
  r.max_tokens = 15;
  self->send(engine, r);
  const auto rest = collect(self, 8);
  CHECK(rest.ids == std::vector<int>(c.ids.begin() + 10, c.ids.end()));
  CHECK(rest.indices.front() == 10);

  self->request(engine, std::chrono::seconds(5), engine_status_atom::value)
      .receive([&](const engine_status& s) {
        CHECK(s.slots_total == 2);
        CHECK(s.slots_free == 2);
        CHECK(s.ctx_max == 128);
        CHECK(s.model_id == "tiny");
      },
               [&](const caf::error& e) { FAIL(sys.render(e)); });
  // a prompt that cannot fit the context is an error, not a stream
  self->send(engine, request(9, std::string(200000, 'a'), 5, caf::actor_cast<caf::actor>(self)));
  const auto too_long = collect(self, 9);
  CHECK(too_long.ids.empty());
  CHECK(too_long.done.reason == "error");
  CHECK(too_long.done.error.find("longer than the context") != std::string::npos);
  self->send(engine, request(10, std::string(300, 'q'), 5, caf::actor_cast<caf::actor>(self)));
  const auto over = collect(self, 10);
  CHECK(over.done.reason == "error");
  CHECK(over.done.error.find("more than the context") != std::string::npos);
  self->send_exit(engine, caf::exit_reason::user_shutdown);
}

// A one-slot engine on s15m, not tiny: tiny streams 120 tokens in a few milliseconds, which a
// busy machine can take to deliver a cancel (the stream then ends by length, and a test failed
// so in CI).
caf::actor s15m_engine(caf::actor_system& sys) {
  auto m = load_model(test_model("s15m", "gguf"));
  REQUIRE(m.ok());
  return sys.spawn(engine_actor, std::make_shared<engine_worker>(*m, 1, 1, 0, "s15m"));
}

TEST_CASE("cancel ends the stream at the next step and frees the slot") {
  config cfg;
  caf::actor_system sys{cfg};
  auto engine = s15m_engine(sys);
  caf::scoped_actor self{sys};
  self->send(engine, request(1, "hello", 250, caf::actor_cast<caf::actor>(self)));
  const auto c = collect(self, 1, 3, [&] { self->send(engine, engine_cancel{1}); });
  CHECK(c.done.reason == "cancelled");
  CHECK(c.ends_with_token == 0); // a cancel ends the stream between tokens
  CHECK(c.ids.size() >= 3);
  CHECK(c.ids.size() < 250);
  CHECK(c.done.next_index == c.ids.size());
  // the freed slot takes the next request
  self->send(engine, request(2, "again", 5, caf::actor_cast<caf::actor>(self)));
  CHECK(collect(self, 2).ids.size() == 5);
  self->send_exit(engine, caf::exit_reason::user_shutdown);
}

TEST_CASE("a remote client over loopback gets the same stream") {
  config server_cfg, client_cfg;
  caf::actor_system server{server_cfg}, client{client_cfg};
  auto m = tiny();
  auto engine = server.spawn(engine_actor, std::make_shared<engine_worker>(m, 1, 2, 0, "tiny"));
  auto port = server.middleman().publish(engine, 0, "127.0.0.1", true);
  REQUIRE(port);
  auto remote = client.middleman().remote_actor("127.0.0.1", *port);
  REQUIRE(remote);
  caf::scoped_actor self{client};
  self->send(*remote, request(3, "ünïcödé ☃", 20, caf::actor_cast<caf::actor>(self)));
  const auto c = collect(self, 3);
  CHECK(c.ids == expected_ids(m, "ünïcödé ☃", 20, {}));
  CHECK(utf8_valid(c.text));
  self->send_exit(*remote, caf::exit_reason::user_shutdown);
}

TEST_CASE("the handoff file is written atomically with every contract field") {
  const std::string dir = llorch::engine::testing::model_dir();
  handoff_info h;
  h.pool_id = "pool-a";
  h.replica_id = "0";
  h.engine_version = "1.2.3";
  h.model_id = "tiny";
  h.model_path = "/models/tiny.gguf";
  h.endpoint = "127.0.0.1:4242";
  h.device_mask = "cpu";
  h.pid = 1234;
  h.slots_total = 4;
  h.ctx_max = 128;
  const auto path = handoff_path(dir, h.pool_id, h.replica_id);
  REQUIRE(path == dir + "/pool-a-0.json");
  REQUIRE(write_handoff(path, h).ok());
  std::ifstream f(path);
  const std::string text((std::istreambuf_iterator<char>(f)), {});
  for (const char* field : {"\"pool_id\":\"pool-a\"", "\"replica_id\":\"0\"", "\"engine\":\"llorch\"",
                            "\"engine_version\":\"1.2.3\"", "\"model\":{\"id\":\"tiny\",\"path\":\"/models/tiny.gguf\"}",
                            "\"endpoint\":\"127.0.0.1:4242\"", "\"pid\":1234", "\"device_mask\":\"cpu\"",
                            "\"slots_total\":4", "\"ctx_max\":128", "\"written_at\":\"20"})
    CHECK(text.find(field) != std::string::npos);
  CHECK_FALSE(write_handoff("/nonexistent-dir/x.json", h).ok());
}

TEST_CASE("a receiver that goes down has its stream cancelled and its slot freed") {
  config cfg;
  caf::actor_system sys{cfg};
  auto engine = s15m_engine(sys);
  {
    caf::scoped_actor gone{sys};
    gone->send(engine, request(5, "bye", 250, caf::actor_cast<caf::actor>(gone)));
    gone->receive([](const engine_token&) {}); // the stream has started
  }
  caf::scoped_actor self{sys};
  engine_status st;
  for (int i = 0; i < 400 && st.cancelled_total == 0; ++i) {
    self->request(engine, std::chrono::seconds(5), engine_status_atom::value)
        .receive([&](const engine_status& s) { st = s; }, [&](const caf::error&) {});
    if (st.cancelled_total == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  CHECK(st.cancelled_total == 1);
  CHECK(st.tokens_total < 250);
  self->send_exit(engine, caf::exit_reason::user_shutdown);
}

TEST_CASE("an observer that goes down ends its streams with an error the receiver can resume from") {
  // The pool (the observer) died; the receiver, orchestratord, still hears the engine over its
  // own link and must fail the stream over, not take it for cancelled.
  config cfg;
  caf::actor_system sys{cfg};
  auto engine = s15m_engine(sys);
  caf::scoped_actor receiver{sys};
  auto pool = std::make_unique<caf::scoped_actor>(sys);
  auto req = request(6, "bye", 250, caf::actor_cast<caf::actor>(receiver));
  req.observer = caf::actor_cast<caf::actor>(*pool);
  receiver->send(engine, req);
  const auto c = collect(receiver, 6, 1, [&] { pool.reset(); }); // gone after the first token
  CHECK(c.done.reason == "error");
  CHECK(c.ids.size() < 250);
  receiver->send_exit(engine, caf::exit_reason::user_shutdown);
}

TEST_CASE("streams that step together reach a shared receiver as one engine_step per step, in order") {
  config cfg;
  caf::actor_system sys{cfg};
  auto m = load_model(test_model("s15m", "gguf"));
  REQUIRE(m.ok());
  auto engine = sys.spawn(engine_actor, std::make_shared<engine_worker>(*m, 1, 2, 0, "s15m"));
  caf::scoped_actor self{sys};
  const auto me = caf::actor_cast<caf::actor>(self);
  self->send(engine, request(7, "one", 40, me));
  self->send(engine, request(8, "two", 40, me));
  std::map<std::uint64_t, std::vector<std::uint64_t>> indices; // per stream, as received
  std::map<std::uint64_t, std::string> ends;
  int steps = 0;
  auto token = [&](const engine_token& t) {
    REQUIRE(ends.count(t.task_id) == 0); // nothing after a stream's end
    indices[t.task_id].push_back(t.index);
  };
  auto end = [&](const engine_done& d) { ends[d.task_id] = d.reason; };
  while (ends.size() < 2)
    self->receive(token, end, [&](const engine_token& t, const engine_done& d) { token(t), end(d); },
                  [&](const engine_step& s) {
                    ++steps;
                    for (auto& t : s.tokens) token(t);
                    for (auto& d : s.ends) end(d);
                  },
                  caf::after(std::chrono::seconds(20)) >> [&] { FAIL("no message from the engine for 20 s"); });
  std::vector<std::uint64_t> want(40);
  std::iota(want.begin(), want.end(), 0);
  CHECK(indices[7] == want);
  CHECK(indices[8] == want);
  CHECK(ends[7] == "length");
  CHECK(ends[8] == "length");
  CHECK(steps > 0); // the two were in the same steps: one message for both
  self->send_exit(engine, caf::exit_reason::user_shutdown);
}
