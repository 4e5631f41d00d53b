#include "engines/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace llorch::engine {

namespace {

std::uint64_t mix(std::uint64_t z) {
  // splitmix64 finaliser
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

} // namespace

double uniform_draw(std::uint64_t seed, std::uint64_t index) {
  const std::uint64_t h = mix(mix(seed + 0x9e3779b97f4a7c15ULL) ^ (index * 0xd1b54a32d192ed03ULL));
  return static_cast<double>(h >> 11) * 0x1.0p-53;
}

// Four floats in one GCC/Clang vector (element-wise operations, exact).
using f32x4 = float __attribute__((vector_size(16)));
using i32x4 = std::int32_t __attribute__((vector_size(16)));

int argmax(const float* logits, int n) {
  // The first maximum, as a sequential scan finds it, in two vector passes: the largest value
  // (NaN never wins a comparison), then the first element equal to it.
  constexpr float lowest = -std::numeric_limits<float>::infinity();
  f32x4 top[4];
  for (auto& t : top) t = f32x4{lowest, lowest, lowest, lowest};
  int i = 0;
  for (; i + 16 <= n; i += 16)
    for (int v = 0; v < 4; ++v) {
      f32x4 x;
      std::memcpy(&x, logits + i + 4 * v, sizeof x);
      top[v] = x > top[v] ? x : top[v];
    }
  float m = lowest;
  for (const auto& t : top)
    for (int k = 0; k < 4; ++k) m = t[k] > m ? t[k] : m;
  for (; i < n; ++i) m = logits[i] > m ? logits[i] : m;
  // a NaN first logit, or nothing above -inf: the sequential scan's answer is 0
  if (!(logits[0] == logits[0]) || !(m > lowest)) return 0;
  const f32x4 mv{m, m, m, m};
  for (i = 0; i + 4 <= n; i += 4) {
    f32x4 x;
    std::memcpy(&x, logits + i, sizeof x);
    const i32x4 eq = x == mv;
    std::uint64_t any[2];
    std::memcpy(any, &eq, sizeof any);
    if (any[0] | any[1]) break;
  }
  for (; logits[i] != m; ++i) {
  }
  return i;
}

int sampler::sample(const float* logits, int n, std::uint64_t index) {
  if (!(p_.temperature > 0.0f) || p_.top_k == 1) return argmax(logits, n);
  const auto un = static_cast<std::size_t>(n);
  probs_.resize(un);
  const float mx = logits[argmax(logits, n)];
  double sum = 0;
  for (std::size_t i = 0; i < un; ++i) {
    probs_[i] = std::exp((logits[i] - mx) / p_.temperature);
    sum += probs_[i];
  }
  const bool use_k = p_.top_k > 0 && p_.top_k < n;
  const bool use_p = p_.top_p > 0.0f && p_.top_p < 1.0f;
  const double u = uniform_draw(p_.seed, index);
  if (!use_k && !use_p) {
    double target = u * sum, acc = 0;
    for (std::size_t i = 0; i < un; ++i) {
      acc += probs_[i];
      if (acc > target) return static_cast<int>(i);
    }
    return n - 1;
  }
  // candidates by descending probability, lowest id first among equals
  order_.resize(un);
  for (std::size_t i = 0; i < un; ++i) order_[i] = static_cast<int>(i);
  const auto by_prob = [&](int a, int b) {
    const float pa = probs_[static_cast<std::size_t>(a)], pb = probs_[static_cast<std::size_t>(b)];
    return pa > pb || (pa == pb && a < b);
  };
  std::size_t keep = un;
  if (use_k) {
    keep = static_cast<std::size_t>(p_.top_k);
    std::partial_sort(order_.begin(), order_.begin() + static_cast<std::ptrdiff_t>(keep), order_.end(), by_prob);
  } else {
    std::sort(order_.begin(), order_.end(), by_prob);
  }
  double kept = 0;
  for (std::size_t i = 0; i < keep; ++i) kept += probs_[static_cast<std::size_t>(order_[i])];
  if (use_p) {
    // smallest prefix whose share of the kept mass reaches top_p
    double acc = 0;
    std::size_t cut = keep;
    for (std::size_t i = 0; i < keep; ++i) {
      acc += probs_[static_cast<std::size_t>(order_[i])];
      if (acc >= p_.top_p * kept) {
        cut = i + 1;
        break;
      }
    }
    keep = cut;
    kept = acc;
  }
  double target = u * kept, acc = 0;
  for (std::size_t i = 0; i < keep; ++i) {
    acc += probs_[static_cast<std::size_t>(order_[i])];
    if (acc > target) return order_[i];
  }
  return order_[keep - 1];
}

} // namespace llorch::engine
