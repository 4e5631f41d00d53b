#pragma once
// Dot products of weight rows with the activation vectors of a batch of sequences, for each
// weight type, with one fixed arithmetic per (row, sequence): f32/f16 rows, zero-padded to a
// multiple of 8, use 8 interleaved partial sums (lane k takes elements j with j % 8 == k, each
// step a fused multiply-add in j order) reduced by a fixed pairwise tree; Q8_0 rows multiply
// against the activation quantised to 8 bits per 32-block (integer block sums are exact), each
// group of four products scaled by d_w * d_x with a fused multiply-add into 8 lanes, reduced the
// same way. The AVX-512, AVX2 and portable (std::fma) paths give bit-identical results, and a
// value never depends on how many rows, sequences or threads share the call: the kernels only
// change which loads are shared (a weight vector is loaded once for up to 4 sequences) and how
// many lanes one instruction covers, never the arithmetic of a lane.
#include <cstdint>
#include <string>
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

// The inputs of a batch of sequences to one matrix: sequence s's vector is x + s * cols and,
// only for Q8_0 weights, its quantize_q8 form qx + s * cols, qd + s * cols / 32.
struct batch_input {
  const float* x = nullptr;
  const std::int8_t* qx = nullptr;
  const float* qd = nullptr;
  int seqs = 1;
};

// out[s * out_stride + i - begin] = dot(row i of t, sequence s) for begin <= i < end, s < in.seqs.
// Rows go in blocks of 8, each block multiplied into the sequences 4 at a time while it is in
// cache; the first 4 prefetch the next block.
void dot_rows(const tensor& t, std::int64_t begin, std::int64_t end, const batch_input& in, float* out,
              std::int64_t out_stride);

// out[p] = dot(a + p * stride, b) over n floats for p < count, with the f32 row arithmetic
// above (attention scores: a holds the keys of consecutive positions).
void dot_f32_rows(const float* a, std::size_t stride, int count, const float* b, int n, float* out);

// out[i] = sum over p < count of w[p] * v[p * stride + i] for i < n, one fused multiply-add per
// p in p order (attention's weighted values); the same on every path.
void weighted_sum(const float* w, const float* v, std::size_t stride, int count, int n, float* out);

// x[i] = exp(x[i]) for i < n: a polynomial with fused multiply-adds, the same on every path
// (within 2 ulp of expf; the argument is clamped to [-87, 88], NaN stays NaN).
void exp_inplace(float* x, int n);

// Prefetches n floats at each of the first (up to 16) of count rows, stride floats apart: the
// start of the attention loops, which prefetch ahead themselves from there.
void prefetch_rows(const float* p, std::size_t stride, int count, int n);

// Single-row convenience (quantises x itself for Q8_0).
float dot_row(const tensor& t, std::int64_t row, const float* x);

// Row `row` of `t` as f32 (t.cols elements), e.g. an embedding lookup.
void row_to_f32(const tensor& t, std::int64_t row, float* out);

// Which kernels run: "avx512", "avx2" or "portable". The dispatch picks the best one the CPU has
// at start-up, or the one the environment variable LLORCH_KERNELS names if the CPU has it.
const char* kernel_path();

// The paths this CPU can run, slowest first.
std::vector<std::string> kernel_paths();

// Switches to the named path (tests compare all of them); false, and no change, if this CPU
// cannot run it.
bool force_kernel_path(const char* name);

} // namespace llorch::engine
