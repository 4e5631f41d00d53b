// Model loading: both formats, the shapes and types they declare, identical weights across
// formats, quantisation error bounds, and hostile files that must fail with a named reason.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

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

// Switches kernel paths for a test and puts the dispatch's choice back at the end.
struct kernel_paths_under_test {
  std::string picked = kernel_path();
  std::vector<std::string> paths = kernel_paths();
  ~kernel_paths_under_test() { force_kernel_path(picked.c_str()); }
  void use(const std::string& p) { REQUIRE(force_kernel_path(p.c_str())); }
};

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

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

// A rows x cols matrix of the given type with values from a fixed generator; Q8_0 blocks take
// every byte value (-128 included) and scales from f16 subnormals to the largest f16.
struct test_matrix {
  std::vector<std::uint8_t> bytes;
  tensor t;
  test_matrix(tensor_type type, std::int64_t rows, std::int64_t cols) : t{type, nullptr, rows, cols} {
    bytes.resize(t.byte_size());
    std::uint32_t state = 12345;
    const auto next = [&] { return state = state * 1664525u + 1013904223u; };
    if (type == tensor_type::q8_0) {
      const std::uint16_t scales[] = {0x0001, 0x03ff, 0x1c00, 0x3c00, 0xb800, 0x7bff, 0x0000, 0x2e66};
      for (std::size_t b = 0; b < bytes.size() / q8_block_bytes; ++b) {
        std::uint8_t* blk = bytes.data() + b * q8_block_bytes;
        std::memcpy(blk, &scales[b % 8], 2);
        for (int k = 0; k < q8_block_size; ++k) blk[2 + k] = static_cast<std::uint8_t>(next() >> 24);
        if (b % 5 == 0) std::memset(blk + 2, 0x80, 8); // runs of -128
      }
    } else {
      for (std::int64_t i = 0; i < rows * cols; ++i) {
        const float v = static_cast<float>(static_cast<std::int32_t>(next())) * 0x1p-31f;
        if (type == tensor_type::f32) std::memcpy(bytes.data() + 4 * i, &v, 4);
        else {
          const std::uint16_t h = f32_to_f16(v);
          std::memcpy(bytes.data() + 2 * i, &h, 2);
        }
      }
    }
    t.data = bytes.data();
  }
};

} // namespace

TEST_CASE("the dispatch picks a path this CPU has; any of them can be forced, others are refused") {
  kernel_paths_under_test k;
  INFO("picked " << k.picked);
  REQUIRE_FALSE(k.paths.empty());
  CHECK(k.paths.front() == "portable");
  CHECK(std::find(k.paths.begin(), k.paths.end(), k.picked) != k.paths.end());
  if (std::getenv("LLORCH_KERNELS") == nullptr) CHECK(k.picked == k.paths.back()); // the best one
  for (const auto& p : k.paths) {
    k.use(p);
    CHECK(kernel_path() == p);
  }
  CHECK_FALSE(force_kernel_path("avx1024"));
  CHECK(kernel_path() == k.paths.back()); // a refusal changes nothing
  for (const char* p : {"portable", "avx2", "avx512"})
    CHECK(force_kernel_path(p) == (std::find(k.paths.begin(), k.paths.end(), p) != k.paths.end()));
}

TEST_CASE("quantize_q8 is bit-identical on every path, including NaN, inf and all-zero blocks") {
  std::vector<float> x(32 * 9);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(static_cast<float>(i) * 1.37f) * static_cast<float>(1 + i % 7);
  for (std::size_t i = 32; i < 64; ++i) x[i] = 0.0f;
  x[70] = NAN;
  x[100] = INFINITY;
  x[130] = -INFINITY;
  x[170] = 1e-30f;
  kernel_paths_under_test k;
  std::vector<std::int8_t> q0;
  std::vector<float> d0;
  for (const auto& p : k.paths) {
    INFO("path " << p);
    k.use(p);
    std::vector<std::int8_t> q(x.size());
    std::vector<float> d(x.size() / 32);
    quantize_q8(x.data(), static_cast<int>(x.size()), q.data(), d.data());
    if (p == "portable") {
      q0 = q;
      d0 = d;
    }
    CHECK(q == q0);
    CHECK(same_bits(d, d0));
  }
}

TEST_CASE("exp_inplace: within 2 ulp of std::exp, bit-identical on every path, NaN stays NaN") {
  std::vector<float> x;
  for (float v = -90.0f; v <= 89.0f; v += 0.0137f) x.push_back(v);
  x.push_back(-INFINITY);
  x.push_back(NAN);
  kernel_paths_under_test k;
  std::vector<float> slow = x;
  k.use("portable");
  exp_inplace(slow.data(), static_cast<int>(slow.size()));
  int worst = 0;
  for (std::size_t i = 0; i + 1 < x.size(); ++i) {
    const float v = std::min(std::max(x[i], -87.0f), 88.0f); // the documented clamp
    const float want = std::exp(v);
    std::int32_t a, b;
    std::memcpy(&a, &slow[i], 4);
    std::memcpy(&b, &want, 4);
    worst = std::max(worst, std::abs(a - b));
  }
  CHECK(worst <= 2);
  CHECK(std::isnan(slow.back()));
  for (const auto& p : k.paths) {
    INFO("path " << p);
    k.use(p);
    std::vector<float> fast = x;
    exp_inplace(fast.data(), static_cast<int>(fast.size()));
    CHECK(std::isnan(fast.back()));
    fast.pop_back();
    CHECK(same_bits(fast, std::vector<float>(slow.begin(), slow.end() - 1)));
    // short rows (a prefill's first softmaxes) are all tail; the floats past n stay untouched
    for (int n = 1; n <= 17; ++n) {
      std::vector<float> row(x.begin() + 100 * n, x.begin() + 100 * n + 24);
      exp_inplace(row.data(), n);
      CHECK(same_bits(std::vector<float>(row.begin(), row.begin() + n),
                      std::vector<float>(slow.begin() + 100 * n, slow.begin() + 100 * n + n)));
      CHECK(same_bits(std::vector<float>(row.begin() + n, row.end()),
                      std::vector<float>(x.begin() + 100 * n + n, x.begin() + 100 * n + 24)));
    }
  }
}

TEST_CASE("attention's dot products and weighted sums are bit-identical on every path") {
  kernel_paths_under_test k;
  // 37 positions of 3 heads of 24 (a tail of 8 lanes in the 64-wide pass) plus an odd head size
  for (int hs : {24, 13}) {
    const int kv_dim = 3 * hs, count = 37;
    std::vector<float> kv(static_cast<std::size_t>(count * kv_dim)), q(static_cast<std::size_t>(hs)), w(count);
    for (std::size_t i = 0; i < kv.size(); ++i) kv[i] = std::sin(static_cast<float>(i) * 0.71f);
    for (std::size_t i = 0; i < q.size(); ++i) q[i] = std::cos(static_cast<float>(i) * 0.3f);
    for (std::size_t i = 0; i < w.size(); ++i) w[i] = 1.0f / static_cast<float>(i + 2);
    std::vector<float> dots0, sums0;
    for (const auto& p : k.paths) {
      INFO("head size " << hs << ", path " << p);
      k.use(p);
      std::vector<float> dots(count), sums(static_cast<std::size_t>(hs));
      dot_f32_rows(kv.data() + hs, static_cast<std::size_t>(kv_dim), count, q.data(), hs, dots.data());
      weighted_sum(w.data(), kv.data() + hs, static_cast<std::size_t>(kv_dim), count, hs, sums.data());
      if (p == "portable") {
        dots0 = dots;
        sums0 = sums;
      }
      CHECK(same_bits(dots, dots0));
      CHECK(same_bits(sums, sums0));
      // and each score equals the single-row dot product
      for (int i = 0; i < count; ++i) {
        float one;
        dot_f32_rows(kv.data() + hs + i * kv_dim, 0, 1, q.data(), hs, &one);
        CHECK(one == dots[static_cast<std::size_t>(i)]);
      }
    }
  }
}

TEST_CASE("every kernel path gives bit-identical dot products, alone or batched") {
  auto m = load_ok(test_model("tiny", "gguf", "q8_0"));
  auto h = load_ok(test_model("tiny", "gguf", "f16"));
  auto f = load_ok(test_model("tiny", "gguf", "f32"));
  // rows whose length is no multiple of 8 take the zero-padded tail (13: one step and a tail;
  // 24: a 16-step and an 8-step; 37: two 16-steps and a tail); row counts that are no multiple
  // of 8 end in a short block
  const test_matrix mats[] = {{tensor_type::f32, 29, 13}, {tensor_type::f16, 29, 13}, {tensor_type::f32, 19, 24},
                              {tensor_type::f16, 19, 24}, {tensor_type::f32, 21, 37}, {tensor_type::f16, 21, 37},
                              {tensor_type::q8_0, 29, 96}, {tensor_type::q8_0, 16, 32}};
  std::vector<const tensor*> tensors{&m->layers[0].w2, &h->layers[0].w2, &f->layers[0].w2, &f->layers[0].wq};
  for (const auto& mat : mats) tensors.push_back(&mat.t);
  constexpr int seqs = 8; // up to two groups of 4 sequences: the second one finds the rows in cache
  kernel_paths_under_test k;
  for (const tensor* t : tensors) {
    const auto n = static_cast<std::size_t>(t->cols);
    std::vector<float> x(seqs * n);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(static_cast<float>(i) * 0.37f) * static_cast<float>(1 + i % 3);
    // the reference: each (row, sequence) alone on the portable path
    k.use("portable");
    std::vector<float> slow;
    for (int s = 0; s < seqs; ++s)
      for (std::int64_t r = 0; r < t->rows; ++r) slow.push_back(dot_row(*t, r, x.data() + static_cast<std::size_t>(s) * n));
    for (const auto& p : k.paths) {
      INFO("path " << p << "; " << tensor_type_name(t->type) << " tensor " << t->rows << "x" << t->cols);
      k.use(p);
      std::vector<float> alone;
      for (int s = 0; s < seqs; ++s)
        for (std::int64_t r = 0; r < t->rows; ++r) alone.push_back(dot_row(*t, r, x.data() + static_cast<std::size_t>(s) * n));
      CHECK(same_bits(alone, slow));
      // any number of sequences, any cut of the rows: the same values
      for (int s = 1; s <= seqs; ++s)
        for (std::int64_t step : {std::int64_t{1}, std::int64_t{3}, std::int64_t{8}, std::int64_t{11}, std::int64_t{16}, t->rows}) {
          INFO(s << " sequences, ranges of " << step << " rows");
          CHECK(same_bits(batched(*t, x, s, step), std::vector<float>(slow.begin(), slow.begin() + s * t->rows)));
        }
    }
  }
}
