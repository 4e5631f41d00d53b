#pragma once
// Wall-clock time for timestamps that leave the process (APIs, metrics). Durations use
// std::chrono::steady_clock instead.
#include <chrono>
#include <cstdint>

namespace llorch {

inline std::int64_t wall_clock_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

} // namespace llorch
