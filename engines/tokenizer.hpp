#pragma once
// SentencePiece-style BPE over a model's vocabulary, following llama2.c's run.c so that prompt
// encodings match it exactly: a prefix space, code points looked up whole with byte
// fallback, then repeated merging of the adjacent pair whose merged piece scores highest
// (leftmost on ties).
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engines/model.hpp"

namespace llorch::engine {

class tokenizer {
public:
  explicit tokenizer(const vocabulary& v);

  std::vector<int> encode(std::string_view text, bool add_bos) const;

  // The bytes token `id` stands for after `prev` (SentencePiece drops the leading space of the
  // first piece after BOS; control tokens print nothing; byte tokens are their byte).
  std::string decode(int prev, int id) const;

  int bos() const { return vocab_.bos; }
  int eos() const { return vocab_.eos; }
  int size() const { return static_cast<int>(vocab_.pieces.size()); }
  // The longest piece: text of more than n * max_piece_bytes() bytes encodes to more than n tokens.
  std::size_t max_piece_bytes() const { return max_piece_bytes_; }

private:
  int lookup(std::string_view piece) const;

  const vocabulary& vocab_;
  std::unordered_map<std::string_view, int> index_;
  int byte_ids_[256];
  std::size_t max_piece_bytes_ = 1;
};

} // namespace llorch::engine
