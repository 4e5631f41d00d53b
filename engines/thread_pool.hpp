#pragma once
// A fixed set of worker threads for the forward pass. The caller and the workers claim chunks of
// [0, n) from one atomic counter, each a share of what is left (large first, small last, so the
// threads finish together), and a worker the OS has not scheduled yet costs nothing: the others
// take its chunks. Which thread runs a chunk never changes what it
// computes. Workers spin briefly before sleeping, since a decode step issues dozens of sections.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace llorch::engine {

class thread_pool {
public:
  // fn(begin, end, worker): worker is 0 for the caller, 1..size()-1 for the pool's threads.
  using range_fn = std::function<void(std::int64_t, std::int64_t, int)>;

  explicit thread_pool(int threads);
  ~thread_pool();
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs fn over [0, n) in chunks of at least min_chunk (but the last) and returns when all are done.
  void parallel_for(std::int64_t n, std::int64_t min_chunk, const range_fn& fn);

private:
  void work(int index);
  // Claims and runs chunks of generation gen until none is left.
  void drain(std::uint64_t gen, int worker);

  std::vector<std::thread> workers_;
  std::atomic<const range_fn*> fn_{nullptr};
  std::atomic<std::uint64_t> job_{0}; // generation << 32 | size of the range
  std::atomic<std::int64_t> min_chunk_{1};
  std::atomic<std::uint64_t> next_{0}; // generation << 32 | start of the next chunk to claim
  std::atomic<std::int64_t> completed_{0};
  std::uint64_t generation_ = 0;
  std::atomic<std::uint64_t> posted_{0};
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
};

} // namespace llorch::engine
