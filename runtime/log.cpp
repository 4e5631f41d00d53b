#include "runtime/log.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <memory>
#include <mutex>

namespace llorch::log {
namespace {

// Replaced by init(); read from any thread (HTTP, CAF workers), hence the atomic accessors.
std::shared_ptr<spdlog::logger>& instance() {
  static std::shared_ptr<spdlog::logger> lg;
  return lg;
}

std::shared_ptr<spdlog::logger> logger() {
  if (auto lg = std::atomic_load(&instance()))
    return lg;
  static std::once_flag once; // a process that logs before init() gets a default logger once
  std::call_once(once, [] {
    if (!std::atomic_load(&instance()))
      init("llorch");
  });
  return std::atomic_load(&instance());
}

spdlog::level::level_enum to_spdlog(level lvl) {
  switch (lvl) {
    case level::trace: return spdlog::level::trace;
    case level::debug: return spdlog::level::debug;
    case level::info: return spdlog::level::info;
    case level::warn: return spdlog::level::warn;
    case level::error: return spdlog::level::err;
    case level::critical: return spdlog::level::critical;
    case level::off: return spdlog::level::off;
  }
  return spdlog::level::info;
}

// "<N>" syslog priority prefix: journald reads it, so `journalctl -p err` finds our errors.
class syslog_priority final : public spdlog::custom_flag_formatter {
public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    static constexpr const char* prio[] = {"<7>", "<7>", "<6>", "<4>", "<3>", "<2>", "<6>"};
    auto i = static_cast<std::size_t>(msg.level);
    const char* p = i < 7 ? prio[i] : "<6>";
    dest.append(p, p + 3);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<syslog_priority>();
  }
};

bool needs_quotes(std::string_view v) {
  if (v.empty())
    return true;
  for (unsigned char c : v)
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f)
      return true;
  return false;
}

void append_value(std::string& out, std::string_view v) {
  if (!needs_quotes(v)) {
    out += v;
    return;
  }
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  for (unsigned char c : v) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += "\\x";
          out += hex[c >> 4];
          out += hex[c & 0xf];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

} // namespace

void init(std::string_view process, level lvl) {
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto lg = std::make_shared<spdlog::logger>(std::string(process), sink);
  if (std::getenv("JOURNAL_STREAM")) {
    // Under systemd, journald stamps the time; the prefix carries the priority.
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<syslog_priority>('*').set_pattern("%*%l %n %v");
    lg->set_formatter(std::move(formatter));
  } else {
    lg->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %n %v", spdlog::pattern_time_type::utc);
  }
  lg->set_level(to_spdlog(lvl));
  lg->flush_on(spdlog::level::trace); // journald and tests read lines as they happen
  std::atomic_store(&instance(), std::move(lg));
}

bool parse_level(std::string_view text, level& out) {
  static constexpr std::pair<std::string_view, level> names[] = {
    {"trace", level::trace}, {"debug", level::debug}, {"info", level::info},
    {"warn", level::warn},   {"error", level::error}, {"critical", level::critical},
    {"off", level::off}};
  for (auto& [name, lvl] : names)
    if (name == text) {
      out = lvl;
      return true;
    }
  return false;
}

void set_level(level lvl) {
  logger()->set_level(to_spdlog(lvl));
}

std::string format_fields(std::initializer_list<field> fields) {
  std::string out;
  for (auto& f : fields) {
    if (!out.empty())
      out += ' ';
    out += f.key;
    out += '=';
    append_value(out, f.value);
  }
  return out;
}

void event(level lvl, std::string_view name, std::initializer_list<field> fields) {
  auto lg = logger();
  auto sl = to_spdlog(lvl);
  if (!lg->should_log(sl))
    return;
  std::string line(name);
  if (fields.size() > 0) {
    line += ' ';
    line += format_fields(fields);
  }
  lg->log(sl, line);
}

} // namespace llorch::log
