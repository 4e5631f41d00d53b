#pragma once
// pool: one configured pool of a GPU node. Runs the pool's llorch-engine replica as a child
// process, follows its state unloaded -> loading -> ready (its handoff file arrived and its engine
// actor answered) -> failed, restarts a replica that exits or crashes with the node's restart
// policy, and reports every state change to the node_agent.
//
// Messages:
//   (preload_atom, model_id, engine)      -> registry_reply (202, 404 MODEL_NOT_FOUND,
//                                            400 ENGINE_NOT_AVAILABLE, 409 POOL_DRAINING)
//   (handoff_atom, handoff_record)         from the handoff watcher
//   (handoff_removed_atom, pool_id, replica_id)
//   (drain_atom, deadline_ms)              -> registry_reply 202: no new streams; the running ones
//                                            finish or, at the deadline, fail over elsewhere; then
//                                            the engine stops and the pool is unloaded
//   (caf::get_atom)                        -> pool_runtime_view
//   engine_generate / engine_cancel        from a task actor (through the node_agent), passed to
//                                          the engine with the pool as observer: the engine streams
//                                          to the task and sends the pool a copy of engine_done
//   engine_done                            that copy: the slot is free
#include "engines/engine_protocol.hpp"
#include "runtime/config.hpp"
#include "runtime/messages.hpp"
#include "runtime/restart_policy.hpp"

#include <caf/io/middleman_actor.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace llorch::metrics {
class registry;
}

namespace llorch {

using preload_atom = caf::atom_constant<caf::atom("preload")>;
using pool_update_atom = caf::atom_constant<caf::atom("poolupd")>;

struct pool_settings {
  pool_status initial; // the pool as configured: ids, slots, engine, models, devices, VRAM
  config::pool_entry pool;
  std::vector<config::model_entry> models; // the node's models: what preload may name
  std::string handoff_dir;
  std::string engine_binary;                // llorch-engine
  int engine_keepalive_ms = 1000;           // the node's orchestrator.keepalive_ms
  std::string orchestrator;                 // the engine's --orchestrator
  std::string tls_certificate, tls_key, tls_ca; // the node's, for the engine's link; empty: plain
  restart_limits restart;
  std::chrono::milliseconds ready_timeout{120000}; // loading for longer is a failed start
  std::chrono::milliseconds wedged_after{60000};   // a busy slot without a token this long
  std::string replica_id = "r0";
};

// The pool plus what only the node knows (for /pools/{id}/status).
struct pool_runtime_view {
  pool_status status;
  bool live = false;      // an engine process runs
  std::int64_t pid = 0;   // 0 when none
  std::string handoff_path;
  std::string endpoint;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pool_runtime_view& x) {
  return f(caf::meta::type_name("pool_runtime_view"), x.status, x.live, x.pid, x.handoff_path,
           x.endpoint);
}

// The end of a stream that failed on the node side (the task actor fails over from it).
engine::engine_done stream_failed(std::uint64_t task_id, std::uint64_t next_index,
                                  std::string why);

// The current node_agent receives (pool_update_atom, pool_status) on every change.
caf::actor spawn_pool(caf::actor_system& sys, pool_settings settings,
                      caf::io::middleman_actor middleman,
                      std::shared_ptr<metrics::registry> metrics);

} // namespace llorch

CAF_BEGIN_TYPE_ID_BLOCK(llorch_pool, caf::first_custom_type_id + 150)
  CAF_ADD_TYPE_ID(llorch_pool, (llorch::pool_runtime_view))
  CAF_ADD_TYPE_ID(llorch_pool, (std::vector<llorch::pool_runtime_view>))
CAF_END_TYPE_ID_BLOCK(llorch_pool)
