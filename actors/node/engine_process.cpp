#include "actors/node/engine_process.hpp"

#include <caf/send.hpp>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <mutex>
#include <spawn.h>
#include <sys/wait.h>
#include <thread>

extern char** environ;

namespace llorch {

// Shared between the owner and the waiter thread: the waiter reaps the child exactly once.
struct engine_process::shared {
  std::mutex mutex;
  std::condition_variable exited_cv;
  bool exited = false;
};

std::string engine_process::describe_status(int wait_status) {
  if (WIFEXITED(wait_status))
    return "exit code " + std::to_string(WEXITSTATUS(wait_status));
  if (WIFSIGNALED(wait_status)) {
    auto sig = WTERMSIG(wait_status);
    return "killed by signal " + std::to_string(sig) + " (" + strsignal(sig) + ")";
  }
  return "status " + std::to_string(wait_status);
}

std::unique_ptr<engine_process> engine_process::start(const std::vector<std::string>& argv,
                                                      caf::actor watcher, std::string& error) {
  if (argv.empty()) {
    error = "no engine command";
    return nullptr;
  }
  std::vector<char*> cargv;
  for (auto& a : argv)
    cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  // The child must not inherit our blocked SIGTERM/SIGINT: it would ignore stop().
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  // Nor our descriptors past stderr: Asio's sockets are not close-on-exec, and an engine holding
  // the node's HTTP listener would keep its port bound after pool-managerd is gone.
  posix_spawn_file_actions_t files;
  posix_spawn_file_actions_init(&files);
  posix_spawn_file_actions_addclosefrom_np(&files, 3);
  pid_t pid = 0;
  auto rc = posix_spawn(&pid, cargv[0], &files, &attr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&files);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    error = "cannot start " + argv[0] + ": " + std::strerror(rc);
    return nullptr;
  }
  auto st = std::make_shared<shared>();
  std::thread([pid, st, watcher] {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    {
      std::lock_guard<std::mutex> guard(st->mutex);
      st->exited = true;
    }
    st->exited_cv.notify_all();
    caf::anon_send(watcher, engine_exit_atom::value, static_cast<std::int32_t>(pid),
                   describe_status(status));
  }).detach();
  return std::unique_ptr<engine_process>(new engine_process(pid, std::move(st)));
}

engine_process::engine_process(pid_t pid, std::shared_ptr<shared> state)
  : pid_(pid), state_(std::move(state)) {
}

void engine_process::stop(int grace_ms) {
  std::unique_lock<std::mutex> guard(state_->mutex);
  if (state_->exited)
    return;
  ::kill(pid_, SIGTERM);
  if (!state_->exited_cv.wait_for(guard, std::chrono::milliseconds(grace_ms),
                                  [&] { return state_->exited; })) {
    ::kill(pid_, SIGKILL);
    state_->exited_cv.wait(guard, [&] { return state_->exited; });
  }
}

void engine_process::terminate() {
  std::lock_guard<std::mutex> guard(state_->mutex);
  if (!state_->exited)
    ::kill(pid_, SIGTERM);
}

void engine_process::kill_now() {
  std::lock_guard<std::mutex> guard(state_->mutex);
  if (!state_->exited)
    ::kill(pid_, SIGKILL);
}

engine_process::~engine_process() {
  stop();
}

} // namespace llorch
