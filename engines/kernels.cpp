#include "engines/kernels.hpp"

#include <algorithm>
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

// Rows per block: the unit of work, and how far ahead the first sequences prefetch.
constexpr int block_rows = 8;
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
  for (int s = 0; s < S; ++s) xs[s] = _mm256_loadu_ps(x + s * n + j);
  for (int r = 0; r < R; ++r) {
    const __m256 wv = load8<T>(w + r * row_bytes, j);
    for (int s = 0; s < S; ++s) acc[r][s] = _mm256_fmadd_ps(wv, xs[s], acc[r][s]);
  }
}

// out[s * out_stride + r] = dot(row r at w, x + s * n) for r < R * groups, rows row_bytes apart.
template <tensor_type T, int R, int S, bool P>
LLORCH_AVX2 void dot_float_avx2(const std::uint8_t* w, std::size_t row_bytes, int groups, const float* x, int n,
                                float* out, std::int64_t out_stride) {
  constexpr int elem = T == tensor_type::f16 ? 2 : 4;
  for (int g = 0; g < groups; ++g, w += R * row_bytes, out += R) {
    __m256 acc[R][S];
    for (int r = 0; r < R; ++r)
      for (int s = 0; s < S; ++s) acc[r][s] = _mm256_setzero_ps();
    int j = 0;
    for (; j + 16 <= n; j += 16) {
      if (P) // the same offset in the next block: keeps a steady stream of lines in flight
        for (int r = 0; r < R; ++r)
          _mm_prefetch(reinterpret_cast<const char*>(w + (r + block_rows) * row_bytes + j * elem), _MM_HINT_T0);
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
      for (int s = 0; s < S; ++s)
        xq[s] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qx + s * n + b * q8_block_size));
      for (int r = 0; r < R; ++r) {
        const std::uint8_t* blk = w + r * row_bytes + b * q8_block_bytes;
        if (P) _mm_prefetch(reinterpret_cast<const char*>(blk + block_rows * row_bytes), _MM_HINT_T0);
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
  switch (t.type) {
  case tensor_type::f32: dot_float_avx2<tensor_type::f32, R, S, P>(w, rb, groups, in.x + off, n, o, out_stride); return;
  case tensor_type::f16: dot_float_avx2<tensor_type::f16, R, S, P>(w, rb, groups, in.x + off, n, o, out_stride); return;
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
  if (count == block_rows) rows_avx2<R, S, P>(t, row0, block_rows / R, in, s0, o, out_stride);
  else rows_avx2<1, S, P>(t, row0, count, in, s0, o, out_stride);
}

template <bool P>
void block_avx2(const tensor& t, std::int64_t row0, int count, const batch_input& in, int s0, int seqs,
                float* o, std::int64_t out_stride) {
  switch (seqs) {
  case 1: block_avx2<1, P>(t, row0, count, in, s0, o, out_stride); return;
  case 2: block_avx2<2, P>(t, row0, count, in, s0, o, out_stride); return;
  case 3: block_avx2<3, P>(t, row0, count, in, s0, o, out_stride); return;
  default: block_avx2<4, P>(t, row0, count, in, s0, o, out_stride); return;
  }
}

// out[0, 8 * B) of weighted_sum, all in registers.
template <int B>
LLORCH_AVX2 void weighted_sum_avx2(const float* w, const float* v, std::size_t stride, int count, float* out) {
  __m256 acc[B];
  for (int b = 0; b < B; ++b) acc[b] = _mm256_setzero_ps();
  for (int p = 0; p < count; ++p) {
    const float* vp = v + static_cast<std::size_t>(p) * stride;
    // positions are too far apart for the hardware prefetcher
    if (p + 8 < count)
      for (int b = 0; b < B; b += 2) _mm_prefetch(reinterpret_cast<const char*>(vp + 8 * stride + 8 * b), _MM_HINT_T0);
    const __m256 wp = _mm256_set1_ps(w[p]);
    for (int b = 0; b < B; ++b) acc[b] = _mm256_fmadd_ps(wp, _mm256_loadu_ps(vp + 8 * b), acc[b]);
  }
  for (int b = 0; b < B; ++b) _mm256_storeu_ps(out + 8 * b, acc[b]);
}

bool detect_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

bool g_avx2 = detect_avx2();

} // namespace

const char* kernel_path() { return g_avx2 ? "avx2" : "portable"; }
void force_portable_kernels(bool on) { g_avx2 = on ? false : detect_avx2(); }

void dot_rows(const tensor& t, std::int64_t begin, std::int64_t end, const batch_input& in, float* out,
              std::int64_t out_stride) {
  if (!g_avx2) {
    dot_rows_portable(t, begin, end, in, out, out_stride);
    return;
  }
  for (std::int64_t i = begin; i < end; i += block_rows) {
    const int count = static_cast<int>(std::min<std::int64_t>(block_rows, end - i));
    float* o = out + (i - begin);
    // the first sequences stream the block in from memory and ask for the next one
    block_avx2<true>(t, i, count, in, 0, std::min(in.seqs, max_seqs), o, out_stride);
    for (int s0 = max_seqs; s0 < in.seqs; s0 += max_seqs)
      block_avx2<false>(t, i, count, in, s0, std::min(in.seqs - s0, max_seqs), o + s0 * out_stride,
                        out_stride);
  }
}

void dot_f32_rows(const float* a, std::size_t stride, int count, const float* b, int n, float* out) {
  const auto* w = reinterpret_cast<const std::uint8_t*>(a);
  const std::size_t row_bytes = stride * sizeof(float);
  if (!g_avx2) {
    for (int p = 0; p < count; ++p) out[p] = dot_float_portable(tensor_type::f32, w + p * row_bytes, b, n);
    return;
  }
  // positions are too far apart for the hardware prefetcher: each group asks for the next
  const int groups = count / block_rows, p = groups * block_rows;
  dot_float_avx2<tensor_type::f32, block_rows, 1, true>(w, row_bytes, groups, b, n, out, 0);
  dot_float_avx2<tensor_type::f32, 1, 1, false>(w + p * row_bytes, row_bytes, count - p, b, n, out + p, 0);
}

void weighted_sum(const float* w, const float* v, std::size_t stride, int count, int n, float* out) {
  int i = 0;
  if (g_avx2) {
    for (; i + 32 <= n; i += 32) weighted_sum_avx2<4>(w, v + i, stride, count, out + i);
    for (; i + 8 <= n; i += 8) weighted_sum_avx2<1>(w, v + i, stride, count, out + i);
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
