#pragma once
// JSON for the control plane's HTTP API (CONTRACT §2/§3): messages to JSON and request bodies to
// messages. Boost.JSON stays inside the .cpp.
#include "runtime/messages.hpp"

#include <string>
#include <string_view>

namespace llorch::net {

std::string to_json(const node_info& node);
std::string to_json(const std::vector<node_info>& nodes, std::int32_t online_count);
// A pool as /pools reports it.
std::string to_json(const pool_status& pool);
std::string pools_to_json(const std::vector<pool_status>& pools);
std::string to_json(const registry_reply& reply); // success body of register/heartbeat

// Parse request bodies; false with a message naming the field when the body is not acceptable.
bool parse_registration(std::string_view body, node_info& out, std::string& error);
bool parse_heartbeat(std::string_view body, const std::string& node_id, node_heartbeat& out,
                     std::string& error);
// `{"deadline_ms": N}` (all optional; an empty body is fine); node_id only for pool drains.
bool parse_drain(std::string_view body, std::int64_t& deadline_ms, std::string& node_id,
                 std::string& error);

// A task request (CONTRACT §2 POST /v2/tasks). deadline_ms stays relative (ms from now).
bool parse_task_request(std::string_view body, task_spec& out, std::string& error);

// The runbook's preload body `{"model_id", "engine"}`; engine defaults to "llorch".
bool parse_preload(std::string_view body, std::string& model_id, std::string& engine,
                   std::string& error);

} // namespace llorch::net
