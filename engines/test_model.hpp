#pragma once
// Deterministic random llama models with a matching SentencePiece-style vocabulary, written as
// GGUF v3 (tokenizer in the metadata) or as a llama2.c checkpoint (tokenizer.bin beside it).
// Tests, demos and benchmarks use these; nothing is ever downloaded.
#include <cstdint>
#include <string>

#include "engines/model.hpp"
#include "engines/result.hpp"

namespace llorch::engine {

struct test_model_spec {
  std::string shape = "tiny";  // tiny | s15m | s110m
  std::string format = "gguf"; // gguf | llama2c
  std::string quant = "f32";   // f32 | f16 | q8_0 (llama2c holds f32 only)
  std::uint64_t seed = 1;
  std::string out;
};

result<model_config> test_model_config(const std::string& shape);

// The vocabulary depends only on its size: <unk> <s> </s>, the 256 byte tokens, a space and the
// printable ASCII characters, then pieces each formed by merging two earlier pieces, scored by
// merge rank (earlier = higher), so BPE merging by score rebuilds words.
vocabulary make_test_vocabulary(int vocab_size);

// Writes the model (and for llama2c the tokenizer.bin in the same directory); the files appear
// atomically (temp file + rename).
status write_test_model(const test_model_spec& spec);

// The llama2.c tokenizer file for a model written to `model_path`.
std::string llama2c_tokenizer_path(const std::string& model_path);

} // namespace llorch::engine
