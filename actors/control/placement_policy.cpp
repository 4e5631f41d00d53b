#include "actors/control/placement_policy.hpp"

#include "actors/control/node_table.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>

namespace llorch {

namespace {

// One pool that passed the filter, kept by pointer: the scan allocates nothing.
struct candidate {
  const node_info* node = nullptr;
  const pool_status* pool = nullptr;
  std::int64_t busy = 0;
};

std::int64_t busy_slots(const pool_status& p) {
  return std::max<std::int64_t>(0, std::int64_t{p.slots_total} - std::int64_t{p.slots_free});
}

// The score of DESIGN.md: most free VRAM, then fewest busy slots, then the smallest
// (node_id, pool_id), which makes the choice independent of the input order.
bool better(const candidate& a, const candidate& b) {
  if (a.pool->vram_free_bytes != b.pool->vram_free_bytes)
    return a.pool->vram_free_bytes > b.pool->vram_free_bytes;
  if (a.busy != b.busy)
    return a.busy < b.busy;
  if (a.node->node_id != b.node->node_id)
    return a.node->node_id < b.node->node_id;
  return a.pool->pool_id < b.pool->pool_id;
}

void keep_best(candidate& best, const candidate& c) {
  if (best.pool == nullptr || better(c, best))
    best = c;
}

bool in_avoid_list(const placement_request& req, const pool_status& p) {
  return std::find(req.avoid_pools.begin(), req.avoid_pools.end(), p.pool_id) !=
         req.avoid_pools.end();
}

bool matches_target(const placement_request& req, const node_info& n, const pool_status& p) {
  return (req.node_id.empty() || n.node_id == req.node_id) &&
         (req.pool_id.empty() || p.pool_id == req.pool_id);
}

// Why the pools serving the model were not taken, for the outcome and the reason text.
struct tally {
  int serving = 0;
  int node_offline = 0;
  int node_draining = 0;
  int pool_not_ready = 0;
  int pool_draining = 0;
  int full = 0;    // available, not avoided, no free slot
  int avoided = 0; // available, in avoid_pools

  int unavailable() const { return node_offline + node_draining + pool_not_ready + pool_draining; }

  // Counts one serving pool under the first filter rule it fails.
  void add(const placement_request& req, const node_info& n, const pool_status& p) {
    ++serving;
    if (!node_table::pool_available(n, p)) {
      // Same conditions as node_table::pool_available, split by cause.
      if (!n.online)
        ++node_offline;
      else if (n.status == "draining")
        ++node_draining;
      else if (!p.ready)
        ++pool_not_ready;
      else
        ++pool_draining;
    } else if (in_avoid_list(req, p)) {
      ++avoided;
    } else if (p.slots_free <= 0) {
      ++full;
    }
  }

  std::string describe() const {
    std::string out = std::to_string(serving) + (serving == 1 ? " pool serves" : " pools serve") +
                      " it";
    auto part = [&out](int count, const char* what) {
      if (count > 0)
        out += ", " + std::to_string(count) + " " + what;
    };
    part(node_offline, "on an offline node");
    part(node_draining, "on a draining node");
    part(pool_not_ready, "not ready");
    part(pool_draining, "draining");
    part(avoided, "in avoid_pools");
    part(full, "without a free slot");
    return out;
  }
};

std::string human_bytes(std::uint64_t b) {
  char buf[32];
  if (b >= (1ULL << 30))
    std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(b) / (1ULL << 30));
  else
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(b) / (1ULL << 20));
  return buf;
}

std::string target_text(const placement_request& req) {
  if (!req.node_id.empty() && !req.pool_id.empty())
    return "pool '" + req.pool_id + "' on node '" + req.node_id + "'";
  if (!req.pool_id.empty())
    return "pool '" + req.pool_id + "'";
  return "node '" + req.node_id + "'";
}

placement_decision placed(const candidate& c, int candidates, std::string note) {
  placement_decision d;
  d.placed = true;
  d.node_id = c.node->node_id;
  d.pool_id = c.pool->pool_id;
  d.outcome = placement_outcome::placed;
  d.reason = d.node_id + "/" + d.pool_id + ": " + human_bytes(c.pool->vram_free_bytes) +
             " VRAM free, " + std::to_string(c.busy) + "/" + std::to_string(c.pool->slots_total) +
             " slots busy; best of " + std::to_string(candidates) + " candidate" +
             (candidates == 1 ? "" : "s") + note;
  return d;
}

placement_decision not_placed(const char* outcome, std::string reason) {
  placement_decision d;
  d.outcome = outcome;
  d.reason = std::move(reason);
  return d;
}

// Why nothing was placed, from the tally of the pools that were in scope.
placement_decision explain(const placement_request& req, const tally& t) {
  const std::string model = "model '" + req.model + "'";
  if (t.serving == 0)
    return not_placed(placement_outcome::no_pool_for_model, "no pool serves " + model);
  if (t.full > 0)
    return not_placed(placement_outcome::no_capacity,
                      "no free slot for " + model + " (" + t.describe() + ")");
  if (t.avoided > 0)
    return not_placed(placement_outcome::all_avoided,
                      "every available pool for " + model + " is in avoid_pools (" +
                          t.describe() + ")");
  return not_placed(placement_outcome::no_pool_for_model,
                    "no available pool serves " + model + " (" + t.describe() + ")");
}

} // namespace

bool pool_serves(const pool_status& pool, const std::string& model) {
  if (model.empty())
    return false;
  if (!pool.model_id.empty())
    return pool.model_id == model;
  return std::find(pool.models.begin(), pool.models.end(), model) != pool.models.end();
}

placement_decision place(const std::vector<node_info>& nodes, const placement_request& req) {
  const bool pin = req.mode == "pin";
  const bool prefer = req.mode == "prefer";
  if (!pin && !prefer && req.mode != "auto")
    return not_placed(placement_outcome::invalid_request,
                      "placement mode '" + req.mode + "' is not one of auto, pin, prefer");
  if ((pin || prefer) && req.pool_id.empty() && req.node_id.empty())
    return not_placed(placement_outcome::invalid_request,
                      "placement mode " + req.mode + " needs a pool_id or a node_id");
  if (req.model.empty())
    return not_placed(placement_outcome::invalid_request, "the task names no model");

  // Fast pass: the best eligible pool overall and on the pin/prefer target. The availability test
  // is node_table::pool_available split into its node half (once per node) and its pool half; a
  // test checks that the two agree.
  candidate best_all, best_target;
  int eligible_all = 0, eligible_target = 0;
  for (const auto& n : nodes) {
    if (!n.online || n.status == "draining")
      continue;
    for (const auto& p : n.pools) {
      if (p.slots_free <= 0 || !p.ready || p.draining || !pool_serves(p, req.model) ||
          in_avoid_list(req, p))
        continue;
      const bool on_target = (pin || prefer) && matches_target(req, n, p);
      if (pin && !on_target)
        continue;
      const candidate c{&n, &p, busy_slots(p)};
      ++eligible_all;
      keep_best(best_all, c);
      if (on_target) {
        ++eligible_target;
        keep_best(best_target, c);
      }
    }
  }
  if ((pin || prefer) && best_target.pool != nullptr)
    return placed(best_target, eligible_target, pin ? " (pinned)" : " (preferred)");
  if (!pin && best_all.pool != nullptr)
    return placed(best_all, eligible_all,
                  prefer ? " (preferred " + target_text(req) + " not eligible, fell back to auto)"
                         : std::string{});

  // Nothing placed: a second pass counts why, for the outcome and the reason.
  tally t;
  int target_pools = 0; // pools matching the pin target, serving the model or not
  for (const auto& n : nodes) {
    for (const auto& p : n.pools) {
      if (pin && !matches_target(req, n, p))
        continue;
      ++target_pools;
      if (pool_serves(p, req.model))
        t.add(req, n, p);
    }
  }
  if (!pin)
    return explain(req, t);
  if (t.full > 0)
    return not_placed(placement_outcome::no_capacity,
                      "pinned " + target_text(req) + " has no free slot for model '" + req.model +
                          "' (" + t.describe() + ")");
  std::string why = target_pools == 0 ? "does not exist"
                    : t.serving == 0  ? "does not serve model '" + req.model + "'"
                                      : "is unavailable (" + t.describe() + ")";
  return not_placed(placement_outcome::pinned_unavailable, "pinned " + target_text(req) + " " + why);
}

bool model_known(const std::vector<node_info>& nodes, const std::string& model) {
  if (model.empty())
    return false;
  for (const auto& n : nodes)
    for (const auto& p : n.pools)
      if (p.model_id == model ||
          std::find(p.models.begin(), p.models.end(), model) != p.models.end())
        return true;
  return false;
}

} // namespace llorch
