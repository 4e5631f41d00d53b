#include "engines/model.hpp"

#include <cmath>
#include <cstring>
#include <unordered_set>

#include "engines/utf8.hpp"

namespace llorch::engine {

const char* tensor_type_name(tensor_type t) {
  switch (t) {
  case tensor_type::f32: return "f32";
  case tensor_type::f16: return "f16";
  case tensor_type::q8_0: return "q8_0";
  }
  return "?";
}

std::size_t row_bytes(tensor_type t, std::int64_t cols) {
  const auto n = static_cast<std::size_t>(cols);
  switch (t) {
  case tensor_type::f32: return n * 4;
  case tensor_type::f16: return n * 2;
  case tensor_type::q8_0: return n / q8_block_size * q8_block_bytes;
  }
  return 0;
}

std::size_t model::weight_bytes_per_token() const {
  std::size_t n = final_norm.byte_size() + output.byte_size();
  for (const auto& l : layers)
    for (const tensor* t : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.ffn_norm, &l.w1, &l.w2,
                            &l.w3})
      n += t->byte_size();
  return n + embedding.row_size();
}

namespace {

status check_range(const char* name, long long v, long long lo, long long hi) {
  if (v < lo || v > hi)
    return fail(std::string(name) + " is " + std::to_string(v) + ", expected " +
                std::to_string(lo) + ".." + std::to_string(hi));
  return done{};
}

} // namespace

status validate_config(const model_config& c) {
  struct limit {
    const char* name;
    long long value, lo, hi;
  };
  const limit limits[] = {
      {"dim", c.dim, 2, 32768},
      {"hidden_dim", c.hidden_dim, 1, 262144},
      {"n_layers", c.n_layers, 1, 1024},
      {"n_heads", c.n_heads, 1, 1024},
      {"n_kv_heads", c.n_kv_heads, 1, 1024},
      {"vocab_size", c.vocab_size, 259, 1 << 21},
      {"seq_len", c.seq_len, 1, 1 << 20},
  };
  for (const auto& l : limits)
    if (auto s = check_range(l.name, l.value, l.lo, l.hi); !s)
      return s;
  if (c.dim % c.n_heads != 0)
    return fail("dim " + std::to_string(c.dim) + " is not a multiple of n_heads " +
                std::to_string(c.n_heads));
  if (c.head_size() % 2 != 0)
    return fail("head size " + std::to_string(c.head_size()) + " is odd (RoPE rotates pairs)");
  if (c.n_heads % c.n_kv_heads != 0)
    return fail("n_heads " + std::to_string(c.n_heads) + " is not a multiple of n_kv_heads " +
                std::to_string(c.n_kv_heads));
  if (!(c.rope_base > 1.0f) || !std::isfinite(c.rope_base))
    return fail("rope frequency base " + std::to_string(c.rope_base) + " is not a number > 1");
  if (!(c.norm_eps > 0.0f) || !(c.norm_eps < 1.0f))
    return fail("RMS norm epsilon " + std::to_string(c.norm_eps) + " is not in (0, 1)");
  return done{};
}

status validate_vocabulary(const vocabulary& v, int vocab_size) {
  const auto n = static_cast<std::size_t>(vocab_size);
  if (v.pieces.size() != n)
    return fail("tokenizer has " + std::to_string(v.pieces.size()) +
                " tokens but the model's vocabulary size is " + std::to_string(vocab_size));
  if (v.scores.size() != n || v.kinds.size() != n)
    return fail("tokenizer has " + std::to_string(v.scores.size()) + " scores and " +
                std::to_string(v.kinds.size()) + " token types for " + std::to_string(n) +
                " tokens");
  if (v.bos < 0 || v.bos >= vocab_size || v.eos < 0 || v.eos >= vocab_size)
    return fail("BOS id " + std::to_string(v.bos) + " or EOS id " + std::to_string(v.eos) +
                " is outside the vocabulary");
  bool bytes[256] = {};
  bool has_space = false;
  std::unordered_set<std::string_view> seen;
  seen.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::string& p = v.pieces[i];
    if (p.size() > 1024)
      return fail("token " + std::to_string(i) + " is " + std::to_string(p.size()) +
                  " bytes long (at most 1024)");
    if (p.find('\0') != std::string::npos)
      return fail("token " + std::to_string(i) + " contains a NUL byte");
    if (!utf8_valid(p))
      return fail("token " + std::to_string(i) + " is not valid UTF-8");
    if (!std::isfinite(v.scores[i]) || std::fabs(v.scores[i]) > 1e9f)
      return fail("token " + std::to_string(i) + " has score " + std::to_string(v.scores[i]) +
                  " (expected a finite number within +-1e9)");
    if (v.kinds[i] == token_kind::control || v.kinds[i] == token_kind::unknown)
      continue;
    if (!seen.insert(p).second)
      return fail("token " + std::to_string(i) + " repeats the piece \"" + p + "\"");
    // byte fallback uses the pieces marked as bytes: a "<0x41>" typed as normal text is no fallback
    std::uint8_t b = 0;
    if (v.kinds[i] == token_kind::byte && parse_byte_piece(p, b))
      bytes[b] = true;
    if (p == " ")
      has_space = true;
  }
  for (int b = 0; b < 256; ++b)
    if (!bytes[b]) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", b);
      return fail(std::string("tokenizer has no byte token ") + name + " for byte fallback");
    }
  if (!has_space)
    return fail("tokenizer has no piece for a single space (U+2581)");
  return done{};
}

result<std::shared_ptr<model>> load_model(const std::string& path,
                                          const std::string& tokenizer_path) {
  auto f = mapped_file::open(path);
  if (!f)
    return fail(f.message());
  if (f->size() >= 4 && std::memcmp(f->data(), "GGUF", 4) == 0)
    return load_gguf(path);
  std::string tok = tokenizer_path;
  if (tok.empty()) {
    auto slash = path.rfind('/');
    tok = (slash == std::string::npos ? std::string() : path.substr(0, slash + 1)) +
          "tokenizer.bin";
  }
  return load_llama2c(path, tok);
}

} // namespace llorch::engine
