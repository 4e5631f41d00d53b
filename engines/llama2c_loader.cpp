// llama2.c legacy checkpoints: a 7 x int32 header followed by f32 weights in a fixed order
// (negative vocab size = a separate classifier follows), plus the separate tokenizer.bin.
#include <cstdlib>

#include "engines/byte_reader.hpp"
#include "engines/model.hpp"
#include "engines/utf8.hpp"

namespace llorch::engine {

namespace {

status load_tokenizer_bin(const std::string& path, int vocab_size, vocabulary& v) {
  auto f = mapped_file::open(path);
  if (!f) return fail("tokenizer: " + f.message());
  byte_reader r(f->data(), f->size());
  const auto max_len = r.read<std::int32_t>("max_token_length");
  if (r.ok() && (max_len < 1 || max_len > 1024))
    return fail(path + ": max_token_length " + std::to_string(max_len) + " is not in 1..1024");
  const auto n = static_cast<std::size_t>(vocab_size);
  v.pieces.reserve(n);
  v.scores.reserve(n);
  for (std::size_t k = 0; k < n && r.ok(); ++k) {
    const float score = r.read<float>("token score");
    const auto len = r.read<std::int32_t>("token length");
    if (!r.ok()) break;
    if (len < 0 || len > max_len)
      return fail(path + ": token " + std::to_string(k) + " has length " + std::to_string(len) +
                  " (max_token_length is " + std::to_string(max_len) + ")");
    v.pieces.emplace_back(r.bytes(static_cast<std::size_t>(len), "token bytes"));
    v.scores.push_back(score);
  }
  if (!r.ok()) return fail(path + ": " + r.error() + " (the model expects " +
                           std::to_string(vocab_size) + " tokens)");
  if (r.remaining() != 0)
    return fail(path + ": " + std::to_string(r.remaining()) +
                " bytes follow the last token: the file holds more than the model's " +
                std::to_string(vocab_size) + " tokens (wrong tokenizer for this model?)");
  v.bos = 1;
  v.eos = 2;
  v.kinds.assign(n, token_kind::normal);
  v.kinds[0] = token_kind::unknown;
  v.kinds[1] = token_kind::control;
  v.kinds[2] = token_kind::control;
  for (std::size_t k = 3; k < n; ++k) {
    std::uint8_t b;
    if (parse_byte_piece(v.pieces[k], b)) v.kinds[k] = token_kind::byte;
  }
  return validate_vocabulary(v, vocab_size);
}

} // namespace

result<std::shared_ptr<model>> load_llama2c(const std::string& path,
                                            const std::string& tokenizer_path) {
  auto mapped = mapped_file::open(path);
  if (!mapped) return fail(mapped.message());
  auto m = std::make_shared<model>();
  m->file = std::make_shared<mapped_file>(std::move(*mapped));
  m->format = "llama2c";
  m->path = path;
  const mapped_file& file = *m->file;
  byte_reader r(file.data(), file.size());
  std::int32_t h[7];
  for (auto& x : h) x = r.read<std::int32_t>("llama2.c header");
  if (!r.ok()) return fail(path + ": " + r.error());
  model_config& c = m->config;
  c.dim = h[0];
  c.hidden_dim = h[1];
  c.n_layers = h[2];
  c.n_heads = h[3];
  c.n_kv_heads = h[4];
  // a negative vocabulary size marks a separate classifier matrix at the end
  const bool shared = h[5] > 0;
  c.vocab_size = h[5] == INT32_MIN ? 0 : std::abs(h[5]);
  c.seq_len = h[6];
  if (auto s = validate_config(c); !s) return fail(path + ": header: " + s.message());

  const std::uint64_t dim = static_cast<std::uint64_t>(c.dim), hid = static_cast<std::uint64_t>(c.hidden_dim),
                      L = static_cast<std::uint64_t>(c.n_layers), kv = static_cast<std::uint64_t>(c.kv_dim()),
                      vocab = static_cast<std::uint64_t>(c.vocab_size);
  const std::uint64_t rope_table = static_cast<std::uint64_t>(c.seq_len) *
                                   static_cast<std::uint64_t>(c.head_size());
  const std::uint64_t floats = vocab * dim + L * (2 * dim + 2 * dim * dim + 2 * dim * kv + 3 * dim * hid) +
                               dim + rope_table + (shared ? 0 : vocab * dim);
  const std::uint64_t expected = 28 + floats * 4;
  if (file.size() != expected)
    return fail(path + ": file is " + std::to_string(file.size()) + " bytes but its header (dim " +
                std::to_string(c.dim) + ", " + std::to_string(c.n_layers) + " layers, vocab " +
                std::to_string(c.vocab_size) + (shared ? ", shared" : ", separate") +
                " classifier) needs exactly " + std::to_string(expected));

  const std::uint8_t* p = file.data() + 28;
  auto take = [&](std::uint64_t rows, std::uint64_t cols) {
    tensor t;
    t.type = tensor_type::f32;
    t.data = p;
    t.rows = static_cast<std::int64_t>(rows);
    t.cols = static_cast<std::int64_t>(cols);
    p += rows * cols * 4;
    return t;
  };
  m->embedding = take(vocab, dim);
  m->layers.resize(L);
  for (auto& l : m->layers) l.attn_norm = take(1, dim);
  for (auto& l : m->layers) l.wq = take(dim, dim);
  for (auto& l : m->layers) l.wk = take(kv, dim);
  for (auto& l : m->layers) l.wv = take(kv, dim);
  for (auto& l : m->layers) l.wo = take(dim, dim);
  for (auto& l : m->layers) l.ffn_norm = take(1, dim);
  for (auto& l : m->layers) l.w1 = take(hid, dim);
  for (auto& l : m->layers) l.w2 = take(dim, hid);
  for (auto& l : m->layers) l.w3 = take(hid, dim);
  m->final_norm = take(1, dim);
  p += rope_table * 4; // legacy RoPE tables, recomputed instead
  m->shared_output = shared;
  m->output = shared ? m->embedding : take(vocab, dim);

  if (auto s = load_tokenizer_bin(tokenizer_path, c.vocab_size, m->vocab); !s)
    return fail(s.message());
  return m;
}

} // namespace llorch::engine
