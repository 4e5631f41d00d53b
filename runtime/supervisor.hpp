#pragma once
// A one-for-one supervisor actor: CAF has monitors and links but no supervisors. It starts each
// child from a factory, monitors it, and restarts one that goes down abnormally after the
// restart_policy's backoff. When a child fails more than max_restarts times within `within`, the
// supervisor gives up and exits with supervisor_errc::gave_up, which its own supervisor (or any
// monitor) sees as an abnormal down: escalation. See docs/supervision.md.
#include "runtime/restart_policy.hpp"

#include <caf/actor.hpp>
#include <caf/error.hpp>
#include <caf/fwd.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace llorch {

struct child_spec {
  std::string name; // unique within one supervisor; the key for get and in every log line
  // Spawns the child and returns its handle. Runs inside the supervisor (use
  // supervisor->home_system()); an invalid handle counts as a failed start and is retried with
  // the same backoff as a crash.
  std::function<caf::actor(caf::local_actor* supervisor)> start;
};

// Called on the supervisor's thread; keep them short and non-blocking.
struct supervisor_hooks {
  // After every successful start, the first one included (e.g. republish a handle).
  std::function<void(const std::string& name, const caf::actor& child)> on_started;
  // After every restart; restart_count is the child's total restarts since the supervisor began.
  std::function<void(const std::string& name, int restart_count)> on_restart;
  // Just before the supervisor exits because `name` exceeded the intensity limit.
  std::function<void(const std::string& name)> on_give_up;
};

// Errors of the supervisor: its exit reason when it gives up, and the answers to get.
enum class supervisor_errc : std::uint8_t {
  gave_up = 1,      // a child exceeded the intensity limit; the supervisor exited
  unknown_child,    // get: no child of that name
  child_restarting, // get: the child is down and waits for its restart; ask again later
  child_stopped,    // get: the child stopped cleanly and is not restarted
};

// The error category atom of supervisor_errc ("llorch_sup").
caf::atom_value supervisor_error_category();

// An error of the supervisor category whose context says what happened.
caf::error make_supervisor_error(supervisor_errc code, std::string what);

std::string to_string(supervisor_errc code);

// One line for a down/exit reason, readable in logs and without nested escaping, e.g.
// `exit: kill`, `system: runtime_error: disk full`, `llorch_sup: gave_up: supervisor 'x': ...`.
std::string describe_reason(const caf::error& reason);

// Lets caf::actor_system::render print supervisor errors the same way (optional; call it on the
// config before the actor_system is built).
void add_supervisor_error_category(caf::actor_system_config& cfg);

// A clean stop (not restarted): exit_reason::normal (the child finished its work) and
// exit_reason::user_shutdown (an operator or the owner stopped it on purpose). Anything else,
// kill and unhandled_exception included, is a failure.
bool is_clean_exit(const caf::error& reason);

// Spawns the supervisor and starts `children` in order. It answers
// `(caf::get_atom, std::string name)` with the child's current caf::actor, or an error of the
// supervisor category. When it exits, for any reason, it sends its children an exit message
// (user_shutdown when it exits normally, else its own reason).
caf::actor spawn_supervisor(caf::actor_system& sys, std::string name, restart_limits limits,
                            std::vector<child_spec> children, supervisor_hooks hooks = {});

} // namespace llorch
