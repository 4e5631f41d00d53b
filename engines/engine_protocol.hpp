#pragma once
// Messages between a pool actor (or a task actor) and the engine actor of an llorch-engine
// replica. A generate request carries the actor that receives the stream: one engine_token per
// token, in index order, then one engine_done; a token that ends the stream travels with the end,
// as one message (engine_token, engine_done). What one decode step has for the same actor beyond
// that (tokens or ends of several streams) travels as one engine_step. An observer (the pool
// that placed the request) gets a copy of the engine_done: it tracks slots without relaying the
// tokens. Every type has an
// inspect() and a type ID in the `llorch_engine` block; register it with
// cfg.add_message_types<caf::id_block::llorch_engine>().
#include <caf/all.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace llorch::engine {

struct engine_generate {
  std::uint64_t task_id = 0;
  std::string prompt;                      // text, encoded with BOS by the engine
  std::vector<std::int32_t> resume_ids;    // tokens already streamed (resumption), appended as is
  std::int32_t max_tokens = 16;            // tokens still to generate
  float temperature = 0.0f;
  std::int32_t top_k = 0;
  float top_p = 1.0f;
  std::uint64_t seed = 0;
  bool ignore_eos = false;
  std::uint64_t first_index = 0;           // index of the first token this request produces
  caf::actor reply_to;                     // receives the tokens and the engine_done
  caf::actor observer;                     // optional: a copy of the engine_done; when set, the
                                           // engine watches it (not reply_to) for going down
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, engine_generate& x) {
  return f(caf::meta::type_name("engine_generate"), x.task_id, x.prompt, x.resume_ids, x.max_tokens,
           x.temperature, x.top_k, x.top_p, x.seed, x.ignore_eos, x.first_index, x.reply_to, x.observer);
}

struct engine_cancel {
  std::uint64_t task_id = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, engine_cancel& x) {
  return f(caf::meta::type_name("engine_cancel"), x.task_id);
}

// One generated token. piece is valid UTF-8: bytes of an unfinished character are held back and
// sent with the token that completes it (so a piece may be empty).
struct engine_token {
  std::uint64_t task_id = 0;
  std::uint64_t index = 0;
  std::int32_t token_id = 0;
  std::string piece;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, engine_token& x) {
  return f(caf::meta::type_name("engine_token"), x.task_id, x.index, x.token_id, x.piece);
}

// The end of a stream. reason: stop (EOS), length (max_tokens), context (context full),
// cancelled, or error (then error says why). next_index is the index a resumption would start at;
// tail is text still held back at the end (an unfinished character, sent as U+FFFD), usually empty.
struct engine_done {
  std::uint64_t task_id = 0;
  std::string reason;
  std::uint64_t next_index = 0;
  std::string error;
  std::string tail;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, engine_done& x) {
  return f(caf::meta::type_name("engine_done"), x.task_id, x.reason, x.next_index, x.error,
           x.tail);
}

// What one decode step has for one actor when it is more than one token, one end, or a stream's
// last token and its end: the tokens (one per stream), then the ends; a stream's token comes
// before its end. One message per step and actor instead of one per stream.
struct engine_step {
  std::vector<engine_token> tokens;
  std::vector<engine_done> ends;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, engine_step& x) {
  return f(caf::meta::type_name("engine_step"), x.tokens, x.ends);
}

struct engine_status {
  std::int32_t slots_total = 0;
  std::int32_t slots_free = 0;
  std::int32_t queued = 0;
  std::int32_t ctx_max = 0;
  std::string model_id;
  std::uint64_t tokens_total = 0;    // tokens streamed since start
  std::uint64_t cancelled_total = 0; // streams ended by cancel or by their receiver going down
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, engine_status& x) {
  return f(caf::meta::type_name("engine_status"), x.slots_total, x.slots_free, x.queued, x.ctx_max,
           x.model_id, x.tokens_total, x.cancelled_total);
}

// Asks the engine actor for an engine_status.
using engine_status_atom = caf::atom_constant<caf::atom("engstatus")>;

} // namespace llorch::engine

CAF_BEGIN_TYPE_ID_BLOCK(llorch_engine, caf::first_custom_type_id + 200)
  CAF_ADD_TYPE_ID(llorch_engine, (llorch::engine::engine_generate))
  CAF_ADD_TYPE_ID(llorch_engine, (llorch::engine::engine_cancel))
  CAF_ADD_TYPE_ID(llorch_engine, (llorch::engine::engine_token))
  CAF_ADD_TYPE_ID(llorch_engine, (llorch::engine::engine_done))
  CAF_ADD_TYPE_ID(llorch_engine, (llorch::engine::engine_status))
  CAF_ADD_TYPE_ID(llorch_engine, (llorch::engine::engine_step))
CAF_END_TYPE_ID_BLOCK(llorch_engine)
