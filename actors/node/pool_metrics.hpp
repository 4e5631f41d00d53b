#pragma once
// pool-managerd's pool metrics (CONTRACT §6), set from the pools' real state.
#include "runtime/messages.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace llorch::metrics {
class registry;
}

namespace llorch {

// Registers every pool metric family and sets the gauges from `pools`. Called whenever a pool's
// state changes; counters only get their per-pool child (they count real events elsewhere).
void export_pool_metrics(metrics::registry& registry, const std::vector<pool_status>& pools);

void count_engine_restart(metrics::registry& registry, const std::string& pool_id);
// A stream's tokens, counted when it ends: the tokens go from the engine straight to the task.
void count_tokens_out(metrics::registry& registry, const std::string& pool_id, std::uint64_t tokens);

} // namespace llorch
