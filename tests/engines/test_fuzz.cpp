// Seeded mutation loop over GGUF and llama2.c files: truncations, flipped bytes, absurd counts,
// sizes and offsets. Every case must end in an error value or a model that passes validation
// and runs a forward step; never a crash or an out-of-bounds read (run under ASan to be strict).
// Bounded by time so ctest stays fast.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>

#include "engines/cpu_transformer.hpp"
#include "engines/tokenizer.hpp"
#include "support.hpp"

using namespace llorch::engine;
using llorch::engine::testing::test_model;

namespace {

std::string read_all(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void write_all(const std::string& p, const std::string& data) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
}

std::uint64_t next(std::uint64_t& s) {
  s += 0x9e3779b97f4a7c15ULL;
  std::uint64_t z = s;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::string mutate(std::string d, std::uint64_t& s, std::size_t hot_end) {
  const int kind = static_cast<int>(next(s) % 6);
  // most edits land in the header/metadata region, where they matter most
  const std::size_t region = (next(s) % 4 == 0) ? d.size() : std::min(d.size(), hot_end);
  const std::size_t at = next(s) % region;
  switch (kind) {
  case 0: d.resize(at); break; // truncate
  case 1:
    for (int k = 0, n = 1 + static_cast<int>(next(s) % 8); k < n; ++k)
      d[next(s) % region] ^= static_cast<char>(1 + next(s) % 255);
    break;
  case 2: { // absurd 64-bit value
    const std::uint64_t vals[] = {~0ULL, 1ULL << 63, 1ULL << 40, 0, 0xFFFFFFFFULL, next(s)};
    const std::uint64_t v = vals[next(s) % 6];
    if (at + 8 <= d.size()) std::memcpy(&d[at], &v, 8);
    break;
  }
  case 3: { // absurd 32-bit value
    const std::uint32_t vals[] = {0xFFFFFFFFu, 0x80000000u, 0, 1, 99, 65536};
    const std::uint32_t v = vals[next(s) % 6];
    if (at + 4 <= d.size()) std::memcpy(&d[at], &v, 4);
    break;
  }
  case 4: d.insert(at, std::string(1 + next(s) % 16, static_cast<char>(next(s)))); break;
  default: d.erase(at, std::min<std::size_t>(d.size() - at, 1 + next(s) % 64)); break;
  }
  return d;
}

// A model that loads must also survive use.
void exercise(const std::shared_ptr<model>& m) {
  const tokenizer t(m->vocab);
  auto ids = t.encode("fuzz \xE2\x98\x83 text", true);
  std::string text;
  for (std::size_t i = 1; i < ids.size(); ++i) text += t.decode(ids[i - 1], ids[i]);
  cpu_transformer tr(m, 1);
  kv_cache c(m->config, 2);
  std::vector<float> logits;
  tr.forward({{&c, ids[0], 0, true}}, logits);
  REQUIRE(logits.size() == static_cast<std::size_t>(m->config.vocab_size));
}

} // namespace

TEST_CASE("mutated model files are an error or a working model, never a crash") {
  const std::string dir = llorch::engine::testing::model_dir();
  const std::string gguf = read_all(test_model("tiny", "gguf", "q8_0"));
  const std::string l2c_path = test_model("tiny", "llama2c");
  const std::string l2c = read_all(l2c_path);
  const std::string tok_path = l2c_path.substr(0, l2c_path.rfind('/')) + "/tokenizer.bin";
  const std::string tok = read_all(tok_path);
  const std::string f_gguf = dir + "/fuzz.gguf", f_bin = dir + "/fuzz.bin", f_tok = dir + "/fuzz_tokenizer.bin";
  // header + metadata + tensor infos of the GGUF file end where the data starts
  const auto data_at = gguf.find("blk.1.ffn_up.weight") + 64;
  std::uint64_t seed = 20261129;
  int cases = 0, loaded = 0, errors = 0;
  const auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(12)) {
    const int which = cases % 3;
    std::shared_ptr<model> m;
    std::string message;
    if (which == 0) {
      write_all(f_gguf, mutate(gguf, seed, data_at));
      auto r = load_gguf(f_gguf);
      if (r) m = *r; else message = r.message();
    } else if (which == 1) {
      write_all(f_bin, mutate(l2c, seed, 64));
      write_all(f_tok, tok);
      auto r = load_llama2c(f_bin, f_tok);
      if (r) m = *r; else message = r.message();
    } else {
      write_all(f_bin, l2c);
      write_all(f_tok, mutate(tok, seed, tok.size()));
      auto r = load_llama2c(f_bin, f_tok);
      if (r) m = *r; else message = r.message();
    }
    if (m) {
      exercise(m);
      ++loaded;
    } else {
      REQUIRE_FALSE(message.empty());
      ++errors;
    }
    ++cases;
  }
  INFO(cases << " cases, " << loaded << " loaded, " << errors << " errors");
  CHECK(cases > 300);
  CHECK(errors > cases / 4);
  CHECK(loaded > 0);
}
