#pragma once
// The decode loop of a replica on its own thread. The engine actor hands it requests and
// cancels; it runs continuous batching steps while anything is active and streams every token
// straight to the request's reply_to actor (one engine_token each, then engine_done, of which
// the request's observer gets a copy; the last token travels with the engine_done; what a step
// has for the same actor beyond that travels as one engine_step).
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "engines/batch_decoder.hpp"
#include "engines/engine_protocol.hpp"
#include "engines/tokenizer.hpp"
#include "engines/utf8.hpp"

namespace llorch::engine {

class engine_worker {
public:
  engine_worker(std::shared_ptr<const model> m, int threads, int slots, int context, std::string model_id);
  ~engine_worker();
  engine_worker(const engine_worker&) = delete;
  engine_worker& operator=(const engine_worker&) = delete;

  void submit(engine_generate g);
  // Ends the stream at the next step: `cancelled`, or with `error` when one is given (the stream
  // was given up, not cancelled: its receiver may resume it elsewhere).
  void cancel(std::uint64_t task_id, std::string error = {});
  engine_status status() const;
  // Whether the task is queued or decoding (not yet ended by engine_done).
  bool running(std::uint64_t task_id) const;

private:
  struct stream {
    caf::actor reply_to;
    caf::actor observer;
    int prev = 0;
    std::uint64_t next_index = 0;
    bool started = false; // a token was sent
    utf8_stream text;
  };
  void loop();
  void start_waiting();
  // Ends a stream and sends its end.
  void finish(std::uint64_t id, const std::string& reason, const std::string& error = {});
  // Ends a stream and forgets it: its end and who gets it, for the caller to send; none when the
  // stream is not running.
  struct ended {
    caf::actor reply_to, observer;
    engine_done done;
  };
  std::optional<ended> take_end(std::uint64_t id, const std::string& reason, const std::string& error = {});
  void forget(std::uint64_t id);

  std::shared_ptr<const model> model_;
  tokenizer tokenizer_;
  batch_decoder decoder_;
  std::string model_id_;
  std::map<std::uint64_t, stream> streams_; // decode thread only

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<engine_generate> waiting_;
  std::vector<std::pair<std::uint64_t, std::string>> cancels_; // stream, error (empty: cancelled)
  std::set<std::uint64_t> live_; // tasks submitted and not yet done
  bool stop_ = false;
  std::atomic<int> free_slots_;
  std::atomic<int> queued_{0};
  std::atomic<std::uint64_t> tokens_total_{0}, cancelled_total_{0};
  std::thread thread_;
};

// The engine actor: forwards engine_generate / engine_cancel to the worker, answers
// engine_status_atom with an engine_status.
caf::behavior engine_actor(caf::event_based_actor* self, std::shared_ptr<engine_worker> worker);

} // namespace llorch::engine
