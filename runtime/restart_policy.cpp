#include "runtime/restart_policy.hpp"

#include <algorithm>
#include <cmath>

namespace llorch {

namespace {

// Keeps a misconfigured policy usable instead of producing negative or absurd delays.
restart_limits sanitize(restart_limits l) {
  using std::chrono::milliseconds;
  l.max_restarts = std::max(0, l.max_restarts);
  l.within = std::max(milliseconds{0}, l.within);
  l.backoff_max = std::max(milliseconds{0}, l.backoff_max);
  l.backoff_initial = std::clamp(l.backoff_initial, milliseconds{0}, l.backoff_max);
  if (!(l.jitter >= 0.0)) // also catches NaN
    l.jitter = 0.0;
  return l;
}

} // namespace

restart_policy::restart_policy(restart_limits limits, std::uint64_t jitter_seed)
  : limits_(sanitize(limits)), rng_(jitter_seed) {}

double restart_policy::next_unit() {
  // The top 53 bits give every double in [0, 1) with equal spacing, independent of the library's
  // distribution implementation, so a seed reproduces the same delays everywhere.
  return static_cast<double>(rng_() >> 11) * (1.0 / 9007199254740992.0);
}

std::chrono::milliseconds restart_policy::base_delay() const {
  auto initial = limits_.backoff_initial.count();
  auto cap = limits_.backoff_max.count();
  auto delay = initial;
  // Doubling stops at the cap, so a long streak can never overflow.
  for (int i = 1; i < streak_ && delay < cap; ++i)
    delay = delay > cap / 2 ? cap : delay * 2;
  return std::chrono::milliseconds{std::min(delay, cap)};
}

void restart_policy::on_stable(clock::time_point now) {
  if (streak_ > 0 && restart_due_ && now - *restart_due_ >= limits_.backoff_max)
    streak_ = 0;
}

int restart_policy::restarts_in_window(clock::time_point now) const {
  return static_cast<int>(std::count_if(failures_.begin(), failures_.end(), [&](auto t) {
    return t <= now && now - t < limits_.within;
  }));
}

std::optional<std::chrono::milliseconds> restart_policy::on_failure(clock::time_point now) {
  on_stable(now);
  while (!failures_.empty() && now - failures_.front() >= limits_.within)
    failures_.pop_front();
  failures_.push_back(now);
  if (static_cast<int>(failures_.size()) > limits_.max_restarts)
    return std::nullopt;
  ++streak_;
  auto base = static_cast<double>(base_delay().count());
  auto factor = 1.0 + limits_.jitter * (2.0 * next_unit() - 1.0);
  auto jittered = std::max(0.0, std::round(base * factor));
  // Rounding must not push the delay past the documented bound.
  auto cap = static_cast<double>(limits_.backoff_max.count());
  auto bound = std::floor(cap * (1.0 + limits_.jitter));
  auto delay = std::chrono::milliseconds{static_cast<std::int64_t>(std::min(jittered, bound))};
  restart_due_ = now + delay;
  return delay;
}

} // namespace llorch
