#pragma once
// The placement decision of DESIGN.md as a pure function of the registry's view of the cluster:
// no actors, no clock, no logging, so that every rule is unit-tested and the scheduler actor around
// it only logs and counts what it returns. docs/placement.md describes the rules.
#include "runtime/messages.hpp"

#include <string>
#include <vector>

namespace llorch {

// What a task asks for (CONTRACT §2 `placement`), plus the pools a failover must not reuse.
struct placement_request {
  std::string model;
  std::string mode = "auto"; // auto|pin|prefer
  std::string pool_id;       // pin/prefer target; with node_id empty, that pool id on any node
  std::string node_id;       // pin/prefer target; with pool_id empty, any pool of that node
  std::vector<std::string> avoid_pools; // pool ids never chosen, on any node
};

// Values of placement_decision::outcome (also the `outcome` label of
// orchd_placement_decisions_total).
namespace placement_outcome {
inline constexpr const char* placed = "placed";
// Serving pools are available, but none has a free slot: wait in the queue.
inline constexpr const char* no_capacity = "no_capacity";
// No available pool (online node, ready, not draining) serves the model.
inline constexpr const char* no_pool_for_model = "no_pool_for_model";
// Available serving pools with a free slot exist, but every one is in avoid_pools.
inline constexpr const char* all_avoided = "all_avoided";
// Mode pin: the pinned pool/node does not exist, is unavailable, does not serve the model or is
// in avoid_pools. Waiting helps only if that target comes back.
inline constexpr const char* pinned_unavailable = "pinned_unavailable";
// Unknown mode, or pin/prefer without a pool_id or node_id.
inline constexpr const char* invalid_request = "invalid_request";
} // namespace placement_outcome

struct placement_decision {
  bool placed = false;
  std::string node_id, pool_id; // set when placed
  std::string outcome;          // one of placement_outcome
  std::string reason;           // human readable, for logs and error messages
};

// A pool serves `model` when it has that model loaded (pool.model_id == model), or, for a pool
// that names no single loaded model (model_id empty), when `model` is in pool.models.
bool pool_serves(const pool_status& pool, const std::string& model);

// Filter, then score (most vram_free_bytes, then fewest busy slots, then the smallest
// (node_id, pool_id)). The result does not depend on the order of `nodes` or of their pools.
placement_decision place(const std::vector<node_info>& nodes, const placement_request& req);

// Whether any pool of any node, online or not, has the model loaded or lists it in `models`: the
// difference between 404 MODEL_NOT_FOUND (false) and 503 NO_POOLS_AVAILABLE / waiting (true).
bool model_known(const std::vector<node_info>& nodes, const std::string& model);

} // namespace llorch
