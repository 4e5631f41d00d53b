#pragma once
// One llorch-engine child process: started with posix_spawn, watched by a thread that waits for
// its exit and tells an actor, stopped with SIGTERM then SIGKILL. A separate process so that a
// crashing kernel or a driver fault takes down one replica, not the node.
#include <caf/actor.hpp>

#include <memory>
#include <string>
#include <sys/types.h>
#include <vector>

namespace llorch {

// Sent to the watcher actor when the process has exited: (engine_exit_atom, pid, description).
using engine_exit_atom = caf::atom_constant<caf::atom("engexit")>;

class engine_process {
public:
  // Starts argv[0] with argv (stderr inherited, so the engine's lines reach the journal).
  // Returns nullptr with `error` set when the process cannot be started.
  static std::unique_ptr<engine_process> start(const std::vector<std::string>& argv,
                                               caf::actor watcher, std::string& error);

  pid_t pid() const { return pid_; }

  // SIGTERM, then SIGKILL when it has not exited after `grace_ms`. Returns once it has exited.
  void stop(int grace_ms = 5000);
  void terminate(); // SIGTERM, no wait: the exit arrives at the watcher as usual
  void kill_now();  // SIGKILL, no wait

  ~engine_process(); // stops the process if it still runs

  engine_process(const engine_process&) = delete;
  engine_process& operator=(const engine_process&) = delete;

  // "exit code 3", "killed by signal 9 (Killed)".
  static std::string describe_status(int wait_status);

private:
  struct shared;
  engine_process(pid_t pid, std::shared_ptr<shared> state);

  pid_t pid_;
  std::shared_ptr<shared> state_;
};

} // namespace llorch
