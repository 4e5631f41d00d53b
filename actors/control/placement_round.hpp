#pragma once
// One scheduling round over a snapshot of the registry: the scheduler places queued tasks one
// after another until nothing more fits. Each placement takes a slot in the round's view, so a
// round never sends more tasks to a pool than it has free slots; and a request that failed is not
// evaluated again in the same round, because a round only removes capacity (a failed request
// cannot succeed until the next snapshot). With a queue of 10,000 tasks for a model that has no
// pool, the policy runs once per round, not 10,000 times.
#include "actors/control/placement_policy.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace llorch {

class placement_round {
public:
  explicit placement_round(std::vector<node_info> nodes);

  // The decision for `req` in the current view; a placed decision takes one slot of that pool.
  // The reference stays valid until the next call.
  const placement_decision& place(const placement_request& req);

  // The view with this round's placements taken off slots_free.
  const std::vector<node_info>& view() const { return nodes_; }
  std::size_t evaluations() const { return evaluations_; } // runs of the policy
  std::size_t placements() const { return placements_; }
  // False when no pool of the view has a free slot: no request can be placed this round, so a
  // saturated cluster's passes need not look at the queue at all.
  bool any_free_slot() const { return free_slots_ > 0; }

private:
  static std::string key(const placement_request& req);
  void take_slot(const std::string& node_id, const std::string& pool_id);

  std::vector<node_info> nodes_;
  std::unordered_map<std::string, placement_decision> failed_;
  placement_decision last_;
  std::int64_t free_slots_ = 0; // over all pools of the view
  std::size_t evaluations_ = 0;
  std::size_t placements_ = 0;
};

} // namespace llorch
