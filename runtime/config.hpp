#pragma once
// Per-host configuration (CONTRACT §5): JSON with comments and trailing commas, validated into the
// plain structs below. Every problem is reported as one line
// `FILE: $.json.path: expected ..., found ...`; all problems are collected, not just the first.
// Boost.JSON stays inside config.cpp so that this header is cheap to include.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace llorch::config {

// A "host:port" address. IPv6 hosts are stored without brackets.
struct endpoint {
  std::string host;
  uint16_t port = 0; // 0: any free port

  std::string to_string() const; // "127.0.0.1:8080", "[::1]:7070"
  bool is_loopback() const;      // localhost, 127.0.0.0/8, ::1
  bool is_wildcard() const;      // 0.0.0.0 or :: (all interfaces)
  bool operator==(const endpoint& other) const { return host == other.host && port == other.port; }
  bool operator!=(const endpoint& other) const { return !(*this == other); }
};

// Parses "host:port", "[::1]:port", "0.0.0.0:8080". On failure returns nullopt and, when `why` is
// given, stores a phrase such as "a port from 0 to 65535" describing what was expected.
std::optional<endpoint> parse_endpoint(std::string_view text, std::string* why = nullptr);

// Mutual TLS for the cluster transport: all three files or none.
struct tls_files {
  std::string certificate, key, ca;
  bool enabled() const { return !certificate.empty(); }
};

// The CAF middleman link: keepalive_ms drives middleman.heartbeat-interval and dead_after_ms
// middleman.connection-timeout; both sides of a link must use the same values.
struct cluster_settings {
  endpoint listen_or_connect;
  tls_files tls;
  int keepalive_ms = 1000;
  int dead_after_ms = 5000;
};

struct heartbeat_settings {
  int interval_ms = 10000;
  int timeout_ms = 30000; // a node is offline after this long without a heartbeat
};

struct restart_settings {
  int max_restarts = 5; // within `within_s`, then give up and escalate
  int within_s = 60;
  int backoff_initial_ms = 200;
  int backoff_max_ms = 30000;
  int wedged_after_ms = 60000; // an engine with a busy slot and no token for this long is killed
};

struct auth_settings {
  std::string token;          // shared secret; empty: none configured
  bool protect_reads = false; // also require the token on read-only routes
};

struct orchestratord_config {
  endpoint http_listen{"0.0.0.0", 8080};
  std::size_t http_body_limit = 1 << 20;
  cluster_settings cluster{endpoint{"0.0.0.0", 7070}, {}, 1000, 5000};
  heartbeat_settings heartbeat;
  int admission_capacity = 100;
  int admission_retained_tasks = 10000; // ended tasks kept for GET and SSE replay
  std::string admission_policy = "reject";
  std::string placement_strategy = "least-loaded";
  std::string log_level = "info";
  bool cloud_profile = true;
  auth_settings auth;
};

struct model_entry {
  std::string id, path;
};

struct pool_entry {
  std::string id;
  std::vector<int> devices;
  int slots = 1;
  int threads = 0; // the engine's CPU threads; 0: one per core
  std::optional<model_entry> model; // preloaded at start when set
  std::string engine = "llorch";
};

struct pool_managerd_config {
  std::string node_id;
  std::string machine_id;        // default: /etc/machine-id, else the host name
  std::string advertise_address; // default: see default_advertise_address()
  endpoint http_listen{"0.0.0.0", 9200};
  std::size_t http_body_limit = 1 << 20;
  cluster_settings orchestrator; // where orchestratord's cluster port is
  heartbeat_settings heartbeat;
  std::string handoff_dir = "/var/lib/llama-orch/engines";
  restart_settings restart;
  std::vector<model_entry> models; // also holds every model a pool declares inline
  std::vector<pool_entry> pools;
  std::string log_level = "info";
  auth_settings auth;
};

template <class T>
struct load_result {
  std::optional<T> config;         // set exactly when `errors` is empty
  std::vector<std::string> errors; // one line per problem

  bool ok() const { return config.has_value(); }
};

load_result<orchestratord_config> parse_orchestratord_config(std::string_view text,
                                                             std::string_view file_name);
load_result<pool_managerd_config> parse_pool_managerd_config(std::string_view text,
                                                             std::string_view file_name);

// Read and parse a file; an unreadable, oversized or missing file is one clear error.
load_result<orchestratord_config> load_orchestratord_config(const std::string& path);
load_result<pool_managerd_config> load_pool_managerd_config(const std::string& path);

// Environment overrides (CONTRACT §5). LLORCH_API_TOKEN (when set and non-empty) replaces
// auth.token; ORCHESTRATORD_CLOUD_PROFILE (true/false/1/0) replaces cloud_profile. Returns one
// line per problem; the config is left unchanged for a variable that is invalid.
using getenv_function = std::function<const char*(const char*)>;
std::vector<std::string> apply_env(orchestratord_config& config, const getenv_function& getenv_fn);
std::vector<std::string> apply_env(pool_managerd_config& config, const getenv_function& getenv_fn);

// "http://<listen host>:<port>" when the HTTP listener is bound to one address,
// "http://<host name>:<port>" when it listens on all interfaces. A daemon configured with port 0
// calls this again with the port it actually bound.
std::string default_advertise_address(const endpoint& http_listen, uint16_t bound_port);

// True for identifiers used in URLs and file names: [A-Za-z0-9._-], 1 to 64 characters.
bool is_valid_id(std::string_view id);

} // namespace llorch::config
