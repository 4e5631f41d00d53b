// Tokenizer, UTF-8 streaming and sampler.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>

#include "engines/model.hpp"
#include "engines/sampler.hpp"
#include "engines/test_model.hpp"
#include "engines/tokenizer.hpp"
#include "engines/utf8.hpp"

using namespace llorch::engine;

namespace {
std::string decode_all(const tokenizer& t, const std::vector<int>& ids) {
  std::string s;
  for (std::size_t i = 1; i < ids.size(); ++i) s += t.decode(ids[i - 1], ids[i]);
  return s;
}
} // namespace

TEST_CASE("the generated vocabulary is SentencePiece-shaped") {
  const vocabulary v = make_test_vocabulary(32000);
  REQUIRE(validate_vocabulary(v, 32000).ok());
  CHECK(v.pieces[0] == "<unk>");
  CHECK(v.pieces[1] == "<s>");
  CHECK(v.pieces[2] == "</s>");
  CHECK(v.pieces[3 + 0x41] == "<0x41>");
  int word_starts = 0;
  for (std::size_t i = 259; i < v.pieces.size(); ++i) {
    const std::string& p = v.pieces[i];
    word_starts += p.size() > 1 && p[0] == ' ';
  }
  CHECK(word_starts > 5000);
  // every multi-character piece is a merge of two earlier, higher-scoring pieces
  const vocabulary small = make_test_vocabulary(512);
  REQUIRE(validate_vocabulary(small, 512).ok());
  for (std::size_t i = 354; i < small.pieces.size(); ++i) {
    const std::string& p = small.pieces[i];
    bool found = false;
    for (std::size_t cut = 1; cut < p.size() && !found; ++cut)
      for (std::size_t a = 259; a < i && !found; ++a)
        if (small.pieces[a] == p.substr(0, cut))
          for (std::size_t b = 259; b < i && !found; ++b)
            found = small.pieces[b] == p.substr(cut);
    INFO(p);
    CHECK(found);
  }
}

TEST_CASE("a byte piece that is not typed as a byte token is no byte fallback") {
  // found by the fuzz loop: GGUF token types can mark "<0x41>" as normal text; the tokenizer then
  // had no id for byte 0x41 and encoding an "A" it could not merge read out of bounds
  vocabulary v = make_test_vocabulary(512);
  REQUIRE(validate_vocabulary(v, 512).ok());
  v.kinds[3 + 0x41] = token_kind::normal;
  const auto st = validate_vocabulary(v, 512);
  REQUIRE_FALSE(st.ok());
  CHECK(st.message() == "tokenizer has no byte token <0x41> for byte fallback");
}

TEST_CASE("encode merges by score, adds BOS and the prefix space; decode inverts it") {
  const vocabulary v = make_test_vocabulary(32000);
  const tokenizer t(v);
  const auto ids = t.encode("the quick brown fox", true);
  REQUIRE(ids.size() > 2);
  CHECK(ids[0] == 1);
  CHECK(ids.size() < 1 + 19); // merges happened
  CHECK(decode_all(t, ids) == "the quick brown fox");
  CHECK(t.encode("", true) == std::vector<int>{1});
  CHECK(t.encode("", false).empty());
  // characters not in the vocabulary fall back to their UTF-8 bytes (+3)
  const auto snow = t.encode("\xE2\x98\x83", true); // U+2603
  CHECK(snow == std::vector<int>{1, t.encode(" ", false)[0], 0xE2 + 3, 0x98 + 3, 0x83 + 3});
  for (const std::string s : {"Hello, World! 42", "ünïcödé 日本語 \xF0\x9F\x99\x82", "  two  spaces\tand tab\n",
                              "a", "xyzzy plugh"})
    CHECK(decode_all(t, t.encode(s, true)) == s);
  // the leading space is kept when the piece does not follow BOS
  const int space = t.encode(" ", false)[0];
  CHECK(t.decode(5, space) == " ");
  CHECK(t.decode(1, space).empty());
  CHECK(t.decode(0, 1).empty()); // control tokens print nothing
  CHECK(t.decode(0, 99999).empty());
}

TEST_CASE("utf8_stream holds back incomplete characters and replaces invalid bytes") {
  utf8_stream s;
  CHECK(s.push("a\xE2") == "a");
  CHECK(s.push("\x98") .empty());
  CHECK(s.push("\x83!") == "\xE2\x98\x83!");
  CHECK(s.push("\xFF") == "\xEF\xBF\xBD");
  CHECK(s.push("\xC3").empty());
  CHECK(s.finish() == "\xEF\xBF\xBD");
  CHECK(utf8_valid("\xE2\x98\x83"));
  CHECK_FALSE(utf8_valid("\xED\xA0\x80")); // surrogate
  CHECK_FALSE(utf8_valid("\xC0\xAF"));     // overlong
}

TEST_CASE("greedy picks the highest logit, the lowest id on ties") {
  const std::vector<float> l{0.5f, 2.0f, -1.0f, 2.0f};
  sampler g({});
  CHECK(g.sample(l.data(), 4, 0) == 1);
  CHECK(argmax(l.data(), 4) == 1);
  sampler k1({1.0f, 1, 1.0f, 7});
  CHECK(k1.sample(l.data(), 4, 3) == 1);
  sampler p0({1.0f, 0, 0.01f, 7}); // top-p keeps only the most likely
  for (int i = 0; i < 20; ++i) CHECK(p0.sample(l.data(), 4, static_cast<std::uint64_t>(i)) == 1);
}

TEST_CASE("argmax equals a sequential scan: first maximum, ties, NaN and infinities") {
  const auto scan = [](const std::vector<float>& l) {
    int best = 0;
    for (int i = 1; i < static_cast<int>(l.size()); ++i)
      if (l[static_cast<std::size_t>(i)] > l[static_cast<std::size_t>(best)]) best = i;
    return best;
  };
  const float inf = INFINITY;
  std::vector<std::vector<float>> cases{{-inf, -inf, NAN}, {NAN, 5.0f, 6.0f}, {-inf, NAN, 3.0f}, {1.0f}};
  std::uint64_t z = 7;
  for (int c = 0; c < 200; ++c) {
    std::vector<float> l(static_cast<std::size_t>(1 + c % 61));
    for (auto& v : l) {
      z = z * 6364136223846793005ULL + 1442695040888963407ULL;
      const auto r = static_cast<int>(z >> 59); // few distinct values: many ties
      v = r == 0 ? NAN : r == 1 ? -inf : r == 2 ? inf : static_cast<float>(r % 5);
    }
    cases.push_back(l);
  }
  for (const auto& l : cases) CHECK(argmax(l.data(), static_cast<int>(l.size())) == scan(l));
}

TEST_CASE("the draw for token i is a pure function of (seed, i)") {
  CHECK(uniform_draw(5, 9) == uniform_draw(5, 9));
  CHECK(uniform_draw(5, 9) != uniform_draw(5, 10));
  CHECK(uniform_draw(5, 9) != uniform_draw(6, 9));
  std::vector<float> l(50);
  for (std::size_t i = 0; i < l.size(); ++i) l[i] = std::sin(static_cast<float>(i));
  sampler a({0.8f, 20, 0.9f, 42}), b({0.8f, 20, 0.9f, 42});
  std::vector<int> fwd, bwd(40);
  for (int i = 0; i < 40; ++i) fwd.push_back(a.sample(l.data(), 50, static_cast<std::uint64_t>(i)));
  for (int i = 39; i >= 0; --i) bwd[static_cast<std::size_t>(i)] = b.sample(l.data(), 50, static_cast<std::uint64_t>(i));
  CHECK(fwd == bwd); // order of calls does not matter
}

TEST_CASE("sampling frequencies follow softmax(logits / T) with top-k and top-p applied") {
  const std::vector<float> l{1.0f, 0.0f, 2.0f, -1.0f, 0.5f};
  const int n = 200000;
  auto freq = [&](sampling_params p) {
    sampler s(p);
    std::vector<double> f(5);
    for (int i = 0; i < n; ++i) f[static_cast<std::size_t>(s.sample(l.data(), 5, static_cast<std::uint64_t>(i)))] += 1.0 / n;
    return f;
  };
  auto softmax = [&](float T, std::vector<int> keep) {
    std::vector<double> p(5);
    double z = 0;
    for (int i : keep) z += std::exp(l[static_cast<std::size_t>(i)] / T);
    for (int i : keep) p[static_cast<std::size_t>(i)] = std::exp(l[static_cast<std::size_t>(i)] / T) / z;
    return p;
  };
  auto close = [](const std::vector<double>& a, const std::vector<double>& b) {
    for (std::size_t i = 0; i < a.size(); ++i)
      if (std::fabs(a[i] - b[i]) > 0.006) return false;
    return true;
  };
  CHECK(close(freq({1.0f, 0, 1.0f, 1}), softmax(1.0f, {0, 1, 2, 3, 4})));
  CHECK(close(freq({0.5f, 0, 1.0f, 2}), softmax(0.5f, {0, 1, 2, 3, 4})));
  CHECK(close(freq({1.0f, 2, 1.0f, 3}), softmax(1.0f, {2, 0})));
  // probabilities at T=1: 2:.563 0:.207 4:.126 1:.076 3:.028 -> top-p 0.8 keeps {2, 0, 4}
  CHECK(close(freq({1.0f, 0, 0.8f, 4}), softmax(1.0f, {2, 0, 4})));
}

namespace {

// run.c's merge loop, written out plainly: rescan every adjacent pair, merge the first best.
std::vector<int> reference_merge(const vocabulary& v, std::vector<int> ids) {
  std::map<std::string, int> index;
  for (std::size_t i = 0; i < v.pieces.size(); ++i)
    if (v.kinds[i] == token_kind::normal || v.kinds[i] == token_kind::byte) index.emplace(v.pieces[i], static_cast<int>(i));
  while (true) {
    float best = -1e10f;
    int best_id = -1;
    std::size_t at = 0;
    for (std::size_t i = 0; i + 1 < ids.size(); ++i) {
      auto it = index.find(v.pieces[static_cast<std::size_t>(ids[i])] + v.pieces[static_cast<std::size_t>(ids[i + 1])]);
      if (it != index.end() && v.scores[static_cast<std::size_t>(it->second)] > best) {
        best = v.scores[static_cast<std::size_t>(it->second)];
        best_id = it->second;
        at = i;
      }
    }
    if (best_id < 0) return ids;
    ids[at] = best_id;
    ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(at) + 1);
  }
}

} // namespace

TEST_CASE("heap-based merging makes exactly run.c's choices") {
  for (int size : {512, 32000}) {
    const vocabulary v = make_test_vocabulary(size);
    const tokenizer t(v);
    const std::string alphabet = "etaoinshrdlu cmwfgypbvkjxqz  ,.!\xC3\xA9\xE2\x98\x83";
    std::uint64_t state = 12345;
    for (int k = 0; k < 300; ++k) {
      std::string text;
      const int len = 1 + static_cast<int>(uniform_draw(state, static_cast<std::uint64_t>(k)) * 60);
      for (int i = 0; i < len; ++i)
        text += alphabet[static_cast<std::size_t>(uniform_draw(state + 1, static_cast<std::uint64_t>(k * 100 + i)) * static_cast<double>(alphabet.size()))];
      // the unmerged sequence: BOS, prefix space, code points or bytes
      std::map<std::string, int> piece_id;
      for (std::size_t i = 3; i < v.pieces.size(); ++i) piece_id.emplace(v.pieces[i], static_cast<int>(i));
      std::vector<int> raw{1, piece_id.at(" ")};
      for (std::size_t i = 0; i < text.size();) {
        std::size_t n = 1;
        while (i + n < text.size() && n < 4 && (static_cast<unsigned char>(text[i + n]) & 0xC0) == 0x80) ++n;
        auto it = piece_id.find(text.substr(i, n));
        if (it != piece_id.end()) {
          raw.push_back(it->second);
        } else {
          for (std::size_t b = i; b < i + n; ++b) raw.push_back(static_cast<unsigned char>(text[b]) + 3);
        }
        i += n;
      }
      INFO("\"" << text << "\"");
      CHECK(t.encode(text, true) == reference_merge(v, raw));
    }
  }
}
