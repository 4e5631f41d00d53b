#include "engines/thread_pool.hpp"

#include <algorithm>

namespace llorch::engine {

namespace {
inline void cpu_relax() { __builtin_ia32_pause(); }
constexpr std::uint64_t chunk_mask = 0xffffffffULL;
} // namespace

thread_pool::thread_pool(int threads) {
  const int n = std::max(1, threads);
  for (int i = 1; i < n; ++i) workers_.emplace_back([this, i] { work(i); });
}

thread_pool::~thread_pool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true);
    posted_.fetch_add(1);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void thread_pool::drain(std::uint64_t gen, int worker) {
  while (true) {
    std::uint64_t c = next_.load(std::memory_order_acquire);
    if ((c >> 32) != gen) return;
    // The size carries its generation: a worker still here after the last chunk of an earlier
    // job could otherwise read the next job's size while next_ still holds the old job's end,
    // claim past it, and run and count a range that does not exist (the caller then waits
    // forever). min_chunk_ only shapes chunks, so a stale one is harmless.
    const std::uint64_t job = job_.load(std::memory_order_acquire);
    if ((job >> 32) != gen) return;
    const auto n = static_cast<std::int64_t>(job & chunk_mask);
    const std::int64_t min_chunk = min_chunk_.load(std::memory_order_relaxed);
    const auto b = static_cast<std::int64_t>(c & chunk_mask);
    if (b >= n) return;
    // guided: each claim takes 1/size of what is left, so the first claims are large (few
    // claims, each a contended atomic: with 1/(2 size) a section cost 2.2 us instead of 1.2) and
    // the last are small, so the threads end together
    const std::int64_t e = std::min(n, b + std::max(min_chunk, (n - b) / size()));
    if (!next_.compare_exchange_weak(c, (gen << 32) | static_cast<std::uint64_t>(e), std::memory_order_acq_rel))
      continue;
    // the claimed range keeps this generation's job alive until it is counted as completed
    (*fn_.load(std::memory_order_acquire))(b, e, worker);
    completed_.fetch_add(e - b, std::memory_order_acq_rel);
  }
}

void thread_pool::parallel_for(std::int64_t n, std::int64_t min_chunk, const range_fn& fn) {
  if (n <= 0) return;
  if (workers_.empty() || n <= min_chunk || n > static_cast<std::int64_t>(chunk_mask)) {
    fn(0, n, 0);
    return;
  }
  const std::uint64_t gen = (++generation_) & chunk_mask;
  fn_.store(&fn, std::memory_order_relaxed);
  job_.store(gen << 32 | static_cast<std::uint64_t>(n), std::memory_order_release);
  min_chunk_.store(std::max<std::int64_t>(1, min_chunk), std::memory_order_relaxed);
  completed_.store(0, std::memory_order_relaxed);
  next_.store(gen << 32, std::memory_order_release);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    posted_.store(gen, std::memory_order_release);
  }
  wake_.notify_all();
  drain(gen, 0);
  for (int spins = 0; completed_.load(std::memory_order_acquire) != n; ++spins) {
    if (spins < 2048) cpu_relax();
    else std::this_thread::yield();
  }
}

void thread_pool::work(int index) {
  std::uint64_t seen = 0;
  while (true) {
    std::uint64_t g = posted_.load(std::memory_order_acquire);
    for (int spins = 0; g == seen && spins < 4000; ++spins) {
      cpu_relax();
      g = posted_.load(std::memory_order_acquire);
    }
    if (g == seen) {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return posted_.load(std::memory_order_acquire) != seen; });
      g = posted_.load(std::memory_order_acquire);
    }
    seen = g;
    if (stop_.load()) return;
    drain(g, index);
  }
}

} // namespace llorch::engine
