#pragma once
// A loaded llama-architecture model: its shape, weight views into the mapped file, and the
// vocabulary. Both file formats (GGUF, llama2.c) load into this one type.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engines/mapped_file.hpp"
#include "engines/result.hpp"

namespace llorch::engine {

enum class tensor_type : std::uint8_t { f32, f16, q8_0 };

const char* tensor_type_name(tensor_type t);

// Q8_0: 32 int8 values sharing one f16 scale (ggml's layout, 34 bytes).
inline constexpr int q8_block_size = 32;
inline constexpr int q8_block_bytes = 34;

// Bytes of one row of `cols` elements.
std::size_t row_bytes(tensor_type t, std::int64_t cols);

// A row-major matrix (rows x cols; a vector has rows == 1) that points into mapped memory.
struct tensor {
  tensor_type type = tensor_type::f32;
  const std::uint8_t* data = nullptr;
  std::int64_t rows = 0;
  std::int64_t cols = 0;

  std::size_t row_size() const { return row_bytes(type, cols); }
  std::size_t byte_size() const { return row_size() * static_cast<std::size_t>(rows); }
  const std::uint8_t* row(std::int64_t i) const {
    return data + row_size() * static_cast<std::size_t>(i);
  }
  const float* f32() const { return reinterpret_cast<const float*>(data); }
};

struct model_config {
  int dim = 0;
  int hidden_dim = 0;
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int vocab_size = 0;
  int seq_len = 0;
  float rope_base = 10000.0f;
  float norm_eps = 1e-5f;

  int head_size() const { return dim / n_heads; }
  int kv_dim() const { return head_size() * n_kv_heads; }
};

enum class token_kind : std::uint8_t { normal, unknown, control, byte };

// SentencePiece-style vocabulary; spaces are stored as ' ' (GGUF's U+2581 is translated).
struct vocabulary {
  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::vector<token_kind> kinds;
  int bos = 1;
  int eos = 2;
};

struct layer_weights {
  tensor attn_norm, wq, wk, wv, wo, ffn_norm, w1, w2, w3;
};

struct model {
  std::string format; // "gguf" or "llama2c"
  std::string path;
  model_config config;
  tensor embedding;  // vocab x dim
  std::vector<layer_weights> layers;
  tensor final_norm; // 1 x dim
  tensor output;     // vocab x dim (the embedding when the file has no separate classifier)
  bool shared_output = false;
  vocabulary vocab;
  std::shared_ptr<mapped_file> file;

  // Bytes of weights one decode step reads (every matrix once, the embedding row aside).
  std::size_t weight_bytes_per_token() const;
};

// Checks a configuration against the limits this engine accepts; the message names the field.
status validate_config(const model_config& c);

// Checks a vocabulary (sizes, ids in range, byte tokens, valid UTF-8).
status validate_vocabulary(const vocabulary& v, int vocab_size);

result<std::shared_ptr<model>> load_gguf(const std::string& path);
result<std::shared_ptr<model>> load_llama2c(const std::string& path,
                                            const std::string& tokenizer_path);
// Picks the format by the file's magic; for llama2.c the tokenizer defaults to the
// `tokenizer.bin` in the checkpoint's directory.
result<std::shared_ptr<model>> load_model(const std::string& path,
                                          const std::string& tokenizer_path = {});

} // namespace llorch::engine
