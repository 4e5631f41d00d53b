#pragma once
// Test models generated on first use into this test binary's own folder.
#include <string>
#include <cstdio>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>

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
    // Test binaries run in parallel (ctest -j): build in a directory of this process's own and
    // rename into place, so that no test ever reads a model another is still writing.
    const std::string tmp = dir + ".tmp" + std::to_string(::getpid());
    ::mkdir(tmp.c_str(), 0755);
    const std::string tmp_path = tmp + (format == "gguf" ? "/model.gguf" : "/model.bin");
    test_model_spec s;
    s.shape = shape;
    s.format = format;
    s.quant = quant;
    s.seed = seed;
    s.out = tmp_path;
    auto st = write_test_model(s);
    if (!st) throw std::runtime_error(st.message());
    if (format != "gguf")
      std::rename((tmp + "/tokenizer.bin").c_str(), (dir + "/tokenizer.bin").c_str());
    std::rename(tmp_path.c_str(), path.c_str()); // last: its existence means all is in place
    ::rmdir(tmp.c_str());
  }
  return path;
}

} // namespace llorch::engine::testing
