#pragma once
// Dot products of weight rows with activation vectors, for each weight type, with one fixed
// arithmetic per row: f32/f16 rows use 16 interleaved partial sums (lane k takes elements j with
// j % 16 == k) reduced by a fixed pairwise tree; Q8_0 rows multiply against the activation
// quantised to 8 bits per 32-block (integer block sums are exact), accumulated in 8 lanes and
// reduced the same way. The AVX2 and portable paths give bit-identical results, and a row's
// value never depends on how many rows, sequences or threads share the call.
#include <cstdint>
#include <vector>

#include "engines/model.hpp"

namespace llorch::engine {

float f16_to_f32(std::uint16_t h);
std::uint16_t f32_to_f16(float f);

// An activation vector quantised per 32-block for Q8_0 weights (n must be a multiple of 32).
struct q8_activation {
  std::vector<std::int8_t> q;
  std::vector<float> d;
};
void quantize_q8(const float* x, int n, std::int8_t* q, float* d);

// out[k] = dot(row row0 + k of t, x) for k < count (count 1..4). qx/qd: x quantised by
// quantize_q8, used only when t is Q8_0. prefetch_next asks for the next group of rows to be
// fetched meanwhile (once per group: the other sequences of a batch find the rows in cache).
void dot_rows(const tensor& t, std::int64_t row0, int count, const float* x, const std::int8_t* qx,
              const float* qd, float* out, bool prefetch_next);

// Single-row convenience (quantises x itself for Q8_0).
float dot_row(const tensor& t, std::int64_t row, const float* x);

// Row `row` of `t` as f32 (t.cols elements), e.g. an embedding lookup.
void row_to_f32(const tensor& t, std::int64_t row, float* out);

// "avx2" or "portable": which path the dispatch picked on this CPU.
const char* kernel_path();

// Forces the portable path (tests compare both paths).
void force_portable_kernels(bool on);

} // namespace llorch::engine
