#include "engines/bench.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>

#include "engines/batch_decoder.hpp"
#include "engines/thread_pool.hpp"

namespace llorch::engine {

namespace {
using clock_type = std::chrono::steady_clock;
double since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}
} // namespace

double measure_read_bandwidth(const mapped_file& f, int threads) {
  thread_pool pool(threads);
  const std::size_t words = f.size() / 32;
  std::atomic<std::uint64_t> sink{0};
  double best = 0;
  for (int pass = 0; pass < 4; ++pass) {
    const auto t0 = clock_type::now();
    pool.parallel_for(static_cast<std::int64_t>(words), 4096, [&](std::int64_t b, std::int64_t e, int) {
      std::uint64_t acc[4] = {};
      const std::uint8_t* p = f.data();
      for (std::int64_t i = b; i < e; ++i) {
        std::uint64_t w[4];
        std::memcpy(w, p + static_cast<std::size_t>(i) * 32, 32);
        for (int k = 0; k < 4; ++k) acc[k] += w[k];
      }
      sink.fetch_xor(acc[0] ^ acc[1] ^ acc[2] ^ acc[3], std::memory_order_relaxed);
    });
    const double s = since(t0);
    if (pass > 0) best = std::max(best, static_cast<double>(words * 32) / s / 1e9); // pass 0 warms
  }
  // keep the reads observable
  volatile std::uint64_t keep = sink.load();
  (void)keep;
  return best;
}

bench_result run_bench(std::shared_ptr<const model> m, int threads, int streams, int tokens) {
  bench_result r;
  r.threads = threads;
  r.streams = std::max(1, streams);
  r.tokens = std::max(1, tokens);
  const model_config& c = m->config;
  const int context = std::min(c.seq_len, r.tokens + 4);
  const int decode_tokens = context - 3; // prompt of 2, one token from the prefill step
  r.tokens = std::min(r.tokens, decode_tokens);
  batch_decoder dec(m, threads, r.streams, context);
  for (int s = 0; s < r.streams; ++s) {
    decode_request q;
    q.id = static_cast<std::uint64_t>(s);
    q.prompt = {m->vocab.bos, 259 + s % (c.vocab_size - 259)};
    q.max_tokens = r.tokens + 1;
    q.ignore_eos = true;
    (void)dec.submit(std::move(q));
  }
  dec.step(); // prefill, not timed
  int produced = 0;
  const auto t0 = clock_type::now();
  while (dec.active() > 0) produced += static_cast<int>(dec.step().size());
  r.seconds = since(t0);
  r.tokens_per_s = produced / r.seconds;

  r.read_gb_per_s = measure_read_bandwidth(*m->file, threads);
  // keys and values read per step, at the average position of the timed steps
  const double avg_pos = 2.0 + r.tokens / 2.0;
  const double kv = 2.0 * c.n_layers * avg_pos * c.kv_dim() * sizeof(float);
  r.bytes_per_step = static_cast<double>(m->weight_bytes_per_token()) + r.streams * kv;
  r.limit_tokens_per_s = r.streams * r.read_gb_per_s * 1e9 / r.bytes_per_step;
  r.share = r.tokens_per_s / r.limit_tokens_per_s;
  return r;
}

} // namespace llorch::engine
