#pragma once
// The admission queue's state, free of actors and clocks (times are passed in): bounded, two
// priorities (interactive before batch), FIFO within a priority, no head-of-line blocking across
// models, deadlines, cancel, and the throughput estimate behind Retry-After. docs/placement.md.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace llorch {

struct queued_task {
  std::uint64_t task_id = 0;
  std::string model;
  bool interactive = true;
  std::int64_t enqueued_ms = 0;
  // Absolute, in the same clock as the now_ms given to expire(); the default never expires.
  std::int64_t deadline_ms = std::numeric_limits<std::int64_t>::max();
};

class admission_queue_core {
public:
  static constexpr std::size_t npos = std::numeric_limits<std::size_t>::max();
  static constexpr std::int64_t min_retry_after_ms = 1000;
  static constexpr std::int64_t max_retry_after_ms = 60000;

  explicit admission_queue_core(std::size_t capacity);

  // full: the queue holds `capacity` tasks; duplicate: that task_id is queued already. In both
  // cases nothing changes.
  enum class admit_result { admitted, full, duplicate };
  admit_result push(queued_task t);

  // 0-based position, every interactive task ahead of every batch task; npos if not queued.
  std::size_t position(std::uint64_t task_id) const;
  bool contains(std::uint64_t task_id) const { return index_.count(task_id) > 0; }

  // Takes the first task (interactive first, FIFO) for which `can_place(task)` is true; tasks
  // that cannot be placed yet stay in order (no head-of-line blocking across models). The
  // predicate is called once per queued task at most, in queue order, and must not touch the queue.
  std::optional<queued_task> pop_placeable(const std::function<bool(const queued_task&)>& can_place);

  // Removes and returns the tasks whose deadline has been reached (deadline_ms <= now_ms), earliest
  // deadline first.
  std::vector<queued_task> expire(std::int64_t now_ms);

  // Cancel while queued; false if the task is not queued.
  bool remove(std::uint64_t task_id);

  std::size_t depth(bool interactive) const { return lanes_[interactive ? 0 : 1].live; }
  std::size_t size() const { return lanes_[0].live + lanes_[1].live; }
  std::size_t capacity() const { return capacity_; }
  bool full() const { return size() >= capacity_; }
  // No later than the earliest deadline of a queued task (it may be one that left the queue);
  // INT64_MAX when none.
  std::int64_t next_deadline_ms() const {
    return deadlines_.empty() ? std::numeric_limits<std::int64_t>::max() : deadlines_.front().deadline_ms;
  }

  // Throughput: the caller notes every task that leaves the queue for a pool. The estimate is an
  // exponentially weighted mean of the intervals between dequeues (weight `ewma_alpha` on the newest).
  void note_dequeued(std::int64_t now_ms);
  // Estimated ms until a slot opens for a new task (one more dequeue), bounded to
  // [min_retry_after_ms, max_retry_after_ms]; min_retry_after_ms with no history.
  std::int64_t retry_after_ms() const;
  // The same, but a queue that has not moved for longer than the mean interval is no faster than
  // that: the estimate is at least the time since the last dequeue.
  std::int64_t retry_after_ms(std::int64_t now_ms) const;
  // Estimated ms from now until the task starts: (position + 1) mean intervals; -1 if the task is
  // not queued or no two dequeues have been noted yet (no estimate).
  std::int64_t predicted_start_ms(std::uint64_t task_id) const;
  // The mean interval between dequeues in ms, or a negative value with no estimate yet.
  double mean_dequeue_interval_ms() const { return samples_ > 0 ? mean_interval_ms_ : -1.0; }

  static constexpr double ewma_alpha = 0.2;

private:
  // One priority: tasks in arrival order. Tasks taken out leave tombstones, skipped by a linked
  // list through the live tasks and compacted away once they outnumber the live tasks (amortised
  // O(1)); a Fenwick tree over the live flags makes a position O(log n).
  static constexpr std::size_t none = std::numeric_limits<std::size_t>::max();
  struct slot {
    queued_task task;
    std::uint64_t stamp = 0; // unique per push: tells a stale deadline entry from a live one
    bool live = false;
    std::size_t prev = none, next = none; // neighbouring live slots
  };
  struct lane {
    std::vector<slot> slots;
    std::vector<std::int32_t> tree; // Fenwick, 1-based: tree[i] covers slots (i - lowbit(i), i]
    std::size_t first = none, last = none; // oldest and newest live slot
    std::size_t live = 0;

    void append(slot s);
    void kill(std::size_t i);
    std::size_t live_before(std::size_t i) const;
  };
  struct location {
    std::uint8_t lane;
    std::size_t slot;
  };
  struct deadline_entry {
    std::int64_t deadline_ms;
    std::uint64_t stamp;
    std::uint64_t task_id;
  };

  queued_task take(std::uint8_t lane_no, std::size_t slot_no);
  void maybe_compact(std::uint8_t lane_no);
  void maybe_rebuild_deadlines();

  std::size_t capacity_;
  lane lanes_[2]; // 0: interactive, 1: batch
  std::unordered_map<std::uint64_t, location> index_;
  std::vector<deadline_entry> deadlines_; // min-heap; entries of tasks gone are skipped lazily
  std::uint64_t next_stamp_ = 1;

  std::int64_t last_dequeue_ms_ = 0;
  std::int64_t dequeues_ = 0;
  std::int64_t samples_ = 0;
  double mean_interval_ms_ = 0.0;
};

} // namespace llorch
