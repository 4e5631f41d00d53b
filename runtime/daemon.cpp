#include "runtime/daemon.hpp"

#include <llorch_version.hpp>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <pthread.h>

namespace llorch {

std::optional<int> parse_daemon_args(int argc, char** argv, const char* name, const char* summary,
                                     daemon_args& out) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::printf("%s %s: %s\n\n"
                  "usage: %s [--config FILE] [--check-config]\n"
                  "  --config FILE    per-host JSON config (comments and trailing commas allowed)\n"
                  "  --check-config   validate the config (and environment overrides), then exit\n"
                  "  --version        print the version\n"
                  "environment: LLORCH_API_TOKEN overrides auth.token%s\n",
                  name, llorch::version, summary, name,
                  std::strcmp(name, "orchestratord") == 0
                    ? "; ORCHESTRATORD_CLOUD_PROFILE=true|false overrides cloud_profile"
                    : "");
      return 0;
    }
    if (arg == "--version") {
      std::printf("%s %s\n", name, llorch::version);
      return 0;
    }
    if (arg == "--check-config") {
      out.check_config = true;
    } else if (arg == "--config" && i + 1 < argc) {
      out.config_path = argv[++i];
    } else if (arg.rfind("--config=", 0) == 0 && arg.size() > 9) {
      out.config_path = arg.substr(9);
    } else {
      std::fprintf(stderr, "%s: unknown or incomplete argument '%s' (try --help)\n", name,
                   arg.c_str());
      return 2;
    }
  }
  return std::nullopt;
}

int report_config_errors(const std::vector<std::string>& errors) {
  for (auto& e : errors)
    std::fprintf(stderr, "%s\n", e.c_str());
  return 2;
}

namespace {
sigset_t termination_set() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}
} // namespace

void block_termination_signals() {
  auto set = termination_set();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // A client that goes away mid-response must not kill the daemon.
  std::signal(SIGPIPE, SIG_IGN);
}

const char* wait_for_termination() {
  auto set = termination_set();
  int sig = 0;
  while (sigwait(&set, &sig) != 0) {
  }
  return sig == SIGINT ? "SIGINT" : "SIGTERM";
}

} // namespace llorch
