#pragma once
// Picks the next token from logits. Greedy takes the highest logit (lowest id on ties); otherwise
// temperature, then top-k, then top-p, then one uniform draw that is a pure function of
// (seed, token index) so a resumed or re-batched stream draws exactly the same numbers.
#include <cstdint>
#include <vector>

namespace llorch::engine {

struct sampling_params {
  float temperature = 0.0f; // 0 = greedy
  int top_k = 0;            // 0 = off
  float top_p = 1.0f;       // 1 = off
  std::uint64_t seed = 0;
};

// Uniform in [0, 1) from a counter-based generator: no state, only (seed, index).
double uniform_draw(std::uint64_t seed, std::uint64_t index);

int argmax(const float* logits, int n);

class sampler {
public:
  explicit sampler(sampling_params p) : p_(p) {}
  const sampling_params& params() const { return p_; }

  // `index` is the position of the token in the generated stream (0 = first generated token).
  int sample(const float* logits, int n, std::uint64_t index);

private:
  sampling_params p_;
  std::vector<float> probs_;
  std::vector<int> order_;
};

} // namespace llorch::engine
