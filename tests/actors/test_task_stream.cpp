#include "actors/control/task.hpp"
#include "actors/control/task_stream.hpp"
#include "net/http_types.hpp"

#include <catch2/catch.hpp>

#include <thread>

using namespace llorch;

namespace {

// Records what a stream writes to an SSE client, in place of the client's connection.
struct recording_link final : net::detail::exchange_link {
  std::string head, body;
  bool ended = false;
  bool send(net::http_response) override { return true; }
  bool stream_head(int status, std::string content_type,
                   std::vector<std::pair<std::string, std::string>>) override {
    head = std::to_string(status) + " " + content_type;
    return true;
  }
  bool stream_chunk(std::string chunk) override {
    body += chunk;
    return true;
  }
  bool stream_end(std::string last) override {
    body += last;
    ended = true;
    return true;
  }
};

struct client {
  std::shared_ptr<recording_link> link = std::make_shared<recording_link>();
  std::shared_ptr<net::http_exchange> ex = std::make_shared<net::http_exchange>(net::http_request{}, link);
};

} // namespace

TEST_CASE("task stream: a late subscriber gets the log from index 0, then the rest") {
  task_stream s;
  s.expect(stream_id(3, 0));
  s.start(R"({"pool_id":"p"})");
  CHECK(s.token(stream_id(3, 0), 0, 11, "a") == task_stream::accepted::first);
  client c;
  s.subscribe(c.ex);
  CHECK(c.link->head == "200 text/event-stream");
  CHECK(c.link->body == "event: started\ndata: {\"pool_id\":\"p\"}\n\n"
                        "event: token\ndata: {\"t\":\"a\",\"i\":0}\n\n");
  CHECK(s.token(stream_id(3, 0), 1, 12, "b\"") == task_stream::accepted::later);
  CHECK(c.link->body.find("event: token\ndata: {\"t\":\"b\\\"\",\"i\":1}\n\n") != std::string::npos);
  CHECK_FALSE(c.link->ended);
  CHECK(s.end(stream_id(3, 0), "context"));
  CHECK(c.link->ended);
  CHECK(c.link->body.find("\"finish_reason\":\"length\"") != std::string::npos);
  CHECK(s.outcome() == "completed");

  client late;
  s.subscribe(late.ex);
  CHECK(late.link->body == c.link->body);
  CHECK(late.link->ended);
}

TEST_CASE("task stream: only the current attempt's next token is taken, and nothing after the end") {
  task_stream s;
  s.expect(stream_id(3, 0));
  CHECK(s.token(stream_id(3, 0), 0, 1, "x") == task_stream::accepted::first);
  CHECK(s.token(stream_id(3, 0), 0, 1, "x") == task_stream::accepted::no);  // duplicate
  CHECK(s.token(stream_id(3, 0), 2, 1, "x") == task_stream::accepted::no);  // gap
  s.expect(stream_id(3, 1)); // failed over: the old attempt's tokens and end are ignored
  CHECK(s.token(stream_id(3, 0), 1, 2, "y") == task_stream::accepted::no);
  CHECK_FALSE(s.end(stream_id(3, 0), "length"));
  CHECK(s.token(stream_id(3, 1), 1, 2, "y") == task_stream::accepted::later);
  CHECK(s.token_ids() == std::vector<std::int32_t>{1, 2});

  CHECK(s.cancel());
  CHECK(s.outcome() == "cancelled");
  CHECK(s.token(stream_id(3, 1), 2, 3, "z") == task_stream::accepted::no);
  CHECK_FALSE(s.end(stream_id(3, 1), "length"));
  CHECK_FALSE(s.finish("failed", "error", "{}"));
  CHECK_FALSE(s.cancel());
  CHECK(s.token_ids().size() == 2);
}

TEST_CASE("task stream: a cancel racing with tokens is followed by none of them") {
  for (int round = 0; round < 50; ++round) {
    task_stream s;
    s.expect(1);
    client c;
    s.subscribe(c.ex);
    std::thread engine([&] {
      for (std::uint64_t i = 0; i < 200; ++i)
        s.token(1, i, static_cast<std::int32_t>(i), "t");
    });
    while (s.token_ids().empty())
      std::this_thread::yield();
    s.cancel();
    engine.join();
    // the cancel's end is the last event written, and its count is what was written before it
    auto end_at = c.link->body.find("event: end");
    REQUIRE(end_at != std::string::npos);
    CHECK(c.link->body.find("event: token", end_at) == std::string::npos);
    std::size_t written = 0;
    for (auto at = c.link->body.find("event: token"); at != std::string::npos;
         at = c.link->body.find("event: token", at + 1))
      ++written;
    CHECK(c.link->body.find("\"tokens_out\":" + std::to_string(written) + ",") != std::string::npos);
  }
}

TEST_CASE("task stream: a last token and the end leave in one write, and count as one end") {
  task_stream s;
  s.expect(stream_id(4, 0));
  client c;
  s.subscribe(c.ex);
  CHECK(s.last_token(stream_id(4, 1), 0, 9, "x", "length") == task_stream::accepted::no); // old attempt
  CHECK(s.outcome().empty());
  CHECK(s.last_token(stream_id(4, 0), 0, 9, "x", "stop") == task_stream::accepted::first);
  CHECK(s.outcome() == "completed");
  CHECK(c.link->ended);
  CHECK(c.link->body.find("event: token\ndata: {\"t\":\"x\",\"i\":0}\n\nevent: end\ndata: {\"tokens_out\":1,")
        != std::string::npos);
  CHECK(s.token_ids() == std::vector<std::int32_t>{9});
  CHECK(s.last_token(stream_id(4, 0), 1, 10, "y", "length") == task_stream::accepted::no);
  CHECK_FALSE(s.end(stream_id(4, 0), "length"));

  // a duplicate last token (its index was already taken) still ends the stream
  task_stream d;
  d.expect(7);
  CHECK(d.token(7, 0, 1, "a") == task_stream::accepted::first);
  CHECK(d.last_token(7, 0, 1, "a", "length") == task_stream::accepted::no);
  CHECK(d.outcome() == "completed");
  CHECK(d.token_ids().size() == 1);
}
