#pragma once
// From an HTTP handler to an actor and back without blocking the HTTP thread: a short-lived actor
// sends the request and completes the exchange with the reply, or with 503 when the actor does
// not answer in time (it died, or it is overloaded).
#include "net/http_types.hpp"

#include <caf/all.hpp>

#include <chrono>
#include <memory>

namespace llorch::net {

inline constexpr std::chrono::milliseconds actor_reply_timeout{5000};

// `on_reply` must be a lambda with concrete parameter types (CAF matches on them).
template <class OnReply, class... Ts>
void ask(caf::actor_system& sys, const caf::actor& target, std::shared_ptr<http_exchange> ex,
         OnReply on_reply, Ts... xs) {
  if (!target) {
    ex->respond(error_response(503, "UNAVAILABLE", "internal actor is restarting", true, 1000));
    return;
  }
  sys.spawn([target, ex, on_reply, xs...](caf::event_based_actor* self) {
    self->request(target, actor_reply_timeout, xs...)
      .then(on_reply, [ex, self](const caf::error& err) {
        ex->respond(error_response(503, "UNAVAILABLE",
                                   "internal actor did not answer: " + self->system().render(err),
                                   true, 1000));
      });
  });
}

// For an actor that answers by running a continuation: capture this in it, and when every copy
// of the continuation is gone without an answer (the actor died with the request in its
// mailbox), the client gets 503. After an answer it does nothing (the first answer wins); a
// continuation that hands the exchange on to someone else who will answer calls disarm().
class answer_guard {
public:
  explicit answer_guard(std::shared_ptr<http_exchange> ex) : ex_(std::move(ex)) {}
  answer_guard(const answer_guard&) = delete;
  answer_guard& operator=(const answer_guard&) = delete;
  ~answer_guard() {
    if (ex_)
      ex_->respond(error_response(503, "UNAVAILABLE", "internal actor went away", true, 1000));
  }
  void disarm() { ex_ = nullptr; }

private:
  std::shared_ptr<http_exchange> ex_;
};

inline std::shared_ptr<answer_guard> answer_if_dropped(std::shared_ptr<http_exchange> ex) {
  return std::make_shared<answer_guard>(std::move(ex));
}

} // namespace llorch::net
