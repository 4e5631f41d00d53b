// Model loading: both formats, the shapes and types they declare, identical weights across
// formats, quantisation error bounds, and hostile files that must fail with a named reason.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>

#include "engines/cpu_transformer.hpp"
#include "engines/kernels.hpp"
#include "engines/model.hpp"
#include "engines/sampler.hpp"
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

std::shared_ptr<model> load_ok(const std::string& p) {
  auto m = load_model(p);
  INFO(p << ": " << (m ? std::string() : m.message()));
  REQUIRE(m.ok());
  return *m;
}

// Logits for each position of a fixed token sequence, one sequence, one thread.
std::vector<std::vector<float>> logits_for(std::shared_ptr<model> m, const std::vector<int>& toks) {
  cpu_transformer t(m, 1);
  kv_cache cache(m->config, m->config.seq_len);
  std::vector<std::vector<float>> out;
  std::vector<float> l;
  for (std::size_t p = 0; p < toks.size(); ++p) {
    t.forward({{&cache, toks[p], static_cast<int>(p), true}}, l);
    out.push_back(l);
  }
  return out;
}

} // namespace

TEST_CASE("test models load in both formats with the declared shape") {
  for (const char* fmt : {"gguf", "llama2c"}) {
    auto m = load_ok(test_model("tiny", fmt));
    CHECK(m->format == fmt);
    CHECK(m->config.dim == 64);
    CHECK(m->config.n_heads == 4);
    CHECK(m->config.n_kv_heads == 2); // grouped-query attention
    CHECK(m->config.vocab_size == 512);
    CHECK(m->layers.size() == 2);
    CHECK_FALSE(m->shared_output); // tiny has a separate classifier
    CHECK(m->vocab.bos == 1);
    CHECK(m->vocab.eos == 2);
    CHECK(m->vocab.pieces[3] == "<0x00>");
    CHECK(m->vocab.kinds[3] == token_kind::byte);
  }
  auto s = load_ok(test_model("s15m", "gguf"));
  CHECK(s->config.dim == 288);
  CHECK(s->config.hidden_dim == 768);
  CHECK(s->config.n_layers == 6);
  CHECK(s->config.vocab_size == 32000);
  CHECK(s->config.seq_len == 256);
  CHECK(s->shared_output); // no output.weight: falls back to the embedding
  CHECK(s->output.data == s->embedding.data);
}

TEST_CASE("make-test-model is deterministic and the seed changes the weights") {
  const std::string a = read_all(test_model("tiny", "gguf", "f32", 1));
  CHECK(a == read_all(test_model("tiny", "gguf", "f32", 1)));
  const std::string dir = llorch::engine::testing::model_dir();
  test_model_spec s;
  s.out = dir + "/again.gguf";
  REQUIRE(write_test_model(s).ok());
  CHECK(read_all(s.out) == a);
  CHECK(read_all(test_model("tiny", "gguf", "f32", 2)) != a);
}

TEST_CASE("GGUF F32 and llama2.c hold the same weights and vocabulary") {
  auto g = load_ok(test_model("tiny", "gguf"));
  auto c = load_ok(test_model("tiny", "llama2c"));
  CHECK(g->vocab.pieces == c->vocab.pieces);
  CHECK(g->vocab.scores == c->vocab.scores);
  REQUIRE(g->embedding.byte_size() == c->embedding.byte_size());
  CHECK(std::memcmp(g->embedding.data, c->embedding.data, g->embedding.byte_size()) == 0);
  CHECK(std::memcmp(g->layers[1].w2.data, c->layers[1].w2.data, g->layers[1].w2.byte_size()) == 0);
  CHECK(std::memcmp(g->output.data, c->output.data, g->output.byte_size()) == 0);
  const std::vector<int> toks{1, 300, 301, 5, 260, 400};
  CHECK(logits_for(g, toks) == logits_for(c, toks)); // bit-identical
}

TEST_CASE("F16 and Q8_0 logits stay within the stated tolerance of F32") {
  // Tolerance: max |logit - f32 logit| <= tol * max |f32 logit| over every position.
  const std::vector<int> toks{1, 300, 301, 5, 260, 400, 77, 481};
  auto ref = logits_for(load_ok(test_model("tiny", "gguf", "f32")), toks);
  struct q {
    const char* name;
    double tol;
  };
  for (q k : {q{"f16", 0.005}, q{"q8_0", 0.03}}) {
    auto m = load_ok(test_model("tiny", "gguf", k.name));
    CHECK(m->layers[0].wq.type == (std::string(k.name) == "f16" ? tensor_type::f16 : tensor_type::q8_0));
    CHECK(m->final_norm.type == tensor_type::f32);
    auto got = logits_for(m, toks);
    double worst = 0, scale = 0;
    int same_argmax = 0;
    for (std::size_t p = 0; p < toks.size(); ++p) {
      for (std::size_t i = 0; i < ref[p].size(); ++i) {
        worst = std::max(worst, static_cast<double>(std::fabs(got[p][i] - ref[p][i])));
        scale = std::max(scale, static_cast<double>(std::fabs(ref[p][i])));
      }
      same_argmax += argmax(ref[p].data(), static_cast<int>(ref[p].size())) == argmax(got[p].data(), static_cast<int>(got[p].size()));
    }
    INFO(k.name << " max abs error " << worst << " of max logit " << scale);
    CHECK(worst <= k.tol * scale);
    CHECK(worst > 0.0); // the quantised file really differs
    // f16 keeps every greedy choice here; q8_0 may flip a near tie, so only its bound is stated
    if (std::string(k.name) == "f16") CHECK(same_argmax == static_cast<int>(toks.size()));
    else CHECK(same_argmax >= static_cast<int>(toks.size()) - 2);
  }
}

TEST_CASE("f16 conversion round-trips and rounds to nearest even") {
  for (float v : {0.0f, 1.0f, -2.5f, 65504.0f, 6.103515625e-05f, 5.96046448e-08f, 0.333251953125f})
    CHECK(f16_to_f32(f32_to_f16(v)) == v);
  CHECK(f16_to_f32(f32_to_f16(1.0f + 1.0f / 4096)) == 1.0f); // tie goes to even
  CHECK(std::isinf(f16_to_f32(f32_to_f16(1e6f))));
  CHECK(std::isnan(f16_to_f32(f32_to_f16(std::nanf("")))));
}

TEST_CASE("hostile files fail with an error naming the problem") {
  const std::string dir = llorch::engine::testing::model_dir();
  const std::string gguf = read_all(test_model("tiny", "gguf"));
  const std::string l2c_path = test_model("tiny", "llama2c");
  const std::string l2c = read_all(l2c_path);
  auto expect_error = [&](const std::string& data, const std::string& name, const std::string& needle) {
    const std::string p = dir + "/" + name;
    write_all(p, data);
    auto m = name.find(".bin") != std::string::npos ? load_llama2c(p, l2c_path.substr(0, l2c_path.rfind('/')) + "/tokenizer.bin")
                                                    : load_gguf(p);
    INFO(name << " -> " << (m ? std::string("loaded") : m.message()));
    REQUIRE_FALSE(m.ok());
    CHECK(m.message().find(needle) != std::string::npos);
  };
  expect_error(gguf.substr(0, 10), "trunc_header.gguf", "file ends inside");
  expect_error(gguf.substr(0, gguf.size() - 100), "trunc_data.gguf", "runs past the end");
  std::string v2 = gguf;
  v2[4] = 2;
  expect_error(v2, "v2.gguf", "version 2");
  std::string many = gguf;
  const std::uint64_t huge = 1ULL << 60;
  std::memcpy(&many[8], &huge, 8);
  expect_error(many, "tensors.gguf", "tensor count");
  std::memcpy(&many[8], gguf.data() + 8, 8);
  std::memcpy(&many[16], &huge, 8);
  expect_error(many, "kvs.gguf", "metadata count");
  // first key: its length field claims more bytes than the file has
  std::string longkey = gguf;
  std::memcpy(&longkey[24], &huge, 8);
  expect_error(longkey, "key.gguf", "more than the file has");
  // unknown tensor type: patch the type of the first tensor info (found by its name)
  std::string badtype = gguf;
  const auto at = badtype.find("token_embd.weight");
  REQUIRE(at != std::string::npos);
  const std::size_t type_at = at + 17 + 4 + 16;
  const std::uint32_t t = 99;
  std::memcpy(&badtype[type_at], &t, 4);
  expect_error(badtype, "type.gguf", "unsupported type 99");
  std::string badoff = gguf;
  const std::uint64_t off = 1ULL << 40;
  std::memcpy(&badoff[type_at + 4], &off, 8);
  expect_error(badoff, "offset.gguf", "runs past the end");
  std::string arch = gguf;
  const auto la = arch.find("llama");
  arch.replace(la, 5, "gpt_x");
  expect_error(arch, "arch.gguf", "architecture");
  // bad UTF-8 inside a token
  std::string utf = gguf;
  const auto tok = utf.find("<0x41>");
  REQUIRE(tok != std::string::npos);
  utf[tok + 1] = static_cast<char>(0xC3);
  expect_error(utf, "utf8.gguf", "not valid UTF-8");

  expect_error(l2c.substr(0, 20), "short.bin", "file ends inside");
  expect_error(l2c.substr(0, l2c.size() - 4), "trunc.bin", "needs exactly");
  std::string heads = l2c;
  const std::int32_t three = 3;
  std::memcpy(&heads[12], &three, 4);
  expect_error(heads, "heads.bin", "not a multiple of n_heads");
  std::string neg = l2c;
  const std::int32_t minus = -5;
  std::memcpy(&neg[0], &minus, 4);
  expect_error(neg, "dim.bin", "dim is -5");
}

TEST_CASE("a llama2.c checkpoint with the wrong tokenizer.bin is refused") {
  auto tiny = test_model("tiny", "llama2c");
  auto s15m = test_model("s15m", "llama2c");
  const std::string other_tok = s15m.substr(0, s15m.rfind('/')) + "/tokenizer.bin";
  auto m = load_llama2c(tiny, other_tok);
  REQUIRE_FALSE(m.ok());
  CHECK(m.message().find("more than the model's 512 tokens") != std::string::npos);
  auto missing = load_model(tiny, "/nonexistent/tokenizer.bin");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.message().find("cannot open") != std::string::npos);
}

namespace {

// Every (row, sequence) value of t for `seqs` inputs, computed by dot_rows over [begin, end) cut
// into ranges of `step` rows; out[s * rows + i].
std::vector<float> batched(const tensor& t, const std::vector<float>& x, int seqs, std::int64_t step) {
  const auto n = static_cast<std::size_t>(t.cols);
  std::vector<std::int8_t> q(x.size());
  std::vector<float> d(x.size() / 32);
  if (t.type == tensor_type::q8_0)
    for (std::size_t s = 0; s < static_cast<std::size_t>(seqs); ++s)
      quantize_q8(x.data() + s * n, static_cast<int>(n), q.data() + s * n, d.data() + s * n / 32);
  std::vector<float> out(static_cast<std::size_t>(seqs * t.rows), -1.0f);
  for (std::int64_t b = 0; b < t.rows; b += step)
    dot_rows(t, b, std::min(t.rows, b + step), {x.data(), q.data(), d.data(), seqs}, out.data() + b, t.rows);
  return out;
}

} // namespace

TEST_CASE("portable and AVX2 kernels give bit-identical dot products, alone or batched") {
  auto m = load_ok(test_model("tiny", "gguf", "q8_0"));
  auto h = load_ok(test_model("tiny", "gguf", "f16"));
  auto f = load_ok(test_model("tiny", "gguf", "f32"));
  // rows whose length is no multiple of 8 take the zero-padded tail
  std::vector<std::uint8_t> odd32(29 * 13 * 4), odd16(29 * 13 * 2);
  for (std::size_t i = 0; i < 29 * 13; ++i) {
    const float v = std::cos(static_cast<float>(i) * 0.61f);
    std::memcpy(&odd32[4 * i], &v, 4);
    const std::uint16_t hv = f32_to_f16(v);
    std::memcpy(&odd16[2 * i], &hv, 2);
  }
  const tensor t32{tensor_type::f32, odd32.data(), 29, 13}, t16{tensor_type::f16, odd16.data(), 29, 13};
  constexpr int seqs = 7;
  const std::vector<const tensor*> tensors{&m->layers[0].w2, &h->layers[0].w2, &f->layers[0].w2, &f->layers[0].wq, &t32, &t16};
  for (const tensor* t : tensors) {
    INFO("dispatch picked " << kernel_path() << "; tensor " << t->rows << "x" << t->cols);
    const auto n = static_cast<std::size_t>(t->cols);
    std::vector<float> x(seqs * n);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(static_cast<float>(i) * 0.37f);
    // each (row, sequence) alone, on both paths
    std::vector<float> fast, slow;
    for (int s = 0; s < seqs; ++s)
      for (std::int64_t r = 0; r < t->rows; ++r) fast.push_back(dot_row(*t, r, x.data() + static_cast<std::size_t>(s) * n));
    force_portable_kernels(true);
    for (int s = 0; s < seqs; ++s)
      for (std::int64_t r = 0; r < t->rows; ++r) slow.push_back(dot_row(*t, r, x.data() + static_cast<std::size_t>(s) * n));
    CHECK(batched(*t, x, seqs, 5) == slow);
    force_portable_kernels(false);
    CHECK(fast == slow);
    // any number of sequences, any cut of the rows: the same values
    for (int k = 1; k <= seqs; ++k)
      for (std::int64_t step : {std::int64_t{1}, std::int64_t{8}, std::int64_t{11}, t->rows}) {
        INFO(k << " sequences, ranges of " << step << " rows");
        CHECK(batched(*t, x, k, step) == std::vector<float>(fast.begin(), fast.begin() + k * t->rows));
      }
  }
}
