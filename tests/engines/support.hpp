#pragma once
// Test models generated on first use into this test binary's own folder.
#include <string>
#include <sys/stat.h>

#include "engines/test_model.hpp"

namespace llorch::engine::testing {

inline std::string model_dir() {
  const std::string d = LLORCH_ENGINE_TEST_DIR;
  ::mkdir(d.c_str(), 0755);
  return d;
}

inline bool exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}

// <dir>/<shape>-<format>-<quant>-s<seed>/model.{gguf,bin}; one folder per model so each
// llama2.c checkpoint has its own tokenizer.bin.
inline std::string test_model(const std::string& shape, const std::string& format,
                              const std::string& quant = "f32", std::uint64_t seed = 1) {
  const std::string dir = model_dir() + "/" + shape + "-" + format + "-" + quant + "-s" + std::to_string(seed);
  ::mkdir(dir.c_str(), 0755);
  const std::string path = dir + (format == "gguf" ? "/model.gguf" : "/model.bin");
  if (!exists(path)) {
    test_model_spec s;
    s.shape = shape;
    s.format = format;
    s.quant = quant;
    s.seed = seed;
    s.out = path;
    auto st = write_test_model(s);
    if (!st) throw std::runtime_error(st.message());
  }
  return path;
}

} // namespace llorch::engine::testing
