#include "engines/test_model.hpp"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <unordered_set>
#include <vector>

#include "engines/gguf_format.hpp"
#include "engines/kernels.hpp"

namespace llorch::engine {

namespace {

std::uint64_t mix(std::uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Uniform in [-1, 1), a pure function of (seed, tensor, element).
float weight_value(std::uint64_t seed, std::uint64_t tensor_id, std::uint64_t i) {
  const std::uint64_t h = mix(mix(seed ^ (tensor_id << 40)) ^ i);
  return static_cast<float>(static_cast<double>(h >> 40) * 0x1.0p-23 - 1.0);
}

enum role : std::uint64_t { r_attn_norm, r_wq, r_wk, r_wv, r_wo, r_ffn_norm, r_w1, r_w2, r_w3 };

std::vector<float> make_tensor(std::uint64_t seed, std::uint64_t id, std::int64_t rows,
                               std::int64_t cols, bool norm) {
  std::vector<float> v(static_cast<std::size_t>(rows * cols));
  // norms near 1; matrices scaled so outputs keep roughly unit variance
  const float scale = norm ? 0.1f : std::sqrt(3.0f / static_cast<float>(cols));
  for (std::size_t i = 0; i < v.size(); ++i) {
    const float u = weight_value(seed, id, i);
    v[i] = norm ? 1.0f + scale * u : scale * u;
  }
  return v;
}

std::vector<float> make_embedding(std::uint64_t seed, std::uint64_t id, std::int64_t rows, std::int64_t cols) {
  std::vector<float> v(static_cast<std::size_t>(rows * cols));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = weight_value(seed, id, i);
  return v;
}

constexpr std::uint64_t id_embedding = 0, id_final_norm = 1, id_output = 2;
std::uint64_t layer_id(int l, role r) { return 16 + static_cast<std::uint64_t>(l) * 16 + r; }

class file_writer {
public:
  explicit file_writer(const std::string& path) : path_(path), tmp_(path + ".tmp") {
    f_ = std::fopen(tmp_.c_str(), "wb");
  }
  ~file_writer() {
    if (f_ != nullptr) {
      std::fclose(f_);
      std::remove(tmp_.c_str());
    }
  }
  bool opened() const { return f_ != nullptr; }
  void bytes(const void* p, std::size_t n) {
    if (n > 0 && std::fwrite(p, 1, n, f_) != n) ok_ = false;
    written_ += n;
  }
  template <class T>
  void put(T v) { bytes(&v, sizeof v); }
  void str(const std::string& s) {
    put<std::uint64_t>(s.size());
    bytes(s.data(), s.size());
  }
  void pad_to(std::size_t align) {
    static const char zeros[64] = {};
    while (written_ % align != 0) bytes(zeros, std::min<std::size_t>(64, align - written_ % align));
  }
  std::size_t written() const { return written_; }
  status commit() {
    FILE* f = f_;
    f_ = nullptr;
    const bool flushed = std::fflush(f) == 0;
    std::fclose(f);
    if (!ok_ || !flushed) {
      std::remove(tmp_.c_str());
      return fail("cannot write " + tmp_ + ": " + std::strerror(errno));
    }
    if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
      std::remove(tmp_.c_str());
      return fail("cannot rename " + tmp_ + " to " + path_ + ": " + std::strerror(errno));
    }
    return done{};
  }

private:
  std::string path_, tmp_;
  FILE* f_ = nullptr;
  bool ok_ = true;
  std::size_t written_ = 0;
};

std::vector<std::uint8_t> encode_tensor(const std::vector<float>& v, std::int64_t cols, tensor_type t) {
  std::vector<std::uint8_t> out;
  if (t == tensor_type::f32) {
    out.resize(v.size() * 4);
    std::memcpy(out.data(), v.data(), out.size());
  } else if (t == tensor_type::f16) {
    out.resize(v.size() * 2);
    for (std::size_t i = 0; i < v.size(); ++i) {
      const std::uint16_t h = f32_to_f16(v[i]);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  } else {
    const std::size_t blocks = v.size() / q8_block_size;
    out.resize(blocks * q8_block_bytes);
    (void)cols;
    for (std::size_t b = 0; b < blocks; ++b) {
      const float* x = v.data() + b * q8_block_size;
      float amax = 0.0f;
      for (int k = 0; k < q8_block_size; ++k) amax = std::max(amax, std::fabs(x[k]));
      const float d = amax / 127.0f;
      const float inv = d > 0.0f ? 1.0f / d : 0.0f;
      std::uint8_t* blk = out.data() + b * q8_block_bytes;
      const std::uint16_t dh = f32_to_f16(d);
      std::memcpy(blk, &dh, 2);
      for (int k = 0; k < q8_block_size; ++k)
        blk[2 + k] = static_cast<std::uint8_t>(static_cast<std::int8_t>(std::lround(x[k] * inv)));
    }
  }
  return out;
}

std::string dir_of(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash + 1);
}

// Every tensor of the model in file order with its generator, shared by both writers.
struct tensor_plan {
  std::string gguf_name;
  std::uint64_t id;
  std::int64_t rows, cols;
  bool norm, embedding;
};

std::vector<tensor_plan> plan(const model_config& c, bool separate_output) {
  std::vector<tensor_plan> p;
  const std::int64_t dim = c.dim, hid = c.hidden_dim, kv = c.kv_dim();
  p.push_back({"token_embd.weight", id_embedding, c.vocab_size, dim, false, true});
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    p.push_back({b + "attn_norm.weight", layer_id(l, r_attn_norm), 1, dim, true, false});
    p.push_back({b + "attn_q.weight", layer_id(l, r_wq), dim, dim, false, false});
    p.push_back({b + "attn_k.weight", layer_id(l, r_wk), kv, dim, false, false});
    p.push_back({b + "attn_v.weight", layer_id(l, r_wv), kv, dim, false, false});
    p.push_back({b + "attn_output.weight", layer_id(l, r_wo), dim, dim, false, false});
    p.push_back({b + "ffn_norm.weight", layer_id(l, r_ffn_norm), 1, dim, true, false});
    p.push_back({b + "ffn_gate.weight", layer_id(l, r_w1), hid, dim, false, false});
    p.push_back({b + "ffn_down.weight", layer_id(l, r_w2), dim, hid, false, false});
    p.push_back({b + "ffn_up.weight", layer_id(l, r_w3), hid, dim, false, false});
  }
  p.push_back({"output_norm.weight", id_final_norm, 1, dim, true, false});
  if (separate_output) p.push_back({"output.weight", id_output, c.vocab_size, dim, false, true});
  return p;
}

std::vector<float> generate(const tensor_plan& t, std::uint64_t seed) {
  return t.embedding ? make_embedding(seed, t.id, t.rows, t.cols)
                     : make_tensor(seed, t.id, t.rows, t.cols, t.norm);
}

status write_llama2c(const test_model_spec& s, const model_config& c, bool separate_output) {
  const auto p = plan(c, separate_output);
  // llama2.c groups each weight kind across layers
  std::vector<const tensor_plan*> order;
  order.push_back(&p[0]);
  for (int k = 0; k < 9; ++k)
    for (int l = 0; l < c.n_layers; ++l) order.push_back(&p[1 + static_cast<std::size_t>(l) * 9 + static_cast<std::size_t>(k)]);
  const std::size_t after_layers = 1 + static_cast<std::size_t>(c.n_layers) * 9;
  file_writer w(s.out);
  if (!w.opened()) return fail("cannot create " + s.out + ".tmp: " + std::strerror(errno));
  const std::int32_t header[7] = {c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads,
                                  separate_output ? -c.vocab_size : c.vocab_size, c.seq_len};
  w.bytes(header, sizeof header);
  for (const auto* t : order) {
    const auto v = generate(*t, s.seed);
    w.bytes(v.data(), v.size() * 4);
  }
  const auto fn = generate(p[after_layers], s.seed);
  w.bytes(fn.data(), fn.size() * 4);
  // legacy RoPE tables (cos then sin), which readers skip
  const int hs = c.head_size();
  std::vector<float> cosv, sinv;
  for (int pos = 0; pos < c.seq_len; ++pos)
    for (int i = 0; i < hs / 2; ++i) {
      const float freq = 1.0f / std::pow(c.rope_base, static_cast<float>(2 * i) / static_cast<float>(hs));
      cosv.push_back(std::cos(static_cast<float>(pos) * freq));
      sinv.push_back(std::sin(static_cast<float>(pos) * freq));
    }
  w.bytes(cosv.data(), cosv.size() * 4);
  w.bytes(sinv.data(), sinv.size() * 4);
  if (separate_output) {
    const auto out = generate(p[after_layers + 1], s.seed);
    w.bytes(out.data(), out.size() * 4);
  }
  if (auto st = w.commit(); !st) return st;

  const vocabulary v = make_test_vocabulary(c.vocab_size);
  file_writer t(llama2c_tokenizer_path(s.out));
  if (!t.opened()) return fail("cannot create " + llama2c_tokenizer_path(s.out) + ".tmp");
  std::int32_t max_len = 1;
  for (const auto& piece : v.pieces) max_len = std::max(max_len, static_cast<std::int32_t>(piece.size()));
  t.put(max_len);
  for (std::size_t i = 0; i < v.pieces.size(); ++i) {
    t.put(v.scores[i]);
    t.put(static_cast<std::int32_t>(v.pieces[i].size()));
    t.bytes(v.pieces[i].data(), v.pieces[i].size());
  }
  return t.commit();
}

status write_gguf(const test_model_spec& s, const model_config& c, bool separate_output, tensor_type q) {
  const auto p = plan(c, separate_output);
  const vocabulary v = make_test_vocabulary(c.vocab_size);
  file_writer w(s.out);
  if (!w.opened()) return fail("cannot create " + s.out + ".tmp: " + std::strerror(errno));
  auto key = [&](const std::string& k, std::uint32_t type) {
    w.str(k);
    w.put(type);
  };
  auto u32 = [&](const std::string& k, std::uint32_t val) { key(k, gguf::t_u32); w.put(val); };
  auto f32 = [&](const std::string& k, float val) { key(k, gguf::t_f32); w.put(val); };
  auto text = [&](const std::string& k, const std::string& val) { key(k, gguf::t_string); w.str(val); };
  const std::uint64_t n_kv = 19;
  w.bytes("GGUF", 4);
  w.put(gguf::version);
  w.put<std::uint64_t>(p.size());
  w.put(n_kv);
  text("general.architecture", "llama");
  text("general.name", "llorch-test-" + s.shape);
  u32("general.alignment", static_cast<std::uint32_t>(gguf::default_alignment));
  u32("general.file_type", q == tensor_type::f32 ? 0u : q == tensor_type::f16 ? 1u : 7u);
  u32("llama.context_length", static_cast<std::uint32_t>(c.seq_len));
  u32("llama.embedding_length", static_cast<std::uint32_t>(c.dim));
  u32("llama.feed_forward_length", static_cast<std::uint32_t>(c.hidden_dim));
  u32("llama.block_count", static_cast<std::uint32_t>(c.n_layers));
  u32("llama.attention.head_count", static_cast<std::uint32_t>(c.n_heads));
  u32("llama.attention.head_count_kv", static_cast<std::uint32_t>(c.n_kv_heads));
  u32("llama.rope.dimension_count", static_cast<std::uint32_t>(c.head_size()));
  f32("llama.rope.freq_base", c.rope_base);
  f32("llama.attention.layer_norm_rms_epsilon", c.norm_eps);
  text("tokenizer.ggml.model", "llama");
  key("tokenizer.ggml.tokens", gguf::t_array);
  w.put(static_cast<std::uint32_t>(gguf::t_string));
  w.put<std::uint64_t>(v.pieces.size());
  for (std::size_t i = 0; i < v.pieces.size(); ++i) {
    std::string piece = v.pieces[i];
    if (v.kinds[i] == token_kind::normal) {
      std::string sp;
      for (char ch : piece) sp += ch == ' ' ? std::string("\xE2\x96\x81") : std::string(1, ch);
      piece = sp;
    }
    w.str(piece);
  }
  key("tokenizer.ggml.scores", gguf::t_array);
  w.put(static_cast<std::uint32_t>(gguf::t_f32));
  w.put<std::uint64_t>(v.scores.size());
  w.bytes(v.scores.data(), v.scores.size() * 4);
  key("tokenizer.ggml.token_type", gguf::t_array);
  w.put(static_cast<std::uint32_t>(gguf::t_i32));
  w.put<std::uint64_t>(v.kinds.size());
  for (auto k : v.kinds)
    w.put<std::int32_t>(k == token_kind::unknown ? 2 : k == token_kind::control ? 3 : k == token_kind::byte ? 6 : 1);
  u32("tokenizer.ggml.bos_token_id", static_cast<std::uint32_t>(v.bos));
  u32("tokenizer.ggml.eos_token_id", static_cast<std::uint32_t>(v.eos));

  std::uint64_t offset = 0;
  std::vector<tensor_type> types;
  for (const auto& t : p) {
    const tensor_type tt = t.norm ? tensor_type::f32 : q;
    types.push_back(tt);
    w.str(t.gguf_name);
    if (t.rows == 1) {
      w.put<std::uint32_t>(1);
      w.put<std::uint64_t>(static_cast<std::uint64_t>(t.cols));
    } else {
      w.put<std::uint32_t>(2);
      w.put<std::uint64_t>(static_cast<std::uint64_t>(t.cols));
      w.put<std::uint64_t>(static_cast<std::uint64_t>(t.rows));
    }
    w.put<std::uint32_t>(tt == tensor_type::f32 ? gguf::ggml_f32 : tt == tensor_type::f16 ? gguf::ggml_f16 : gguf::ggml_q8_0);
    w.put<std::uint64_t>(offset);
    const std::uint64_t bytes = row_bytes(tt, t.cols) * static_cast<std::uint64_t>(t.rows);
    offset += (bytes + gguf::default_alignment - 1) / gguf::default_alignment * gguf::default_alignment;
  }
  w.pad_to(gguf::default_alignment);
  for (std::size_t i = 0; i < p.size(); ++i) {
    const auto data = encode_tensor(generate(p[i], s.seed), p[i].cols, types[i]);
    w.bytes(data.data(), data.size());
    w.pad_to(gguf::default_alignment);
  }
  return w.commit();
}

} // namespace

result<model_config> test_model_config(const std::string& shape) {
  model_config c;
  if (shape == "tiny") {
    c.dim = 64; c.hidden_dim = 192; c.n_layers = 2; c.n_heads = 4; c.n_kv_heads = 2;
    c.vocab_size = 512; c.seq_len = 128;
  } else if (shape == "s15m") {
    c.dim = 288; c.hidden_dim = 768; c.n_layers = 6; c.n_heads = 6; c.n_kv_heads = 6;
    c.vocab_size = 32000; c.seq_len = 256;
  } else if (shape == "s110m") {
    c.dim = 768; c.hidden_dim = 2048; c.n_layers = 12; c.n_heads = 12; c.n_kv_heads = 12;
    c.vocab_size = 32000; c.seq_len = 1024;
  } else {
    return fail("unknown shape \"" + shape + "\" (expected tiny, s15m or s110m)");
  }
  return c;
}

std::string llama2c_tokenizer_path(const std::string& model_path) { return dir_of(model_path) + "tokenizer.bin"; }

vocabulary make_test_vocabulary(int vocab_size) {
  vocabulary v;
  auto add = [&](std::string piece, float score, token_kind kind) {
    v.pieces.push_back(std::move(piece));
    v.scores.push_back(score);
    v.kinds.push_back(kind);
  };
  add("<unk>", 0.0f, token_kind::unknown);
  add("<s>", 0.0f, token_kind::control);
  add("</s>", 0.0f, token_kind::control);
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    add(name, 0.0f, token_kind::byte);
  }
  // single characters: letters by English frequency first, then the rest of printable ASCII
  const std::string letters = "etaoinshrdlucmwfgypbvkjxqz";
  std::string singles = letters + " ";
  for (int ch = 0x21; ch < 0x7f; ++ch)
    if (letters.find(static_cast<char>(ch)) == std::string::npos) singles += static_cast<char>(ch);
  std::unordered_set<std::string> have;
  for (const auto& p : v.pieces) have.insert(p);
  float single_score = -1e6f;
  for (char ch : singles) {
    if (static_cast<int>(v.pieces.size()) >= vocab_size) break;
    add(std::string(1, ch), single_score, token_kind::normal);
    single_score -= 1.0f;
    have.insert(std::string(1, ch));
  }
  // merges: a word start (" " or a merge beginning with a space) or a run of letters, joined
  // with a run of letters; picks lean toward early (frequent, high-scoring) pieces like a real
  // BPE merge table
  std::vector<std::string> starts{" "}, runs;
  for (char ch : letters) runs.emplace_back(1, ch);
  std::uint64_t state = 0x5eedULL + static_cast<std::uint64_t>(vocab_size);
  auto next_u = [&] {
    state = mix(state);
    return static_cast<double>(state >> 11) * 0x1.0p-53;
  };
  auto pick = [&](const std::vector<std::string>& from) -> const std::string& {
    const double u = next_u();
    return from[static_cast<std::size_t>(static_cast<double>(from.size()) * u * u)];
  };
  int rank = 0;
  while (static_cast<int>(v.pieces.size()) < vocab_size) {
    const bool word_start = next_u() < 0.5;
    std::string piece = word_start ? pick(starts) : pick(runs);
    piece += pick(runs);
    if (piece.size() > 16 || have.count(piece) != 0) continue;
    have.insert(piece);
    add(piece, -static_cast<float>(rank++), token_kind::normal);
    (piece[0] == ' ' ? starts : runs).push_back(piece);
  }
  return v;
}

status write_test_model(const test_model_spec& s) {
  auto c = test_model_config(s.shape);
  if (!c) return fail(c.message());
  tensor_type q;
  if (s.quant == "f32") q = tensor_type::f32;
  else if (s.quant == "f16") q = tensor_type::f16;
  else if (s.quant == "q8_0") q = tensor_type::q8_0;
  else return fail("unknown quantisation \"" + s.quant + "\" (expected f32, f16 or q8_0)");
  if (s.out.empty()) return fail("--out PATH is required");
  // tiny keeps a separate classifier to exercise that path; the larger shapes share it
  const bool separate_output = s.shape == "tiny";
  if (s.format == "llama2c") {
    if (q != tensor_type::f32) return fail("the llama2c format holds f32 weights only");
    return write_llama2c(s, *c, separate_output);
  }
  if (s.format == "gguf") return write_gguf(s, *c, separate_output, q);
  return fail("unknown format \"" + s.format + "\" (expected gguf or llama2c)");
}

} // namespace llorch::engine
