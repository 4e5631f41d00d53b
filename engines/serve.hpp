#pragma once
// `llorch-engine serve`: the replica process. Loads the model, checks that the slots' KV caches
// fit in memory, publishes the engine actor on loopback (port 0), writes the handoff file
// (CONTRACT §4) atomically, and on SIGTERM/SIGINT removes it and returns 0.
#include <cstdint>
#include <string>

#include "engines/result.hpp"

namespace llorch::engine {

struct serve_options {
  std::string model_path;
  std::string tokenizer_path;
  std::string model_id;      // defaults to the model file's name
  std::string handoff_dir;
  std::string pool_id;
  std::string replica_id = "0";
  std::string device_mask = "cpu";
  std::string host = "127.0.0.1";
  int slots = 4;
  int context = 0; // 0 = the model's seq_len
  int threads = 1;
  // CAF heartbeat towards the pool-managerd that started it: its link times out an idle engine
  // that sends nothing for its cluster.dead_after_ms
  int keepalive_ms = 1000;
  // orchestratord's cluster port ("host:port"): the engine links to it so that its tokens skip
  // the node's network thread (orchestrator_link.hpp); empty: tokens go through the node
  std::string orchestrator;
  // Mutual TLS for that link (the node's PEM files): all three or none
  std::string tls_certificate, tls_key, tls_ca;
};

struct handoff_info {
  std::string pool_id, replica_id, engine_version, model_id, model_path, endpoint, device_mask;
  std::int64_t pid = 0;
  int slots_total = 0, ctx_max = 0;
};

// <handoff_dir>/<pool_id>-<replica_id>.json
std::string handoff_path(const std::string& dir, const std::string& pool_id, const std::string& replica_id);

// Writes the handoff JSON to a temp file in the same directory, fsyncs, renames.
status write_handoff(const std::string& path, const handoff_info& h);

// Runs until SIGTERM or SIGINT; the error (model, memory, publish, handoff) is a message for the
// caller to print and exit non-zero.
status run_serve(const serve_options& o);

} // namespace llorch::engine
