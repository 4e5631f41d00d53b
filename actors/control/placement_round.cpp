#include "actors/control/placement_round.hpp"

#include <algorithm>

namespace llorch {

placement_round::placement_round(std::vector<node_info> nodes) : nodes_(std::move(nodes)) {
  for (const auto& n : nodes_)
    for (const auto& p : n.pools)
      free_slots_ += std::max(0, p.slots_free);
}

std::string placement_round::key(const placement_request& req) {
  // '\n' cannot occur in a valid model, mode or pool/node id, so the fields cannot run together.
  std::string k = req.model + '\n' + req.mode + '\n' + req.pool_id + '\n' + req.node_id;
  for (const auto& p : req.avoid_pools)
    k += '\n' + p;
  return k;
}

void placement_round::take_slot(const std::string& node_id, const std::string& pool_id) {
  for (auto& n : nodes_) {
    if (n.node_id != node_id)
      continue;
    for (auto& p : n.pools) {
      if (p.pool_id == pool_id && p.slots_free > 0) {
        --p.slots_free; // VRAM stays as reported: the next heartbeat brings the real figure
        --free_slots_;
        return;
      }
    }
  }
}

const placement_decision& placement_round::place(const placement_request& req) {
  std::string k = key(req);
  if (auto it = failed_.find(k); it != failed_.end())
    return it->second;
  ++evaluations_;
  placement_decision d = llorch::place(nodes_, req);
  if (!d.placed)
    return failed_.emplace(std::move(k), std::move(d)).first->second;
  take_slot(d.node_id, d.pool_id);
  ++placements_;
  last_ = std::move(d);
  return last_;
}

} // namespace llorch
