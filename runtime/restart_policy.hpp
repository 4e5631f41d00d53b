#pragma once
// When and how fast to restart a failed child: exponential backoff with jitter, plus an intensity
// limit (more than N failures within T means the fault is not transient: give up and escalate).
// Pure and deterministic for a given seed, so tests can drive it with their own clock.
#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <random>

namespace llorch {

struct restart_limits {
  int max_restarts = 5;                        // failures tolerated within `within`
  std::chrono::milliseconds within{60000};     // the sliding intensity window
  std::chrono::milliseconds backoff_initial{200};
  std::chrono::milliseconds backoff_max{30000};
  double jitter = 0.2; // delay * (1 +/- jitter), uniformly; spreads restarts of many children
};

class restart_policy {
public:
  using clock = std::chrono::steady_clock;

  restart_policy(restart_limits limits, std::uint64_t jitter_seed);

  // Called when the child failed at `now`. Returns the delay before the restart, or nullopt when
  // the intensity limit (more than max_restarts failures within `within`) is exceeded: give up
  // and escalate. A child that ran for backoff_max since its last restart starts a fresh backoff
  // streak (on_failure applies on_stable itself first).
  std::optional<std::chrono::milliseconds> on_failure(clock::time_point now);

  // Called when a child has run stably; the backoff resets after it ran for backoff_max without
  // failing (counted from the moment its last restart was due).
  void on_stable(clock::time_point now);

  // Failures recorded within the window ending at `now`.
  int restarts_in_window(clock::time_point now) const;

  // Consecutive failures that set the current backoff exponent (0 after a reset).
  int streak() const { return streak_; }

  const restart_limits& limits() const { return limits_; }

private:
  std::chrono::milliseconds base_delay() const;
  double next_unit(); // uniform in [0, 1)

  restart_limits limits_;
  std::mt19937_64 rng_;
  std::deque<clock::time_point> failures_; // oldest first, only those still inside the window
  int streak_ = 0;
  std::optional<clock::time_point> restart_due_; // failure time + the delay returned for it
};

} // namespace llorch
