#include "engines/kernels.hpp"

#include <cstring>
#include <immintrin.h>

namespace llorch::engine {

float f16_to_f32(std::uint16_t h) {
  const std::uint32_t em = h & 0x7fffu;
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  std::uint32_t bits = em << 13;
  float f;
  std::memcpy(&f, &bits, 4);
  f *= 0x1p112f; // rebias the exponent; also exact for subnormals
  std::uint32_t r;
  std::memcpy(&r, &f, 4);
  if (em >= 0x7c00u) r = 0x7f800000u | (em << 13); // inf / nan
  r |= sign;
  std::memcpy(&f, &r, 4);
  return f;
}

std::uint16_t f32_to_f16(float value) {
  // round to nearest even
  std::uint32_t x;
  std::memcpy(&x, &value, 4);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u) return static_cast<std::uint16_t>(sign | (x > 0x7f800000u ? 0x7e00u : 0x7c00u));
  if (x >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u); // overflow
  if (x < 0x38800000u) {                                                  // subnormal or zero
    float f;
    std::memcpy(&f, &x, 4);
    f += 0.5f; // align the mantissa so the low bits hold the subnormal value
    std::uint32_t b;
    std::memcpy(&b, &f, 4);
    return static_cast<std::uint16_t>(sign | (b - 0x3f000000u));
  }
  const std::uint32_t odd = (x >> 13) & 1u;
  x += 0xc8000fffu + odd; // rebias exponent (-112 << 23) and round
  return static_cast<std::uint16_t>(sign | (x >> 13));
}

namespace {

float reduce16(const float* acc) {
  float s = 0.0f;
  for (int k = 0; k < 16; ++k) s += acc[k];
  return s;
}

float dot_f32_portable(const float* w, const float* x, int n) {
  float acc[16] = {};
  int j = 0;
  for (; j + 16 <= n; j += 16)
    for (int k = 0; k < 16; ++k) acc[k] += w[j + k] * x[j + k];
  for (int k = 0; j < n; ++j, ++k) acc[k] += w[j] * x[j];
  return reduce16(acc);
}

float dot_f16_portable(const std::uint8_t* w, const float* x, int n) {
  float acc[16] = {};
  int j = 0;
  auto h = [w](int i) {
    std::uint16_t v;
    std::memcpy(&v, w + 2 * i, 2);
    return f16_to_f32(v);
  };
  for (; j + 16 <= n; j += 16)
    for (int k = 0; k < 16; ++k) acc[k] += h(j + k) * x[j + k];
  for (int k = 0; j < n; ++j, ++k) acc[k] += h(j) * x[j];
  return reduce16(acc);
}

float dot_q8_0_portable(const std::uint8_t* w, const float* x, int n) {
  float acc[16] = {};
  for (int b = 0; b < n / q8_block_size; ++b) {
    const std::uint8_t* blk = w + b * q8_block_bytes;
    std::uint16_t dh;
    std::memcpy(&dh, blk, 2);
    const float d = f16_to_f32(dh);
    const auto* q = reinterpret_cast<const std::int8_t*>(blk + 2);
    const float* xb = x + b * q8_block_size;
    for (int half = 0; half < 2; ++half)
      for (int k = 0; k < 16; ++k)
        acc[k] += (d * static_cast<float>(q[half * 16 + k])) * xb[half * 16 + k];
  }
  return reduce16(acc);
}

__attribute__((target("avx2,f16c"))) float reduce_ymm(__m256 a, __m256 b) {
  alignas(32) float acc[16];
  _mm256_store_ps(acc, a);
  _mm256_store_ps(acc + 8, b);
  return reduce16(acc);
}

__attribute__((target("avx2,f16c"))) float dot_f32_avx2(const float* w, const float* x, int n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int j = 0;
  for (; j + 16 <= n; j += 16) {
    a0 = _mm256_add_ps(a0, _mm256_mul_ps(_mm256_loadu_ps(w + j), _mm256_loadu_ps(x + j)));
    a1 = _mm256_add_ps(a1, _mm256_mul_ps(_mm256_loadu_ps(w + j + 8), _mm256_loadu_ps(x + j + 8)));
  }
  alignas(32) float acc[16];
  _mm256_store_ps(acc, a0);
  _mm256_store_ps(acc + 8, a1);
  for (int k = 0; j < n; ++j, ++k) acc[k] += w[j] * x[j];
  return reduce16(acc);
}

__attribute__((target("avx2,f16c"))) float dot_f16_avx2(const std::uint8_t* w, const float* x, int n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 2 * j)));
    const __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 2 * j + 16)));
    a0 = _mm256_add_ps(a0, _mm256_mul_ps(w0, _mm256_loadu_ps(x + j)));
    a1 = _mm256_add_ps(a1, _mm256_mul_ps(w1, _mm256_loadu_ps(x + j + 8)));
  }
  alignas(32) float acc[16];
  _mm256_store_ps(acc, a0);
  _mm256_store_ps(acc + 8, a1);
  for (int k = 0; j < n; ++j, ++k) {
    std::uint16_t v;
    std::memcpy(&v, w + 2 * j, 2);
    acc[k] += f16_to_f32(v) * x[j];
  }
  return reduce16(acc);
}

__attribute__((target("avx2,f16c"))) float dot_q8_0_avx2(const std::uint8_t* w, const float* x, int n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  for (int b = 0; b < n / q8_block_size; ++b) {
    const std::uint8_t* blk = w + b * q8_block_bytes;
    std::uint16_t dh;
    std::memcpy(&dh, blk, 2);
    const __m256 d = _mm256_set1_ps(f16_to_f32(dh));
    const float* xb = x + b * q8_block_size;
    for (int half = 0; half < 2; ++half) {
      const __m128i q16 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2 + half * 16));
      const __m256 q0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q16));
      const __m256 q1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q16, 8)));
      a0 = _mm256_add_ps(a0, _mm256_mul_ps(_mm256_mul_ps(d, q0), _mm256_loadu_ps(xb + half * 16)));
      a1 = _mm256_add_ps(a1, _mm256_mul_ps(_mm256_mul_ps(d, q1), _mm256_loadu_ps(xb + half * 16 + 8)));
    }
  }
  return reduce_ymm(a0, a1);
}

bool detect_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
}

bool g_avx2 = detect_avx2();

} // namespace

const char* kernel_path() { return g_avx2 ? "avx2" : "portable"; }
void force_portable_kernels(bool on) { g_avx2 = on ? false : detect_avx2(); }

float dot_f32(const float* w, const float* x, int n) {
  return g_avx2 ? dot_f32_avx2(w, x, n) : dot_f32_portable(w, x, n);
}
float dot_f16(const std::uint8_t* w, const float* x, int n) {
  return g_avx2 ? dot_f16_avx2(w, x, n) : dot_f16_portable(w, x, n);
}
float dot_q8_0(const std::uint8_t* w, const float* x, int n) {
  return g_avx2 ? dot_q8_0_avx2(w, x, n) : dot_q8_0_portable(w, x, n);
}

float dot_row(const tensor& t, std::int64_t row, const float* x) {
  const std::uint8_t* r = t.row(row);
  const int n = static_cast<int>(t.cols);
  switch (t.type) {
  case tensor_type::f32: return dot_f32(reinterpret_cast<const float*>(r), x, n);
  case tensor_type::f16: return dot_f16(r, x, n);
  case tensor_type::q8_0: return dot_q8_0(r, x, n);
  }
  return 0.0f;
}

void row_to_f32(const tensor& t, std::int64_t row, float* out) {
  const std::uint8_t* r = t.row(row);
  const auto n = static_cast<std::size_t>(t.cols);
  switch (t.type) {
  case tensor_type::f32:
    std::memcpy(out, r, n * 4);
    return;
  case tensor_type::f16:
    for (std::size_t j = 0; j < n; ++j) {
      std::uint16_t v;
      std::memcpy(&v, r + 2 * j, 2);
      out[j] = f16_to_f32(v);
    }
    return;
  case tensor_type::q8_0:
    for (std::size_t b = 0; b < n / q8_block_size; ++b) {
      const std::uint8_t* blk = r + b * q8_block_bytes;
      std::uint16_t dh;
      std::memcpy(&dh, blk, 2);
      const float d = f16_to_f32(dh);
      for (std::size_t k = 0; k < q8_block_size; ++k)
        out[b * q8_block_size + k] = d * static_cast<float>(static_cast<std::int8_t>(blk[2 + k]));
    }
    return;
  }
}

} // namespace llorch::engine
