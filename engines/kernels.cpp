#include "engines/kernels.hpp"

#include <cmath>
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

void quantize_q8(const float* x, int n, std::int8_t* q, float* d) {
  for (int b = 0; b < n / q8_block_size; ++b) {
    const float* xb = x + b * q8_block_size;
    float amax = 0.0f;
    for (int k = 0; k < q8_block_size; ++k) amax = std::max(amax, std::fabs(xb[k]));
    const float scale = amax / 127.0f;
    const float inv = scale > 0.0f ? 127.0f / amax : 0.0f;
    d[b] = scale;
    for (int k = 0; k < q8_block_size; ++k) {
      const float v = std::nearbyint(xb[k] * inv);
      // NaN or inf activations come from hostile weights; keep the integer conversion defined
      q[b * q8_block_size + k] = static_cast<std::int8_t>(v >= -127.0f && v <= 127.0f ? v : 0.0f);
    }
  }
}

namespace {

// The fixed reduction trees shared by both paths.
inline float reduce16(const float* a) {
  float s8[8], s4[4];
  for (int k = 0; k < 8; ++k) s8[k] = a[k] + a[k + 8];
  for (int k = 0; k < 4; ++k) s4[k] = s8[k] + s8[k + 4];
  return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}
inline float reduce8(const float* a) {
  float s4[4];
  for (int k = 0; k < 4; ++k) s4[k] = a[k] + a[k + 4];
  return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

inline float load_f16(const std::uint8_t* w, int i) {
  std::uint16_t v;
  std::memcpy(&v, w + 2 * i, 2);
  return f16_to_f32(v);
}

// ---- portable path

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
  for (; j + 16 <= n; j += 16)
    for (int k = 0; k < 16; ++k) acc[k] += load_f16(w, j + k) * x[j + k];
  for (int k = 0; j < n; ++j, ++k) acc[k] += load_f16(w, j) * x[j];
  return reduce16(acc);
}

float dot_q8_portable(const std::uint8_t* w, const std::int8_t* qx, const float* qd, int n) {
  float acc[8] = {};
  for (int b = 0; b < n / q8_block_size; ++b) {
    const std::uint8_t* blk = w + b * q8_block_bytes;
    std::uint16_t dh;
    std::memcpy(&dh, blk, 2);
    const float d = f16_to_f32(dh) * qd[b];
    const auto* qw = reinterpret_cast<const std::int8_t*>(blk + 2);
    const std::int8_t* xq = qx + b * q8_block_size;
    for (int lane = 0; lane < 8; ++lane) {
      int s = 0;
      for (int k = 4 * lane; k < 4 * lane + 4; ++k) s += int{qw[k]} * int{xq[k]};
      acc[lane] += static_cast<float>(s) * d;
    }
  }
  return reduce8(acc);
}

// ---- AVX2 path: several rows at once so their independent sums hide the add latency

#define LLORCH_AVX2 __attribute__((target("avx2,f16c")))

// reduce8 / reduce16 in registers, the same additions in the same order.
LLORCH_AVX2 inline float tree8(__m256 s8) {
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 t = _mm_add_ps(s4, _mm_movehl_ps(s4, s4)); // (s4[0]+s4[2], s4[1]+s4[3])
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}
LLORCH_AVX2 inline float tree16(__m256 a0, __m256 a1) { return tree8(_mm256_add_ps(a0, a1)); }

template <int R, bool P>
LLORCH_AVX2 void dot_f32_avx2(const float* const* w, const float* x, int n, float* out) {
  __m256 a0[R], a1[R];
  for (int r = 0; r < R; ++r) a0[r] = a1[r] = _mm256_setzero_ps();
  int j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m256 x0 = _mm256_loadu_ps(x + j), x1 = _mm256_loadu_ps(x + j + 8);
    for (int r = 0; r < R; ++r) {
      // the same offset in the next group of rows: keeps a steady stream of lines in flight
      if (P) _mm_prefetch(reinterpret_cast<const char*>(w[r] + j + R * n), _MM_HINT_T0);
      a0[r] = _mm256_add_ps(a0[r], _mm256_mul_ps(_mm256_loadu_ps(w[r] + j), x0));
      a1[r] = _mm256_add_ps(a1[r], _mm256_mul_ps(_mm256_loadu_ps(w[r] + j + 8), x1));
    }
  }
  for (int r = 0; r < R; ++r) {
    if (j == n) {
      out[r] = tree16(a0[r], a1[r]);
      continue;
    }
    alignas(32) float acc[16];
    _mm256_store_ps(acc, a0[r]);
    _mm256_store_ps(acc + 8, a1[r]);
    for (int jj = j, k = 0; jj < n; ++jj, ++k) acc[k] += w[r][jj] * x[jj];
    out[r] = reduce16(acc);
  }
}

template <int R, bool P>
LLORCH_AVX2 void dot_f16_avx2(const std::uint8_t* const* w, const float* x, int n, float* out) {
  __m256 a0[R], a1[R];
  for (int r = 0; r < R; ++r) a0[r] = a1[r] = _mm256_setzero_ps();
  int j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m256 x0 = _mm256_loadu_ps(x + j), x1 = _mm256_loadu_ps(x + j + 8);
    for (int r = 0; r < R; ++r) {
      if (P) _mm_prefetch(reinterpret_cast<const char*>(w[r] + 2 * j + 2 * R * n), _MM_HINT_T0);
      const __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[r] + 2 * j)));
      const __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[r] + 2 * j + 16)));
      a0[r] = _mm256_add_ps(a0[r], _mm256_mul_ps(w0, x0));
      a1[r] = _mm256_add_ps(a1[r], _mm256_mul_ps(w1, x1));
    }
  }
  for (int r = 0; r < R; ++r) {
    if (j == n) {
      out[r] = tree16(a0[r], a1[r]);
      continue;
    }
    alignas(32) float acc[16];
    _mm256_store_ps(acc, a0[r]);
    _mm256_store_ps(acc + 8, a1[r]);
    for (int jj = j, k = 0; jj < n; ++jj, ++k) acc[k] += load_f16(w[r], jj) * x[jj];
    out[r] = reduce16(acc);
  }
}

template <int R, bool P>
LLORCH_AVX2 void dot_q8_avx2(const std::uint8_t* const* w, const std::int8_t* qx, const float* qd, int n,
                             float* out) {
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  const std::size_t row_bytes = static_cast<std::size_t>(R) * static_cast<std::size_t>(n / q8_block_size) * q8_block_bytes;
  for (int b = 0; b < n / q8_block_size; ++b) {
    const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qx + b * q8_block_size));
    for (int r = 0; r < R; ++r) {
      const std::uint8_t* blk = w[r] + b * q8_block_bytes;
      if (P) _mm_prefetch(reinterpret_cast<const char*>(blk + row_bytes), _MM_HINT_T0);
      std::uint16_t dh;
      std::memcpy(&dh, blk, 2);
      // F16C conversion: exact, so the same value as f16_to_f32
      const __m256 d = _mm256_set1_ps(_cvtsh_ss(dh) * qd[b]);
      const __m256i wq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
      // |w| * (x with w's sign): unsigned x signed byte products, pairs summed in 16 bits
      // (at most 2 * 128 * 127, no saturation), then groups of four in 32 bits
      const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(xq, wq));
      const __m256i p32 = _mm256_madd_epi16(p16, ones);
      acc[r] = _mm256_add_ps(acc[r], _mm256_mul_ps(_mm256_cvtepi32_ps(p32), d));
    }
  }
  for (int r = 0; r < R; ++r) out[r] = tree8(acc[r]);
}

bool detect_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
}

bool g_avx2 = detect_avx2();

template <int R, bool P>
void dot_rows_avx2(const tensor& t, std::int64_t row0, const float* x, const std::int8_t* qx,
                   const float* qd, float* out) {
  const std::uint8_t* w[R];
  for (int r = 0; r < R; ++r) w[r] = t.row(row0 + r);
  const int n = static_cast<int>(t.cols);
  switch (t.type) {
  case tensor_type::f32: {
    const float* wf[R];
    for (int r = 0; r < R; ++r) wf[r] = reinterpret_cast<const float*>(w[r]);
    dot_f32_avx2<R, P>(wf, x, n, out);
    return;
  }
  case tensor_type::f16: dot_f16_avx2<R, P>(w, x, n, out); return;
  case tensor_type::q8_0: dot_q8_avx2<R, P>(w, qx, qd, n, out); return;
  }
}

} // namespace

const char* kernel_path() { return g_avx2 ? "avx2" : "portable"; }
void force_portable_kernels(bool on) { g_avx2 = on ? false : detect_avx2(); }

void dot_rows(const tensor& t, std::int64_t row0, int count, const float* x, const std::int8_t* qx,
              const float* qd, float* out, bool prefetch_next) {
  if (g_avx2) {
    if (prefetch_next) {
      switch (count) {
      case 4: dot_rows_avx2<4, true>(t, row0, x, qx, qd, out); return;
      case 3: dot_rows_avx2<3, true>(t, row0, x, qx, qd, out); return;
      case 2: dot_rows_avx2<2, true>(t, row0, x, qx, qd, out); return;
      default: dot_rows_avx2<1, true>(t, row0, x, qx, qd, out); return;
      }
    }
    switch (count) {
    case 4: dot_rows_avx2<4, false>(t, row0, x, qx, qd, out); return;
    case 3: dot_rows_avx2<3, false>(t, row0, x, qx, qd, out); return;
    case 2: dot_rows_avx2<2, false>(t, row0, x, qx, qd, out); return;
    default: dot_rows_avx2<1, false>(t, row0, x, qx, qd, out); return;
    }
  }
  const int n = static_cast<int>(t.cols);
  for (int r = 0; r < count; ++r) {
    const std::uint8_t* w = t.row(row0 + r);
    switch (t.type) {
    case tensor_type::f32: out[r] = dot_f32_portable(reinterpret_cast<const float*>(w), x, n); break;
    case tensor_type::f16: out[r] = dot_f16_portable(w, x, n); break;
    case tensor_type::q8_0: out[r] = dot_q8_portable(w, qx, qd, n); break;
    }
  }
}

float dot_row(const tensor& t, std::int64_t row, const float* x) {
  std::vector<std::int8_t> q;
  std::vector<float> d;
  if (t.type == tensor_type::q8_0) {
    q.resize(static_cast<std::size_t>(t.cols));
    d.resize(static_cast<std::size_t>(t.cols / q8_block_size));
    quantize_q8(x, static_cast<int>(t.cols), q.data(), d.data());
  }
  float out = 0.0f;
  dot_rows(t, row, 1, x, q.data(), d.data(), &out, true);
  return out;
}

void row_to_f32(const tensor& t, std::int64_t row, float* out) {
  const std::uint8_t* r = t.row(row);
  const auto n = static_cast<std::size_t>(t.cols);
  switch (t.type) {
  case tensor_type::f32:
    std::memcpy(out, r, n * 4);
    return;
  case tensor_type::f16:
    for (std::size_t j = 0; j < n; ++j) out[j] = load_f16(r, static_cast<int>(j));
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
