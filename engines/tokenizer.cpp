#include "engines/tokenizer.hpp"

#include "engines/utf8.hpp"

namespace llorch::engine {

tokenizer::tokenizer(const vocabulary& v) : vocab_(v) {
  index_.reserve(v.pieces.size() * 2);
  for (int b = 0; b < 256; ++b) byte_ids_[b] = -1;
  for (std::size_t i = 0; i < v.pieces.size(); ++i) {
    if (v.kinds[i] == token_kind::control || v.kinds[i] == token_kind::unknown) continue;
    index_.emplace(v.pieces[i], static_cast<int>(i));
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
  // greedy merges by score
  std::string buf;
  while (true) {
    float best_score = -1e10f;
    int best_id = -1;
    std::size_t best_at = 0;
    for (std::size_t k = 0; k + 1 < ids.size(); ++k) {
      buf = vocab_.pieces[static_cast<std::size_t>(ids[k])];
      buf += vocab_.pieces[static_cast<std::size_t>(ids[k + 1])];
      const int id = lookup(buf);
      if (id >= 0 && vocab_.scores[static_cast<std::size_t>(id)] > best_score) {
        best_score = vocab_.scores[static_cast<std::size_t>(id)];
        best_id = id;
        best_at = k;
      }
    }
    if (best_id < 0) break;
    ids[best_at] = best_id;
    ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(best_at) + 1);
  }
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
