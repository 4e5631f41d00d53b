// Exactness: greedy ids equal llama2.c run.c's (golden lists produced as docs/engine.md says),
// batched decode equals single-stream decode, thread count and resumption change nothing.
#include <catch2/catch.hpp>

#include <fstream>
#include <map>
#include <sstream>

#include "engines/batch_decoder.hpp"
#include "engines/thread_pool.hpp"

#include <atomic>
#include <chrono>
#include "engines/tokenizer.hpp"
#include "support.hpp"

using namespace llorch::engine;
using llorch::engine::testing::test_model;

namespace {

struct golden_case {
  std::string prompt;
  std::vector<int> ids;
};

std::vector<golden_case> read_golden(const std::string& name) {
  std::ifstream f(std::string(LLORCH_ENGINE_GOLDEN_DIR) + "/" + name);
  std::vector<golden_case> out;
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("prompt ", 0) == 0) {
      out.push_back({line.substr(7), {}});
    } else if (line.rfind("ids ", 0) == 0 && !out.empty()) {
      std::istringstream in(line.substr(4));
      int id;
      while (in >> id) out.back().ids.push_back(id);
    }
  }
  return out;
}

std::shared_ptr<model> load(const std::string& p) {
  auto m = load_model(p);
  INFO((m ? std::string() : m.message()));
  REQUIRE(m.ok());
  return *m;
}

// Runs requests to completion on one decoder; returns each request's generated tokens.
std::map<std::uint64_t, std::vector<int>> run(batch_decoder& d, std::vector<decode_request> reqs,
                                              int join_every = 0) {
  std::map<std::uint64_t, std::vector<int>> out;
  std::size_t next = 0;
  int steps = 0;
  while (next < reqs.size() || d.active() > 0) {
    // new requests join the running batch (one every join_every steps, or all at once)
    while (next < reqs.size() && d.free_slots() > 0 && (join_every == 0 || steps % join_every == 0)) {
      REQUIRE(d.submit(reqs[next]).ok());
      ++next;
      if (join_every != 0) break;
    }
    for (const auto& e : d.step())
      if (e.token >= 0) out[e.id].push_back(e.token);
    ++steps;
  }
  return out;
}

std::vector<int> greedy(std::shared_ptr<model> m, const std::vector<int>& prompt, int n, int threads) {
  batch_decoder d(m, threads, 1, 0);
  decode_request r;
  r.prompt = prompt;
  r.max_tokens = n;
  r.ignore_eos = true;
  auto out = run(d, {r});
  std::vector<int> all = prompt;
  all.insert(all.end(), out[0].begin(), out[0].end());
  return all;
}

void check_golden(const std::string& shape, const std::string& format) {
  auto m = load(test_model(shape, format));
  const tokenizer tok(m->vocab);
  const auto cases = read_golden(shape + "_llama2c_seed1.txt");
  REQUIRE(cases.size() >= 5);
  for (const auto& c : cases) {
    const auto prompt = tok.encode(c.prompt, true);
    INFO(shape << " " << format << " prompt \"" << c.prompt << "\"");
    REQUIRE(prompt.size() <= c.ids.size());
    CHECK(std::vector<int>(c.ids.begin(), c.ids.begin() + static_cast<std::ptrdiff_t>(prompt.size())) == prompt);
    const int n = static_cast<int>(c.ids.size() - prompt.size());
    CHECK(greedy(m, prompt, n, 2) == c.ids);
  }
}

} // namespace

TEST_CASE("greedy ids equal llama2.c run.c on the tiny model, both formats") {
  check_golden("tiny", "llama2c");
  check_golden("tiny", "gguf");
}

TEST_CASE("greedy ids equal llama2.c run.c on the s15m model, both formats") {
  check_golden("s15m", "llama2c");
  check_golden("s15m", "gguf");
}

TEST_CASE("generation stops at the context length") {
  auto m = load(test_model("tiny", "llama2c"));
  batch_decoder d(m, 1, 1, 0);
  decode_request r;
  r.prompt = {1, 300};
  r.max_tokens = 1000;
  r.ignore_eos = true;
  REQUIRE(d.submit(r).ok());
  std::vector<decode_event> all;
  while (d.active() > 0)
    for (auto& e : d.step()) all.push_back(e);
  CHECK(all.size() == 127); // 2 prompt tokens + 127 = seq_len + 1
  CHECK(all.back().finished == finish_reason::context_full);
  decode_request big;
  big.prompt.assign(129, 5);
  CHECK_FALSE(d.submit(big).ok());
}

TEST_CASE("batched decode gives exactly the single-stream tokens, whatever joins or leaves") {
  for (const char* quant : {"f32", "q8_0"}) {
    auto m = load(test_model("tiny", "gguf", quant));
    std::vector<decode_request> reqs;
    for (int i = 0; i < 6; ++i) {
      decode_request r;
      r.id = static_cast<std::uint64_t>(i);
      for (int k = 0; k <= i; ++k) r.prompt.push_back(k == 0 ? 1 : 260 + 17 * k + i);
      r.max_tokens = 20 + 7 * i;
      r.ignore_eos = true;
      if (i % 2 == 1) r.sampling = {0.9f, 40, 0.95f, static_cast<std::uint64_t>(100 + i)};
      reqs.push_back(r);
    }
    std::map<std::uint64_t, std::vector<int>> single;
    for (const auto& r : reqs) {
      batch_decoder d(m, 1, 1, 0);
      single[r.id] = run(d, {r})[r.id];
    }
    batch_decoder all_at_once(m, 2, 6, 0);
    CHECK(run(all_at_once, reqs) == single);
    batch_decoder staggered(m, 2, 3, 0); // fewer slots than requests: later ones wait and join
    CHECK(run(staggered, reqs, 3) == single);
  }
}

TEST_CASE("thread count does not change a single bit of the output") {
  // s15m's matrices are large enough to be split across threads
  for (auto path : {test_model("tiny", "gguf", "f16"), test_model("s15m", "gguf")}) {
    auto m = load(path);
    const std::vector<int> p{1, 290, 300, 310};
    batch_decoder d1(m, 1, 1, 0), d3(m, 3, 1, 0);
    decode_request r;
    r.prompt = p;
    r.max_tokens = 30;
    r.ignore_eos = true;
    REQUIRE(d1.submit(r).ok());
    REQUIRE(d3.submit(r).ok());
    // compare the logits themselves, bit for bit, at every step
    while (d1.active() > 0) {
      const auto a = d1.step(), b = d3.step();
      REQUIRE(a.size() == b.size());
      CHECK(a[0].token == b[0].token);
    }
    std::vector<float> l1, l3;
    kv_cache c1(m->config, 8), c3(m->config, 8);
    cpu_transformer t1(m, 1), t3(m, 3);
    std::vector<batch_row> rows;
    for (int i = 0; i < 4; ++i) rows.push_back({nullptr, p[static_cast<std::size_t>(i)], i, true});
    for (auto& r1 : rows) r1.cache = &c1;
    t1.forward(rows, l1);
    for (auto& r3 : rows) r3.cache = &c3;
    t3.forward(rows, l3);
    CHECK(l1 == l3);
  }
}

TEST_CASE("a stream resumed from prompt + tokens so far with first_index continues identically") {
  auto m = load(test_model("tiny", "gguf"));
  decode_request r;
  r.prompt = {1, 270, 280};
  r.max_tokens = 40;
  r.ignore_eos = true;
  r.sampling = {1.0f, 0, 0.9f, 1234};
  batch_decoder d(m, 2, 1, 0);
  const auto full = run(d, {r})[0];
  REQUIRE(full.size() == 40);
  decode_request resumed = r;
  resumed.prompt.insert(resumed.prompt.end(), full.begin(), full.begin() + 15);
  resumed.first_index = 15;
  resumed.max_tokens = 25;
  batch_decoder d2(m, 1, 1, 0);
  const auto rest = run(d2, {resumed})[0];
  CHECK(rest == std::vector<int>(full.begin() + 15, full.end()));
}

TEST_CASE("cancel frees the slot at once and the others carry on unchanged") {
  auto m = load(test_model("tiny", "gguf"));
  decode_request a, b;
  a.id = 1;
  a.prompt = {1, 300};
  a.max_tokens = 30;
  a.ignore_eos = true;
  b = a;
  b.id = 2;
  b.prompt = {1, 301};
  batch_decoder solo(m, 1, 1, 0);
  const auto b_alone = run(solo, {b})[2];
  batch_decoder d(m, 2, 2, 0);
  REQUIRE(d.submit(a).ok());
  REQUIRE(d.submit(b).ok());
  CHECK_FALSE(d.submit(a).ok()); // no free slot
  std::vector<int> got_b;
  for (int s = 0; d.active() > 0; ++s) {
    if (s == 5) {
      CHECK(d.cancel(1));
      CHECK(d.free_slots() == 1);
    }
    for (const auto& e : d.step()) {
      CHECK((e.id == 2 || s < 5));
      if (e.id == 2) got_b.push_back(e.token);
    }
  }
  CHECK(got_b == b_alone);
  CHECK_FALSE(d.cancel(1));
}

TEST_CASE("thread pool: back-to-back jobs of different sizes each cover their range exactly once") {
  // A worker still claiming after an earlier job's last chunk once read the next job's size and
  // ran a range that did not exist; the caller then waited forever (about once in a million
  // jobs). Short jobs back to back for 8 s, sizes changing every time, more threads than cores.
  llorch::engine::thread_pool pool(4);
  std::vector<std::atomic<int>> hits(512);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(8);
  for (int round = 0; std::chrono::steady_clock::now() < until; ++round) {
    const std::int64_t n = 3 + (round * 7919) % 500;
    for (std::int64_t i = 0; i < n; ++i) hits[static_cast<std::size_t>(i)].store(0, std::memory_order_relaxed);
    pool.parallel_for(n, 1, [&](std::int64_t b, std::int64_t e, int) {
      for (std::int64_t i = b; i < e; ++i) hits[static_cast<std::size_t>(i)].fetch_add(1, std::memory_order_relaxed);
    });
    for (std::int64_t i = 0; i < n; ++i)
      if (hits[static_cast<std::size_t>(i)].load() != 1) FAIL("round " << round << ": item " << i << " ran " << hits[static_cast<std::size_t>(i)].load() << " times");
  }
}
