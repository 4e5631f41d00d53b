#include "engines/engine_worker.hpp"

#include <algorithm>

#include <sys/prctl.h>
#include <time.h>

namespace llorch::engine {

namespace {
// The end of a stream goes to its observer first, then to its receiver: when the observer (the
// pool) is on the receiver's route (no link of the engine's own to the receiver's node), it has
// the end in its mailbox before the client can see it.
void send_done(const caf::actor& reply_to, const caf::actor& observer, engine_done d) {
  if (observer) caf::anon_send(observer, d);
  caf::anon_send(reply_to, std::move(d));
}

// What one step has for each actor, sent as one message each (observers first, as above).
class step_outbox {
public:
  void token(const caf::actor& to, engine_token t) { box(receivers_, to).tokens.push_back(std::move(t)); }
  void end(const caf::actor& to, const caf::actor& observer, engine_done d) {
    if (observer) box(observers_, observer).ends.push_back(d);
    box(receivers_, to).ends.push_back(std::move(d));
  }
  void send() {
    for (auto* boxes : {&observers_, &receivers_})
      for (auto& [to, step] : *boxes) send_one(to, std::move(step));
  }

private:
  using boxes = std::vector<std::pair<caf::actor, engine_step>>;
  static engine_step& box(boxes& b, const caf::actor& to) {
    for (auto& [a, step] : b)
      if (a == to) return step;
    return b.emplace_back(to, engine_step{}).second;
  }
  // The plain messages when they say it all, so that a lone stream's receiver sees no batches; a
  // stream's last token goes with its end, so the receiver can write both at once.
  static void send_one(const caf::actor& to, engine_step step) {
    auto& t = step.tokens;
    auto& e = step.ends;
    if (t.size() == 1 && e.empty()) caf::anon_send(to, std::move(t[0]));
    else if (t.empty() && e.size() == 1) caf::anon_send(to, std::move(e[0]));
    else if (t.size() == 1 && e.size() == 1 && t[0].task_id == e[0].task_id)
      caf::anon_send(to, std::move(t[0]), std::move(e[0]));
    else caf::anon_send(to, std::move(step));
  }
  boxes observers_, receivers_;
};
} // namespace

engine_worker::engine_worker(std::shared_ptr<const model> m, int threads, int slots, int context,
                             std::string model_id)
    : model_(m), tokenizer_(m->vocab), decoder_(m, threads, slots, context),
      model_id_(std::move(model_id)), free_slots_(decoder_.slots()) {
  thread_ = std::thread([this] {
    // the pause after a first token (loop) is 1 us, not the default 50 us of timer slack
    prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0);
    loop();
  });
}

engine_worker::~engine_worker() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void engine_worker::submit(engine_generate g) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    live_.insert(g.task_id);
    waiting_.push_back(std::move(g));
    queued_.store(static_cast<int>(waiting_.size()));
  }
  wake_.notify_all();
}

void engine_worker::cancel(std::uint64_t task_id, std::string error) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    cancels_.emplace_back(task_id, std::move(error));
  }
  wake_.notify_all();
}

bool engine_worker::running(std::uint64_t task_id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return live_.count(task_id) != 0;
}

engine_status engine_worker::status() const {
  engine_status s;
  s.slots_total = decoder_.slots();
  s.slots_free = free_slots_.load();
  s.queued = queued_.load();
  s.ctx_max = decoder_.context();
  s.model_id = model_id_;
  s.tokens_total = tokens_total_.load();
  s.cancelled_total = cancelled_total_.load();
  return s;
}

void engine_worker::forget(std::uint64_t id) {
  std::lock_guard<std::mutex> lock(mutex_);
  live_.erase(id);
}

void engine_worker::finish(std::uint64_t id, const std::string& reason, const std::string& error) {
  if (auto e = take_end(id, reason, error))
    send_done(e->reply_to, e->observer, std::move(e->done));
}

std::optional<engine_worker::ended> engine_worker::take_end(std::uint64_t id, const std::string& reason,
                                                            const std::string& error) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return std::nullopt;
  stream& s = it->second;
  ended e{s.reply_to, s.observer, engine_done{id, reason, s.next_index, error, s.text.finish()}};
  streams_.erase(it);
  forget(id);
  return e;
}

void engine_worker::loop() {
  std::deque<engine_generate> waiting; // owned by this thread once taken from the inbox
  while (true) {
    std::vector<std::pair<std::uint64_t, std::string>> cancels;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] {
        return stop_ || !cancels_.empty() || (!waiting_.empty()) || decoder_.active() > 0 ||
               (!waiting.empty() && decoder_.free_slots() > 0);
      });
      if (stop_) break;
      cancels.swap(cancels_);
      while (!waiting_.empty()) {
        waiting.push_back(std::move(waiting_.front()));
        waiting_.pop_front();
      }
    }
    // cancels take effect before the next step: no token of a cancelled task follows
    for (auto& [id, error] : cancels) {
      const char* reason = error.empty() ? "cancelled" : "error";
      if (decoder_.cancel(id)) {
        free_slots_.store(decoder_.free_slots());
        cancelled_total_.fetch_add(1);
        finish(id, reason, error);
        continue;
      }
      for (auto it = waiting.begin(); it != waiting.end(); ++it)
        if (it->task_id == id) {
          cancelled_total_.fetch_add(1);
          send_done(it->reply_to, it->observer, engine_done{id, reason, it->first_index, error, {}});
          forget(id);
          waiting.erase(it);
          break;
        }
    }
    // waiting requests join the batch while slots are free
    while (!waiting.empty() && decoder_.free_slots() > 0) {
      engine_generate g = std::move(waiting.front());
      waiting.pop_front();
      if (g.prompt.size() > static_cast<std::size_t>(decoder_.context()) * tokenizer_.max_piece_bytes()) {
        // cannot fit whatever the merges do: refuse before spending time encoding it
        send_done(g.reply_to, g.observer, engine_done{g.task_id, "error", g.first_index,
                                                          "prompt of " + std::to_string(g.prompt.size()) +
                                                   " bytes is longer than the context of " +
                                                   std::to_string(decoder_.context()) + " tokens",
                                               {}});
        forget(g.task_id);
        continue;
      }
      decode_request r;
      r.id = g.task_id;
      r.prompt = tokenizer_.encode(g.prompt, true);
      for (auto t : g.resume_ids) r.prompt.push_back(t);
      r.max_tokens = g.max_tokens;
      r.sampling = {g.temperature, g.top_k, g.top_p, g.seed};
      r.ignore_eos = g.ignore_eos;
      r.first_index = g.first_index;
      if (streams_.count(g.task_id) != 0) {
        // the running stream keeps its live entry (and its observer its count of it)
        caf::anon_send(g.reply_to, engine_done{g.task_id, "error", g.first_index, "task is already running", {}});
        continue;
      }
      const int prev = r.prompt.back();
      if (auto st = decoder_.submit(std::move(r)); !st) {
        send_done(g.reply_to, g.observer, engine_done{g.task_id, "error", g.first_index, st.message(), {}});
        forget(g.task_id);
        continue;
      }
      stream s;
      s.reply_to = g.reply_to;
      s.observer = g.observer;
      s.prev = prev;
      s.next_index = g.first_index;
      streams_.emplace(g.task_id, std::move(s));
    }
    queued_.store(static_cast<int>(waiting.size()) + [&] {
      std::lock_guard<std::mutex> lock(mutex_);
      return static_cast<int>(waiting_.size());
    }());
    free_slots_.store(decoder_.free_slots());
    if (decoder_.active() == 0) continue;

    bool first_token = false;
    const auto events = decoder_.step();
    // before any end goes out: a status read after a stream's end must count its slot free
    free_slots_.store(decoder_.free_slots());
    step_outbox out;
    for (const auto& e : events) {
      auto it = streams_.find(e.id);
      if (it == streams_.end()) continue;
      stream& s = it->second;
      if (e.token >= 0) {
        first_token = first_token || !s.started;
        s.started = true;
        const bool eos = e.finished == finish_reason::eos;
        out.token(s.reply_to, engine_token{e.id, e.index, e.token,
                                           eos ? std::string() : s.text.push(tokenizer_.decode(s.prev, e.token))});
        tokens_total_.fetch_add(1, std::memory_order_relaxed);
        s.prev = e.token;
        s.next_index = e.index + 1;
      }
      if (e.finished != finish_reason::none)
        if (auto end = take_end(e.id, finish_reason_name(e.finished)))
          out.end(end->reply_to, end->observer, std::move(end->done));
    }
    out.send();
    // A first token waits in CAF's network thread; on a busy core that thread, just woken, would
    // otherwise wait for this loop's time slice to end (about a millisecond) before sending it.
    // Later tokens go out in bulk when the slice ends, which costs less per token. A short sleep
    // gives the core up for sure; a yield did not always (measured from the engine's first token
    // to orchestratord's stream router: p90 1.7 - 1.9 ms with the yield, 0.8 - 1.2 with the sleep).
    if (first_token) {
      const timespec pause{0, 1000};
      nanosleep(&pause, nullptr);
    }
  }
  // shutting down: every open stream ends with an error the task actor can resume from
  std::vector<std::uint64_t> open;
  for (const auto& kv : streams_) open.push_back(kv.first);
  for (auto id : open) finish(id, "error", "engine is shutting down");
}

caf::behavior engine_actor(caf::event_based_actor* self, std::shared_ptr<engine_worker> worker) {
  // A receiver (or observer) that goes down without cancelling must not keep its slots busy. Its
  // streams end with an error, not `cancelled`: when the observer (the pool) is what went down,
  // the receiver still listens over the engine's own link and resumes them elsewhere.
  auto receivers = std::make_shared<std::map<caf::actor_addr, std::vector<std::uint64_t>>>();
  self->set_down_handler([worker, receivers](caf::down_msg& dm) {
    auto it = receivers->find(dm.source);
    if (it == receivers->end()) return;
    for (auto id : it->second) worker->cancel(id, "its pool or receiver went away");
    receivers->erase(it);
  });
  return {
      [self, worker, receivers](engine_generate& g) {
        // the observer (a pool) outlives its streams' receivers, which may be on another node
        const caf::actor& watched = g.observer ? g.observer : g.reply_to;
        if (watched) {
          auto& ids = (*receivers)[watched.address()];
          if (ids.empty()) self->monitor(watched);
          // a long-lived receiver (a pool relaying many tasks) keeps only its running ones
          if (ids.size() >= 64)
            ids.erase(std::remove_if(ids.begin(), ids.end(), [&](std::uint64_t id) { return !worker->running(id); }),
                      ids.end());
          ids.push_back(g.task_id);
        }
        worker->submit(std::move(g));
      },
      [worker](const engine_cancel& c) { worker->cancel(c.task_id); },
      [worker](engine_status_atom) { return worker->status(); },
  };
}

} // namespace llorch::engine
