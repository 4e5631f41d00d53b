#include "engines/cpu_transformer.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engines/kernels.hpp"

namespace llorch::engine {

kv_cache::kv_cache(const model_config& c, int capacity)
    : capacity_(capacity), kv_dim_(c.kv_dim()),
      k_(static_cast<std::size_t>(c.n_layers) * static_cast<std::size_t>(capacity) *
         static_cast<std::size_t>(c.kv_dim())),
      v_(k_.size()) {}

cpu_transformer::cpu_transformer(std::shared_ptr<const model> m, int threads)
    : model_(std::move(m)), pool_(threads) {}

namespace {

// Multiply-adds below which a section runs on the calling thread alone. Attention's are slower
// (strided keys and values, exp), so it splits sooner.
constexpr std::int64_t serial_work_limit = 1 << 16, serial_attention_limit = 1 << 14;

void rmsnorm(float* o, const float* x, const float* w, int n, float eps) {
  float ss = 0.0f;
  for (int j = 0; j < n; ++j) ss += x[j] * x[j];
  ss /= static_cast<float>(n);
  ss += eps;
  ss = 1.0f / std::sqrt(ss);
  for (int j = 0; j < n; ++j) o[j] = w[j] * (ss * x[j]);
}

void softmax(float* x, int n) {
  float mx = x[0];
  for (int i = 1; i < n; ++i) mx = std::max(mx, x[i]);
  float sum = 0.0f;
  for (int i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  for (int i = 0; i < n; ++i) x[i] /= sum;
}

} // namespace

void cpu_transformer::matmul(const std::vector<matmul_job>& jobs, const float* in, int n_rows, bool swiglu) {
  std::int64_t work = 0;
  bool quantised = false;
  const std::int64_t cols = jobs.front().w->cols; // every job reads the same input
  for (const auto& j : jobs) {
    work += j.w->rows * j.w->cols * n_rows;
    quantised = quantised || j.w->type == tensor_type::q8_0;
  }
  if (quantised) {
    // Q8_0 weights multiply the input quantised per row and 32-block, done once per call
    const auto n = static_cast<std::size_t>(n_rows) * static_cast<std::size_t>(cols);
    qx_.resize(n);
    qd_.resize(n / q8_block_size);
    for (int r = 0; r < n_rows; ++r)
      quantize_q8(in + r * cols, static_cast<int>(cols), qx_.data() + r * cols,
                  qd_.data() + r * cols / q8_block_size);
  }
  // work is handed out in blocks of 8 rows of one matrix, each multiplied into every sequence
  constexpr std::int64_t block = 8;
  std::int64_t blocks = 0;
  for (const auto& j : jobs) blocks += (j.w->rows + block - 1) / block;
  if (swiglu) blocks = (jobs[0].w->rows + block - 1) / block;
  const batch_input batch{in, qx_.data(), qd_.data(), n_rows};
  const auto body = [&](std::int64_t begin, std::int64_t end, int) {
    if (swiglu) {
      // the same rows of w1 and w3, then silu(w1 x) * (w3 x) on them while in cache
      const std::int64_t rows = jobs[0].w->rows, b = begin * block, e = std::min(end * block, rows);
      for (const auto& j : jobs) dot_rows(*j.w, b, e, batch, j.out + b, rows);
      for (int r = 0; r < n_rows; ++r)
        for (std::int64_t i = r * rows + b; i < r * rows + e; ++i) {
          float val = jobs[0].out[i];
          val *= 1.0f / (1.0f + std::exp(-val)); // SiLU
          jobs[0].out[i] = val * jobs[1].out[i];
        }
      return;
    }
    std::int64_t base = 0;
    for (const auto& j : jobs) {
      const std::int64_t rows = j.w->rows, n_blocks = (rows + block - 1) / block;
      const std::int64_t b = std::max(begin - base, std::int64_t{0}) * block;
      const std::int64_t e = std::min((end - base) * block, rows);
      if (b < e) dot_rows(*j.w, b, e, batch, j.out + b, rows);
      base += n_blocks;
    }
  };
  // waking the other threads costs more than a small product saves
  if (work < serial_work_limit) body(0, blocks, 0);
  else pool_.parallel_for(blocks, 2, body);
}

void cpu_transformer::extend_rope(int max_pos) {
  // per position and pair: cos and sin of pos * base^(-head_dim / head_size), computed once
  const model_config& c = model_->config;
  const int hs = c.head_size();
  for (int pos = rope_positions_; pos <= max_pos; ++pos)
    for (int i = 0; i < hs; i += 2) {
      const float freq = 1.0f / std::pow(c.rope_base, static_cast<float>(i) / static_cast<float>(hs));
      const float val = static_cast<float>(pos) * freq;
      rope_.push_back(std::cos(val));
      rope_.push_back(std::sin(val));
    }
  rope_positions_ = std::max(rope_positions_, max_pos + 1);
}

void cpu_transformer::attention(const std::vector<batch_row>& rows, int layer) {
  const model_config& c = model_->config;
  const int hs = c.head_size(), n_heads = c.n_heads, kv_mul = c.n_heads / c.n_kv_heads;
  const int dim = c.dim, kv_stride = c.kv_dim(); // floats between positions in the cache
  int max_len = 0;
  for (const auto& r : rows) max_len = std::max(max_len, r.pos + 1);
  att_.resize(static_cast<std::size_t>(pool_.size()) * static_cast<std::size_t>(max_len));
  const std::int64_t tasks = static_cast<std::int64_t>(rows.size()) * n_heads;
  const float scale = std::sqrt(static_cast<float>(hs));
  std::int64_t work = 0;
  for (const auto& r : rows) work += static_cast<std::int64_t>(r.pos + 1) * dim * 2;
  const auto body = [&](std::int64_t b, std::int64_t e, int worker) {
    float* att = att_.data() + static_cast<std::size_t>(worker) * static_cast<std::size_t>(max_len);
    for (std::int64_t t = b; t < e; ++t) {
      const auto ri = static_cast<std::size_t>(t / n_heads);
      const int h = static_cast<int>(t % n_heads);
      const batch_row& row = rows[ri];
      const float* q = q_.data() + ri * static_cast<std::size_t>(dim) + static_cast<std::size_t>(h * hs);
      const int kv_off = (h / kv_mul) * hs;
      dot_f32_rows(row.cache->key(layer, 0) + kv_off, static_cast<std::size_t>(kv_stride), row.pos + 1, q, hs, att);
      for (int p = 0; p <= row.pos; ++p) att[p] /= scale;
      softmax(att, row.pos + 1);
      float* out = xb_.data() + ri * static_cast<std::size_t>(dim) + static_cast<std::size_t>(h * hs);
      weighted_sum(att, row.cache->value(layer, 0) + kv_off, static_cast<std::size_t>(kv_stride), row.pos + 1, hs,
                   out);
    }
  };
  if (work < serial_attention_limit) body(0, tasks, 0);
  else pool_.parallel_for(tasks, 1, body);
}

void cpu_transformer::forward(const std::vector<batch_row>& rows, std::vector<float>& logits) {
  const model& m = *model_;
  const model_config& c = m.config;
  const int n = static_cast<int>(rows.size());
  const auto N = static_cast<std::size_t>(n);
  const int dim = c.dim, kv_dim = c.kv_dim(), hid = c.hidden_dim, hs = c.head_size();
  const auto D = static_cast<std::size_t>(dim), KV = static_cast<std::size_t>(kv_dim),
             H = static_cast<std::size_t>(hid);
  x_.resize(N * D);
  xb_.resize(N * D);
  xb2_.resize(N * D);
  q_.resize(N * D);
  k_.resize(N * KV);
  v_.resize(N * KV);
  hb_.resize(N * H);
  hb2_.resize(N * H);

  for (std::size_t r = 0; r < N; ++r) row_to_f32(m.embedding, rows[r].token, x_.data() + r * D);
  int max_pos = 0;
  for (const auto& r : rows) max_pos = std::max(max_pos, r.pos);
  extend_rope(max_pos);

  for (int l = 0; l < c.n_layers; ++l) {
    const layer_weights& w = m.layers[static_cast<std::size_t>(l)];
    for (std::size_t r = 0; r < N; ++r)
      rmsnorm(xb_.data() + r * D, x_.data() + r * D, w.attn_norm.f32(), dim, c.norm_eps);
    matmul({{&w.wq, q_.data()}, {&w.wk, k_.data()}, {&w.wv, v_.data()}}, xb_.data(), n);

    // RoPE on consecutive pairs, then store this position's key and value
    for (std::size_t r = 0; r < N; ++r) {
      float* q = q_.data() + r * D;
      float* k = k_.data() + r * KV;
      const int pos = rows[r].pos;
      const float* cs = rope_.data() + static_cast<std::size_t>(pos) * static_cast<std::size_t>(hs);
      for (int i = 0; i < dim; i += 2) {
        const float fcr = cs[i % hs], fci = cs[i % hs + 1];
        const int rotn = i < kv_dim ? 2 : 1;
        for (int v = 0; v < rotn; ++v) {
          float* vec = v == 0 ? q : k;
          const float v0 = vec[i], v1 = vec[i + 1];
          vec[i] = v0 * fcr - v1 * fci;
          vec[i + 1] = v0 * fci + v1 * fcr;
        }
      }
      std::memcpy(rows[r].cache->key(l, pos), k, KV * sizeof(float));
      std::memcpy(rows[r].cache->value(l, pos), v_.data() + r * KV, KV * sizeof(float));
    }

    attention(rows, l);
    matmul({{&w.wo, xb2_.data()}}, xb_.data(), n);
    for (std::size_t i = 0; i < N * D; ++i) x_[i] += xb2_[i];

    for (std::size_t r = 0; r < N; ++r)
      rmsnorm(xb_.data() + r * D, x_.data() + r * D, w.ffn_norm.f32(), dim, c.norm_eps);
    matmul({{&w.w1, hb_.data()}, {&w.w3, hb2_.data()}}, xb_.data(), n, true);
    matmul({{&w.w2, xb_.data()}}, hb_.data(), n);
    for (std::size_t i = 0; i < N * D; ++i) x_[i] += xb_[i];
  }

  // final norm and classifier only for rows that want logits
  std::size_t want = 0;
  for (std::size_t r = 0; r < N; ++r) {
    if (!rows[r].want_logits) continue;
    rmsnorm(xb_.data() + want * D, x_.data() + r * D, m.final_norm.f32(), dim, c.norm_eps);
    ++want;
  }
  logits.resize(want * static_cast<std::size_t>(c.vocab_size));
  if (want > 0) matmul({{&m.output, logits.data()}}, xb_.data(), static_cast<int>(want));
}

} // namespace llorch::engine
