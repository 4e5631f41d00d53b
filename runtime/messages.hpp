#pragma once
// Every message exchanged between actors of llama-orch, across processes included. Each type has an
// inspect() and a type ID in the `llorch` block; every process registers the block at start-up
// (runtime/bootstrap), so a type is never sent as an empty message.
#include <caf/all.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace llorch {

struct gpu_info {
  std::string device_id;
  std::string name;
  std::uint64_t vram_total_bytes = 0;
  std::string compute_capability;
};

struct node_capabilities {
  std::vector<gpu_info> gpus;
  std::int32_t cpu_cores = 0;
  std::uint64_t ram_total_bytes = 0;
};

// One pool as its node sees it (CONTRACT `Pool`), plus the local state machine word.
struct pool_status {
  std::string pool_id;
  std::string node_id;
  std::string state = "unloaded"; // unloaded|loading|ready|draining|failed
  bool ready = false;
  bool draining = false;
  std::int32_t slots_total = 0;
  std::int32_t slots_free = 0;
  std::uint64_t vram_total_bytes = 0;
  std::uint64_t vram_free_bytes = 0;
  std::string engine;
  std::string engine_version;
  std::string model_id;
  std::vector<std::string> models;
  std::string device_mask;
  std::int32_t restarts = 0;
  std::string last_error;
  // While ready: the engine's actor and the pool's own. orchestratord sends a placed task's
  // request straight to the engine and tells the pool, which is then off the way to the first
  // token (docs/tasks.md). Not part of any JSON view.
  caf::actor engine_actor;
  caf::actor pool_actor;
};

// A node as the registry knows it (CONTRACT `Node`). The first block is what the node reports;
// the second is owned by the registry.
struct node_info {
  std::string node_id;
  std::string machine_id;
  std::string address;
  std::string version;
  node_capabilities capabilities;
  std::vector<pool_status> pools;

  std::string status = "registering"; // registering|online|draining|offline
  bool online = false;
  std::int64_t registered_at_ms = 0;
  std::int64_t last_heartbeat_ms = 0;
};

// A heartbeat: liveness plus the status of the pools it lists. rtt_ms is the round trip the node
// measured for its previous heartbeat (-1 if none yet): the pool health-check latency.
struct node_heartbeat {
  std::string node_id;
  std::int64_t timestamp_ms = 0;
  std::vector<pool_status> pools;
  std::int32_t rtt_ms = -1;
};

// The registry's answer to register / heartbeat / deregister / drain, in HTTP terms so that the HTTP
// facade and the cluster transport share one code path: status 200/202/204 on success, else the
// status and error code of CONTRACT §1.
struct registry_reply {
  std::int32_t status = 200;
  std::string code;
  std::string message;
  std::string node_id;
  std::int64_t next_heartbeat_ms = 0;
  bool ok() const { return status >= 200 && status < 300; }

  static registry_reply make(std::int32_t status, std::string code, std::string message,
                             std::string node_id = {}) {
    registry_reply r;
    r.status = status;
    r.code = std::move(code);
    r.message = std::move(message);
    r.node_id = std::move(node_id);
    return r;
  }
};

// Answer to a single-node query: found is false for an unknown id.
struct node_lookup {
  bool found = false;
  node_info node;
};

// Cluster summary for /health.
struct cluster_summary {
  std::int32_t nodes_online = 0;
  std::int32_t pools_available = 0;
};

// A task as admitted (CONTRACT §2 task request, validated).
struct task_spec {
  std::string task_id;
  std::string model;
  std::string prompt;
  std::int32_t max_tokens = 16;
  float temperature = 0.0f;
  std::int32_t top_k = 0;
  float top_p = 1.0f;
  std::uint64_t seed = 0;
  bool interactive = true;
  std::int64_t deadline_ms = 0; // wall-clock ms; the task ends with an error if not done by then
  std::string placement_mode = "auto";
  std::string pin_pool;
  std::string pin_node;
  std::vector<std::string> avoid_pools;
};

// Admission's answer, in HTTP terms (202, 404 MODEL_NOT_FOUND, 429 QUEUE_FULL, 503 ...).
struct submit_reply {
  std::int32_t status = 202;
  std::string code;
  std::string message;
  std::int64_t retry_after_ms = 0;
  std::string task_id;
  std::int64_t queue_position = 0;
  std::int64_t predicted_start_ms = -1;
  caf::actor task; // the task's actor when admitted (202)
};

// What placement needs from the registry: the nodes and, aligned with them, their agents
// (invalid for nodes registered over HTTP, which cannot run tasks).
struct placement_snapshot {
  std::vector<node_info> nodes;
  std::vector<caf::actor> agents;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, gpu_info& x) {
  return f(caf::meta::type_name("gpu_info"), x.device_id, x.name, x.vram_total_bytes,
           x.compute_capability);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_capabilities& x) {
  return f(caf::meta::type_name("node_capabilities"), x.gpus, x.cpu_cores, x.ram_total_bytes);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pool_status& x) {
  return f(caf::meta::type_name("pool_status"), x.pool_id, x.node_id, x.state, x.ready, x.draining,
           x.slots_total, x.slots_free, x.vram_total_bytes, x.vram_free_bytes, x.engine,
           x.engine_version, x.model_id, x.models, x.device_mask, x.restarts, x.last_error,
           x.engine_actor, x.pool_actor);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_info& x) {
  return f(caf::meta::type_name("node_info"), x.node_id, x.machine_id, x.address, x.version,
           x.capabilities, x.pools, x.status, x.online, x.registered_at_ms, x.last_heartbeat_ms);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_heartbeat& x) {
  return f(caf::meta::type_name("node_heartbeat"), x.node_id, x.timestamp_ms, x.pools, x.rtt_ms);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, registry_reply& x) {
  return f(caf::meta::type_name("registry_reply"), x.status, x.code, x.message, x.node_id,
           x.next_heartbeat_ms);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_lookup& x) {
  return f(caf::meta::type_name("node_lookup"), x.found, x.node);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, cluster_summary& x) {
  return f(caf::meta::type_name("cluster_summary"), x.nodes_online, x.pools_available);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, task_spec& x) {
  return f(caf::meta::type_name("task_spec"), x.task_id, x.model, x.prompt, x.max_tokens,
           x.temperature, x.top_k, x.top_p, x.seed, x.interactive, x.deadline_ms,
           x.placement_mode, x.pin_pool, x.pin_node, x.avoid_pools);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, submit_reply& x) {
  return f(caf::meta::type_name("submit_reply"), x.status, x.code, x.message, x.retry_after_ms,
           x.task_id, x.queue_position, x.predicted_start_ms, x.task);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, placement_snapshot& x) {
  return f(caf::meta::type_name("placement_snapshot"), x.nodes, x.agents);
}

// Atoms (CAF 0.17: at most 10 characters).
using register_atom = caf::atom_constant<caf::atom("register")>;
using heartbeat_atom = caf::atom_constant<caf::atom("heartbeat")>;
using deregister_atom = caf::atom_constant<caf::atom("deregister")>;
using drain_atom = caf::atom_constant<caf::atom("drain")>;
using pool_atom = caf::atom_constant<caf::atom("pool")>;
using sweep_atom = caf::atom_constant<caf::atom("sweep")>;
using summary_atom = caf::atom_constant<caf::atom("summary")>;
using connect_timer_atom = caf::atom_constant<caf::atom("connectt")>;
using beat_timer_atom = caf::atom_constant<caf::atom("beatt")>;
using placement_atom = caf::atom_constant<caf::atom("placement")>;
using submit_atom = caf::atom_constant<caf::atom("submit")>;
using task_atom = caf::atom_constant<caf::atom("task")>;
using generate_atom = caf::atom_constant<caf::atom("generate")>;
// (dispatched_atom, stream id, first_index, reply_to, engine) to a pool: orchestratord sent that
// stream's request straight to that engine
using dispatched_atom = caf::atom_constant<caf::atom("dispatched")>;
using cancel_atom = caf::atom_constant<caf::atom("cancel")>;
using subscribe_atom = caf::atom_constant<caf::atom("subscribe")>;
using requeue_atom = caf::atom_constant<caf::atom("requeue")>;
using fail_atom = caf::atom_constant<caf::atom("fail")>;
using retire_atom = caf::atom_constant<caf::atom("retire")>;
using task_event_atom = caf::atom_constant<caf::atom("taskevent")>;
using tick_timer_atom = caf::atom_constant<caf::atom("tickt")>;
using pass_atom = caf::atom_constant<caf::atom("pass")>;
using release_atom = caf::atom_constant<caf::atom("release")>;

} // namespace llorch

CAF_BEGIN_TYPE_ID_BLOCK(llorch, caf::first_custom_type_id)
  CAF_ADD_TYPE_ID(llorch, (llorch::gpu_info))
  CAF_ADD_TYPE_ID(llorch, (llorch::node_capabilities))
  CAF_ADD_TYPE_ID(llorch, (llorch::pool_status))
  CAF_ADD_TYPE_ID(llorch, (std::vector<llorch::pool_status>))
  CAF_ADD_TYPE_ID(llorch, (llorch::node_info))
  CAF_ADD_TYPE_ID(llorch, (std::vector<llorch::node_info>))
  CAF_ADD_TYPE_ID(llorch, (llorch::node_heartbeat))
  CAF_ADD_TYPE_ID(llorch, (llorch::registry_reply))
  CAF_ADD_TYPE_ID(llorch, (llorch::node_lookup))
  CAF_ADD_TYPE_ID(llorch, (llorch::cluster_summary))
  CAF_ADD_TYPE_ID(llorch, (llorch::task_spec))
  CAF_ADD_TYPE_ID(llorch, (llorch::submit_reply))
  CAF_ADD_TYPE_ID(llorch, (llorch::placement_snapshot))
CAF_END_TYPE_ID_BLOCK(llorch)
