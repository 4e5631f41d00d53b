#include "engines/bench.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <immintrin.h>

#include "engines/batch_decoder.hpp"
#include "engines/thread_pool.hpp"

namespace llorch::engine {

namespace {
using clock_type = std::chrono::steady_clock;
double since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}
} // namespace

namespace {

// Streams over [p, p + n) with wide independent loads, so the memory system, not the adds, is
// what limits it. n is a multiple of 128. Lines 4 KB ahead are prefetched into L2, as the
// kernels prefetch their next rows: without a prefetch one thread read ~5% less than decode did
// (a limit the engine beats is no limit), and L2 prefetches read 5-10% more than L1 ones.
__attribute__((target("avx2"))) std::uint64_t read_avx2(const std::uint8_t* p, std::size_t n) {
  constexpr std::size_t ahead = 4096;
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (std::size_t i = 0; i < n; i += 128) {
    _mm_prefetch(reinterpret_cast<const char*>(p + i + ahead), _MM_HINT_T1); // past the end: harmless
    _mm_prefetch(reinterpret_cast<const char*>(p + i + ahead + 64), _MM_HINT_T1);
    a0 = _mm256_add_epi64(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_add_epi64(a2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_add_epi64(a3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  alignas(32) std::uint64_t out[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(out), _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
  return out[0] ^ out[1] ^ out[2] ^ out[3];
}

std::uint64_t read_portable(const std::uint8_t* p, std::size_t n) {
  std::uint64_t acc[16] = {};
  for (std::size_t i = 0; i < n; i += 128)
    for (int k = 0; k < 16; ++k) {
      std::uint64_t w;
      std::memcpy(&w, p + i + 8 * static_cast<std::size_t>(k), 8);
      acc[k] += w;
    }
  std::uint64_t r = 0;
  for (auto a : acc) r ^= a;
  return r;
}

} // namespace

double measure_read_bandwidth(const mapped_file& f, int threads, double seconds) {
  thread_pool pool(threads);
  const bool avx2 = __builtin_cpu_supports("avx2");
  const std::int64_t blocks = static_cast<std::int64_t>(f.size() / 128);
  const std::int64_t shares = pool.size();
  std::atomic<std::uint64_t> sink{0};
  // the file in equal static shares, one per thread, as a STREAM-style probe reads
  const auto pass = [&] {
    pool.parallel_for(shares, 1, [&](std::int64_t s_begin, std::int64_t s_end, int) {
      const std::int64_t b = blocks * s_begin / shares, e = blocks * s_end / shares;
      const std::uint8_t* p = f.data() + static_cast<std::size_t>(b) * 128;
      const std::size_t n = static_cast<std::size_t>(e - b) * 128;
      sink.fetch_xor(avx2 ? read_avx2(p, n) : read_portable(p, n), std::memory_order_relaxed);
    });
  };
  pass(); // warms: page faults of the mapping
  int passes = 0;
  const auto t0 = clock_type::now();
  do {
    pass();
    ++passes;
  } while (passes < 3 || since(t0) < seconds);
  const double s = since(t0);
  // keep the reads observable
  volatile std::uint64_t keep = sink.load();
  (void)keep;
  return static_cast<double>(blocks) * 128 * passes / s / 1e9;
}

bench_result run_bench(std::shared_ptr<const model> m, int threads, int streams, int tokens, int rounds) {
  bench_result r;
  r.threads = threads;
  r.streams = std::max(1, streams);
  r.tokens = std::max(1, tokens);
  const model_config& c = m->config;
  const int context = std::min(c.seq_len, r.tokens + 4);
  const int decode_tokens = context - 3; // prompt of 2, one token from the prefill step
  r.tokens = std::min(r.tokens, decode_tokens);
  // other processes share this machine: decode and bandwidth are each the best of several
  // rounds, alternating, so both see the machine in the same state
  for (int round = 0; round < std::max(1, rounds); ++round) {
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
    const double seconds = since(t0);
    if (produced / seconds > r.tokens_per_s) {
      r.tokens_per_s = produced / seconds;
      r.seconds = seconds;
    }
    // sustained over as long as the decode ran, so that both integrate the same kind of noise
    r.read_gb_per_s = std::max(r.read_gb_per_s, measure_read_bandwidth(*m->file, threads, seconds));
  }
  // keys and values read per step, at the average position of the timed steps
  const double avg_pos = 2.0 + r.tokens / 2.0;
  const double kv = 2.0 * c.n_layers * avg_pos * c.kv_dim() * sizeof(float);
  r.bytes_per_step = static_cast<double>(m->weight_bytes_per_token()) + r.streams * kv;
  r.limit_tokens_per_s = r.streams * r.read_gb_per_s * 1e9 / r.bytes_per_step;
  r.share = r.tokens_per_s / r.limit_tokens_per_s;
  return r;
}

} // namespace llorch::engine
