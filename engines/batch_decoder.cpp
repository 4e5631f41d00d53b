#include "engines/batch_decoder.hpp"

namespace llorch::engine {

const char* finish_reason_name(finish_reason r) {
  switch (r) {
  case finish_reason::none: return "none";
  case finish_reason::eos: return "stop";
  case finish_reason::max_tokens: return "length";
  case finish_reason::context_full: return "context";
  case finish_reason::cancelled: return "cancelled";
  }
  return "?";
}

batch_decoder::batch_decoder(std::shared_ptr<const model> m, int threads, int slots, int context)
    : transformer_(std::move(m), threads), context_(context) {
  const model_config& c = transformer_.config();
  if (context_ <= 0 || context_ > c.seq_len) context_ = c.seq_len;
  slots_.resize(static_cast<std::size_t>(std::max(1, slots)));
  for (auto& s : slots_) s.cache = std::make_unique<kv_cache>(c, context_);
}

int batch_decoder::free_slots() const {
  int n = 0;
  for (const auto& s : slots_) n += s.busy ? 0 : 1;
  return n;
}

std::size_t batch_decoder::kv_bytes() const {
  std::size_t n = 0;
  for (const auto& s : slots_) n += s.cache->bytes();
  return n;
}

status batch_decoder::submit(decode_request r) {
  const int vocab = transformer_.config().vocab_size;
  if (r.prompt.empty()) return fail("the prompt has no tokens");
  if (static_cast<int>(r.prompt.size()) > context_)
    return fail("the prompt has " + std::to_string(r.prompt.size()) +
                " tokens, more than the context of " + std::to_string(context_));
  for (int t : r.prompt)
    if (t < 0 || t >= vocab) return fail("prompt token id " + std::to_string(t) + " is outside the vocabulary");
  if (r.max_tokens < 0) return fail("max_tokens is negative");
  for (auto& s : slots_) {
    if (s.busy && s.req.id == r.id) return fail("request " + std::to_string(r.id) + " is already running");
  }
  for (auto& s : slots_) {
    if (s.busy) continue;
    s.busy = true;
    s.tokens = r.prompt;
    s.fed = 0;
    s.generated = 0;
    s.pick.emplace(r.sampling);
    s.req = std::move(r);
    return done{};
  }
  return fail("no free slot (all " + std::to_string(slots_.size()) + " are busy)");
}

bool batch_decoder::cancel(std::uint64_t id) {
  for (auto& s : slots_)
    if (s.busy && s.req.id == id) {
      s.busy = false;
      return true;
    }
  return false;
}

std::vector<decode_event> batch_decoder::step() {
  std::vector<decode_event> events;
  rows_.clear();
  std::vector<slot*> order;
  for (auto& s : slots_) {
    if (!s.busy) continue;
    if (s.req.max_tokens == 0) {
      s.busy = false;
      events.push_back({s.req.id, -1, s.req.first_index, finish_reason::max_tokens});
      continue;
    }
    const int n = static_cast<int>(s.tokens.size());
    for (int p = s.fed; p < n; ++p)
      rows_.push_back({s.cache.get(), s.tokens[static_cast<std::size_t>(p)], p, p == n - 1});
    s.fed = n;
    order.push_back(&s);
  }
  if (rows_.empty()) return events;
  transformer_.forward(rows_, logits_);
  const int vocab = transformer_.config().vocab_size;
  for (std::size_t k = 0; k < order.size(); ++k) {
    slot& s = *order[k];
    const std::uint64_t index = s.req.first_index + static_cast<std::uint64_t>(s.generated);
    const int tok = s.pick->sample(logits_.data() + k * static_cast<std::size_t>(vocab), vocab, index);
    s.tokens.push_back(tok);
    ++s.generated;
    decode_event e{s.req.id, tok, index, finish_reason::none};
    if (tok == transformer_.weights().vocab.eos && !s.req.ignore_eos) e.finished = finish_reason::eos;
    else if (s.generated >= s.req.max_tokens) e.finished = finish_reason::max_tokens;
    else if (static_cast<int>(s.tokens.size()) > context_) e.finished = finish_reason::context_full;
    if (e.finished != finish_reason::none) s.busy = false;
    events.push_back(e);
  }
  return events;
}

} // namespace llorch::engine
