#pragma once
// Decode throughput and the memory-bandwidth limit it is measured against.
#include <cstdint>
#include <memory>

#include "engines/model.hpp"

namespace llorch::engine {

struct bench_result {
  int threads = 0, streams = 0, tokens = 0;
  double seconds = 0;
  double tokens_per_s = 0;         // aggregate over all streams
  double read_gb_per_s = 0;        // measured read bandwidth of the mapped model file
  double bytes_per_step = 0;       // weights + KV read per decode step (all streams)
  double limit_tokens_per_s = 0;   // streams * bandwidth / bytes_per_step
  double share = 0;                // tokens_per_s / limit_tokens_per_s
};

// Reads the whole mapped file with `threads` threads, pass after pass for at least `seconds`
// (and at least 3 passes), in GB/s over all of them.
double measure_read_bandwidth(const mapped_file& f, int threads, double seconds);

// Greedy decode of `tokens` tokens on each of `streams` concurrent sequences; tok/s and the read
// bandwidth are each the best of `rounds` alternating measurements, each round a decode run then
// a read of the same duration.
bench_result run_bench(std::shared_ptr<const model> m, int threads, int streams, int tokens, int rounds = 3);

} // namespace llorch::engine
