#pragma once
// What orchestratord and pool-managerd share around main(): command-line parsing, config errors,
// the token rule for non-loopback listeners, and waiting for SIGTERM/SIGINT.
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

// Blocks SIGTERM/SIGINT in this thread and every thread started after it: call first in main().
void block_termination_signals();

// Waits for SIGTERM or SIGINT; returns its name.
const char* wait_for_termination();

} // namespace llorch
