#pragma once
// Dot products of one weight row with an f32 activation vector, for each weight type. Each is
// computed in 16 interleaved partial sums (lane k takes elements j with j % 16 == k) that are
// added in a fixed order at the end: the AVX2 and the portable paths give bit-identical results,
// and a row's value never depends on batch size or thread count.
#include <cstdint>

#include "engines/model.hpp"

namespace llorch::engine {

float f16_to_f32(std::uint16_t h);
std::uint16_t f32_to_f16(float f);

float dot_f32(const float* w, const float* x, int n);
float dot_f16(const std::uint8_t* w, const float* x, int n);
float dot_q8_0(const std::uint8_t* w, const float* x, int n);

// Dot of row `row` of `t` with x (t.cols elements).
float dot_row(const tensor& t, std::int64_t row, const float* x);

// Row `row` of `t` as f32 (t.cols elements), e.g. an embedding lookup.
void row_to_f32(const tensor& t, std::int64_t row, float* out);

// "avx2" or "portable": which path the dispatch picked on this CPU.
const char* kernel_path();

// Forces the portable path (tests compare both paths).
void force_portable_kernels(bool on);

} // namespace llorch::engine
