#include "net/openai_api.hpp"

#include "actors/control/admission_queue.hpp"
#include "actors/control/node_registry.hpp"
#include "actors/control/task.hpp"
#include "net/actor_bridge.hpp"
#include "net/http_router.hpp"
#include "net/task_api.hpp"
#include "runtime/clock.hpp"

#include <boost/json.hpp>

#include <random>
#include <set>

namespace llorch::net {
namespace {

namespace json = boost::json;
using exchange_ptr = std::shared_ptr<http_exchange>;

struct openai_request {
  bool chat = false;
  bool stream = false;
  std::string model;
  std::string id;      // cmpl-… / chatcmpl-…
  std::int64_t created = 0;
  task_spec spec;
};

// A simple, documented chat template: one "Role: content" line per message, then "Assistant:".
std::string chat_prompt(const json::array& messages, std::string& error) {
  std::string out;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    auto* m = messages[i].if_object();
    auto* role = m ? m->if_contains("role") : nullptr;
    auto* content = m ? m->if_contains("content") : nullptr;
    if (!role || !role->is_string() || !content || !content->is_string()) {
      error = "messages[" + std::to_string(i) + "] needs a string role and a string content";
      return {};
    }
    std::string r(role->get_string());
    if (r != "system" && r != "user" && r != "assistant") {
      error = "messages[" + std::to_string(i) + "].role must be system, user or assistant";
      return {};
    }
    r[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(r[0])));
    out += r + ": " + std::string(content->get_string()) + "\n";
  }
  return out + "Assistant:";
}

bool parse_openai(std::string_view body, bool chat, openai_request& req, std::string& error) {
  std::error_code ec;
  json::parse_options opts;
  opts.max_depth = 32;
  auto v = json::parse(json::string_view(body.data(), body.size()), ec, {}, opts);
  if (ec || !v.is_object()) {
    error = ec ? "body is not valid JSON: " + ec.message() : "body must be a JSON object";
    return false;
  }
  auto& o = v.get_object();
  auto str = [&](const char* key, std::string& out) {
    if (auto* x = o.if_contains(key); x && !x->is_null()) {
      if (!x->is_string())
        return error = std::string(key) + " must be a string", false;
      out = std::string(x->get_string());
    }
    return true;
  };
  auto num = [&](const char* key, double& out, double lo, double hi) {
    if (auto* x = o.if_contains(key); x && !x->is_null()) {
      if (!x->is_number() || x->to_number<double>() < lo || x->to_number<double>() > hi)
        return error = std::string(key) + " must be a number in [" + json::serialize(json::value(lo))
                       + ", " + json::serialize(json::value(hi)) + "]",
               false;
      out = x->to_number<double>();
    }
    return true;
  };
  req.chat = chat;
  auto& spec = req.spec;
  if (!str("model", req.model))
    return false;
  if (req.model.empty())
    return error = "model is required", false;
  spec.model = req.model;
  if (chat) {
    auto* msgs = o.if_contains("messages");
    if (!msgs || !msgs->is_array() || msgs->get_array().empty())
      return error = "messages must be a non-empty array", false;
    spec.prompt = chat_prompt(msgs->get_array(), error);
    if (!error.empty())
      return false;
  } else {
    auto* p = o.if_contains("prompt");
    if (!p || !p->is_string())
      return error = "prompt must be a string", false;
    spec.prompt = std::string(p->get_string());
  }
  double max_tokens = chat ? 256 : 16, temperature = 1, top_p = 1, seed = 0;
  const char* max_key = chat && o.contains("max_completion_tokens") ? "max_completion_tokens"
                                                                    : "max_tokens";
  if (!num(max_key, max_tokens, 1, 65536) || !num("temperature", temperature, 0, 2)
      || !num("top_p", top_p, 0, 1) || !num("seed", seed, 0, 9007199254740991.0))
    return false;
  if (auto* s = o.if_contains("stream"); s && !s->is_null()) {
    if (!s->is_bool())
      return error = "stream must be true or false", false;
    req.stream = s->get_bool();
  }
  for (auto* unsupported : {"stop", "n", "logprobs", "suffix", "tools"})
    if (auto* x = o.if_contains(unsupported); x && !x->is_null())
      return error = std::string(unsupported) + " is not supported by this server", false;
  spec.max_tokens = static_cast<std::int32_t>(max_tokens);
  spec.temperature = static_cast<float>(temperature);
  spec.top_p = static_cast<float>(top_p);
  spec.seed = static_cast<std::uint64_t>(seed);
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char id[40];
  std::snprintf(id, sizeof(id), "%s-%016llx", chat ? "chatcmpl" : "cmpl",
                static_cast<unsigned long long>(rng()));
  req.id = id;
  spec.task_id = id;
  req.created = wall_clock_ms() / 1000;
  return true;
}

json::object choice(const openai_request& req, const std::string& text, json::value finish,
                    bool first_chunk) {
  json::object c{{"index", 0}, {"finish_reason", std::move(finish)}};
  if (!req.chat) {
    c["text"] = text;
    c["logprobs"] = nullptr;
  } else if (req.stream) {
    json::object delta;
    if (first_chunk)
      delta["role"] = "assistant";
    if (!text.empty())
      delta["content"] = text;
    c["delta"] = std::move(delta);
  } else {
    c["message"] = json::object{{"role", "assistant"}, {"content", text}};
  }
  return c;
}

json::object envelope(const openai_request& req, json::object choice_obj) {
  const char* object = !req.chat ? "text_completion"
                       : req.stream ? "chat.completion.chunk" : "chat.completion";
  return json::object{{"id", req.id},
                      {"object", object},
                      {"created", req.created},
                      {"model", req.model},
                      {"choices", json::array{std::move(choice_obj)}}};
}

// Turns a task's events into the OpenAI response: chunks as they come, or one body at the end.
struct listener_state {
  openai_request req;
  exchange_ptr ex;
  std::string text;
  bool first = true;
};

caf::behavior openai_listener(caf::stateful_actor<listener_state>* self, openai_request req,
                              exchange_ptr ex) {
  self->state.req = std::move(req);
  self->state.ex = std::move(ex);
  return {
    [self](task_event_atom, const std::string& name, const std::string& data) {
      auto& st = self->state;
      auto ev = json::parse(data);
      if (name == "token") {
        auto piece = std::string(ev.at("t").as_string());
        if (!st.req.stream) {
          st.text += piece;
          return;
        }
        if (st.first && !st.ex->start_stream(200, "text/event-stream"))
          return self->quit();
        auto chunk = envelope(st.req, choice(st.req, piece, nullptr, st.first));
        st.first = false;
        if (!st.ex->write("data: " + json::serialize(chunk) + "\n\n"))
          self->quit();
      } else if (name == "end") {
        std::string reason(ev.at("finish_reason").as_string());
        if (!st.req.stream) {
          auto body = envelope(st.req, choice(st.req, st.text, json::value(reason), true));
          body["usage"] = json::object{{"completion_tokens", ev.at("tokens_out")}};
          st.ex->respond(json_response(200, json::serialize(body)));
        } else {
          if (st.first)
            st.ex->start_stream(200, "text/event-stream");
          auto chunk = envelope(st.req, choice(st.req, "", json::value(reason), st.first));
          st.ex->write("data: " + json::serialize(chunk) + "\n\n");
          st.ex->write("data: [DONE]\n\n");
          st.ex->finish();
        }
        self->quit();
      } else if (name == "error") {
        std::string code(ev.at("code").as_string());
        std::string message(ev.at("message").as_string());
        if (!st.req.stream || st.first) {
          st.ex->respond(error_response(503, code, message, true, 1000));
        } else {
          st.ex->write("data: " + json::serialize(json::object{{"error", ev}}) + "\n\n");
          st.ex->finish();
        }
        self->quit();
      }
    },
  };
}

void run(caf::actor_system& sys, const std::shared_ptr<const task_directory>& tasks, exchange_ptr ex,
         bool chat) {
  openai_request req;
  std::string error;
  if (!parse_openai(ex->request().body, chat, req, error))
    return ex->respond(error_response(400, "INVALID_PARAMS", error));
  auto* system = &sys;
  submit_task(sys, ex, req.spec, [system, tasks, ex, req](const submit_reply& r) {
    auto listener = system->spawn(openai_listener, req, ex); // it answers from here on
    // A streaming client that goes away cancels its task (frees the engine slot).
    ex->on_close([task = r.task] { caf::anon_send(task, cancel_atom::value); });
    if (auto stream = tasks->find(r.task_id).stream)
      stream->subscribe(listener);
  });
}

} // namespace

void add_openai_routes(http_router& router, caf::actor_system& sys,
                       std::shared_ptr<const task_directory> tasks) {
  auto* system = &sys;
  router.add("GET", "/v1/models", route_access::token, [system](exchange_ptr ex) {
    ask(*system, current_node_registry(*system), ex,
        [ex](const placement_snapshot& snap) {
          std::set<std::string> ids;
          for (auto& n : snap.nodes)
            for (auto& p : n.pools) {
              if (!p.model_id.empty())
                ids.insert(p.model_id);
              ids.insert(p.models.begin(), p.models.end());
            }
          json::array data;
          for (auto& id : ids)
            data.push_back(json::object{
              {"id", id}, {"object", "model"}, {"created", 0}, {"owned_by", "llama-orch"}});
          ex->respond(json_response(
            200, json::serialize(json::object{{"object", "list"}, {"data", std::move(data)}})));
        },
        placement_atom::value);
  });
  router.add("POST", "/v1/completions", route_access::token,
             [system, tasks](exchange_ptr ex) { run(*system, tasks, ex, false); });
  router.add("POST", "/v1/chat/completions", route_access::token,
             [system, tasks](exchange_ptr ex) { run(*system, tasks, ex, true); });
}

} // namespace llorch::net
