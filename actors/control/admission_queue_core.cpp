#include "actors/control/admission_queue_core.hpp"

#include <algorithm>
#include <cmath>

namespace llorch {

namespace {

std::size_t lowbit(std::size_t i) { return i & (~i + 1); }

// Min-heap order on (deadline, stamp): std::push_heap keeps the greatest on top.
struct later {
  template <class E> bool operator()(const E& a, const E& b) const {
    return a.deadline_ms != b.deadline_ms ? a.deadline_ms > b.deadline_ms : a.stamp > b.stamp;
  }
};

constexpr std::int64_t never = std::numeric_limits<std::int64_t>::max();

} // namespace

// --- lane -------------------------------------------------------------------------------------

void admission_queue_core::lane::append(slot s) {
  s.prev = last;
  s.next = none;
  if (last != none)
    slots[last].next = slots.size();
  else
    first = slots.size();
  last = slots.size();
  slots.push_back(std::move(s));
  if (tree.empty())
    tree.push_back(0); // index 0 is unused
  // Fenwick append: tree[j] = a[j] + sum of a over (j - lowbit(j), j - 1], which is
  // prefix(j - 1) - prefix(j - lowbit(j)).
  const std::size_t j = slots.size();
  std::int32_t sum = 1;
  for (std::size_t k = j - 1; k > 0; k -= lowbit(k))
    sum += tree[k];
  for (std::size_t k = j - lowbit(j); k > 0; k -= lowbit(k))
    sum -= tree[k];
  tree.push_back(sum);
  ++live;
}

void admission_queue_core::lane::kill(std::size_t i) {
  slot& s = slots[i];
  s.live = false;
  (s.prev != none ? slots[s.prev].next : first) = s.next;
  (s.next != none ? slots[s.next].prev : last) = s.prev;
  for (std::size_t j = i + 1; j < tree.size(); j += lowbit(j))
    tree[j] -= 1;
  --live;
}

std::size_t admission_queue_core::lane::live_before(std::size_t i) const {
  std::int64_t sum = 0;
  for (std::size_t j = i; j > 0; j -= lowbit(j))
    sum += tree[j];
  return static_cast<std::size_t>(sum);
}

// --- queue ------------------------------------------------------------------------------------

admission_queue_core::admission_queue_core(std::size_t capacity) : capacity_(capacity) {
  index_.reserve(std::min<std::size_t>(capacity, 1u << 16));
}

admission_queue_core::admit_result admission_queue_core::push(queued_task t) {
  if (size() >= capacity_)
    return admit_result::full;
  if (index_.count(t.task_id) > 0)
    return admit_result::duplicate;
  const std::uint8_t lane_no = t.interactive ? 0 : 1;
  lane& l = lanes_[lane_no];
  const std::uint64_t stamp = next_stamp_++;
  if (t.deadline_ms != never) {
    deadlines_.push_back({t.deadline_ms, stamp, t.task_id});
    std::push_heap(deadlines_.begin(), deadlines_.end(), later{});
  }
  index_.emplace(t.task_id, location{lane_no, l.slots.size()});
  l.append(slot{std::move(t), stamp, true});
  maybe_rebuild_deadlines();
  return admit_result::admitted;
}

std::size_t admission_queue_core::position(std::uint64_t task_id) const {
  auto it = index_.find(task_id);
  if (it == index_.end())
    return npos;
  const auto& loc = it->second;
  const std::size_t ahead = lanes_[loc.lane].live_before(loc.slot);
  return loc.lane == 0 ? ahead : lanes_[0].live + ahead;
}

queued_task admission_queue_core::take(std::uint8_t lane_no, std::size_t slot_no) {
  lane& l = lanes_[lane_no];
  queued_task t = std::move(l.slots[slot_no].task);
  index_.erase(t.task_id);
  l.kill(slot_no);
  maybe_compact(lane_no);
  return t;
}

std::optional<queued_task>
admission_queue_core::pop_placeable(const std::function<bool(const queued_task&)>& can_place) {
  for (std::uint8_t lane_no = 0; lane_no < 2; ++lane_no) {
    lane& l = lanes_[lane_no];
    for (std::size_t i = l.first; i != none; i = l.slots[i].next)
      if (can_place(l.slots[i].task)) {
        queued_task t = take(lane_no, i);
        maybe_rebuild_deadlines();
        return t;
      }
  }
  return std::nullopt;
}

std::vector<queued_task> admission_queue_core::expire(std::int64_t now_ms) {
  std::vector<queued_task> out;
  while (!deadlines_.empty() && deadlines_.front().deadline_ms <= now_ms) {
    std::pop_heap(deadlines_.begin(), deadlines_.end(), later{});
    const deadline_entry e = deadlines_.back();
    deadlines_.pop_back();
    auto it = index_.find(e.task_id);
    if (it == index_.end())
      continue; // left the queue already
    const location loc = it->second;
    if (lanes_[loc.lane].slots[loc.slot].stamp != e.stamp)
      continue; // the same id pushed again later, with its own entry
    out.push_back(take(loc.lane, loc.slot));
  }
  return out;
}

bool admission_queue_core::remove(std::uint64_t task_id) {
  auto it = index_.find(task_id);
  if (it == index_.end())
    return false;
  const location loc = it->second;
  take(loc.lane, loc.slot);
  maybe_rebuild_deadlines();
  return true;
}

// Drops the tombstones once they outnumber the live tasks (plus a little slack), so that a scan
// and the memory stay proportional to the queue's contents; each compaction is paid for by the
// removals since the previous one.
void admission_queue_core::maybe_compact(std::uint8_t lane_no) {
  lane& l = lanes_[lane_no];
  if (l.slots.size() <= 2 * l.live + 32)
    return;
  std::size_t n = 0;
  for (std::size_t i = l.first; i != none; i = l.slots[i].next, ++n) {
    if (n != i)
      l.slots[n] = std::move(l.slots[i]); // n < i: slot i is read before it can be overwritten
    index_[l.slots[n].task.task_id].slot = n;
  }
  l.slots.resize(n);
  for (std::size_t k = 0; k < n; ++k) {
    l.slots[k].prev = k == 0 ? none : k - 1;
    l.slots[k].next = k + 1 == n ? none : k + 1;
  }
  l.first = n == 0 ? none : 0;
  l.last = n == 0 ? none : n - 1;
  // Linear Fenwick build over n ones.
  l.tree.assign(n + 1, 1);
  l.tree[0] = 0;
  for (std::size_t j = 1; j <= n; ++j) {
    const std::size_t parent = j + lowbit(j);
    if (parent <= n)
      l.tree[parent] += l.tree[j];
  }
}

void admission_queue_core::maybe_rebuild_deadlines() {
  if (deadlines_.size() <= 2 * size() + 64)
    return;
  deadlines_.clear();
  for (const lane& l : lanes_)
    for (std::size_t i = l.first; i != none; i = l.slots[i].next)
      if (l.slots[i].task.deadline_ms != never)
        deadlines_.push_back({l.slots[i].task.deadline_ms, l.slots[i].stamp, l.slots[i].task.task_id});
  std::make_heap(deadlines_.begin(), deadlines_.end(), later{});
}

// --- throughput -------------------------------------------------------------------------------

void admission_queue_core::note_dequeued(std::int64_t now_ms) {
  if (dequeues_ > 0) {
    const double interval = static_cast<double>(std::max<std::int64_t>(0, now_ms - last_dequeue_ms_));
    mean_interval_ms_ =
        samples_ == 0 ? interval : ewma_alpha * interval + (1.0 - ewma_alpha) * mean_interval_ms_;
    ++samples_;
  }
  ++dequeues_;
  last_dequeue_ms_ = dequeues_ == 1 ? now_ms : std::max(last_dequeue_ms_, now_ms);
}

namespace {
std::int64_t bounded_retry(double ms) {
  const double lo = static_cast<double>(admission_queue_core::min_retry_after_ms);
  const double hi = static_cast<double>(admission_queue_core::max_retry_after_ms);
  return static_cast<std::int64_t>(std::ceil(std::clamp(ms, lo, hi)));
}
} // namespace

std::int64_t admission_queue_core::retry_after_ms() const {
  if (samples_ == 0)
    return min_retry_after_ms;
  return bounded_retry(mean_interval_ms_);
}

std::int64_t admission_queue_core::retry_after_ms(std::int64_t now_ms) const {
  if (dequeues_ == 0)
    return min_retry_after_ms;
  const double stalled = static_cast<double>(std::max<std::int64_t>(0, now_ms - last_dequeue_ms_));
  return bounded_retry(samples_ == 0 ? stalled : std::max(mean_interval_ms_, stalled));
}

std::int64_t admission_queue_core::predicted_start_ms(std::uint64_t task_id) const {
  const std::size_t pos = position(task_id);
  if (pos == npos || samples_ == 0)
    return -1;
  return std::llround(static_cast<double>(pos + 1) * mean_interval_ms_);
}

} // namespace llorch
