#pragma once
// The CPU forward pass of a llama model over a batch of rows. Each row is one token of one
// sequence at one position; rows of different sequences (decode across slots) and several
// consecutive rows of one sequence (prompt prefill) mix freely. Every row's arithmetic is the
// same whatever else is in the batch and however many threads run it.
#include <cstdint>
#include <memory>
#include <vector>

#include "engines/model.hpp"
#include "engines/thread_pool.hpp"

namespace llorch::engine {

// Keys and values of one sequence: [layer][position][kv_dim].
class kv_cache {
public:
  kv_cache(const model_config& c, int capacity);
  int capacity() const { return capacity_; }
  std::size_t bytes() const { return (k_.size() + v_.size()) * sizeof(float); }
  float* key(int layer, int pos) { return k_.data() + offset(layer, pos); }
  float* value(int layer, int pos) { return v_.data() + offset(layer, pos); }

private:
  std::size_t offset(int layer, int pos) const {
    return (static_cast<std::size_t>(layer) * static_cast<std::size_t>(capacity_) +
            static_cast<std::size_t>(pos)) * static_cast<std::size_t>(kv_dim_);
  }
  int capacity_;
  int kv_dim_;
  std::vector<float> k_, v_;
};

struct batch_row {
  kv_cache* cache = nullptr;
  int token = 0;
  int pos = 0;             // rows of one sequence must come in increasing position order
  bool want_logits = false;
};

class cpu_transformer {
public:
  cpu_transformer(std::shared_ptr<const model> m, int threads);

  const model& weights() const { return *model_; }
  const model_config& config() const { return model_->config; }
  int threads() const { return pool_.size(); }

  // Runs the rows; logits receives vocab_size floats per row with want_logits, in row order.
  // Rows must be valid (token in range, pos < cache capacity): callers check before.
  void forward(const std::vector<batch_row>& rows, std::vector<float>& logits);

private:
  // out[r][i] = dot(w row i, in[r]) for r < n_rows; several matrices share one parallel section.
  // swiglu: jobs are w1 and w3 (same shape), and jobs[0].out becomes silu(w1 x) * (w3 x).
  struct matmul_job {
    const tensor* w;
    float* out;
  };
  void matmul(const std::vector<matmul_job>& jobs, const float* in, int n_rows, bool swiglu = false);
  void attention(const std::vector<batch_row>& rows, int layer);
  // Grows the RoPE table to cover positions up to max_pos.
  void extend_rope(int max_pos);

  std::shared_ptr<const model> model_;
  thread_pool pool_;
  std::vector<float> x_, xb_, xb2_, q_, k_, v_, hb_, hb2_, att_, qd_;
  std::vector<std::int8_t> qx_;
  std::vector<float> rope_; // [pos][head_size / 2][cos, sin]
  int rope_positions_ = 0;
};

} // namespace llorch::engine
