#include "engines/sampler.hpp"

#include <algorithm>
#include <cmath>

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

int argmax(const float* logits, int n) {
  int best = 0;
  float top = logits[0]; // in a register: no reload of logits[best] per element
  for (int i = 1; i < n; ++i)
    if (logits[i] > top) { // strict: the lowest id wins a tie
      top = logits[i];
      best = i;
    }
  return best;
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
