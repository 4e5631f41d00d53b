#include "actors/control/task_stream.hpp"

#include "net/http_types.hpp"
#include "runtime/messages.hpp"

#include <boost/json.hpp>

#include <algorithm>

namespace llorch {
namespace {

namespace json = boost::json;

std::string sse_frame(const std::string& name, const std::string& data) {
  return "event: " + name + "\ndata: " + data + "\n\n";
}

// The task's outcome when its engine ends the stream for `reason`.
std::string outcome_of(const std::string& reason) {
  return reason == "cancelled" ? "cancelled" : "completed";
}

} // namespace

void task_stream::emit(event e) {
  auto frame = sse_frame(e.name, e.data);
  subscribers_.erase(std::remove_if(subscribers_.begin(), subscribers_.end(),
                                    [&](auto& ex) { return !ex->write(frame); }),
                     subscribers_.end());
  for (auto& l : listeners_)
    caf::anon_send(l, task_event_atom::value, e.name, e.data);
  log_.push_back(std::move(e));
}

void task_stream::expect(std::uint64_t stream_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  stream_id_ = stream_id;
}

std::optional<task_stream::event> task_stream::take_token(std::uint64_t stream_id, std::uint64_t index,
                                                          std::int32_t token_id, const std::string& piece) {
  if (!outcome_.empty() || stream_id != stream_id_ || index != token_ids_.size())
    return std::nullopt;
  token_ids_.push_back(token_id);
  return event{"token", json::serialize(json::object{{"t", piece}, {"i", index}})};
}

task_stream::accepted task_stream::taken() const {
  return token_ids_.size() == 1 ? accepted::first : accepted::later;
}

task_stream::accepted task_stream::token(std::uint64_t stream_id, std::uint64_t index,
                                         std::int32_t token_id, const std::string& piece) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto e = take_token(stream_id, index, token_id, piece);
  if (!e)
    return accepted::no;
  emit(std::move(*e));
  return taken();
}

void task_stream::start(std::string data) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!outcome_.empty())
    return;
  started_at_ = std::chrono::steady_clock::now();
  emit({"started", std::move(data)});
}

task_stream::event task_stream::end_event(const std::string& reason) const {
  auto decode_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - started_at_)
                     .count();
  return {"end", json::serialize(json::object{
                   {"tokens_out", token_ids_.size()},
                   {"decode_ms", decode_ms},
                   {"finish_reason", reason == "context" ? "length" : reason}})};
}

bool task_stream::end(std::uint64_t stream_id, const std::string& reason) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (stream_id != stream_id_)
    return false;
  return finish_locked(outcome_of(reason), {end_event(reason)});
}

task_stream::accepted task_stream::last_token(std::uint64_t stream_id, std::uint64_t index,
                                              std::int32_t token_id, const std::string& piece,
                                              const std::string& reason) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (stream_id != stream_id_ || !outcome_.empty())
    return accepted::no;
  std::vector<event> events;
  auto a = accepted::no;
  if (auto e = take_token(stream_id, index, token_id, piece)) {
    events.push_back(std::move(*e));
    a = taken();
  }
  events.push_back(end_event(reason));
  finish_locked(outcome_of(reason), std::move(events));
  return a;
}

bool task_stream::cancel() {
  std::lock_guard<std::mutex> lock(mutex_);
  return finish_locked("cancelled", {{"end", json::serialize(json::object{
                                               {"tokens_out", token_ids_.size()},
                                               {"decode_ms", 0},
                                               {"finish_reason", "cancelled"}})}});
}

bool task_stream::finish(std::string state, std::string name, std::string data) {
  std::lock_guard<std::mutex> lock(mutex_);
  return finish_locked(std::move(state), {{std::move(name), std::move(data)}});
}

bool task_stream::finish_locked(std::string state, std::vector<event> events) {
  if (!outcome_.empty())
    return false;
  outcome_ = std::move(state);
  // the last events leave with the stream's end, in one write
  std::string frames;
  for (auto& e : events)
    frames += sse_frame(e.name, e.data);
  for (auto& ex : subscribers_)
    ex->finish(frames);
  for (auto& l : listeners_)
    for (auto& e : events)
      caf::anon_send(l, task_event_atom::value, e.name, e.data);
  subscribers_.clear();
  listeners_.clear();
  for (auto& e : events)
    log_.push_back(std::move(e));
  return true;
}

void task_stream::subscribe(std::shared_ptr<net::http_exchange> ex) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!ex->start_stream(200, "text/event-stream"))
    return;
  std::string frames;
  for (auto& e : log_)
    frames += sse_frame(e.name, e.data);
  if (!ex->write(std::move(frames)))
    return;
  if (!outcome_.empty())
    ex->finish();
  else
    subscribers_.push_back(std::move(ex));
}

void task_stream::subscribe(caf::actor listener) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& e : log_)
    caf::anon_send(listener, task_event_atom::value, e.name, e.data);
  if (outcome_.empty())
    listeners_.push_back(std::move(listener));
}

std::vector<std::int32_t> task_stream::token_ids() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return token_ids_;
}

std::size_t task_stream::tokens() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return token_ids_.size();
}

std::string task_stream::outcome() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return outcome_;
}

double task_stream::since_submitted() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - submitted_at_).count();
}

} // namespace llorch
