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

} // namespace llorch::net
