#pragma once
// Continuous batching over a fixed number of slots, each with its own KV cache. A submitted
// request joins at the next step (its prompt is prefilled in that step alongside the others'
// decode rows); a finished or cancelled one leaves and frees its slot. Token i of a request is
// sampled with draw index first_index + i, so resuming a stream reproduces it exactly.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engines/cpu_transformer.hpp"
#include "engines/result.hpp"
#include "engines/sampler.hpp"

namespace llorch::engine {

enum class finish_reason { none, eos, max_tokens, context_full, cancelled };
const char* finish_reason_name(finish_reason r);

struct decode_request {
  std::uint64_t id = 0;
  std::vector<int> prompt; // token ids, BOS first
  int max_tokens = 16;
  sampling_params sampling;
  bool ignore_eos = false;
  std::uint64_t first_index = 0;
};

struct decode_event {
  std::uint64_t id = 0;
  int token = -1;           // -1 when the event only reports the end
  std::uint64_t index = 0;  // index of the token in the request's stream
  finish_reason finished = finish_reason::none;
};

class batch_decoder {
public:
  batch_decoder(std::shared_ptr<const model> m, int threads, int slots, int context);

  int slots() const { return static_cast<int>(slots_.size()); }
  int free_slots() const;
  int active() const { return slots() - free_slots(); }
  int context() const { return context_; }
  std::size_t kv_bytes() const;

  // Takes a free slot; an error when none is free or the request cannot run.
  status submit(decode_request r);
  // Ends a request before the next step (its slot is free at once).
  bool cancel(std::uint64_t id);
  // One forward step over every active request; returns the tokens produced.
  std::vector<decode_event> step();

  cpu_transformer& transformer() { return transformer_; }

private:
  struct slot {
    std::unique_ptr<kv_cache> cache;
    bool busy = false;
    decode_request req;
    std::vector<int> tokens; // prompt + generated
    int fed = 0;             // tokens whose keys/values are in the cache
    int generated = 0;
    std::optional<sampler> pick;
  };

  cpu_transformer transformer_;
  int context_;
  std::vector<slot> slots_;
  std::vector<batch_row> rows_;
  std::vector<float> logits_;
};

} // namespace llorch::engine
