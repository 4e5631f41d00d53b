#pragma once
// task_stream: a task's event log and its subscribers, shared by the stream router (which appends
// tokens and normal ends as they arrive, without a hop through the task actor), the task actor
// (`started`, cancels, errors, subscriptions) and the HTTP routes that look the task up. One mutex
// orders them all: nothing is appended after the terminal event, so no token follows a cancel's
// acknowledgement.
//
// Events: `started`, `token` {t, i} per token, then exactly one of `end` {tokens_out, decode_ms,
// finish_reason} or `error` {code, message, retriable}. A subscriber that comes late gets the log
// from index 0, then the rest.
#include <caf/actor.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace llorch::net {
class http_exchange;
}

namespace llorch {

class task_stream {
public:
  // How a token offered by an engine was taken.
  enum class accepted { no, first, later };

  // The attempt whose tokens are taken from now on (see stream_id in task.hpp).
  void expect(std::uint64_t stream_id);
  // A token of the current attempt at the next index is appended and sent on; a token of an
  // earlier attempt, a duplicate (a resumed stream repeats nothing, but an old engine may) or one
  // after the end is dropped.
  accepted token(std::uint64_t stream_id, std::uint64_t index, std::int32_t token_id,
                 const std::string& piece);
  // `started`, once; the decode time of `end` counts from here.
  void start(std::string data);
  // The terminal `end` of the current attempt (finish_reason from the engine's reason); false
  // when the task already ended or the attempt is not the current one.
  bool end(std::uint64_t stream_id, const std::string& reason);
  // A token that ends the stream (taken as by token()), then the end as by end(): both leave in
  // one write.
  accepted last_token(std::uint64_t stream_id, std::uint64_t index, std::int32_t token_id,
                      const std::string& piece, const std::string& reason);
  // The terminal `end` of a cancel (finish_reason cancelled); false when the task already ended.
  bool cancel();
  // Any other terminal event (an error); false when the task already ended.
  bool finish(std::string state, std::string name, std::string data);

  // An SSE client: the log so far in one write, then every event as it comes.
  void subscribe(std::shared_ptr<net::http_exchange> ex);
  // An in-process listener: (task_event_atom, name, data) for every event, the log first.
  void subscribe(caf::actor listener);

  std::vector<std::int32_t> token_ids() const;
  std::size_t tokens() const;
  // "completed", "cancelled" or "failed" once ended; empty before.
  std::string outcome() const;
  // Seconds since the stream was made, on admission.
  double since_submitted() const;

private:
  struct event {
    std::string name;
    std::string data; // JSON
  };
  // under the mutex:
  void emit(event e);
  bool finish_locked(std::string state, std::vector<event> events);
  std::optional<event> take_token(std::uint64_t stream_id, std::uint64_t index, std::int32_t token_id,
                                  const std::string& piece);
  accepted taken() const;
  event end_event(const std::string& reason) const;

  mutable std::mutex mutex_;
  std::vector<event> log_;
  std::vector<std::int32_t> token_ids_;
  std::vector<std::shared_ptr<net::http_exchange>> subscribers_;
  std::vector<caf::actor> listeners_;
  std::uint64_t stream_id_ = 0;
  std::string outcome_;
  const std::chrono::steady_clock::time_point submitted_at_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point started_at_ = submitted_at_;
};

} // namespace llorch
