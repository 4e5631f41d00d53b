#include "runtime/restart_policy.hpp"

#include <catch2/catch.hpp>

#include <vector>

using namespace llorch;
using std::chrono::milliseconds;
using time_point = restart_policy::clock::time_point;

namespace {

time_point at(int ms) { return time_point{} + milliseconds{ms}; }

restart_limits no_jitter(int initial_ms, int max_ms, int max_restarts = 100,
                         int within_ms = 60000) {
  restart_limits l;
  l.backoff_initial = milliseconds{initial_ms};
  l.backoff_max = milliseconds{max_ms};
  l.max_restarts = max_restarts;
  l.within = milliseconds{within_ms};
  l.jitter = 0.0;
  return l;
}

// Failures one millisecond apart: no stability reset, no window expiry.
std::vector<long> delays(restart_policy& p, int n) {
  std::vector<long> out;
  for (int i = 0; i < n; ++i) {
    auto d = p.on_failure(at(i));
    out.push_back(d ? static_cast<long>(d->count()) : -1L);
  }
  return out;
}

} // namespace

TEST_CASE("restart_policy: delays double from the initial value") {
  restart_policy p{no_jitter(200, 30000), 1};
  CHECK(delays(p, 6) == std::vector<long>{200, 400, 800, 1600, 3200, 6400});
  CHECK(p.streak() == 6);
}

TEST_CASE("restart_policy: delays are capped at backoff_max") {
  restart_policy p{no_jitter(100, 1000), 1};
  CHECK(delays(p, 8) == std::vector<long>{100, 200, 400, 800, 1000, 1000, 1000, 1000});
}

TEST_CASE("restart_policy: a long streak never overflows") {
  restart_policy p{no_jitter(1000, 3600000, 1000000, 1000000000), 1};
  auto d = delays(p, 200);
  CHECK(d.back() == 3600000);
}

TEST_CASE("restart_policy: an initial delay above the cap is capped") {
  restart_policy p{no_jitter(5000, 1000), 1};
  CHECK(delays(p, 2) == std::vector<long>{1000, 1000});
}

TEST_CASE("restart_policy: jitter stays within delay * (1 +/- jitter) over many seeds") {
  restart_limits l = no_jitter(200, 1000);
  l.jitter = 0.2;
  long lo_first = 1 << 30, hi_first = 0, hi_capped = 0, lo_capped = 1 << 30;
  for (std::uint64_t seed = 0; seed < 2000; ++seed) {
    restart_policy p{l, seed};
    auto d = delays(p, 6); // 200, 400, 800, 1000, 1000, 1000 before jitter
    lo_first = std::min(lo_first, d[0]);
    hi_first = std::max(hi_first, d[0]);
    REQUIRE(d[0] >= 160);
    REQUIRE(d[0] <= 240);
    REQUIRE(d[2] >= 640);
    REQUIRE(d[2] <= 960);
    for (std::size_t i = 3; i < d.size(); ++i) {
      REQUIRE(d[i] >= 800);
      REQUIRE(d[i] <= 1200); // never beyond max * (1 + jitter)
      lo_capped = std::min(lo_capped, d[i]);
      hi_capped = std::max(hi_capped, d[i]);
    }
  }
  // The draw really is spread over the whole interval, not stuck near the middle.
  CHECK(lo_first <= 162);
  CHECK(hi_first >= 238);
  CHECK(lo_capped <= 805);
  CHECK(hi_capped >= 1195);
}

TEST_CASE("restart_policy: the mean jittered delay is the unjittered one") {
  restart_limits l = no_jitter(1000, 1000);
  l.jitter = 0.5;
  double sum = 0;
  const int n = 4000;
  for (int seed = 0; seed < n; ++seed) {
    restart_policy p{l, static_cast<std::uint64_t>(seed)};
    sum += static_cast<double>(p.on_failure(at(0))->count());
  }
  CHECK(sum / n == Approx(1000.0).margin(15.0));
}

TEST_CASE("restart_policy: the same seed gives the same delays, another seed other ones") {
  restart_limits l = no_jitter(200, 30000);
  l.jitter = 0.3;
  restart_policy a{l, 42}, b{l, 42}, c{l, 43};
  auto da = delays(a, 10);
  CHECK(da == delays(b, 10));
  CHECK(da != delays(c, 10));
}

TEST_CASE("restart_policy: a jitter above 1 never gives a negative delay") {
  restart_limits l = no_jitter(100, 100);
  l.jitter = 1.5;
  bool saw_zero = false;
  for (std::uint64_t seed = 0; seed < 500; ++seed) {
    restart_policy p{l, seed};
    auto d = p.on_failure(at(0));
    REQUIRE(d);
    REQUIRE(d->count() >= 0);
    REQUIRE(d->count() <= 250);
    saw_zero = saw_zero || d->count() == 0;
  }
  CHECK(saw_zero); // 1/3 of the draws fall below zero before clamping
}

TEST_CASE("restart_policy: more than max_restarts failures within the window gives up") {
  restart_policy p{no_jitter(10, 100, 3, 1000), 7};
  CHECK(p.on_failure(at(0)));
  CHECK(p.on_failure(at(100)));
  CHECK(p.on_failure(at(200)));
  CHECK(p.restarts_in_window(at(200)) == 3);
  CHECK_FALSE(p.on_failure(at(300)));
}

TEST_CASE("restart_policy: max_restarts = 0 gives up at the first failure") {
  restart_policy p{no_jitter(10, 100, 0, 1000), 7};
  CHECK_FALSE(p.on_failure(at(0)));
}

TEST_CASE("restart_policy: old failures slide out of the window") {
  restart_policy p{no_jitter(10, 100, 3, 1000), 7};
  CHECK(p.on_failure(at(0)));
  CHECK(p.on_failure(at(100)));
  CHECK(p.on_failure(at(200)));
  CHECK(p.restarts_in_window(at(999)) == 3);
  CHECK(p.restarts_in_window(at(1000)) == 2); // the failure at 0 is exactly `within` old
  CHECK(p.restarts_in_window(at(1150)) == 1);
  CHECK(p.restarts_in_window(at(5000)) == 0);
  // At 1050 the window holds 100, 200 and this one: three, which is allowed.
  CHECK(p.on_failure(at(1050)));
  // At 1080 it would hold four.
  CHECK_FALSE(p.on_failure(at(1080)));
}

TEST_CASE("restart_policy: a steady failure rate below the limit is never given up") {
  // 3 failures per second allowed, one every 400 ms happens: at most 3 in any 1 s window.
  restart_policy p{no_jitter(1, 1, 3, 1000), 7};
  for (int i = 0; i < 100; ++i)
    REQUIRE(p.on_failure(at(i * 400)));
}

TEST_CASE("restart_policy: the backoff resets after running backoff_max without failing") {
  restart_policy p{no_jitter(100, 1000, 100, 1000000), 7};
  REQUIRE(p.on_failure(at(0))->count() == 100);   // restart due at 100
  REQUIRE(p.on_failure(at(150))->count() == 200); // restart due at 350
  REQUIRE(p.streak() == 2);

  p.on_stable(at(350 + 999)); // not yet stable long enough
  CHECK(p.streak() == 2);
  p.on_stable(at(350 + 1000));
  CHECK(p.streak() == 0);
  CHECK(p.on_failure(at(2000))->count() == 100);
}

TEST_CASE("restart_policy: on_failure itself applies the stability reset") {
  restart_policy p{no_jitter(100, 1000, 100, 1000000), 7};
  REQUIRE(p.on_failure(at(0))->count() == 100);   // due at 100
  REQUIRE(p.on_failure(at(150))->count() == 200); // due at 350
  REQUIRE(p.on_failure(at(400))->count() == 400); // due at 800: ran only 50 ms, streak goes on
  // Ran from 800 to 1800 (= backoff_max) without failing: a fresh streak.
  CHECK(p.on_failure(at(1800))->count() == 100);
}

TEST_CASE("restart_policy: stability does not clear the intensity window") {
  restart_policy p{no_jitter(10, 20, 2, 100000), 7};
  REQUIRE(p.on_failure(at(0)));
  REQUIRE(p.on_failure(at(100)));
  p.on_stable(at(50000));
  CHECK(p.streak() == 0);
  CHECK_FALSE(p.on_failure(at(50001))); // three failures within 100 s
}

TEST_CASE("restart_policy: negative settings are treated as zero") {
  restart_limits l;
  l.backoff_initial = milliseconds{-5};
  l.backoff_max = milliseconds{-1};
  l.jitter = -0.5;
  l.max_restarts = 2;
  restart_policy p{l, 1};
  CHECK(p.on_failure(at(0))->count() == 0);
  CHECK(p.limits().jitter == 0.0);
}
