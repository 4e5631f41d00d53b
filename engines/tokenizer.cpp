#include "engines/tokenizer.hpp"

#include "engines/utf8.hpp"

#include <algorithm>

namespace llorch::engine {

tokenizer::tokenizer(const vocabulary& v) : vocab_(v) {
  index_.reserve(v.pieces.size() * 2);
  for (int b = 0; b < 256; ++b) byte_ids_[b] = -1;
  for (std::size_t i = 0; i < v.pieces.size(); ++i) {
    if (v.kinds[i] == token_kind::control || v.kinds[i] == token_kind::unknown) continue;
    index_.emplace(v.pieces[i], static_cast<int>(i));
    max_piece_bytes_ = std::max(max_piece_bytes_, v.pieces[i].size());
    std::uint8_t b;
    if (v.kinds[i] == token_kind::byte && parse_byte_piece(v.pieces[i], b))
      byte_ids_[b] = static_cast<int>(i);
  }
}

int tokenizer::lookup(std::string_view piece) const {
  auto it = index_.find(piece);
  return it == index_.end() ? -1 : it->second;
}

std::vector<int> tokenizer::encode(std::string_view text, bool add_bos) const {
  std::vector<int> ids;
  ids.reserve(text.size() + 2);
  if (add_bos) ids.push_back(vocab_.bos);
  if (!text.empty()) ids.push_back(lookup(" ")); // validated to exist
  // one code point at a time (at most 4 bytes), bytes as tokens where the vocabulary lacks it
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t n = 1;
    while (i + n < text.size() && n < 4 && (static_cast<unsigned char>(text[i + n]) & 0xC0) == 0x80)
      ++n;
    const std::string_view cp = text.substr(i, n);
    const int id = lookup(cp);
    if (id >= 0) {
      ids.push_back(id);
    } else {
      for (char c : cp) ids.push_back(byte_ids_[static_cast<unsigned char>(c)]);
    }
    i += n;
  }
  // Greedy merges by score, best first, leftmost among equal scores. A heap of candidate pairs
  // over a linked list gives run.c's choices in O(n log n) instead of a rescan per merge.
  const std::size_t n = ids.size();
  if (n < 2) return ids;
  std::vector<int> tok(ids.begin(), ids.end());
  std::vector<std::ptrdiff_t> prev(n), next(n);
  for (std::size_t k = 0; k < n; ++k) {
    prev[k] = static_cast<std::ptrdiff_t>(k) - 1;
    next[k] = k + 1 < n ? static_cast<std::ptrdiff_t>(k + 1) : -1;
  }
  struct candidate {
    float score;
    std::size_t left, right;
    int left_tok, right_tok, merged;
  };
  const auto worse = [](const candidate& a, const candidate& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  std::vector<candidate> heap;
  std::string buf;
  const auto consider = [&](std::size_t l, std::size_t r) {
    buf = vocab_.pieces[static_cast<std::size_t>(tok[l])];
    buf += vocab_.pieces[static_cast<std::size_t>(tok[r])];
    const int id = lookup(buf);
    if (id < 0) return;
    heap.push_back({vocab_.scores[static_cast<std::size_t>(id)], l, r, tok[l], tok[r], id});
    std::push_heap(heap.begin(), heap.end(), worse);
  };
  for (std::size_t k = 0; k + 1 < n; ++k) consider(k, k + 1);
  std::vector<bool> gone(n, false);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), worse);
    const candidate c = heap.back();
    heap.pop_back();
    // stale when either side was merged away or changed since the pair was seen
    if (gone[c.left] || gone[c.right] || next[c.left] != static_cast<std::ptrdiff_t>(c.right) ||
        tok[c.left] != c.left_tok || tok[c.right] != c.right_tok)
      continue;
    tok[c.left] = c.merged;
    gone[c.right] = true;
    next[c.left] = next[c.right];
    if (next[c.right] >= 0) prev[static_cast<std::size_t>(next[c.right])] = static_cast<std::ptrdiff_t>(c.left);
    if (prev[c.left] >= 0) consider(static_cast<std::size_t>(prev[c.left]), c.left);
    if (next[c.left] >= 0) consider(c.left, static_cast<std::size_t>(next[c.left]));
  }
  ids.clear();
  for (std::ptrdiff_t k = 0; k >= 0; k = next[static_cast<std::size_t>(k)]) ids.push_back(tok[static_cast<std::size_t>(k)]);
  return ids;
}

std::string tokenizer::decode(int prev, int id) const {
  if (id < 0 || id >= size()) return {};
  const auto k = static_cast<std::size_t>(id);
  switch (vocab_.kinds[k]) {
  case token_kind::control:
  case token_kind::unknown:
    return {};
  case token_kind::byte: {
    std::uint8_t b = 0;
    parse_byte_piece(vocab_.pieces[k], b);
    return std::string(1, static_cast<char>(b));
  }
  case token_kind::normal:
    break;
  }
  const std::string& p = vocab_.pieces[k];
  if (prev == vocab_.bos && !p.empty() && p[0] == ' ') return p.substr(1);
  return p;
}

} // namespace llorch::engine
