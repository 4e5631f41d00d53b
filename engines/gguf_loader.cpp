// GGUF v3 reader for the llama architecture: metadata, tokenizer and tensor views, each
// checked against the file's size and the model's shape before anything is used.
#include <cmath>
#include <map>
#include <unordered_map>

#include "engines/byte_reader.hpp"
#include "engines/gguf_format.hpp"
#include "engines/model.hpp"
#include "engines/utf8.hpp"

namespace llorch::engine {

namespace {

struct meta_value {
  std::uint32_t type = 0;
  std::int64_t i = 0;
  std::uint64_t u = 0;
  double f = 0;
  bool is_signed = false;
  std::string s;
  // arrays: element type, count and where the elements start in the file
  std::uint32_t elem_type = 0;
  std::uint64_t count = 0;
  std::size_t offset = 0;
};

std::size_t scalar_size(std::uint32_t t) {
  switch (t) {
  case gguf::t_u8: case gguf::t_i8: case gguf::t_bool: return 1;
  case gguf::t_u16: case gguf::t_i16: return 2;
  case gguf::t_u32: case gguf::t_i32: case gguf::t_f32: return 4;
  case gguf::t_u64: case gguf::t_i64: case gguf::t_f64: return 8;
  default: return 0;
  }
}

std::string read_string(byte_reader& r, const char* what) {
  const auto n = r.read<std::uint64_t>(what);
  if (!r.ok()) return {};
  if (n > r.remaining()) {
    r.fail(std::string(what) + " claims " + std::to_string(n) + " bytes, more than the file has");
    return {};
  }
  return std::string(r.bytes(static_cast<std::size_t>(n), what));
}

void read_scalar(byte_reader& r, std::uint32_t t, meta_value& v) {
  v.type = t;
  switch (t) {
  case gguf::t_u8: v.u = r.read<std::uint8_t>("u8"); break;
  case gguf::t_i8: v.i = r.read<std::int8_t>("i8"); v.is_signed = true; break;
  case gguf::t_u16: v.u = r.read<std::uint16_t>("u16"); break;
  case gguf::t_i16: v.i = r.read<std::int16_t>("i16"); v.is_signed = true; break;
  case gguf::t_u32: v.u = r.read<std::uint32_t>("u32"); break;
  case gguf::t_i32: v.i = r.read<std::int32_t>("i32"); v.is_signed = true; break;
  case gguf::t_u64: v.u = r.read<std::uint64_t>("u64"); break;
  case gguf::t_i64: v.i = r.read<std::int64_t>("i64"); v.is_signed = true; break;
  case gguf::t_f32: v.f = r.read<float>("f32"); break;
  case gguf::t_f64: v.f = r.read<double>("f64"); break;
  case gguf::t_bool: v.u = r.read<std::uint8_t>("bool"); break;
  case gguf::t_string: v.s = read_string(r, "string value"); break;
  default: r.fail("unknown metadata value type " + std::to_string(t));
  }
}

void read_value(byte_reader& r, std::uint32_t t, meta_value& v) {
  if (t != gguf::t_array) {
    read_scalar(r, t, v);
    return;
  }
  v.type = t;
  v.elem_type = r.read<std::uint32_t>("array type");
  v.count = r.read<std::uint64_t>("array length");
  if (!r.ok()) return;
  v.offset = r.pos();
  if (v.elem_type == gguf::t_string) {
    // each string has at least its 8-byte length
    if (v.count > r.remaining() / 8) {
      r.fail("string array of " + std::to_string(v.count) + " elements does not fit the file");
      return;
    }
    for (std::uint64_t k = 0; k < v.count && r.ok(); ++k)
      read_string(r, "string array element");
    return;
  }
  const std::size_t es = scalar_size(v.elem_type);
  if (es == 0) {
    r.fail("array of unsupported element type " + std::to_string(v.elem_type));
    return;
  }
  if (v.count > r.remaining() / es) {
    r.fail("array of " + std::to_string(v.count) + " elements does not fit the file");
    return;
  }
  r.skip(static_cast<std::size_t>(v.count) * es, "array");
}

struct tensor_info {
  std::vector<std::uint64_t> dims;
  std::uint32_t type = 0;
  std::uint64_t offset = 0;
};

class gguf_file {
public:
  std::map<std::string, meta_value> meta;
  std::unordered_map<std::string, tensor_info> tensors;
  std::size_t data_start = 0;

  result<std::int64_t> integer(const std::string& key, bool required, std::int64_t fallback) const {
    auto it = meta.find(key);
    if (it == meta.end()) {
      if (required) return fail("GGUF metadata lacks " + key);
      return fallback;
    }
    const meta_value& v = it->second;
    if (scalar_size(v.type) == 0 || v.type == gguf::t_f32 || v.type == gguf::t_f64 ||
        v.type == gguf::t_bool)
      return fail("GGUF metadata " + key + " is not an integer");
    if (v.is_signed) return v.i;
    if (v.u > static_cast<std::uint64_t>(INT64_MAX))
      return fail("GGUF metadata " + key + " is out of range");
    return static_cast<std::int64_t>(v.u);
  }

  result<double> real(const std::string& key, double fallback) const {
    auto it = meta.find(key);
    if (it == meta.end()) return fallback;
    if (it->second.type != gguf::t_f32 && it->second.type != gguf::t_f64)
      return fail("GGUF metadata " + key + " is not a float");
    return it->second.f;
  }

  result<std::string> text(const std::string& key) const {
    auto it = meta.find(key);
    if (it == meta.end()) return fail("GGUF metadata lacks " + key);
    if (it->second.type != gguf::t_string) return fail("GGUF metadata " + key + " is not a string");
    return it->second.s;
  }
};

result<int> as_int(const result<std::int64_t>& v, const char* key) {
  if (!v) return fail(v.message());
  if (*v < -(1LL << 31) || *v > (1LL << 31) - 1)
    return fail(std::string("GGUF metadata ") + key + " is out of range: " + std::to_string(*v));
  return static_cast<int>(*v);
}

} // namespace

result<std::shared_ptr<model>> load_gguf(const std::string& path) {
  auto mapped = mapped_file::open(path);
  if (!mapped) return fail(mapped.message());
  auto m = std::make_shared<model>();
  m->file = std::make_shared<mapped_file>(std::move(*mapped));
  m->format = "gguf";
  m->path = path;
  const mapped_file& file = *m->file;
  byte_reader r(file.data(), file.size());
  auto bad = [&](const std::string& what) { return fail(path + ": " + what); };

  if (r.bytes(4, "magic") != "GGUF") return bad("not a GGUF file (bad magic)");
  const auto ver = r.read<std::uint32_t>("version");
  if (r.ok() && ver != gguf::version)
    return bad("GGUF version " + std::to_string(ver) + " is not supported (only 3)");
  const auto n_tensors = r.read<std::uint64_t>("tensor count");
  const auto n_kv = r.read<std::uint64_t>("metadata count");
  if (!r.ok()) return bad(r.error());
  // every entry takes at least 12 bytes, so larger counts cannot fit the file
  if (n_kv > r.remaining() / 12) return bad("metadata count " + std::to_string(n_kv) + " is absurd");
  if (n_tensors > r.remaining() / 24 || n_tensors > 100000)
    return bad("tensor count " + std::to_string(n_tensors) + " is absurd");

  gguf_file g;
  for (std::uint64_t k = 0; k < n_kv && r.ok(); ++k) {
    std::string key = read_string(r, "metadata key");
    const auto t = r.read<std::uint32_t>("metadata type");
    if (!r.ok()) break;
    meta_value v;
    read_value(r, t, v);
    if (r.ok() && !g.meta.emplace(std::move(key), std::move(v)).second)
      r.fail("duplicate metadata key");
  }
  if (!r.ok()) return bad(r.error());

  for (std::uint64_t k = 0; k < n_tensors && r.ok(); ++k) {
    std::string name = read_string(r, "tensor name");
    tensor_info ti;
    const auto nd = r.read<std::uint32_t>("tensor dimension count");
    if (!r.ok()) break;
    if (nd < 1 || nd > 4) return bad("tensor " + name + " has " + std::to_string(nd) + " dimensions");
    for (std::uint32_t d = 0; d < nd; ++d) ti.dims.push_back(r.read<std::uint64_t>("tensor dims"));
    ti.type = r.read<std::uint32_t>("tensor type");
    ti.offset = r.read<std::uint64_t>("tensor offset");
    if (r.ok() && !g.tensors.emplace(name, std::move(ti)).second)
      return bad("tensor " + name + " appears twice");
  }
  if (!r.ok()) return bad(r.error());

  auto align = g.integer("general.alignment", false, static_cast<std::int64_t>(gguf::default_alignment));
  if (!align) return bad(align.message());
  if (*align < 1 || *align > 65536 || (*align & (*align - 1)) != 0)
    return bad("general.alignment " + std::to_string(*align) + " is not a power of two <= 65536");
  const auto alignment = static_cast<std::size_t>(*align);
  g.data_start = (r.pos() + alignment - 1) / alignment * alignment;
  if (g.data_start > file.size()) return bad("tensor data starts past the end of the file");

  auto arch = g.text("general.architecture");
  if (!arch) return bad(arch.message());
  if (*arch != "llama") return bad("architecture \"" + *arch + "\" is not supported (only llama)");

  model_config& c = m->config;
  struct int_key {
    const char* key;
    int* out;
    bool required;
  };
  c.n_kv_heads = -1;
  const int_key keys[] = {
      {"llama.embedding_length", &c.dim, true},
      {"llama.feed_forward_length", &c.hidden_dim, true},
      {"llama.block_count", &c.n_layers, true},
      {"llama.attention.head_count", &c.n_heads, true},
      {"llama.attention.head_count_kv", &c.n_kv_heads, false},
      {"llama.context_length", &c.seq_len, true},
  };
  for (const auto& k : keys) {
    auto v = as_int(g.integer(k.key, k.required, -1), k.key);
    if (!v) return bad(v.message());
    *k.out = *v;
  }
  if (c.n_kv_heads == -1) c.n_kv_heads = c.n_heads;
  auto base = g.real("llama.rope.freq_base", 10000.0);
  auto eps = g.real("llama.attention.layer_norm_rms_epsilon", 1e-5);
  if (!base) return bad(base.message());
  if (!eps) return bad(eps.message());
  c.rope_base = static_cast<float>(*base);
  c.norm_eps = static_cast<float>(*eps);

  // the vocabulary size comes from the embedding's shape
  auto emb = g.tensors.find("token_embd.weight");
  if (emb == g.tensors.end()) return bad("tensor token_embd.weight is missing");
  if (emb->second.dims.size() != 2 || emb->second.dims[1] > (1u << 21))
    return bad("tensor token_embd.weight has an unexpected shape");
  c.vocab_size = static_cast<int>(emb->second.dims[1]);
  if (auto s = validate_config(c); !s) return bad(s.message());
  auto rope_dims = as_int(g.integer("llama.rope.dimension_count", false, c.head_size()),
                          "llama.rope.dimension_count");
  if (!rope_dims) return bad(rope_dims.message());
  if (*rope_dims != c.head_size())
    return bad("llama.rope.dimension_count " + std::to_string(*rope_dims) +
               " differs from the head size " + std::to_string(c.head_size()) +
               " (partial RoPE is not supported)");

  auto get = [&](const std::string& name, std::int64_t rows, std::int64_t cols, bool vector_only,
                 tensor& out) -> status {
    auto it = g.tensors.find(name);
    if (it == g.tensors.end()) return fail(path + ": tensor " + name + " is missing");
    const tensor_info& ti = it->second;
    const std::uint64_t want1 = rows == 1 && vector_only ? 1 : static_cast<std::uint64_t>(rows);
    const bool shape_ok = ti.dims[0] == static_cast<std::uint64_t>(cols) &&
                          ((ti.dims.size() == 1 && want1 == 1) ||
                           (ti.dims.size() >= 2 && ti.dims[1] == want1 &&
                            (ti.dims.size() < 3 || ti.dims[2] == 1) &&
                            (ti.dims.size() < 4 || ti.dims[3] == 1)));
    if (!shape_ok) {
      std::string dims;
      for (auto d : ti.dims) dims += (dims.empty() ? "" : "x") + std::to_string(d);
      return fail(path + ": tensor " + name + " has shape " + dims + ", expected " +
                  std::to_string(cols) + "x" + std::to_string(rows));
    }
    switch (ti.type) {
    case gguf::ggml_f32: out.type = tensor_type::f32; break;
    case gguf::ggml_f16: out.type = tensor_type::f16; break;
    case gguf::ggml_q8_0: out.type = tensor_type::q8_0; break;
    default:
      return fail(path + ": tensor " + name + " has unsupported type " + std::to_string(ti.type) +
                  " (supported: F32, F16, Q8_0)");
    }
    if (vector_only && out.type != tensor_type::f32)
      return fail(path + ": norm tensor " + name + " must be F32");
    if (out.type == tensor_type::q8_0 && cols % q8_block_size != 0)
      return fail(path + ": Q8_0 tensor " + name + " has a row length not a multiple of 32");
    out.rows = rows;
    out.cols = cols;
    if (ti.offset % alignment != 0)
      return fail(path + ": tensor " + name + " offset " + std::to_string(ti.offset) +
                  " is not aligned to " + std::to_string(alignment));
    const std::size_t avail = file.size() - g.data_start;
    if (ti.offset > avail || out.byte_size() > avail - ti.offset)
      return fail(path + ": tensor " + name + " (offset " + std::to_string(ti.offset) + ", " +
                  std::to_string(out.byte_size()) + " bytes) runs past the end of the file");
    out.data = file.data() + g.data_start + ti.offset;
    return done{};
  };

  const std::int64_t dim = c.dim, hid = c.hidden_dim, kv = c.kv_dim(), vocab = c.vocab_size;
  if (auto s = get("token_embd.weight", vocab, dim, false, m->embedding); !s) return fail(s.message());
  m->layers.resize(static_cast<std::size_t>(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    layer_weights& lw = m->layers[static_cast<std::size_t>(l)];
    struct want {
      const char* name;
      std::int64_t rows, cols;
      bool vec;
      tensor* out;
    };
    const want wants[] = {
        {"attn_norm.weight", 1, dim, true, &lw.attn_norm}, {"attn_q.weight", dim, dim, false, &lw.wq},
        {"attn_k.weight", kv, dim, false, &lw.wk},         {"attn_v.weight", kv, dim, false, &lw.wv},
        {"attn_output.weight", dim, dim, false, &lw.wo},   {"ffn_norm.weight", 1, dim, true, &lw.ffn_norm},
        {"ffn_gate.weight", hid, dim, false, &lw.w1},      {"ffn_down.weight", dim, hid, false, &lw.w2},
        {"ffn_up.weight", hid, dim, false, &lw.w3},
    };
    for (const auto& w : wants)
      if (auto s = get(p + w.name, w.rows, w.cols, w.vec, *w.out); !s) return fail(s.message());
  }
  if (auto s = get("output_norm.weight", 1, dim, true, m->final_norm); !s) return fail(s.message());
  if (g.tensors.count("output.weight") != 0) {
    if (auto s = get("output.weight", vocab, dim, false, m->output); !s) return fail(s.message());
  } else {
    m->output = m->embedding;
    m->shared_output = true;
  }

  // tokenizer
  auto tok_model = g.text("tokenizer.ggml.model");
  if (!tok_model) return bad(tok_model.message());
  if (*tok_model != "llama")
    return bad("tokenizer model \"" + *tok_model + "\" is not supported (only llama/SentencePiece)");
  auto array = [&](const char* key, std::uint32_t elem, bool required) -> result<const meta_value*> {
    auto it = g.meta.find(key);
    if (it == g.meta.end()) {
      if (required) return fail(path + ": GGUF metadata lacks " + key);
      return static_cast<const meta_value*>(nullptr);
    }
    if (it->second.type != gguf::t_array || it->second.elem_type != elem)
      return fail(path + ": GGUF metadata " + key + " is not an array of the expected type");
    if (it->second.count != static_cast<std::uint64_t>(vocab))
      return fail(path + ": GGUF metadata " + key + " has " + std::to_string(it->second.count) +
                  " entries for a vocabulary of " + std::to_string(vocab));
    return &it->second;
  };
  auto tokens = array("tokenizer.ggml.tokens", gguf::t_string, true);
  if (!tokens) return fail(tokens.message());
  auto scores = array("tokenizer.ggml.scores", gguf::t_f32, true);
  if (!scores) return fail(scores.message());
  auto types = array("tokenizer.ggml.token_type", gguf::t_i32, false);
  if (!types) return fail(types.message());

  vocabulary& v = m->vocab;
  v.pieces.reserve(static_cast<std::size_t>(vocab));
  byte_reader tr(file.data(), file.size());
  tr.skip((*tokens)->offset, "tokens");
  static const std::string sp_space = "\xE2\x96\x81"; // U+2581, SentencePiece's space
  for (std::int64_t k = 0; k < vocab; ++k) {
    std::string s = read_string(tr, "token");
    for (std::size_t at = s.find(sp_space); at != std::string::npos; at = s.find(sp_space, at + 1))
      s.replace(at, sp_space.size(), " ");
    v.pieces.push_back(std::move(s));
  }
  if (!tr.ok()) return bad(tr.error());
  v.scores.resize(static_cast<std::size_t>(vocab));
  std::memcpy(v.scores.data(), file.data() + (*scores)->offset, v.scores.size() * 4);
  v.kinds.assign(static_cast<std::size_t>(vocab), token_kind::normal);
  if (*types != nullptr) {
    for (std::int64_t k = 0; k < vocab; ++k) {
      std::int32_t t;
      std::memcpy(&t, file.data() + (*types)->offset + static_cast<std::size_t>(k) * 4, 4);
      // SentencePiece token types: 2 unknown, 3 control, 6 byte
      v.kinds[static_cast<std::size_t>(k)] = t == 2 ? token_kind::unknown
                                             : t == 3 ? token_kind::control
                                             : t == 6 ? token_kind::byte
                                                      : token_kind::normal;
    }
  }
  auto bos = as_int(g.integer("tokenizer.ggml.bos_token_id", false, 1), "bos_token_id");
  auto eos = as_int(g.integer("tokenizer.ggml.eos_token_id", false, 2), "eos_token_id");
  if (!bos) return bad(bos.message());
  if (!eos) return bad(eos.message());
  v.bos = *bos;
  v.eos = *eos;
  // without token types, BOS and EOS are still control tokens (they print nothing)
  if (*types == nullptr && v.bos >= 0 && v.bos < vocab && v.eos >= 0 && v.eos < vocab) {
    v.kinds[static_cast<std::size_t>(v.bos)] = token_kind::control;
    v.kinds[static_cast<std::size_t>(v.eos)] = token_kind::control;
  }
  for (std::size_t k = 0; k < v.pieces.size(); ++k) {
    std::uint8_t b;
    if (v.kinds[k] == token_kind::normal && parse_byte_piece(v.pieces[k], b) && *types == nullptr)
      v.kinds[k] = token_kind::byte;
  }
  if (auto s = validate_vocabulary(v, vocab); !s) return bad(s.message());
  return m;
}

} // namespace llorch::engine
