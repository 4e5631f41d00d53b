#include "engines/kernels.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <immintrin.h>
#include <type_traits>

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

// One 32-block of quantize_q8, the reference for the AVX2 version.
void quantize_block(const float* xb, std::int8_t* q, float* d) {
  float amax = 0.0f;
  for (int k = 0; k < q8_block_size; ++k) amax = std::max(amax, std::fabs(xb[k]));
  const float scale = amax / 127.0f;
  const float inv = scale > 0.0f ? 127.0f / amax : 0.0f;
  *d = scale;
  for (int k = 0; k < q8_block_size; ++k) {
    const float v = std::nearbyint(xb[k] * inv);
    // NaN or inf activations come from hostile weights; keep the integer conversion defined
    q[k] = static_cast<std::int8_t>(v >= -127.0f && v <= 127.0f ? v : 0.0f);
  }
}

__attribute__((target("avx2"))) void quantize_block_avx2(const float* xb, std::int8_t* q, float* d) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 x[4], m = _mm256_setzero_ps();
  for (int i = 0; i < 4; ++i) {
    x[i] = _mm256_loadu_ps(xb + 8 * i);
    m = _mm256_max_ps(_mm256_andnot_ps(sign, x[i]), m); // |x| > m ? |x| : m: NaN is skipped
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, m);
  float amax = 0.0f; // the maximum is exact whatever the order
  for (float l : lanes) amax = std::max(amax, l);
  const float scale = amax / 127.0f;
  const float inv = scale > 0.0f ? 127.0f / amax : 0.0f;
  *d = scale;
  __m256i qi[4];
  for (int i = 0; i < 4; ++i) {
    const __m256 v = _mm256_round_ps(_mm256_mul_ps(x[i], _mm256_set1_ps(inv)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 ok = _mm256_and_ps(_mm256_cmp_ps(v, _mm256_set1_ps(-127.0f), _CMP_GE_OQ),
                                    _mm256_cmp_ps(v, _mm256_set1_ps(127.0f), _CMP_LE_OQ));
    qi[i] = _mm256_cvtps_epi32(_mm256_and_ps(v, ok));
  }
  // int32 -> int8 (no saturation: |v| <= 127); the packs work per 128-bit half, the permute
  // puts the four groups back in order
  const __m256i p16 = _mm256_packs_epi32(qi[0], qi[1]), p16b = _mm256_packs_epi32(qi[2], qi[3]);
  const __m256i p8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p16, p16b), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), p8);
}

// The kernels in use: every path gives the same bits, later ones are faster where the CPU has them.
enum class kernels { portable, avx2, avx512 };
constexpr const char* kernel_names[] = {"portable", "avx2", "avx512"};

bool cpu_has(kernels k) {
  __builtin_cpu_init();
  switch (k) {
  case kernels::portable: return true;
  case kernels::avx2:
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  case kernels::avx512: // every AVX-512 server CPU since Skylake-SP has these four
    return cpu_has(kernels::avx2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
  }
  return false;
}

// The best path this CPU has, or the one LLORCH_KERNELS names if the CPU has it (benchmarks A/B
// the paths with it).
kernels pick_kernels() {
  kernels best = kernels::portable;
  for (kernels k : {kernels::avx2, kernels::avx512})
    if (cpu_has(k)) best = k;
  if (const char* want = std::getenv("LLORCH_KERNELS"))
    for (int k = 0; k <= static_cast<int>(best); ++k)
      if (std::strcmp(want, kernel_names[k]) == 0) return static_cast<kernels>(k);
  return best;
}

kernels g_kernels = pick_kernels();
// AVX512-VNNI for Q8_0 on the avx512 path (Cascade Lake and later); without it Q8_0 takes the AVX2 kernel
const bool g_cpu_vnni = __builtin_cpu_supports("avx512vnni");

} // namespace

void quantize_q8(const float* x, int n, std::int8_t* q, float* d) {
  for (int b = 0; b < n / q8_block_size; ++b) {
    if (g_kernels != kernels::portable) quantize_block_avx2(x + b * q8_block_size, q + b * q8_block_size, d + b);
    else quantize_block(x + b * q8_block_size, q + b * q8_block_size, d + b);
  }
}

namespace {

// Rows per block: the unit of work, and how far ahead the first sequences prefetch.
constexpr int block_rows = 8;
// One sequence of f32/f16 rows waits on memory: it walks 2 rows at a time (fewer concurrent
// streams than 8, which read 5-10 % less with two threads) and prefetches 4 rows ahead.
constexpr int single_rows = 2, single_ahead = 4;
// Weight lines are prefetched into L2, not L1: an L1 prefetch holds one of the core's few L1
// miss buffers until the line arrives, and a stream read this way (the bandwidth probe) was
// 5-10 % faster than with L1 prefetches.
constexpr auto weight_hint = _MM_HINT_T1;
// Sequences that share one load of a weight vector.
constexpr int max_seqs = 4;

// The fixed reduction tree shared by both paths.
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

inline float load_weight(tensor_type type, const std::uint8_t* w, int i) {
  if (type == tensor_type::f16) return load_f16(w, i);
  float v;
  std::memcpy(&v, w + 4 * i, 4);
  return v;
}

// ---- portable path: one (row, sequence) at a time

float dot_float_portable(tensor_type type, const std::uint8_t* w, const float* x, int n) {
  float acc[8] = {};
  for (int j = 0; j < n; j += 8)
    for (int k = 0; k < 8; ++k) {
      // past n the row counts as zero-padded, as in the AVX2 tail
      const bool in = j + k < n;
      acc[k] = std::fma(in ? load_weight(type, w, j + k) : 0.0f, in ? x[j + k] : 0.0f, acc[k]);
    }
  return reduce8(acc);
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
      acc[lane] = std::fma(static_cast<float>(s), d, acc[lane]); // |s| < 2^16: exact as float
    }
  }
  return reduce8(acc);
}

void dot_rows_portable(const tensor& t, std::int64_t begin, std::int64_t end, const batch_input& in,
                       float* out, std::int64_t out_stride) {
  const int n = static_cast<int>(t.cols);
  for (std::int64_t i = begin; i < end; ++i)
    for (int s = 0; s < in.seqs; ++s) {
      const auto off = static_cast<std::size_t>(s) * static_cast<std::size_t>(n);
      float& o = out[s * out_stride + (i - begin)];
      if (t.type == tensor_type::q8_0)
        o = dot_q8_portable(t.row(i), in.qx + off, in.qd + off / q8_block_size, n);
      else
        o = dot_float_portable(t.type, t.row(i), in.x + off, n);
    }
}

// exp: x = n ln2 + r with |r| <= ln2 / 2, e^r by a degree-7 polynomial (Cephes expf), times 2^n.
constexpr float exp_lo = -87.0f, exp_hi = 88.0f, log2e = 1.44269504088896341f;
constexpr float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
constexpr float exp_c[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                            4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};

float exp_portable(float x) {
  if (x != x) return x;
  x = x < exp_lo ? exp_lo : x;
  x = x > exp_hi ? exp_hi : x;
  const float n = std::nearbyint(x * log2e);
  float r = std::fma(n, -ln2_hi, x);
  r = std::fma(n, -ln2_lo, r);
  float y = exp_c[0];
  for (int k = 1; k < 6; ++k) y = std::fma(y, r, exp_c[k]);
  y = std::fma(y, r * r, r) + 1.0f;
  const std::uint32_t bits = static_cast<std::uint32_t>(static_cast<int>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return y * scale;
}

// ---- AVX2 path: R rows x S sequences of independent sums per call, each weight vector loaded
// once for all S sequences; R * S = 8 accumulators cover the FMA latency.

#define LLORCH_AVX2 __attribute__((target("avx2,fma,f16c")))

// reduce8 in registers, the same additions in the same order.
LLORCH_AVX2 inline float tree8(__m256 s8) {
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 t = _mm_add_ps(s4, _mm_movehl_ps(s4, s4)); // (s4[0]+s4[2], s4[1]+s4[3])
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

// out[s * out_stride + r] = tree8(acc[r][s]). Eight sums go through one transposed tree: the
// same additions of the same operands as tree8, a third of the instructions.
template <int R, int S>
LLORCH_AVX2 inline void store_sums(const __m256 (&acc)[R][S], float* out, std::int64_t out_stride) {
  if constexpr (R * S == 8) {
    const __m256* a = &acc[0][0];
    __m256 s4[4]; // [lo + hi of a[2i] | lo + hi of a[2i+1]]
    for (int i = 0; i < 4; ++i)
      s4[i] = _mm256_add_ps(_mm256_permute2f128_ps(a[2 * i], a[2 * i + 1], 0x20),
                            _mm256_permute2f128_ps(a[2 * i], a[2 * i + 1], 0x31));
    __m256 t[2]; // (s4[0] + s4[2], s4[1] + s4[3]) of each
    for (int i = 0; i < 2; ++i)
      t[i] = _mm256_add_ps(_mm256_shuffle_ps(s4[2 * i], s4[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                           _mm256_shuffle_ps(s4[2 * i], s4[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    // sums of a[0], a[2], a[4], a[6], a[1], a[3], a[5], a[7]
    alignas(32) float sums[8];
    _mm256_store_ps(sums, _mm256_add_ps(_mm256_shuffle_ps(t[0], t[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                        _mm256_shuffle_ps(t[0], t[1], _MM_SHUFFLE(3, 1, 3, 1))));
    for (int r = 0; r < R; ++r)
      for (int s = 0; s < S; ++s) {
        const int i = r * S + s;
        out[s * out_stride + r] = sums[i / 2 + (i % 2) * 4];
      }
  } else {
    for (int r = 0; r < R; ++r)
      for (int s = 0; s < S; ++s) out[s * out_stride + r] = tree8(acc[r][s]);
  }
}

template <tensor_type T>
LLORCH_AVX2 inline __m256 load8(const std::uint8_t* w, int j) {
  if constexpr (T == tensor_type::f16)
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 2 * j)));
  else
    return _mm256_loadu_ps(reinterpret_cast<const float*>(w) + j);
}

// One step of 8 elements from j: each row's weight vector meets every sequence.
template <tensor_type T, int R, int S>
LLORCH_AVX2 inline void fma_step(__m256 (&acc)[R][S], const std::uint8_t* w, std::size_t row_bytes,
                                 const float* x, int n, int j) {
  __m256 xs[S];
  for (int s = 0; s < S; ++s) {
    xs[s] = _mm256_loadu_ps(x + s * n + j);
    // keep it in a register: the compiler would fold the load into each of the R FMAs, and
    // the extra loads cost a third of the multi-sequence throughput
    asm("" : "+x"(xs[s]));
  }
  for (int r = 0; r < R; ++r) {
    const __m256 wv = load8<T>(w + r * row_bytes, j);
    for (int s = 0; s < S; ++s) acc[r][s] = _mm256_fmadd_ps(wv, xs[s], acc[r][s]);
  }
}

// The line at `offset` of each of the R rows P rows on (none for P = 0): the same offset P rows
// ahead keeps a steady stream of lines in flight.
template <int R, int P>
inline void prefetch_ahead_rows(const std::uint8_t* w, std::size_t row_bytes, int offset) {
  if constexpr (P > 0)
    for (int r = 0; r < R; ++r)
      _mm_prefetch(reinterpret_cast<const char*>(w + (r + P) * row_bytes + offset), weight_hint);
}

// out[s * out_stride + r] = dot(row r at w, x + s * n) for r < R * groups, rows row_bytes apart.
// P: rows ahead to prefetch at the same offsets (0: none).
template <tensor_type T, int R, int S, int P>
LLORCH_AVX2 void dot_float_avx2(const std::uint8_t* w, std::size_t row_bytes, int groups, const float* x, int n,
                                float* out, std::int64_t out_stride) {
  constexpr int elem = T == tensor_type::f16 ? 2 : 4;
  for (int g = 0; g < groups; ++g, w += R * row_bytes, out += R) {
    __m256 acc[R][S];
    for (int r = 0; r < R; ++r)
      for (int s = 0; s < S; ++s) acc[r][s] = _mm256_setzero_ps();
    int j = 0;
    for (; j + 16 <= n; j += 16) {
      prefetch_ahead_rows<R, P>(w, row_bytes, j * elem);
      fma_step<T, R, S>(acc, w, row_bytes, x, n, j);
      fma_step<T, R, S>(acc, w, row_bytes, x, n, j + 8);
    }
    for (; j + 8 <= n; j += 8) fma_step<T, R, S>(acc, w, row_bytes, x, n, j);
    if (j < n) { // the tail, zero-padded to 8 (fma(0, 0, a) == a)
      alignas(32) float wt[R][8] = {}, xt[S][8] = {};
      for (int k = 0; j + k < n; ++k) {
        for (int r = 0; r < R; ++r) wt[r][k] = load_weight(T, w + r * row_bytes, j + k);
        for (int s = 0; s < S; ++s) xt[s][k] = x[s * n + j + k];
      }
      for (int r = 0; r < R; ++r)
        for (int s = 0; s < S; ++s) acc[r][s] = _mm256_fmadd_ps(_mm256_load_ps(wt[r]), _mm256_load_ps(xt[s]), acc[r][s]);
    }
    store_sums<R, S>(acc, out, out_stride);
  }
}

template <int R, int S, bool P>
LLORCH_AVX2 void dot_q8_avx2(const std::uint8_t* w, std::size_t row_bytes, int groups, const std::int8_t* qx,
                             const float* qd, int n, float* out, std::int64_t out_stride) {
  const int nb = n / q8_block_size;
  const __m256i ones = _mm256_set1_epi16(1);
  for (int g = 0; g < groups; ++g, w += R * row_bytes, out += R) {
    __m256 acc[R][S];
    for (int r = 0; r < R; ++r)
      for (int s = 0; s < S; ++s) acc[r][s] = _mm256_setzero_ps();
    for (int b = 0; b < nb; ++b) {
      __m256i xq[S];
      for (int s = 0; s < S; ++s) {
        xq[s] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qx + s * n + b * q8_block_size));
        asm("" : "+x"(xq[s])); // in a register, as in fma_step
      }
      for (int r = 0; r < R; ++r) {
        const std::uint8_t* blk = w + r * row_bytes + b * q8_block_bytes;
        if (P) _mm_prefetch(reinterpret_cast<const char*>(blk + block_rows * row_bytes), weight_hint);
        std::uint16_t dh;
        std::memcpy(&dh, blk, 2);
        const float dw = _cvtsh_ss(dh); // F16C conversion: exact, so the same value as f16_to_f32
        const __m256i wq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
        const __m256i aw = _mm256_sign_epi8(wq, wq);
        for (int s = 0; s < S; ++s) {
          // |w| * (x with w's sign): unsigned x signed byte products, pairs summed in 16 bits
          // (at most 2 * 128 * 127, no saturation), then groups of four in 32 bits
          const __m256i p16 = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(xq[s], wq));
          const __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
          acc[r][s] = _mm256_fmadd_ps(p, _mm256_set1_ps(dw * qd[s * nb + b]), acc[r][s]);
        }
      }
    }
    store_sums<R, S>(acc, out, out_stride);
  }
}

// R * groups rows from row0 for S sequences from in's sequence s0; o: row0's value for s0.
template <int R, int S, bool P>
void rows_avx2(const tensor& t, std::int64_t row0, int groups, const batch_input& in, int s0, float* o,
               std::int64_t out_stride) {
  const int n = static_cast<int>(t.cols);
  const auto off = static_cast<std::size_t>(s0) * static_cast<std::size_t>(n);
  const std::uint8_t* w = t.row(row0);
  const std::size_t rb = t.row_size();
  constexpr int ahead = !P ? 0 : S == 1 ? single_ahead : block_rows;
  switch (t.type) {
  case tensor_type::f32:
    dot_float_avx2<tensor_type::f32, R, S, ahead>(w, rb, groups, in.x + off, n, o, out_stride);
    return;
  case tensor_type::f16:
    dot_float_avx2<tensor_type::f16, R, S, ahead>(w, rb, groups, in.x + off, n, o, out_stride);
    return;
  case tensor_type::q8_0:
    dot_q8_avx2<R, S, P>(w, rb, groups, in.qx + off, in.qd + off / q8_block_size, n, o, out_stride);
    return;
  }
}

// One block of `count` rows (a full block, or fewer at the end of the range) for S sequences:
// fewer rows at a time the more sequences share them, so that R * S accumulators stay in registers.
template <int S, bool P>
void block_avx2(const tensor& t, std::int64_t row0, int count, const batch_input& in, int s0, float* o,
                std::int64_t out_stride) {
  constexpr int R = S == 1 ? 8 : S == 2 ? 4 : 2;
  if (S == 1 && count == block_rows && t.type != tensor_type::q8_0)
    rows_avx2<single_rows, S, P>(t, row0, block_rows / single_rows, in, s0, o, out_stride);
  else if (count == block_rows) rows_avx2<R, S, P>(t, row0, block_rows / R, in, s0, o, out_stride);
  else rows_avx2<1, S, P>(t, row0, count, in, s0, o, out_stride);
}

// f(std::integral_constant<int, S>) for S = min(seqs, 4): the kernels' sequence count is a
// template parameter.
template <class F>
void with_seqs(int seqs, F f) {
  switch (seqs) {
  case 1: f(std::integral_constant<int, 1>{}); return;
  case 2: f(std::integral_constant<int, 2>{}); return;
  case 3: f(std::integral_constant<int, 3>{}); return;
  default: f(std::integral_constant<int, 4>{}); return;
  }
}

template <bool P>
void block_avx2(const tensor& t, std::int64_t row0, int count, const batch_input& in, int s0, int seqs,
                float* o, std::int64_t out_stride) {
  with_seqs(seqs, [&](auto s) { block_avx2<decltype(s)::value, P>(t, row0, count, in, s0, o, out_stride); });
}

// ---- AVX-512 path: the AVX2 arithmetic with more done per instruction. For f32/f16 rows a
// 16-lane register holds two rows' 8-lane sums side by side, each half doing exactly the steps of
// the AVX2 register it replaces (never one row's columns split across halves, which would change
// the order of the sums), so each (row, sequence) value keeps its bits. Q8_0 keeps 8-lane
// registers and gets its integer dot products from VNNI.

// GCC 12's AVX-512 intrinsics start some results from a deliberately undefined register and
// warn about it once inlined (GCC bug 105593)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#define LLORCH_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512dq")))
#define LLORCH_AVX512_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512dq,avx512vnni")))

// tree8 of each half of a[0, n), n <= 8 (past n: zeros). The registers go through one transposed
// tree: each 128-bit lane adds the operands that tree8 adds, in the same order.
LLORCH_AVX512 inline void tree8x16(const __m512* a, int n, float* sums) {
  __m512 s4[4]; // 128-bit lanes: [lo + hi of a[2i]'s lower half, of its upper half, the same of a[2i + 1]]
  for (int i = 0; i < 4; ++i) {
    const __m512 x = 2 * i < n ? a[2 * i] : _mm512_setzero_ps(), y = 2 * i + 1 < n ? a[2 * i + 1] : _mm512_setzero_ps();
    s4[i] = _mm512_add_ps(_mm512_shuffle_f32x4(x, y, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_f32x4(x, y, _MM_SHUFFLE(3, 1, 3, 1)));
  }
  __m512 t[2]; // per lane: (s4[0] + s4[2], s4[1] + s4[3]) of two sums
  for (int i = 0; i < 2; ++i)
    t[i] = _mm512_add_ps(_mm512_shuffle_ps(s4[2 * i], s4[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(s4[2 * i], s4[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  // sums[8 * (z % 2) + 4 * h + z / 2]: half h of a[z]
  _mm512_store_ps(sums, _mm512_add_ps(_mm512_shuffle_ps(t[0], t[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                      _mm512_shuffle_ps(t[0], t[1], _MM_SHUFFLE(3, 1, 3, 1))));
}

// out[s * out_stride + 2p + h] = tree8(half h of acc[p][s]): two rows per register.
template <int R2, int S>
LLORCH_AVX512 inline void store_sums_x2(const __m512 (&acc)[R2][S], float* out, std::int64_t out_stride) {
  constexpr int n = R2 * S;
  const __m512* a = &acc[0][0];
  for (int z0 = 0; z0 < n; z0 += 8) {
    alignas(64) float sums[16];
    tree8x16(a + z0, std::min(n - z0, 8), sums);
    for (int z = z0; z < std::min(n, z0 + 8); ++z)
      for (int h = 0; h < 2; ++h)
        out[(z % S) * out_stride + 2 * (z / S) + h] = sums[8 * ((z - z0) % 2) + 4 * h + (z - z0) / 2];
  }
}

// [row at w | row at w + row_bytes], elements j..j+7 of each.
template <tensor_type T>
LLORCH_AVX512 inline __m512 load8x2(const std::uint8_t* w, std::size_t row_bytes, int j) {
  if constexpr (T == tensor_type::f16) {
    const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 2 * j));
    const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + row_bytes + 2 * j));
    return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1));
  } else {
    const __m256 lo = _mm256_loadu_ps(reinterpret_cast<const float*>(w) + j);
    const __m256 hi = _mm256_loadu_ps(reinterpret_cast<const float*>(w + row_bytes) + j);
    return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
  }
}

// fma_step with rows in pairs: each sequence's 8 elements broadcast to both halves.
template <tensor_type T, int R2, int S>
LLORCH_AVX512 inline void fma_step_x2(__m512 (&acc)[R2][S], const std::uint8_t* w, std::size_t row_bytes,
                                      const float* x, int n, int j) {
  __m512 xs[S];
  for (int s = 0; s < S; ++s) xs[s] = _mm512_broadcast_f32x8(_mm256_loadu_ps(x + s * n + j));
  for (int p = 0; p < R2; ++p) {
    const __m512 wv = load8x2<T>(w + 2 * p * row_bytes, row_bytes, j);
    for (int s = 0; s < S; ++s) acc[p][s] = _mm512_fmadd_ps(wv, xs[s], acc[p][s]);
  }
}

// dot_float_avx2 for 2 * R2 rows per group.
template <tensor_type T, int R2, int S, int P>
LLORCH_AVX512 void dot_float_avx512(const std::uint8_t* w, std::size_t row_bytes, int groups, const float* x, int n,
                                    float* out, std::int64_t out_stride) {
  constexpr int R = 2 * R2, elem = T == tensor_type::f16 ? 2 : 4;
  for (int g = 0; g < groups; ++g, w += R * row_bytes, out += R) {
    __m512 acc[R2][S];
    for (int p = 0; p < R2; ++p)
      for (int s = 0; s < S; ++s) acc[p][s] = _mm512_setzero_ps();
    int j = 0;
    for (; j + 16 <= n; j += 16) {
      prefetch_ahead_rows<R, P>(w, row_bytes, j * elem);
      fma_step_x2<T, R2, S>(acc, w, row_bytes, x, n, j);
      fma_step_x2<T, R2, S>(acc, w, row_bytes, x, n, j + 8);
    }
    for (; j + 8 <= n; j += 8) fma_step_x2<T, R2, S>(acc, w, row_bytes, x, n, j);
    if (j < n) { // the tail, zero-padded to 8 as on the AVX2 path
      alignas(32) float wt[R][8] = {}, xt[S][8] = {};
      for (int k = 0; j + k < n; ++k) {
        for (int r = 0; r < R; ++r) wt[r][k] = load_weight(T, w + r * row_bytes, j + k);
        for (int s = 0; s < S; ++s) xt[s][k] = x[s * n + j + k];
      }
      fma_step_x2<tensor_type::f32, R2, S>(acc, reinterpret_cast<const std::uint8_t*>(wt), sizeof(wt[0]), xt[0], 8, 0);
    }
    store_sums_x2<R2, S>(acc, out, out_stride);
  }
}

// Q8_0 with VNNI: vpdpbusd multiplies unsigned by signed bytes and adds each group of four
// products to an int32 exactly (no 16-bit saturation). The weights are made unsigned by adding
// 128 (w ^ 0x80) and the accumulator starts at -128 * (the group's sum of x), so each lane gets
// the exact integer the AVX2 kernel's maddubs + madd give; cvt and the fused multiply-add by
// d_w * d_x are unchanged. The R rows' scales are converted and multiplied 8 at a time, and
// each FMA takes its scale as a broadcast load.
template <int R, int S, bool P>
LLORCH_AVX512_VNNI void dot_q8_vnni(const std::uint8_t* w, std::size_t row_bytes, int groups, const std::int8_t* qx,
                                    const float* qd, int n, float* out, std::int64_t out_stride) {
  static_assert(R <= 8);
  const int nb = n / q8_block_size;
  const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80));
  alignas(32) float d[S][8];
  for (int g = 0; g < groups; ++g, w += R * row_bytes, out += R) {
    __m256 acc[R][S];
    for (int r = 0; r < R; ++r)
      for (int s = 0; s < S; ++s) acc[r][s] = _mm256_setzero_ps();
    for (int b = 0; b < nb; ++b) {
      const std::uint8_t* blk = w + b * q8_block_bytes;
      // the R scales packed in general registers: the vector ports have enough to do
      std::uint64_t h[2] = {0, 0};
      for (int r = 0; r < R; ++r) {
        std::uint16_t v;
        std::memcpy(&v, blk + r * row_bytes, 2);
        h[r / 4] |= std::uint64_t{v} << (16 * (r % 4));
      }
      asm("" : "+r"(h[0]), "+r"(h[1])); // (else GCC moves the packing to the vector ports)
      const __m128i dhv = R > 4 ? _mm_set_epi64x(static_cast<long long>(h[1]), static_cast<long long>(h[0]))
                               : _mm_cvtsi64_si128(static_cast<long long>(h[0]));
      const __m256 dw = _mm256_cvtph_ps(dhv);
      for (int s = 0; s < S; ++s) _mm256_store_ps(d[s], _mm256_mul_ps(dw, _mm256_set1_ps(qd[s * nb + b])));
      asm("" : "+m"(d)); // and each FMA loads its d_w * d_x broadcast from there
      __m256i xq[S], c[S];
      for (int s = 0; s < S; ++s) {
        xq[s] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qx + s * n + b * q8_block_size));
        c[s] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_setzero_si256(), bias, xq[s]));
      }
      for (int r = 0; r < R; ++r) {
        const std::uint8_t* rb = blk + r * row_bytes;
        if (P) _mm_prefetch(reinterpret_cast<const char*>(rb + block_rows * row_bytes), weight_hint);
        const __m256i wu = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(rb + 2)), bias);
        for (int s = 0; s < S; ++s) {
          const __m256 p = _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(c[s], wu, xq[s]));
          acc[r][s] = _mm256_fmadd_ps(p, _mm256_set1_ps(d[s][r]), acc[r][s]);
        }
      }
    }
    store_sums<R, S>(acc, out, out_stride);
  }
}

// block_avx2 on the AVX-512 path: Q8_0 with VNNI; f32/f16 rows for 2 or more sequences in row
// pairs where that is faster: f16 rows (the conversions halve) and f32 rows already in cache (the
// sequences after the first 4). Streaming f32 rows for the first 4 sequences waits on memory
// (measured: no faster in decode, s110m 2-3% slower), so they stay on the AVX2 kernel, as do one
// sequence of f32/f16 and blocks of fewer than 8 rows.
template <int S, bool P>
void block_avx512(const tensor& t, std::int64_t row0, int count, const batch_input& in, int s0, float* o,
                  std::int64_t out_stride) {
  const int n = static_cast<int>(t.cols);
  const auto off = static_cast<std::size_t>(s0) * static_cast<std::size_t>(n);
  const std::uint8_t* w = t.row(row0);
  const std::size_t rb = t.row_size();
  constexpr int pf = P ? block_rows : 0;
  if (t.type == tensor_type::q8_0 && g_cpu_vnni) {
    constexpr int R = S <= 2 ? 8 : 4;
    const float* qd = in.qd + off / q8_block_size;
    if (count == block_rows) dot_q8_vnni<R, S, P>(w, rb, block_rows / R, in.qx + off, qd, n, o, out_stride);
    else dot_q8_vnni<1, S, P>(w, rb, count, in.qx + off, qd, n, o, out_stride);
    return;
  }
  if (S >= 2 && count == block_rows && (t.type == tensor_type::f16 || (t.type == tensor_type::f32 && !P))) {
    constexpr int R2 = S == 2 ? 4 : 2; // 8 rows x 2 or 4 rows x 3 or 4 sequences, 16 lanes each
    if (t.type == tensor_type::f32)
      dot_float_avx512<tensor_type::f32, R2, S, pf>(w, rb, block_rows / (2 * R2), in.x + off, n, o, out_stride);
    else
      dot_float_avx512<tensor_type::f16, R2, S, pf>(w, rb, block_rows / (2 * R2), in.x + off, n, o, out_stride);
    return;
  }
  block_avx2<S, P>(t, row0, count, in, s0, o, out_stride);
}

template <bool P>
void block_avx512(const tensor& t, std::int64_t row0, int count, const batch_input& in, int s0, int seqs,
                  float* o, std::int64_t out_stride) {
  with_seqs(seqs, [&](auto s) { block_avx512<decltype(s)::value, P>(t, row0, count, in, s0, o, out_stride); });
}

#pragma GCC diagnostic pop

// Positions ahead that attention prefetches: a position's slice of a head is a few lines, and the
// next one is kv_dim floats away, too far for the hardware prefetcher.
constexpr int prefetch_ahead = 16;

// out[0, 8 * B) of weighted_sum, all in registers.
template <int B>
LLORCH_AVX2 void weighted_sum_avx2(const float* w, const float* v, std::size_t stride, int count, float* out) {
  __m256 acc[B];
  for (int b = 0; b < B; ++b) acc[b] = _mm256_setzero_ps();
  for (int p = 0; p < count; ++p) {
    const float* vp = v + static_cast<std::size_t>(p) * stride;
    for (int b = 0; b < B; b += 2) // (a few lines past count: harmless)
      _mm_prefetch(reinterpret_cast<const char*>(vp + prefetch_ahead * stride + 8 * b), _MM_HINT_T0);
    const __m256 wp = _mm256_set1_ps(w[p]);
    for (int b = 0; b < B; ++b) acc[b] = _mm256_fmadd_ps(wp, _mm256_loadu_ps(vp + 8 * b), acc[b]);
  }
  for (int b = 0; b < B; ++b) _mm256_storeu_ps(out + 8 * b, acc[b]);
}

// exp_portable on eight floats, operation for operation.
LLORCH_AVX2 __m256 exp_avx2(__m256 x0) {
  __m256 x = _mm256_max_ps(_mm256_set1_ps(exp_lo), x0); // lo > x ? lo : x (NaN stays)
  x = _mm256_min_ps(_mm256_set1_ps(exp_hi), x);         // hi < x ? hi : x
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(log2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-ln2_hi), x);
  r = _mm256_fmadd_ps(n, _mm256_set1_ps(-ln2_lo), r);
  __m256 y = _mm256_set1_ps(exp_c[0]);
  for (int k = 1; k < 6; ++k) y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(exp_c[k]));
  y = _mm256_add_ps(_mm256_fmadd_ps(y, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  const __m256 e = _mm256_mul_ps(y, _mm256_castsi256_ps(bits));
  return _mm256_blendv_ps(e, x0, _mm256_cmp_ps(x0, x0, _CMP_UNORD_Q)); // NaN in, NaN out
}

LLORCH_AVX2 void exp_inplace_avx2(float* x, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, exp_avx2(_mm256_loadu_ps(x + i)));
  if (i < n) { // the tail through a padded register, the same operations: short prefill rows'
               // softmax is mostly tail, and std::fma there is a library call
    alignas(32) float t[8] = {};
    std::memcpy(t, x + i, static_cast<std::size_t>(n - i) * sizeof(float));
    _mm256_store_ps(t, exp_avx2(_mm256_load_ps(t)));
    std::memcpy(x + i, t, static_cast<std::size_t>(n - i) * sizeof(float));
  }
}

} // namespace

const char* kernel_path() { return kernel_names[static_cast<int>(g_kernels)]; }

std::vector<std::string> kernel_paths() {
  std::vector<std::string> out;
  for (int k = 0; k < 3; ++k)
    if (cpu_has(static_cast<kernels>(k))) out.emplace_back(kernel_names[k]);
  return out;
}

bool force_kernel_path(const char* name) {
  for (int k = 0; k < 3; ++k)
    if (std::strcmp(name, kernel_names[k]) == 0 && cpu_has(static_cast<kernels>(k))) {
      g_kernels = static_cast<kernels>(k);
      return true;
    }
  return false;
}

void dot_rows(const tensor& t, std::int64_t begin, std::int64_t end, const batch_input& in, float* out,
              std::int64_t out_stride) {
  if (g_kernels == kernels::portable) {
    dot_rows_portable(t, begin, end, in, out, out_stride);
    return;
  }
  using block_fn = void (*)(const tensor&, std::int64_t, int, const batch_input&, int, int, float*, std::int64_t);
  const bool wide = g_kernels == kernels::avx512;
  const block_fn block = wide ? block_avx512<true> : block_avx2<true>;
  const block_fn block_cached = wide ? block_avx512<false> : block_avx2<false>;
  for (std::int64_t i = begin; i < end; i += block_rows) {
    const int count = static_cast<int>(std::min<std::int64_t>(block_rows, end - i));
    float* o = out + (i - begin);
    // the first sequences stream the block in from memory and ask for the next one
    block(t, i, count, in, 0, std::min(in.seqs, max_seqs), o, out_stride);
    for (int s0 = max_seqs; s0 < in.seqs; s0 += max_seqs)
      block_cached(t, i, count, in, s0, std::min(in.seqs - s0, max_seqs), o + s0 * out_stride,
                        out_stride);
  }
}

void dot_f32_rows(const float* a, std::size_t stride, int count, const float* b, int n, float* out) {
  const auto* w = reinterpret_cast<const std::uint8_t*>(a);
  const std::size_t row_bytes = stride * sizeof(float);
  if (g_kernels == kernels::portable) {
    for (int p = 0; p < count; ++p) out[p] = dot_float_portable(tensor_type::f32, w + p * row_bytes, b, n);
    return;
  }
  const int groups = count / block_rows, p = groups * block_rows;
  dot_float_avx2<tensor_type::f32, block_rows, 1, prefetch_ahead>(w, row_bytes, groups, b, n, out, 0);
  dot_float_avx2<tensor_type::f32, 1, 1, 0>(w + p * row_bytes, row_bytes, count - p, b, n, out + p, 0);
}

void exp_inplace(float* x, int n) {
  if (g_kernels != kernels::portable) {
    exp_inplace_avx2(x, n);
    return;
  }
  for (int i = 0; i < n; ++i) x[i] = exp_portable(x[i]);
}

void prefetch_rows(const float* p, std::size_t stride, int count, int n) {
  for (int r = 0; r < std::min(count, prefetch_ahead); ++r)
    for (int i = 0; i < n; i += 16) __builtin_prefetch(p + static_cast<std::size_t>(r) * stride + i);
}

void weighted_sum(const float* w, const float* v, std::size_t stride, int count, int n, float* out) {
  int i = 0;
  while (g_kernels != kernels::portable && n - i >= 8) { // up to 64 outputs per pass over the positions
    const int b = std::min(8, (n - i) / 8);
    switch (b) {
    case 8: weighted_sum_avx2<8>(w, v + i, stride, count, out + i); break;
    case 7: weighted_sum_avx2<7>(w, v + i, stride, count, out + i); break;
    case 6: weighted_sum_avx2<6>(w, v + i, stride, count, out + i); break;
    case 5: weighted_sum_avx2<5>(w, v + i, stride, count, out + i); break;
    case 4: weighted_sum_avx2<4>(w, v + i, stride, count, out + i); break;
    case 3: weighted_sum_avx2<3>(w, v + i, stride, count, out + i); break;
    case 2: weighted_sum_avx2<2>(w, v + i, stride, count, out + i); break;
    default: weighted_sum_avx2<1>(w, v + i, stride, count, out + i); break;
    }
    i += 8 * b;
  }
  for (; i < n; ++i) {
    float acc = 0.0f;
    for (int p = 0; p < count; ++p) acc = std::fma(w[p], v[static_cast<std::size_t>(p) * stride + i], acc);
    out[i] = acc;
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
  dot_rows(t, row, row + 1, {x, q.data(), d.data(), 1}, &out, 0);
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
