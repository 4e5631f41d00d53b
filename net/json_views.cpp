#include "net/json_views.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <cctype>

namespace json = boost::json;

namespace llorch::net {
namespace {

json::object pool_object(const pool_status& p) {
  json::array models;
  for (auto& m : p.models)
    models.emplace_back(m);
  return json::object{{"pool_id", p.pool_id},
                      {"node_id", p.node_id},
                      {"ready", p.ready},
                      {"draining", p.draining},
                      {"state", p.state},
                      {"slots_total", p.slots_total},
                      {"slots_free", p.slots_free},
                      {"vram_total_bytes", p.vram_total_bytes},
                      {"vram_free_bytes", p.vram_free_bytes},
                      {"engine", p.engine},
                      {"engine_version", p.engine_version},
                      {"model_id", p.model_id},
                      {"models", std::move(models)},
                      {"device_mask", p.device_mask},
                      {"restarts", p.restarts},
                      {"last_error", p.last_error.empty() ? json::value(nullptr)
                                                          : json::value(p.last_error)}};
}

json::object node_object(const node_info& n) {
  json::array gpus;
  for (auto& g : n.capabilities.gpus)
    gpus.push_back(json::object{{"device_id", g.device_id},
                                {"name", g.name},
                                {"vram_total_bytes", g.vram_total_bytes},
                                {"compute_capability", g.compute_capability}});
  json::array pools;
  for (auto& p : n.pools)
    pools.push_back(pool_object(p));
  return json::object{{"node_id", n.node_id},
                      {"machine_id", n.machine_id},
                      {"address", n.address},
                      {"online", n.online},
                      {"status", n.status},
                      {"version", n.version},
                      {"registered_at_ms", n.registered_at_ms},
                      {"last_heartbeat_ms", n.last_heartbeat_ms},
                      {"capabilities", json::object{{"gpus", std::move(gpus)},
                                                    {"cpu_cores", n.capabilities.cpu_cores},
                                                    {"ram_total_bytes",
                                                     n.capabilities.ram_total_bytes}}},
                      {"pools", std::move(pools)}};
}

// Reads optional members with type checks; the first problem wins and names its field.
class reader {
public:
  reader(const json::object& obj, std::string prefix, std::string& error)
    : obj_(obj), prefix_(std::move(prefix)), error_(error) {
  }

  bool ok() const { return error_.empty(); }

  void string(const char* key, std::string& out, bool required = false) {
    auto* v = find(key, required);
    if (!v)
      return;
    if (!v->is_string())
      return fail(key, "must be a string");
    out = std::string(v->get_string());
  }

  void boolean(const char* key, bool& out) {
    auto* v = find(key, false);
    if (!v)
      return;
    if (!v->is_bool())
      return fail(key, "must be true or false");
    out = v->get_bool();
  }

  template <class Int>
  void integer(const char* key, Int& out, std::int64_t lo, std::int64_t hi) {
    auto* v = find(key, false);
    if (!v)
      return;
    std::int64_t x = 0;
    if (v->is_int64())
      x = v->get_int64();
    else if (v->is_uint64() && v->get_uint64() <= static_cast<std::uint64_t>(INT64_MAX))
      x = static_cast<std::int64_t>(v->get_uint64());
    else
      return fail(key, "must be an integer");
    if (x < lo || x > hi)
      return fail(key, "is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    out = static_cast<Int>(x);
  }

  void number(const char* key, double& out, double lo, double hi) {
    auto* v = find(key, false);
    if (!v)
      return;
    if (!v->is_number())
      return fail(key, "must be a number");
    auto x = v->to_number<double>();
    if (!(x >= lo && x <= hi))
      return fail(key, "is out of range [" + json::serialize(json::value(lo)) + ", "
                         + json::serialize(json::value(hi)) + "]");
    out = x;
  }

  const json::array* array(const char* key) {
    auto* v = find(key, false);
    if (!v)
      return nullptr;
    if (!v->is_array()) {
      fail(key, "must be an array");
      return nullptr;
    }
    return &v->get_array();
  }

  const json::object* object(const char* key) {
    auto* v = find(key, false);
    if (!v)
      return nullptr;
    if (!v->is_object()) {
      fail(key, "must be an object");
      return nullptr;
    }
    return &v->get_object();
  }

  void fail(const std::string& key, const std::string& what) {
    if (error_.empty())
      error_ = prefix_ + key + " " + what;
  }

  const std::string& prefix() const { return prefix_; }

private:
  const json::value* find(const char* key, bool required) {
    if (!ok())
      return nullptr;
    auto* v = obj_.if_contains(key);
    if (v && v->is_null())
      v = nullptr;
    if (!v && required)
      fail(key, "is required");
    return v;
  }

  const json::object& obj_;
  std::string prefix_;
  std::string& error_;
};

constexpr std::int64_t max_i32 = INT32_MAX;
constexpr std::int64_t max_bytes = INT64_MAX;

bool parse_pools(reader& r, std::vector<pool_status>& out, std::string& error) {
  auto* pools = r.array("pools");
  if (!r.ok() || !pools)
    return r.ok();
  if (pools->size() > 1024) {
    r.fail("pools", "has more than 1024 entries");
    return false;
  }
  for (std::size_t i = 0; i < pools->size(); ++i) {
    auto name = r.prefix() + "pools[" + std::to_string(i) + "].";
    if (!(*pools)[i].is_object()) {
      error = r.prefix() + "pools[" + std::to_string(i) + "] must be an object";
      return false;
    }
    reader p((*pools)[i].get_object(), name, error);
    pool_status s;
    p.string("pool_id", s.pool_id, true);
    p.string("state", s.state);
    p.boolean("ready", s.ready);
    p.boolean("draining", s.draining);
    p.integer("slots_total", s.slots_total, 0, max_i32);
    p.integer("slots_free", s.slots_free, 0, max_i32);
    p.integer("vram_total_bytes", s.vram_total_bytes, 0, max_bytes);
    p.integer("vram_free_bytes", s.vram_free_bytes, 0, max_bytes);
    p.string("engine", s.engine);
    p.string("engine_version", s.engine_version);
    p.string("model_id", s.model_id);
    p.string("device_mask", s.device_mask);
    p.integer("restarts", s.restarts, 0, max_i32);
    p.string("last_error", s.last_error);
    if (auto* models = p.array("models"))
      for (auto& m : *models) {
        if (!m.is_string()) {
          p.fail("models", "must be an array of strings");
          break;
        }
        s.models.emplace_back(m.get_string());
      }
    if (!p.ok())
      return false;
    if (s.state.empty() || s.state == "unloaded")
      s.state = s.ready ? "ready" : "unloaded";
    out.push_back(std::move(s));
  }
  return true;
}

bool parse_object(std::string_view body, json::value& out, std::string& error) {
  std::error_code ec;
  json::parse_options opts;
  opts.max_depth = 32;
  out = json::parse(json::string_view(body.data(), body.size()), ec, {}, opts);
  if (ec) {
    error = "body is not valid JSON: " + ec.message();
    return false;
  }
  if (!out.is_object()) {
    error = "body must be a JSON object";
    return false;
  }
  return true;
}

} // namespace

std::string to_json(const node_info& node) {
  return json::serialize(node_object(node));
}

std::string to_json(const std::vector<node_info>& nodes, std::int32_t online_count) {
  json::array arr;
  arr.reserve(nodes.size());
  for (auto& n : nodes)
    arr.push_back(node_object(n));
  return json::serialize(json::object{{"count", online_count}, {"nodes", std::move(arr)}});
}

std::string to_json(const pool_status& pool) {
  return json::serialize(pool_object(pool));
}

std::string pools_to_json(const std::vector<pool_status>& pools) {
  json::array arr;
  for (auto& p : pools)
    arr.push_back(pool_object(p));
  return json::serialize(json::object{{"pools", std::move(arr)}});
}

std::string to_json(const registry_reply& reply) {
  json::object obj{{"success", reply.ok()}, {"message", reply.message}};
  if (!reply.node_id.empty())
    obj["node_id"] = reply.node_id;
  if (reply.next_heartbeat_ms > 0)
    obj["next_heartbeat_ms"] = reply.next_heartbeat_ms;
  return json::serialize(obj);
}

bool parse_registration(std::string_view body, node_info& out, std::string& error) {
  json::value v;
  if (!parse_object(body, v, error))
    return false;
  reader r(v.get_object(), "", error);
  r.string("node_id", out.node_id, true);
  r.string("machine_id", out.machine_id);
  r.string("address", out.address);
  r.string("version", out.version);
  if (auto* caps = r.object("capabilities")) {
    reader c(*caps, "capabilities.", error);
    c.integer("cpu_cores", out.capabilities.cpu_cores, 0, max_i32);
    c.integer("ram_total_bytes", out.capabilities.ram_total_bytes, 0, max_bytes);
    if (auto* gpus = c.array("gpus"))
      for (std::size_t i = 0; i < gpus->size() && error.empty(); ++i) {
        if (!(*gpus)[i].is_object()) {
          error = "capabilities.gpus[" + std::to_string(i) + "] must be an object";
          break;
        }
        reader g((*gpus)[i].get_object(), "capabilities.gpus[" + std::to_string(i) + "].", error);
        gpu_info gi;
        g.string("device_id", gi.device_id);
        g.string("name", gi.name);
        g.integer("vram_total_bytes", gi.vram_total_bytes, 0, max_bytes);
        g.string("compute_capability", gi.compute_capability);
        out.capabilities.gpus.push_back(std::move(gi));
      }
  }
  if (!r.ok())
    return false;
  return parse_pools(r, out.pools, error);
}

bool parse_heartbeat(std::string_view body, const std::string& node_id, node_heartbeat& out,
                     std::string& error) {
  out.node_id = node_id;
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos)
    return true; // a bare heartbeat: liveness only
  json::value v;
  if (!parse_object(body, v, error))
    return false;
  auto& obj = v.get_object();
  reader r(obj, "", error);
  // The runbook sends an RFC 3339 string; nodes may send epoch milliseconds. Either is accepted,
  // and the registry stamps its own receive time anyway.
  if (auto* ts = obj.if_contains("timestamp"); ts && !ts->is_string() && !ts->is_number()
                                               && !ts->is_null())
    r.fail("timestamp", "must be a string or a number");
  r.integer("rtt_ms", out.rtt_ms, -1, max_i32);
  if (!r.ok())
    return false;
  return parse_pools(r, out.pools, error);
}

bool parse_drain(std::string_view body, std::int64_t& deadline_ms, std::string& node_id,
                 std::string& error) {
  deadline_ms = 0;
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos)
    return true;
  json::value v;
  if (!parse_object(body, v, error))
    return false;
  reader r(v.get_object(), "", error);
  r.integer("deadline_ms", deadline_ms, 0, 7LL * 24 * 3600 * 1000);
  r.string("node_id", node_id);
  return r.ok();
}

bool parse_task_request(std::string_view body, task_spec& out, std::string& error) {
  json::value v;
  if (!parse_object(body, v, error))
    return false;
  reader r(v.get_object(), "", error);
  r.string("task_id", out.task_id);
  r.string("model", out.model, true);
  r.string("prompt", out.prompt, true);
  if (r.ok() && !v.get_object().contains("max_tokens"))
    r.fail("max_tokens", "is required");
  r.integer("max_tokens", out.max_tokens, 1, 65536);
  double temperature = 0, top_p = 1;
  r.number("temperature", temperature, 0, 10);
  r.number("top_p", top_p, 0, 1);
  out.temperature = static_cast<float>(temperature);
  out.top_p = static_cast<float>(top_p);
  r.integer("top_k", out.top_k, 0, 1 << 20);
  r.integer("seed", out.seed, 0, INT64_MAX);
  std::string priority = "interactive";
  r.string("priority", priority);
  if (r.ok() && priority != "interactive" && priority != "batch")
    r.fail("priority", "must be \"interactive\" or \"batch\"");
  out.interactive = priority == "interactive";
  std::int64_t deadline = 0;
  r.integer("deadline_ms", deadline, 1, 7LL * 24 * 3600 * 1000);
  out.deadline_ms = deadline; // relative here; admission makes it absolute
  if (auto* placement = r.object("placement")) {
    reader p(*placement, "placement.", error);
    p.string("mode", out.placement_mode);
    p.string("pool_id", out.pin_pool);
    p.string("node_id", out.pin_node);
    if (auto* avoid = p.array("avoid_pools"))
      for (auto& a : *avoid) {
        if (!a.is_string()) {
          p.fail("avoid_pools", "must be an array of strings");
          break;
        }
        out.avoid_pools.emplace_back(a.get_string());
      }
    if (p.ok() && out.placement_mode != "auto" && out.placement_mode != "pin"
        && out.placement_mode != "prefer")
      p.fail("mode", "must be \"auto\", \"pin\" or \"prefer\"");
    if (p.ok() && out.placement_mode != "auto" && out.pin_pool.empty() && out.pin_node.empty())
      p.fail("mode", "needs pool_id or node_id");
  }
  if (r.ok() && out.model.empty())
    r.fail("model", "must not be empty");
  if (r.ok() && !out.task_id.empty()) {
    bool valid = out.task_id.size() <= 64
                 && std::all_of(out.task_id.begin(), out.task_id.end(), [](unsigned char c) {
                      return std::isalnum(c) || c == '-' || c == '_' || c == '.';
                    });
    if (!valid)
      r.fail("task_id", "must be 1-64 characters of [A-Za-z0-9._-]");
  }
  return r.ok();
}

bool parse_preload(std::string_view body, std::string& model_id, std::string& engine,
                   std::string& error) {
  json::value v;
  if (!parse_object(body, v, error))
    return false;
  reader r(v.get_object(), "", error);
  r.string("model_id", model_id, true);
  engine = "llorch";
  r.string("engine", engine);
  return r.ok();
}

} // namespace llorch::net
