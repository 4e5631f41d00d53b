#include "actors/control/admission_queue_core.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <random>
#include <set>

using namespace llorch;
using admit = admission_queue_core::admit_result;

namespace {

queued_task task(std::uint64_t id, bool interactive = true, const std::string& model = "llama",
                 std::int64_t deadline = std::numeric_limits<std::int64_t>::max()) {
  queued_task t;
  t.task_id = id;
  t.model = model;
  t.interactive = interactive;
  t.enqueued_ms = 0;
  t.deadline_ms = deadline;
  return t;
}

bool any(const queued_task&) { return true; }

std::vector<std::uint64_t> drain(admission_queue_core& q) {
  std::vector<std::uint64_t> out;
  while (auto t = q.pop_placeable(any))
    out.push_back(t->task_id);
  return out;
}

} // namespace

TEST_CASE("admission: bounded, full changes nothing") {
  admission_queue_core q(3);
  CHECK(q.capacity() == 3);
  CHECK(q.push(task(1)) == admit::admitted);
  CHECK(q.push(task(2, false)) == admit::admitted);
  CHECK(q.push(task(3)) == admit::admitted);
  CHECK(q.full());
  CHECK(q.push(task(4)) == admit::full);
  CHECK(q.push(task(5, false)) == admit::full);
  CHECK(q.size() == 3);
  CHECK_FALSE(q.contains(4));
  CHECK(q.position(4) == admission_queue_core::npos);
  CHECK(drain(q) == std::vector<std::uint64_t>{1, 3, 2});
  CHECK(q.push(task(4)) == admit::admitted);
}

TEST_CASE("admission: capacity 0 admits nothing") {
  admission_queue_core q(0);
  CHECK(q.push(task(1)) == admit::full);
  CHECK(q.size() == 0);
  CHECK_FALSE(q.pop_placeable(any).has_value());
}

TEST_CASE("admission: a queued task id is a duplicate until it leaves") {
  admission_queue_core q(10);
  CHECK(q.push(task(7)) == admit::admitted);
  CHECK(q.push(task(7, false, "other")) == admit::duplicate);
  CHECK(q.size() == 1);
  CHECK(q.depth(false) == 0);
  CHECK(q.pop_placeable(any)->model == "llama");
  CHECK(q.push(task(7, false, "other")) == admit::admitted);
}

TEST_CASE("admission: interactive before batch, FIFO within a priority") {
  admission_queue_core q(100);
  q.push(task(1, false));
  q.push(task(2, true));
  q.push(task(3, false));
  q.push(task(4, true));
  q.push(task(5, false));
  CHECK(q.depth(true) == 2);
  CHECK(q.depth(false) == 3);
  CHECK(q.position(2) == 0);
  CHECK(q.position(4) == 1);
  CHECK(q.position(1) == 2);
  CHECK(q.position(3) == 3);
  CHECK(q.position(5) == 4);
  // An interactive task arriving later still goes ahead of every batch task.
  q.push(task(6, true));
  CHECK(q.position(6) == 2);
  CHECK(q.position(1) == 3);
  CHECK(drain(q) == std::vector<std::uint64_t>{2, 4, 6, 1, 3, 5});
  CHECK(q.size() == 0);
}

TEST_CASE("admission: a task that cannot be placed does not block the others") {
  admission_queue_core q(100);
  q.push(task(1, true, "mistral"));
  q.push(task(2, true, "llama"));
  q.push(task(3, false, "llama"));
  q.push(task(4, true, "llama"));

  std::vector<std::uint64_t> asked;
  auto llama_only = [&asked](const queued_task& t) {
    asked.push_back(t.task_id);
    return t.model == "llama";
  };
  auto t = q.pop_placeable(llama_only);
  REQUIRE(t);
  CHECK(t->task_id == 2);
  CHECK(asked == std::vector<std::uint64_t>{1, 2}); // in order, and no further than needed
  CHECK(q.position(1) == 0);                        // the blocked task keeps its place
  CHECK(q.pop_placeable(llama_only)->task_id == 4); // interactive llama before batch llama
  CHECK(q.pop_placeable(llama_only)->task_id == 3);
  asked.clear();
  CHECK_FALSE(q.pop_placeable(llama_only).has_value());
  CHECK(asked == std::vector<std::uint64_t>{1});
  CHECK(q.size() == 1);
  CHECK(q.pop_placeable(any)->task_id == 1);
}

TEST_CASE("admission: remove cancels a queued task and positions close up") {
  admission_queue_core q(100);
  for (std::uint64_t i = 1; i <= 6; ++i)
    q.push(task(i, i % 2 == 0));
  // Interactive: 2 4 6, batch: 1 3 5.
  CHECK(q.remove(4));
  CHECK_FALSE(q.remove(4));
  CHECK_FALSE(q.remove(99));
  CHECK(q.position(6) == 1);
  CHECK(q.position(1) == 2);
  CHECK(q.remove(1));
  CHECK(q.position(3) == 2);
  CHECK(q.position(5) == 3);
  CHECK(q.size() == 4);
  CHECK(drain(q) == std::vector<std::uint64_t>{2, 6, 3, 5});
}

TEST_CASE("admission: expire removes tasks whose deadline is reached, earliest first") {
  admission_queue_core q(100);
  q.push(task(1, true, "a", 500));
  q.push(task(2, false, "a", 100));
  q.push(task(3, true, "a")); // no deadline
  q.push(task(4, true, "a", 100));
  q.push(task(5, false, "a", 300));
  CHECK(q.next_deadline_ms() == 100); // what the placement tick waits for at most
  CHECK(q.expire(99).empty());
  auto gone = q.expire(100); // reached exactly: expired
  REQUIRE(gone.size() == 2);
  CHECK(gone[0].task_id == 2); // same deadline: pushed first, out first
  CHECK(gone[1].task_id == 4);
  CHECK(q.size() == 3);
  CHECK(q.next_deadline_ms() == 300);
  CHECK_FALSE(q.remove(2));
  CHECK(q.remove(5));
  CHECK(q.next_deadline_ms() <= 500); // a task that left may still count: never too late
  gone = q.expire(1000000);
  REQUIRE(gone.size() == 1);
  CHECK(gone[0].task_id == 1);
  CHECK(q.expire(std::numeric_limits<std::int64_t>::max() - 1).empty());
  CHECK(q.next_deadline_ms() == std::numeric_limits<std::int64_t>::max()); // only task 3, no deadline
  CHECK(drain(q) == std::vector<std::uint64_t>{3});
}

TEST_CASE("admission: a reused task id keeps only its own deadline") {
  admission_queue_core q(10);
  q.push(task(1, true, "a", 100));
  REQUIRE(q.pop_placeable(any));
  q.push(task(1, true, "a", 1000));
  CHECK(q.expire(500).empty());
  CHECK(q.contains(1));
  auto gone = q.expire(1000);
  REQUIRE(gone.size() == 1);
  CHECK(gone[0].deadline_ms == 1000);
}

TEST_CASE("admission: Retry-After from the rate of dequeues") {
  admission_queue_core q(10);
  CHECK(q.retry_after_ms() == 1000); // no history
  CHECK(q.retry_after_ms(123456) == 1000);
  CHECK(q.predicted_start_ms(1) == -1);
  q.push(task(1));
  q.push(task(2, false));
  CHECK(q.predicted_start_ms(1) == -1); // queued, but no estimate yet

  q.note_dequeued(10000);
  CHECK(q.retry_after_ms() == 1000);        // one dequeue: no interval yet
  CHECK(q.retry_after_ms(14000) == 4000);   // but nothing moved for 4 s
  CHECK(q.mean_dequeue_interval_ms() < 0);
  q.note_dequeued(15000); // interval 5000
  CHECK(q.mean_dequeue_interval_ms() == Approx(5000));
  CHECK(q.retry_after_ms() == 5000);
  CHECK(q.predicted_start_ms(1) == 5000);  // position 0: the next dequeue
  CHECK(q.predicted_start_ms(2) == 10000); // position 1
  q.note_dequeued(17000); // interval 2000: 0.2 * 2000 + 0.8 * 5000 = 4400
  CHECK(q.mean_dequeue_interval_ms() == Approx(4400));
  CHECK(q.retry_after_ms() == 4400);
  CHECK(q.retry_after_ms(17100) == 4400);
  CHECK(q.retry_after_ms(27000) == 10000); // stalled for longer than the mean
  CHECK(q.retry_after_ms(200000) == 60000); // bounded above

  // A fast queue: many dequeues per ms bound the estimate below.
  for (int i = 0; i < 200; ++i)
    q.note_dequeued(17000 + i / 10);
  CHECK(q.mean_dequeue_interval_ms() < 1.0);
  CHECK(q.retry_after_ms() == 1000);
  CHECK(q.predicted_start_ms(2) >= 0);
  CHECK(q.predicted_start_ms(2) <= 2);

  // A clock going backwards counts as no time, not a negative interval.
  q.note_dequeued(5);
  CHECK(q.mean_dequeue_interval_ms() >= 0);
}

TEST_CASE("admission: random interleavings never lose or reorder a task") {
  struct model_task {
    queued_task t;
    std::uint64_t order;
  };
  const std::vector<std::string> models{"a", "b", "c"};
  for (std::uint64_t seed : {1u, 2u, 3u, 4u, 5u, 6u}) {
    std::mt19937_64 rng(seed);
    const std::size_t capacity = 1 + rng() % 120;
    admission_queue_core q(capacity);
    std::vector<model_task> lanes[2]; // the expected contents, in order
    std::uint64_t order = 0;
    std::int64_t now = 0;
    std::size_t admitted = 0, popped = 0, expired = 0, removed = 0;

    auto find = [&lanes](std::uint64_t id) -> std::pair<int, std::size_t> {
      for (int l = 0; l < 2; ++l)
        for (std::size_t i = 0; i < lanes[l].size(); ++i)
          if (lanes[l][i].t.task_id == id)
            return {l, i};
      return {-1, 0};
    };
    auto model_size = [&lanes] { return lanes[0].size() + lanes[1].size(); };

    for (int step = 0; step < 20000; ++step) {
      const int op = static_cast<int>(rng() % 100);
      INFO("seed " << seed << " step " << step << " op " << op);
      if (op < 45) { // push, sometimes an id already queued
        auto t = task(rng() % (capacity * 3), rng() % 3 != 0, models[rng() % 3],
                      rng() % 2 ? now + static_cast<std::int64_t>(rng() % 400)
                                : std::numeric_limits<std::int64_t>::max());
        const bool dup = find(t.task_id).first >= 0;
        const auto r = q.push(t);
        if (model_size() >= capacity) {
          REQUIRE(r == admit::full);
        } else if (dup) {
          REQUIRE(r == admit::duplicate);
        } else {
          REQUIRE(r == admit::admitted);
          lanes[t.interactive ? 0 : 1].push_back({t, order++});
          ++admitted;
        }
      } else if (op < 70) { // pop with a random set of placeable models
        std::set<std::string> ok;
        for (auto& m : models)
          if (rng() % 2)
            ok.insert(m);
        std::optional<std::uint64_t> expected;
        for (int l = 0; l < 2 && !expected; ++l)
          for (auto& mt : lanes[l])
            if (ok.count(mt.t.model)) {
              expected = mt.t.task_id;
              break;
            }
        auto got = q.pop_placeable([&ok](const queued_task& t) { return ok.count(t.model) > 0; });
        REQUIRE(got.has_value() == expected.has_value());
        if (got) {
          REQUIRE(got->task_id == *expected);
          auto [l, i] = find(*expected);
          REQUIRE(got->model == lanes[l][i].t.model);
          REQUIRE(got->deadline_ms == lanes[l][i].t.deadline_ms);
          lanes[l].erase(lanes[l].begin() + static_cast<std::ptrdiff_t>(i));
          ++popped;
        }
      } else if (op < 80) { // time passes, deadlines fire
        now += static_cast<std::int64_t>(rng() % 60);
        std::vector<model_task> due;
        for (auto& lane : lanes) {
          for (auto& mt : lane)
            if (mt.t.deadline_ms <= now)
              due.push_back(mt);
          lane.erase(std::remove_if(lane.begin(), lane.end(),
                                    [now](const model_task& mt) { return mt.t.deadline_ms <= now; }),
                     lane.end());
        }
        std::sort(due.begin(), due.end(), [](const model_task& a, const model_task& b) {
          return std::tie(a.t.deadline_ms, a.order) < std::tie(b.t.deadline_ms, b.order);
        });
        auto got = q.expire(now);
        REQUIRE(got.size() == due.size());
        for (std::size_t i = 0; i < got.size(); ++i)
          REQUIRE(got[i].task_id == due[i].t.task_id);
        expired += got.size();
      } else { // cancel, queued or not
        const std::uint64_t id = rng() % (capacity * 3);
        auto [l, i] = find(id);
        REQUIRE(q.remove(id) == (l >= 0));
        if (l >= 0) {
          lanes[l].erase(lanes[l].begin() + static_cast<std::ptrdiff_t>(i));
          ++removed;
        }
      }
      REQUIRE(q.size() == model_size());
      REQUIRE(q.size() <= capacity);
      REQUIRE(q.depth(true) == lanes[0].size());
      REQUIRE(q.depth(false) == lanes[1].size());
      if (step % 97 == 0) {
        std::size_t pos = 0;
        for (auto& lane : lanes)
          for (auto& mt : lane)
            REQUIRE(q.position(mt.t.task_id) == pos++);
      }
    }
    // Every admitted task left exactly once: popped, expired, removed, or still there in order.
    std::vector<std::uint64_t> rest;
    for (auto& lane : lanes)
      for (auto& mt : lane)
        rest.push_back(mt.t.task_id);
    CHECK(drain(q) == rest);
    CHECK(admitted == popped + expired + removed + rest.size());
    CHECK(popped > 0);
    CHECK(expired > 0);
    CHECK(removed > 0);
  }
}

TEST_CASE("admission: heavy cancellation keeps positions exact") {
  // Removes from the middle leave holes that the queue compacts away; positions stay exact.
  admission_queue_core q(5000);
  std::vector<std::uint64_t> expected;
  for (std::uint64_t i = 0; i < 5000; ++i) {
    REQUIRE(q.push(task(i, false)) == admit::admitted);
    expected.push_back(i);
  }
  std::mt19937_64 rng(9);
  for (int round = 0; round < 4000; ++round) {
    const std::size_t at = rng() % expected.size();
    REQUIRE(q.remove(expected[at]));
    expected.erase(expected.begin() + static_cast<std::ptrdiff_t>(at));
    if (round % 500 == 0)
      for (std::size_t i = 0; i < expected.size(); ++i)
        REQUIRE(q.position(expected[i]) == i);
  }
  for (std::size_t i = 0; i < expected.size(); ++i)
    REQUIRE(q.position(expected[i]) == i);
  CHECK(drain(q) == expected);
}

TEST_CASE("admission benchmark: push + pop per second at capacity 10,000") {
  constexpr std::size_t capacity = 10000;
  admission_queue_core q(capacity);
  std::uint64_t next = 0;
  std::mt19937_64 rng(3);
  const std::vector<std::string> models{"llama-3-8b", "mistral-7b"};
  while (q.size() < capacity) {
    const std::uint64_t id = next++;
    q.push(task(id, rng() % 4 != 0, models[rng() % 2], 1000000 + static_cast<std::int64_t>(id)));
  }
  REQUIRE(q.full());

  using clock = std::chrono::steady_clock;
  auto start = clock::now();
  std::uint64_t pairs = 0;
  bool fifo = true;
  while (clock::now() - start < std::chrono::milliseconds(300)) {
    for (int i = 0; i < 1000; ++i) {
      auto t = q.pop_placeable(any);
      fifo = fifo && t.has_value();
      const std::uint64_t id = next++;
      fifo = fifo && q.push(task(id, true, models[id % 2], 1000000 + static_cast<std::int64_t>(id))) ==
                         admit::admitted;
      ++pairs;
    }
  }
  double secs = std::chrono::duration<double>(clock::now() - start).count();
  CHECK(fifo);
  CHECK(q.size() == capacity);
  std::printf("admission benchmark: %llu push+pop pairs in %.3f s = %.0f pairs/s at capacity %zu\n",
              static_cast<unsigned long long>(pairs), secs, static_cast<double>(pairs) / secs, capacity);

  // The same with a blocked head: the first 100 queued tasks are for a model no pool serves.
  admission_queue_core b(capacity);
  next = 0;
  for (int i = 0; i < 100; ++i)
    b.push(task(next++, true, "unplaceable"));
  while (b.size() < capacity)
    b.push(task(next++, true, "llama-3-8b"));
  auto placeable = [](const queued_task& t) { return t.model != "unplaceable"; };
  start = clock::now();
  pairs = 0;
  while (clock::now() - start < std::chrono::milliseconds(300)) {
    for (int i = 0; i < 1000; ++i) {
      auto t = b.pop_placeable(placeable);
      fifo = fifo && t.has_value() && t->model == "llama-3-8b";
      fifo = fifo && b.push(task(next++, true, "llama-3-8b")) == admit::admitted;
      ++pairs;
    }
  }
  secs = std::chrono::duration<double>(clock::now() - start).count();
  CHECK(fifo);
  CHECK(b.position(0) == 0);
  std::printf("admission benchmark: %llu push+pop pairs in %.3f s = %.0f pairs/s at capacity %zu "
              "behind 100 unplaceable tasks\n",
              static_cast<unsigned long long>(pairs), secs, static_cast<double>(pairs) / secs, capacity);
}
