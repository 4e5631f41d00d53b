#pragma once
// What orchestratord and pool-managerd share around main(): command-line parsing, config errors,
// the token rule for non-loopback listeners, and waiting for SIGTERM/SIGINT.
#include "runtime/config.hpp"

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

namespace llorch {

struct daemon_args {
  std::string config_path;
  bool check_config = false;
};

// Parses `--config FILE` / `--config=FILE`, `--check-config`, `--help`, `--version`. Returns an
// exit code when the process should stop now (help, version: 0; bad arguments: 2 with one line).
std::optional<int> parse_daemon_args(int argc, char** argv, const char* name, const char* summary,
                                     daemon_args& out);

// Prints each problem on its own line to stderr; returns 2 (the exit code for a bad config).
int report_config_errors(const std::vector<std::string>& errors);

// The rest of start-up's config handling, the same for both daemons: report load errors, apply
// the environment overrides, answer --check-config. Returns an exit code when main() should stop.
template <class Config>
std::optional<int> settle_config(config::load_result<Config>& loaded, const daemon_args& args) {
  if (!loaded.ok())
    return report_config_errors(loaded.errors);
  if (auto errors = config::apply_env(*loaded.config, [](const char* n) { return std::getenv(n); });
      !errors.empty())
    return report_config_errors(errors);
  if (args.check_config) {
    std::printf("%s: ok\n", args.config_path.empty() ? "(defaults)" : args.config_path.c_str());
    return 0;
  }
  return std::nullopt;
}

// Blocks SIGTERM/SIGINT in this thread and every thread started after it: call first in main().
void block_termination_signals();

// Waits for SIGTERM or SIGINT; returns its name.
const char* wait_for_termination();

} // namespace llorch
