#include "runtime/supervisor.hpp"

#include "runtime/log.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/sec.hpp>

#include <memory>
#include <optional>
#include <random>
#include <utility>

namespace llorch {

namespace {

// Self-message that (re)starts child `index`; `generation` lets a stale timer be ignored.
using start_child_atom = caf::atom_constant<caf::atom("sv_start")>;

enum class child_status { running, restarting, stopped };

struct child_entry {
  child_spec spec;
  restart_policy policy;
  child_status status = child_status::restarting;
  caf::actor handle;
  std::uint64_t generation = 0;
  int total_restarts = 0;
  bool started_once = false;
  std::string last_reason;                // why the previous incarnation went down
  std::chrono::milliseconds last_delay{0}; // the backoff waited before this start
};

struct supervisor_state {
  std::string name;
  supervisor_hooks hooks;
  std::vector<child_entry> children;
  bool gave_up = false; // set just before quit: nothing else may be started
};

using state_ptr = std::shared_ptr<supervisor_state>;

// A different jitter stream per child and per process, so siblings do not restart in lockstep.
std::uint64_t jitter_seed(std::size_t index) {
  std::random_device rd;
  return (static_cast<std::uint64_t>(rd()) << 32) ^ rd() ^ (index * 0x9e3779b97f4a7c15ULL);
}

void start_child(caf::event_based_actor* self, const state_ptr& st, std::size_t index);

// The child at `index` is gone (crash or failed start): schedule its restart or give up.
void handle_failure(caf::event_based_actor* self, const state_ptr& st, std::size_t index,
                    std::string reason) {
  auto& c = st->children[index];
  c.handle = caf::actor{};
  c.status = child_status::restarting;
  c.last_reason = std::move(reason);
  auto now = restart_policy::clock::now();
  auto delay = c.policy.on_failure(now);
  auto in_window = c.policy.restarts_in_window(now);
  if (!delay) {
    auto within_ms = static_cast<std::int64_t>(c.policy.limits().within.count());
    log::error("supervisor_gave_up", {{"supervisor", st->name},
                                      {"child", c.spec.name},
                                      {"reason", c.last_reason},
                                      {"failures", in_window},
                                      {"max_restarts", c.policy.limits().max_restarts},
                                      {"within_ms", within_ms}});
    if (st->hooks.on_give_up)
      st->hooks.on_give_up(c.spec.name);
    c.status = child_status::stopped;
    st->gave_up = true;
    auto what = "supervisor '" + st->name + "': child '" + c.spec.name + "' failed "
                + std::to_string(in_window) + " times within " + std::to_string(within_ms)
                + " ms (limit " + std::to_string(c.policy.limits().max_restarts)
                + "), last reason: " + c.last_reason;
    self->quit(make_supervisor_error(supervisor_errc::gave_up, std::move(what)));
    return;
  }
  c.last_delay = *delay;
  auto gen = ++c.generation;
  log::warn("child_down", {{"supervisor", st->name},
                           {"child", c.spec.name},
                           {"reason", c.last_reason},
                           {"delay_ms", static_cast<std::int64_t>(delay->count())},
                           {"restarts", in_window}});
  // A delayed message, never a sleep: the supervisor keeps serving its other children.
  self->delayed_send(self, *delay, start_child_atom::value, static_cast<std::uint64_t>(index), gen);
}

void start_child(caf::event_based_actor* self, const state_ptr& st, std::size_t index) {
  auto& c = st->children[index];
  auto child = c.spec.start ? c.spec.start(self) : caf::actor{};
  if (!child) {
    handle_failure(self, st, index, "start returned no actor");
    return;
  }
  self->monitor(child);
  c.handle = child;
  c.status = child_status::running;
  bool restarted = c.started_once;
  c.started_once = true;
  if (restarted) {
    ++c.total_restarts;
    log::info("actor_restarted",
              {{"supervisor", st->name},
               {"child", c.spec.name},
               {"reason", c.last_reason},
               {"delay_ms", static_cast<std::int64_t>(c.last_delay.count())},
               {"restarts", c.policy.restarts_in_window(restart_policy::clock::now())},
               {"total", c.total_restarts}});
  } else {
    log::debug("child_started", {{"supervisor", st->name}, {"child", c.spec.name}});
  }
  // Copies: a hook may not rely on the entry staying where it is.
  auto name = c.spec.name;
  auto total = c.total_restarts;
  if (st->hooks.on_started)
    st->hooks.on_started(name, child);
  if (restarted && st->hooks.on_restart)
    st->hooks.on_restart(name, total);
}

caf::behavior supervisor_actor(caf::event_based_actor* self, state_ptr st) {
  // Runs on every exit path, kill included: no child outlives its supervisor.
  // The exit message carries the supervisor's own reason (anon_send_exit only takes the enum).
  self->attach_functor([st, me = self->address()](const caf::error& reason) {
    auto forwarded =
      is_clean_exit(reason) ? caf::make_error(caf::exit_reason::user_shutdown) : reason;
    for (auto& c : st->children)
      if (c.handle)
        caf::anon_send(c.handle, caf::exit_msg{me, forwarded});
  });
  self->set_down_handler([self, st](caf::down_msg& dm) {
    for (std::size_t i = 0; i < st->children.size(); ++i) {
      auto& c = st->children[i];
      if (!c.handle || c.handle.address() != dm.source)
        continue;
      if (is_clean_exit(dm.reason)) {
        c.handle = caf::actor{};
        c.status = child_status::stopped;
        log::info("child_stopped", {{"supervisor", st->name},
                                    {"child", c.spec.name},
                                    {"reason", describe_reason(dm.reason)}});
      } else {
        handle_failure(self, st, i, describe_reason(dm.reason));
      }
      return;
    }
  });
  for (std::size_t i = 0; i < st->children.size() && !st->gave_up; ++i)
    start_child(self, st, i);
  return {
    [self, st](start_child_atom, std::uint64_t index, std::uint64_t generation) {
      if (st->gave_up || index >= st->children.size())
        return;
      auto& c = st->children[index];
      if (c.status != child_status::restarting || c.generation != generation)
        return; // a timer from an earlier failure
      start_child(self, st, static_cast<std::size_t>(index));
    },
    [st](caf::get_atom, const std::string& name) -> caf::result<caf::actor> {
      for (auto& c : st->children) {
        if (c.spec.name != name)
          continue;
        switch (c.status) {
          case child_status::running:
            return c.handle;
          case child_status::restarting:
            return make_supervisor_error(supervisor_errc::child_restarting,
                                         "child '" + name + "' of supervisor '" + st->name
                                           + "' is restarting; ask again later");
          case child_status::stopped:
            break;
        }
        return make_supervisor_error(supervisor_errc::child_stopped,
                                     "child '" + name + "' of supervisor '" + st->name
                                       + "' stopped and is not restarted");
      }
      return make_supervisor_error(supervisor_errc::unknown_child,
                                   "supervisor '" + st->name + "' has no child '" + name + "'");
    },
  };
}

} // namespace

caf::atom_value supervisor_error_category() {
  return caf::atom("llorch_sup");
}

std::string to_string(supervisor_errc code) {
  switch (code) {
    case supervisor_errc::gave_up:
      return "gave_up";
    case supervisor_errc::unknown_child:
      return "unknown_child";
    case supervisor_errc::child_restarting:
      return "child_restarting";
    case supervisor_errc::child_stopped:
      return "child_stopped";
  }
  return "supervisor_errc(" + std::to_string(static_cast<int>(code)) + ")";
}

std::string describe_reason(const caf::error& reason) {
  if (!reason)
    return "normal";
  auto category = caf::to_string(reason.category());
  std::string out = category + ": ";
  if (reason.category() == caf::atom("exit"))
    out += caf::to_string(static_cast<caf::exit_reason>(reason.code()));
  else if (reason.category() == caf::atom("system"))
    out += caf::to_string(static_cast<caf::sec>(reason.code()));
  else if (reason.category() == supervisor_error_category())
    out += to_string(static_cast<supervisor_errc>(reason.code()));
  else
    out += std::to_string(static_cast<int>(reason.code()));
  const auto& ctx = reason.context();
  if (ctx.size() == 1 && ctx.match_element<std::string>(0))
    out += ": " + ctx.get_as<std::string>(0); // already plain text: no quoting, no nesting
  else if (!ctx.empty())
    out += " " + caf::to_string(ctx);
  return out;
}

void add_supervisor_error_category(caf::actor_system_config& cfg) {
  cfg.add_error_category(supervisor_error_category(),
                         [](std::uint8_t code, caf::atom_value category, const caf::message& ctx) {
                           return describe_reason(caf::error{code, category, ctx});
                         });
}

caf::error make_supervisor_error(supervisor_errc code, std::string what) {
  return caf::error{static_cast<std::uint8_t>(code), supervisor_error_category(),
                    caf::make_message(std::move(what))};
}

bool is_clean_exit(const caf::error& reason) {
  return !reason || reason == caf::exit_reason::normal
         || reason == caf::exit_reason::user_shutdown;
}

caf::actor spawn_supervisor(caf::actor_system& sys, std::string name, restart_limits limits,
                            std::vector<child_spec> children, supervisor_hooks hooks) {
  auto st = std::make_shared<supervisor_state>();
  st->name = std::move(name);
  st->hooks = std::move(hooks);
  st->children.reserve(children.size());
  for (std::size_t i = 0; i < children.size(); ++i)
    st->children.push_back(child_entry{std::move(children[i]),
                                       restart_policy{limits, jitter_seed(i)},
                                       child_status::restarting, caf::actor{}, 0, 0, false,
                                       std::string{}, std::chrono::milliseconds{0}});
  return sys.spawn(supervisor_actor, std::move(st));
}

} // namespace llorch
