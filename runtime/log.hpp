#pragma once
// Event logging: one line per event on stderr, a stable event name followed by key=value fields,
// e.g. `2026-11-29T03:40:00.123Z info orchestratord node_offline node_id=gpu-node-1 reason=down`.
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>

namespace llorch::log {

enum class level { trace, debug, info, warn, error, critical, off };

// One key=value pair of an event; numbers and booleans are formatted in place.
struct field {
  std::string_view key;
  std::string value;

  field(std::string_view k, std::string_view v) : key(k), value(v) {}
  field(std::string_view k, const std::string& v) : key(k), value(v) {}
  field(std::string_view k, const char* v) : key(k), value(v ? v : "") {}
  field(std::string_view k, bool v) : key(k), value(v ? "true" : "false") {}
  template <class T, class = std::enable_if_t<std::is_arithmetic_v<T>>>
  field(std::string_view k, T v) : key(k), value(std::to_string(v)) {}
};

// Sets up the stderr logger for this process; `process` names it on every line.
void init(std::string_view process, level lvl = level::info);

// Parses "trace|debug|info|warn|error|critical|off"; false for anything else.
bool parse_level(std::string_view text, level& out);
void set_level(level lvl);

// Formats the key=value part of a line (exposed for tests): values with spaces, quotes, '=' or
// control characters are quoted and escaped so every line stays one parseable line.
std::string format_fields(std::initializer_list<field> fields);

void event(level lvl, std::string_view name, std::initializer_list<field> fields = {});

inline void info(std::string_view name, std::initializer_list<field> fields = {}) {
  event(level::info, name, fields);
}
inline void warn(std::string_view name, std::initializer_list<field> fields = {}) {
  event(level::warn, name, fields);
}
inline void error(std::string_view name, std::initializer_list<field> fields = {}) {
  event(level::error, name, fields);
}
inline void debug(std::string_view name, std::initializer_list<field> fields = {}) {
  event(level::debug, name, fields);
}

} // namespace llorch::log
