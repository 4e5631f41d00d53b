#include "runtime/config.hpp"

#include "runtime/log.hpp"

#include <boost/json.hpp>
#include <boost/json/basic_parser_impl.hpp>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

namespace json = boost::json;

namespace llorch::config {

// ---------------------------------------------------------------------------------------------
// endpoint

namespace {

bool is_host_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'
         || c == '.' || c == '_';
}

bool is_ipv6_char(char c) {
  return (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || (c >= '0' && c <= '9') || c == ':'
         || c == '.';
}

bool set_why(std::string* why, const char* text) {
  if (why)
    *why = text;
  return false;
}

} // namespace

std::string endpoint::to_string() const {
  if (host.find(':') != std::string::npos)
    return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

bool endpoint::is_loopback() const {
  if (host == "localhost" || host == "::1" || host == "0:0:0:0:0:0:0:1")
    return true;
  // 127.0.0.0/8: four dotted decimal parts, the first one 127.
  if (host.rfind("127.", 0) != 0)
    return false;
  int parts = 1;
  for (char c : host) {
    if (c == '.')
      ++parts;
    else if (c < '0' || c > '9')
      return false;
  }
  return parts == 4;
}

bool endpoint::is_wildcard() const {
  return host == "0.0.0.0" || host == "::" || host == "0:0:0:0:0:0:0:0";
}

std::optional<endpoint> parse_endpoint(std::string_view text, std::string* why) {
  endpoint result;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      set_why(why, "\"[ipv6]:port\" with a closing bracket followed by \":port\"");
      return std::nullopt;
    }
    auto host = text.substr(1, close - 1);
    if (host.empty() || host.find(':') == std::string_view::npos
        || !std::all_of(host.begin(), host.end(), is_ipv6_char)) {
      set_why(why, "an IPv6 address inside the brackets");
      return std::nullopt;
    }
    result.host = std::string(host);
    port_text = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      set_why(why, "\"host:port\"");
      return std::nullopt;
    }
    auto host = text.substr(0, colon);
    if (host.find(':') != std::string_view::npos) {
      set_why(why, "\"[ipv6]:port\" (IPv6 addresses need brackets)");
      return std::nullopt;
    }
    if (host.empty() || host.size() > 253
        || !std::all_of(host.begin(), host.end(), is_host_name_char)) {
      set_why(why, "\"host:port\" with a host name or IPv4 address before the colon");
      return std::nullopt;
    }
    result.host = std::string(host);
    port_text = text.substr(colon + 1);
  }
  unsigned long port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || port_text.size() > 5 || ec != std::errc{}
      || end != port_text.data() + port_text.size() || port > 65535) {
    set_why(why, "a port from 0 to 65535 after the colon");
    return std::nullopt;
  }
  result.port = static_cast<uint16_t>(port);
  return result;
}

bool is_valid_id(std::string_view id) {
  if (id.empty() || id.size() > 64)
    return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.'
           || c == '_' || c == '-';
  });
}

std::string default_advertise_address(const endpoint& http_listen, uint16_t bound_port) {
  std::string host = http_listen.host;
  if (http_listen.is_wildcard()) {
    std::array<char, 256> name{};
    if (::gethostname(name.data(), name.size() - 1) == 0 && name[0] != '\0')
      host = name.data();
    else
      host = "localhost";
  }
  endpoint ep{host, bound_port};
  return "http://" + ep.to_string();
}

namespace {

// ---------------------------------------------------------------------------------------------
// Text helpers for error messages.

// Quotes a string for a message: escapes control characters, quotes and backslashes, shows
// invalid UTF-8 as \xNN, and cuts long strings so one line stays readable.
std::string quote(std::string_view s, std::size_t max_len = 80) {
  std::string out = "\"";
  std::size_t shown = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (shown >= max_len) {
      out += "...";
      break;
    }
    auto c = static_cast<unsigned char>(s[i]);
    ++shown;
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
  return out;
}

std::string format_double(double d) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);
  if (ec != std::errc{})
    return "a number";
  return std::string(buf, end);
}

std::string describe(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null: return "null";
    case json::kind::bool_: return v.get_bool() ? "true" : "false";
    case json::kind::int64: return std::to_string(v.get_int64());
    case json::kind::uint64: return std::to_string(v.get_uint64());
    case json::kind::double_:
      if (!std::isfinite(v.get_double()))
        return "a number too large to represent";
      return format_double(v.get_double());
    case json::kind::string: {
      const auto& s = v.get_string();
      return quote(std::string_view(s.data(), s.size()));
    }
    case json::kind::array: return "an array";
    case json::kind::object: return "an object";
  }
  return "a value";
}

bool is_plain_key(std::string_view key) {
  if (key.empty())
    return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

std::string child_path(const std::string& parent, std::string_view key) {
  if (is_plain_key(key))
    return parent + "." + std::string(key);
  return parent + "[" + quote(key, 64) + "]";
}

std::string index_path(const std::string& parent, std::size_t i) {
  return parent + "[" + std::to_string(i) + "]";
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j)
    row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string join(const std::vector<std::string_view>& words, std::string_view separator = ", ") {
  std::string out;
  for (std::size_t i = 0; i < words.size(); ++i) {
    if (i)
      out += separator;
    out += words[i];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Syntax pass: a streaming parse that finds the byte offset of a syntax error and duplicate
// keys (Boost.JSON keeps the last of duplicated keys silently; a repeated key is a likely typo).

struct syntax_handler {
  static constexpr std::size_t max_array_size = std::size_t(-1);
  static constexpr std::size_t max_object_size = std::size_t(-1);
  static constexpr std::size_t max_string_size = std::size_t(-1);
  static constexpr std::size_t max_key_size = std::size_t(-1);

  struct frame {
    bool is_object = false;
    std::string path;
    std::set<std::string> keys;
    std::size_t next_index = 0;
  };
  std::vector<frame> frames;
  std::string key_buffer;
  std::string pending_key_path; // path of the value that follows the last key
  std::vector<std::string> duplicate_paths;

  // Path of the value that starts now (inside an array this advances the index).
  std::string value_path() {
    if (frames.empty())
      return "$";
    auto& top = frames.back();
    if (top.is_object)
      return pending_key_path;
    return index_path(top.path, top.next_index++);
  }
  bool scalar() {
    value_path();
    return true;
  }

  bool on_document_begin(json::error_code&) { return true; }
  bool on_document_end(json::error_code&) { return true; }
  bool on_object_begin(json::error_code&) {
    frames.push_back(frame{true, value_path(), {}, 0});
    return true;
  }
  bool on_object_end(std::size_t, json::error_code&) {
    frames.pop_back();
    return true;
  }
  bool on_array_begin(json::error_code&) {
    frames.push_back(frame{false, value_path(), {}, 0});
    return true;
  }
  bool on_array_end(std::size_t, json::error_code&) {
    frames.pop_back();
    return true;
  }
  bool on_key_part(json::string_view s, std::size_t, json::error_code&) {
    key_buffer.append(s.data(), s.size());
    return true;
  }
  bool on_key(json::string_view s, std::size_t, json::error_code&) {
    key_buffer.append(s.data(), s.size());
    auto& top = frames.back();
    pending_key_path = child_path(top.path, key_buffer);
    if (!top.keys.insert(key_buffer).second)
      duplicate_paths.push_back(pending_key_path);
    key_buffer.clear();
    return true;
  }
  bool on_string_part(json::string_view, std::size_t, json::error_code&) { return true; }
  bool on_string(json::string_view, std::size_t, json::error_code&) { return scalar(); }
  bool on_number_part(json::string_view, json::error_code&) { return true; }
  bool on_int64(int64_t, json::string_view, json::error_code&) { return scalar(); }
  bool on_uint64(uint64_t, json::string_view, json::error_code&) { return scalar(); }
  bool on_double(double, json::string_view, json::error_code&) { return scalar(); }
  bool on_bool(bool, json::error_code&) { return scalar(); }
  bool on_null(json::error_code&) { return scalar(); }
  bool on_comment_part(json::string_view, json::error_code&) { return true; }
  bool on_comment(json::string_view, json::error_code&) { return true; }
};

json::parse_options parse_options() {
  json::parse_options options;
  options.allow_comments = true;
  options.allow_trailing_commas = true;
  options.allow_invalid_utf8 = false;
  options.max_depth = 64;
  return options;
}

std::string describe_byte_at(std::string_view text, std::size_t offset) {
  if (offset >= text.size())
    return "the end of the file";
  auto c = static_cast<unsigned char>(text[offset]);
  if (c == 0)
    return "a NUL byte";
  if (c >= 0x80)
    return "the byte \\x" + [&] {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%02x", c);
      return std::string(buf);
    }() + " (not valid UTF-8 here)";
  if (c < 0x20 || c == 0x7f)
    return "the control character " + quote(text.substr(offset, 1));
  return "'" + std::string(1, static_cast<char>(c)) + "'";
}

// Parses `text`; on failure appends errors and returns nullopt.
std::optional<json::value> parse_json(std::string_view text, const std::string& file,
                                      std::vector<std::string>& errors) {
  bool blank = true;
  for (char c : text)
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n')
      blank = false;
  if (blank) {
    errors.push_back(file + ": $: expected a JSON object, found an empty file");
    return std::nullopt;
  }
  json::basic_parser<syntax_handler> parser(parse_options());
  json::error_code ec;
  std::size_t consumed = parser.write_some(false, text.data(), text.size(), ec);
  if (ec || consumed != text.size()) {
    std::size_t line = 1, column = 1;
    for (std::size_t i = 0; i < consumed && i < text.size(); ++i) {
      if (text[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    std::string what = ec ? ec.message() : std::string("text after the end of the JSON value");
    if (ec == json::error::incomplete)
      what = "incomplete JSON";
    errors.push_back(file + ":" + std::to_string(line) + ":" + std::to_string(column)
                     + ": expected valid JSON (comments and trailing commas are allowed), found "
                     + describe_byte_at(text, consumed) + " (" + what + ")");
    return std::nullopt;
  }
  for (const auto& path : parser.handler().duplicate_paths)
    errors.push_back(file + ": " + path + ": expected each key once, found it repeated");
  json::value value = json::parse(json::string_view(text.data(), text.size()), ec,
                                  json::storage_ptr(), parse_options());
  if (ec) {
    errors.push_back(file + ": $: expected valid JSON, found " + ec.message());
    return std::nullopt;
  }
  return value;
}

// ---------------------------------------------------------------------------------------------
// Validation: walks the parsed value with the JSON path of each element and collects errors.

class checker {
public:
  checker(std::string file, std::vector<std::string>& errors)
    : file_(std::move(file)), errors_(errors) {}

  void fail(const std::string& path, const std::string& message) {
    errors_.push_back(file_ + ": " + path + ": " + message);
  }
  void expected(const std::string& path, const std::string& what, const json::value& found) {
    fail(path, "expected " + what + ", found " + describe(found));
  }
  void missing(const std::string& path, const std::string& what) {
    fail(path, "expected " + what + ", found nothing (this key is required)");
  }

  // Returns the object at `v`, or nullptr after reporting what was found instead.
  const json::object* object(const json::value& v, const std::string& path) {
    if (!v.is_object()) {
      expected(path, "an object", v);
      return nullptr;
    }
    return &v.get_object();
  }

  // Reports every key of `obj` that is not in `allowed`, with a suggestion for near misses.
  void known_keys(const json::object& obj, const std::string& path,
                  std::initializer_list<std::string_view> allowed) {
    for (const auto& kv : obj) {
      std::string_view key(kv.key().data(), kv.key().size());
      if (std::find(allowed.begin(), allowed.end(), key) != allowed.end())
        continue;
      std::string message = "expected one of the keys "
                            + join(std::vector<std::string_view>(allowed))
                            + ", found an unknown key";
      for (auto candidate : allowed) {
        if (edit_distance(key, candidate) <= 2) {
          message += " (did you mean \"" + std::string(candidate) + "\"?)";
          break;
        }
      }
      fail(child_path(path, key), message);
    }
  }

  static const json::value* find(const json::object& obj, std::string_view key) {
    return obj.if_contains(json::string_view(key.data(), key.size()));
  }

  // Integer member in [lo, hi]; integral doubles such as 1e3 are accepted.
  bool integer(const json::object& obj, std::string_view key, const std::string& path, long long lo,
               long long hi, long long& out) {
    const json::value* v = find(obj, key);
    if (!v)
      return false;
    auto p = child_path(path, key);
    std::string what = "an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
    long long value = 0;
    if (v->is_int64()) {
      value = v->get_int64();
    } else if (v->is_uint64()) {
      expected(p, what, *v);
      return false;
    } else if (v->is_double()) {
      double d = v->get_double();
      if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 9.0e15) {
        expected(p, what, *v);
        return false;
      }
      value = static_cast<long long>(d);
    } else {
      expected(p, what, *v);
      return false;
    }
    if (value < lo || value > hi) {
      expected(p, what, *v);
      return false;
    }
    out = value;
    return true;
  }

  template <class Int>
  void read_int(const json::object& obj, std::string_view key, const std::string& path,
                long long lo, long long hi, Int& out) {
    long long value = 0;
    if (integer(obj, key, path, lo, hi, value))
      out = static_cast<Int>(value);
  }

  void read_bool(const json::object& obj, std::string_view key, const std::string& path,
                 bool& out) {
    const json::value* v = find(obj, key);
    if (!v)
      return;
    if (!v->is_bool()) {
      expected(child_path(path, key), "true or false", *v);
      return;
    }
    out = v->get_bool();
  }

  // String member; returns false when absent or not a string (the latter is reported).
  bool string(const json::object& obj, std::string_view key, const std::string& path,
              std::string& out, const char* what = "a string") {
    const json::value* v = find(obj, key);
    if (!v)
      return false;
    if (!v->is_string()) {
      expected(child_path(path, key), what, *v);
      return false;
    }
    const auto& s = v->get_string();
    out.assign(s.data(), s.size());
    return true;
  }

  void read_endpoint(const json::object& obj, std::string_view key, const std::string& path,
                     endpoint& out, bool required) {
    const json::value* v = find(obj, key);
    auto p = child_path(path, key);
    if (!v) {
      if (required)
        missing(p, "\"host:port\"");
      return;
    }
    if (!v->is_string()) {
      expected(p, "\"host:port\"", *v);
      return;
    }
    const auto& s = v->get_string();
    std::string why;
    if (auto ep = parse_endpoint(std::string_view(s.data(), s.size()), &why))
      out = *ep;
    else
      expected(p, why, *v);
  }

  void read_choice(const json::object& obj, std::string_view key, const std::string& path,
                   std::initializer_list<std::string_view> choices, std::string& out) {
    std::string value;
    if (!string(obj, key, path, value, "a string"))
      return;
    if (std::find(choices.begin(), choices.end(), value) == choices.end()) {
      fail(child_path(path, key), "expected one of " + join(std::vector<std::string_view>(choices))
                                    + ", found " + quote(value));
      return;
    }
    out = value;
  }

  void read_id(const json::object& obj, std::string_view key, const std::string& path,
               std::string& out, const char* what) {
    std::string value;
    auto p = child_path(path, key);
    if (!string(obj, key, path, value, what))
      return;
    if (!is_valid_id(value)) {
      fail(p, std::string("expected ") + what + ", found " + quote(value));
      return;
    }
    out = value;
  }

  // A path string: non-empty, no NUL or other control characters.
  bool read_path(const json::object& obj, std::string_view key, const std::string& path,
                 std::string& out, bool allow_empty) {
    std::string value;
    auto p = child_path(path, key);
    if (!string(obj, key, path, value, "a file path"))
      return false;
    if (value.empty() && allow_empty) {
      out.clear();
      return true;
    }
    bool clean = !value.empty() && value.size() <= 4096
                 && std::none_of(value.begin(), value.end(), [](char c) {
                      return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
                    });
    if (!clean) {
      fail(p, "expected a file path without control characters (1 to 4096 bytes), found "
                + quote(value));
      return false;
    }
    out = value;
    return true;
  }

  void read_log(const json::object& root, std::string& level) {
    const json::value* v = find(root, "log");
    if (!v)
      return;
    const json::object* o = object(*v, "$.log");
    if (!o)
      return;
    known_keys(*o, "$.log", {"level"});
    std::string value;
    if (!string(*o, "level", "$.log", value, "a log level"))
      return;
    log::level parsed{};
    if (!log::parse_level(value, parsed)) {
      fail("$.log.level",
           "expected one of trace, debug, info, warn, error, critical, off, found " + quote(value));
      return;
    }
    level = value;
  }

  void read_http(const json::object& root, endpoint& listen, std::size_t& body_limit) {
    const json::value* v = find(root, "http");
    if (!v)
      return;
    const json::object* o = object(*v, "$.http");
    if (!o)
      return;
    known_keys(*o, "$.http", {"listen", "body_limit_bytes"});
    read_endpoint(*o, "listen", "$.http", listen, false);
    read_int(*o, "body_limit_bytes", "$.http", 1024, 1LL << 30, body_limit);
  }

  void read_tls(const json::object& parent, const std::string& parent_path, tls_files& tls) {
    const json::value* v = find(parent, "tls");
    if (!v)
      return;
    auto path = child_path(parent_path, "tls");
    const json::object* o = object(*v, path);
    if (!o)
      return;
    known_keys(*o, path, {"certificate", "key", "ca"});
    tls_files files;
    // An absent member counts as empty.
    auto member = [&](const char* key, std::string& out) {
      return !find(*o, key) || read_path(*o, key, path, out, true);
    };
    bool ok = member("certificate", files.certificate);
    ok = member("key", files.key) && ok;
    ok = member("ca", files.ca) && ok;
    if (!ok)
      return;
    std::vector<std::string_view> set, unset;
    (files.certificate.empty() ? unset : set).push_back("certificate");
    (files.key.empty() ? unset : set).push_back("key");
    (files.ca.empty() ? unset : set).push_back("ca");
    if (!set.empty() && !unset.empty()) {
      fail(path, "expected certificate, key and ca all set (mutual TLS) or all empty, found only "
                   + join(set, " and ") + " set (missing: " + join(unset, ", ") + ")");
      return;
    }
    if (set.empty()) {
      tls = tls_files{};
      return;
    }
    for (auto [key, file] :
         {std::pair<const char*, const std::string*>{"certificate", &files.certificate},
          {"key", &files.key},
          {"ca", &files.ca}}) {
      std::error_code ec;
      auto status = std::filesystem::status(*file, ec);
      auto p = child_path(path, key);
      if (ec || !std::filesystem::exists(status)) {
        fail(p, "expected an existing PEM file, found " + quote(*file) + " (no such file)");
        ok = false;
      } else if (!std::filesystem::is_regular_file(status)) {
        fail(p, "expected a regular PEM file, found " + quote(*file) + " (not a regular file)");
        ok = false;
      } else if (!std::ifstream(*file).is_open()) {
        fail(p, "expected a readable PEM file, found " + quote(*file)
                  + " (cannot be opened: " + std::strerror(errno) + ")");
        ok = false;
      }
    }
    if (ok)
      tls = files;
  }

  // Reads keepalive_ms / dead_after_ms into `cluster` and checks their order.
  void read_link_timing(const json::object& obj, const std::string& path,
                        cluster_settings& cluster) {
    read_int(obj, "keepalive_ms", path, 10, 600000, cluster.keepalive_ms);
    long long dead_after = cluster.dead_after_ms;
    bool given = integer(obj, "dead_after_ms", path, 20, 3600000, dead_after);
    if (given)
      cluster.dead_after_ms = static_cast<int>(dead_after);
    if (cluster.dead_after_ms <= cluster.keepalive_ms) {
      fail(child_path(path, "dead_after_ms"),
           "expected more than keepalive_ms (" + std::to_string(cluster.keepalive_ms) + "), found "
             + std::to_string(cluster.dead_after_ms) + (given ? "" : " (the default)"));
    }
  }

  void read_heartbeat(const json::object& root, heartbeat_settings& hb) {
    const json::value* v = find(root, "heartbeat");
    if (!v)
      return;
    const json::object* o = object(*v, "$.heartbeat");
    if (!o)
      return;
    known_keys(*o, "$.heartbeat", {"interval_ms", "timeout_ms"});
    read_int(*o, "interval_ms", "$.heartbeat", 10, 3600000, hb.interval_ms);
    bool given = false;
    long long timeout = hb.timeout_ms;
    given = integer(*o, "timeout_ms", "$.heartbeat", 20, 86400000, timeout);
    if (given)
      hb.timeout_ms = static_cast<int>(timeout);
    if (hb.timeout_ms <= hb.interval_ms) {
      fail("$.heartbeat.timeout_ms",
           "expected more than interval_ms (" + std::to_string(hb.interval_ms) + "), found "
             + std::to_string(hb.timeout_ms) + (given ? "" : " (the default)"));
    }
  }

  void read_auth(const json::object& root, auth_settings& auth) {
    const json::value* v = find(root, "auth");
    if (!v)
      return;
    const json::object* o = object(*v, "$.auth");
    if (!o)
      return;
    known_keys(*o, "$.auth", {"token", "protect_reads"});
    std::string token;
    if (const json::value* t = find(*o, "token")) {
      // Never echo a secret into an error message.
      if (!t->is_string()) {
        fail("$.auth.token", std::string("expected a string, found ")
                               + (t->is_object()  ? "an object"
                                  : t->is_array() ? "an array"
                                                  : "a non-string value"));
      } else {
        token.assign(t->get_string().data(), t->get_string().size());
        std::string why;
        if (!token.empty() && !token_is_valid(token, why))
          fail("$.auth.token", "expected " + why + ", found a token of "
                                 + std::to_string(token.size()) + " bytes that is not");
        else
          auth.token = token;
      }
    }
    read_bool(*o, "protect_reads", "$.auth", auth.protect_reads);
  }

  // A bearer token travels in an HTTP header: visible ASCII only, bounded length.
  static bool token_is_valid(std::string_view token, std::string& why) {
    why = "1 to 4096 visible ASCII characters (no spaces)";
    if (token.empty() || token.size() > 4096)
      return false;
    return std::all_of(token.begin(), token.end(), [](char c) { return c > 0x20 && c < 0x7f; });
  }

private:
  std::string file_;
  std::vector<std::string>& errors_;
};

template <class T, class Fill>
load_result<T> parse_with(std::string_view text, std::string_view file_name, Fill fill) {
  load_result<T> result;
  std::string file(file_name);
  auto value = parse_json(text, file, result.errors);
  if (!value)
    return result;
  checker check(file, result.errors);
  const json::object* root = check.object(*value, "$");
  if (!root)
    return result;
  T config;
  fill(check, *root, config);
  if (result.errors.empty())
    result.config = std::move(config);
  return result;
}

std::string read_machine_id() {
  std::ifstream in("/etc/machine-id");
  std::string id;
  if (in && std::getline(in, id)) {
    while (!id.empty() && (id.back() == ' ' || id.back() == '\r' || id.back() == '\t'))
      id.pop_back();
    if (!id.empty())
      return id;
  }
  std::array<char, 256> name{};
  if (::gethostname(name.data(), name.size() - 1) == 0 && name[0] != '\0')
    return name.data();
  return "unknown";
}

// Accepts "http://x" or "https://x" with no whitespace or control characters.
bool is_valid_url(std::string_view url) {
  std::string_view rest;
  if (url.rfind("http://", 0) == 0)
    rest = url.substr(7);
  else if (url.rfind("https://", 0) == 0)
    rest = url.substr(8);
  else
    return false;
  if (rest.empty() || url.size() > 512 || rest.front() == '/' || rest.front() == ':')
    return false;
  return std::all_of(url.begin(), url.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

void fill_orchestratord(checker& check, const json::object& root, orchestratord_config& c) {
  check.known_keys(
    root, "$",
    {"http", "cluster", "heartbeat", "admission", "placement", "log", "cloud_profile", "auth"});
  check.read_http(root, c.http_listen, c.http_body_limit);

  if (const json::value* v = checker::find(root, "cluster")) {
    if (const json::object* o = check.object(*v, "$.cluster")) {
      check.known_keys(*o, "$.cluster", {"listen", "tls", "keepalive_ms", "dead_after_ms"});
      check.read_endpoint(*o, "listen", "$.cluster", c.cluster.listen_or_connect, false);
      check.read_tls(*o, "$.cluster", c.cluster.tls);
      check.read_link_timing(*o, "$.cluster", c.cluster);
    }
  }
  check.read_heartbeat(root, c.heartbeat);

  if (const json::value* v = checker::find(root, "admission")) {
    if (const json::object* o = check.object(*v, "$.admission")) {
      check.known_keys(*o, "$.admission", {"capacity", "policy", "retained_tasks"});
      check.read_int(*o, "capacity", "$.admission", 1, 1000000, c.admission_capacity);
      check.read_int(*o, "retained_tasks", "$.admission", 0, 1000000, c.admission_retained_tasks);
      check.read_choice(*o, "policy", "$.admission", {"reject"}, c.admission_policy);
    }
  }
  if (const json::value* v = checker::find(root, "placement")) {
    if (const json::object* o = check.object(*v, "$.placement")) {
      check.known_keys(*o, "$.placement", {"strategy"});
      check.read_choice(*o, "strategy", "$.placement", {"least-loaded"}, c.placement_strategy);
    }
  }
  check.read_log(root, c.log_level);
  check.read_bool(root, "cloud_profile", "$", c.cloud_profile);
  check.read_auth(root, c.auth);
}

bool is_valid_model_id(const std::string& id) {
  return !id.empty() && id.size() <= 128
         && std::all_of(id.begin(), id.end(), [](char ch) { return ch > 0x20 && ch < 0x7f; });
}

// A model given in a pool: an object {id, path} or the id of an entry in "models".
void read_pool_model(checker& check, const json::value& v, const std::string& path,
                     const std::vector<model_entry>& models, std::optional<model_entry>& out,
                     std::vector<model_entry>& inline_models) {
  auto known = [&](const std::string& id) -> const model_entry* {
    for (const auto& m : models)
      if (m.id == id)
        return &m;
    return nullptr;
  };
  if (v.is_string()) {
    std::string id(v.get_string().data(), v.get_string().size());
    if (const model_entry* m = known(id)) {
      out = *m;
    } else {
      std::vector<std::string_view> ids;
      for (const auto& entry : models)
        ids.push_back(entry.id);
      check.fail(path, "expected the id of an entry in $.models ("
                         + (ids.empty() ? std::string("none declared") : join(ids)) + "), found "
                         + quote(id));
    }
    return;
  }
  if (!v.is_object()) {
    check.expected(path, "a model id or an object {\"id\", \"path\"}", v);
    return;
  }
  const json::object& o = v.get_object();
  check.known_keys(o, path, {"id", "path"});
  model_entry m;
  bool ok = true;
  if (!checker::find(o, "id")) {
    check.missing(child_path(path, "id"), "a model id");
    ok = false;
  } else if (!check.string(o, "id", path, m.id, "a model id")) {
    ok = false;
  }
  if (!checker::find(o, "path")) {
    check.missing(child_path(path, "path"), "a model file path");
    ok = false;
  } else if (!check.read_path(o, "path", path, m.path, false)) {
    ok = false;
  }
  if (!ok)
    return;
  if (!is_valid_model_id(m.id)) {
    check.fail(child_path(path, "id"),
               "expected a model id of 1 to 128 visible ASCII characters, found " + quote(m.id));
    return;
  }
  if (const model_entry* existing = known(m.id); existing && existing->path != m.path) {
    check.fail(child_path(path, "path"), "expected " + quote(existing->path)
                                           + " (the path of model " + quote(m.id)
                                           + " in $.models), found " + quote(m.path));
    return;
  }
  out = m;
  if (!known(m.id))
    inline_models.push_back(m);
}

void fill_pool_managerd(checker& check, const json::object& root, pool_managerd_config& c) {
  check.known_keys(root, "$",
                   {"node_id", "machine_id", "advertise_address", "http", "orchestrator",
                    "heartbeat", "handoff_dir", "restart", "models", "pools", "log", "auth"});
  const char* id_what = "an id of 1 to 64 characters from A-Z a-z 0-9 . _ -";
  if (!checker::find(root, "node_id"))
    check.missing("$.node_id", id_what);
  else
    check.read_id(root, "node_id", "$", c.node_id, id_what);

  std::string machine_id;
  if (check.string(root, "machine_id", "$", machine_id, "a machine id")) {
    if (machine_id.empty() || machine_id.size() > 128
        || !std::all_of(machine_id.begin(), machine_id.end(),
                        [](char ch) { return ch > 0x20 && ch < 0x7f; }))
      check.fail("$.machine_id",
                 "expected 1 to 128 visible ASCII characters, found " + quote(machine_id));
    else
      c.machine_id = machine_id;
  }
  if (c.machine_id.empty())
    c.machine_id = read_machine_id();

  check.read_http(root, c.http_listen, c.http_body_limit);

  std::string advertise;
  if (check.string(root, "advertise_address", "$", advertise, "a URL")) {
    if (!is_valid_url(advertise))
      check.fail("$.advertise_address",
                 "expected a URL such as \"http://gpu-node-1:9200\", found " + quote(advertise));
    else
      c.advertise_address = advertise;
  } else if (!checker::find(root, "advertise_address") && c.http_listen.port != 0) {
    c.advertise_address = default_advertise_address(c.http_listen, c.http_listen.port);
  }

  if (const json::value* v = checker::find(root, "orchestrator")) {
    if (const json::object* o = check.object(*v, "$.orchestrator")) {
      check.known_keys(*o, "$.orchestrator", {"cluster", "tls", "keepalive_ms", "dead_after_ms"});
      check.read_endpoint(*o, "cluster", "$.orchestrator", c.orchestrator.listen_or_connect, true);
      if (c.orchestrator.listen_or_connect.port == 0
          && !c.orchestrator.listen_or_connect.host.empty())
        check.fail("$.orchestrator.cluster",
                   "expected a port from 1 to 65535 to connect to, found "
                     + quote(c.orchestrator.listen_or_connect.to_string()));
      check.read_tls(*o, "$.orchestrator", c.orchestrator.tls);
      check.read_link_timing(*o, "$.orchestrator", c.orchestrator);
    }
  } else {
    check.missing("$.orchestrator", "an object with \"cluster\": \"host:port\" of orchestratord");
  }
  check.read_heartbeat(root, c.heartbeat);
  check.read_path(root, "handoff_dir", "$", c.handoff_dir, false);

  if (const json::value* v = checker::find(root, "restart")) {
    if (const json::object* o = check.object(*v, "$.restart")) {
      check.known_keys(*o, "$.restart",
                       {"max_restarts", "within_s", "backoff_initial_ms", "backoff_max_ms",
                        "wedged_after_ms"});
      check.read_int(*o, "wedged_after_ms", "$.restart", 100, 3600000,
                     c.restart.wedged_after_ms);
      check.read_int(*o, "max_restarts", "$.restart", 0, 1000, c.restart.max_restarts);
      check.read_int(*o, "within_s", "$.restart", 1, 86400, c.restart.within_s);
      check.read_int(*o, "backoff_initial_ms", "$.restart", 1, 3600000,
                     c.restart.backoff_initial_ms);
      long long max_ms = c.restart.backoff_max_ms;
      bool given = check.integer(*o, "backoff_max_ms", "$.restart", 1, 3600000, max_ms);
      if (given)
        c.restart.backoff_max_ms = static_cast<int>(max_ms);
      if (c.restart.backoff_max_ms < c.restart.backoff_initial_ms)
        check.fail("$.restart.backoff_max_ms",
                   "expected at least backoff_initial_ms ("
                     + std::to_string(c.restart.backoff_initial_ms) + "), found "
                     + std::to_string(c.restart.backoff_max_ms) + (given ? "" : " (the default)"));
    }
  }

  if (const json::value* v = checker::find(root, "models")) {
    if (!v->is_array()) {
      check.expected("$.models", "an array of {\"id\", \"path\"}", *v);
    } else {
      const auto& arr = v->get_array();
      for (std::size_t i = 0; i < arr.size(); ++i) {
        auto path = index_path("$.models", i);
        const json::object* o = check.object(arr[i], path);
        if (!o)
          continue;
        check.known_keys(*o, path, {"id", "path"});
        model_entry m;
        bool ok = true;
        if (!checker::find(*o, "id")) {
          check.missing(path + ".id", "a model id");
          ok = false;
        } else if (check.string(*o, "id", path, m.id, "a model id")) {
          if (!is_valid_model_id(m.id)) {
            check.fail(path + ".id",
                       "expected a model id of 1 to 128 visible ASCII characters, found "
                         + quote(m.id));
            ok = false;
          }
        } else {
          ok = false;
        }
        if (!checker::find(*o, "path")) {
          check.missing(path + ".path", "a model file path");
          ok = false;
        } else if (!check.read_path(*o, "path", path, m.path, false)) {
          ok = false;
        }
        if (!ok)
          continue;
        bool duplicate = std::any_of(c.models.begin(), c.models.end(),
                                     [&](const model_entry& e) { return e.id == m.id; });
        if (duplicate) {
          check.fail(path + ".id", "expected a model id not used before in $.models, found "
                                     + quote(m.id) + " again");
          continue;
        }
        c.models.push_back(m);
      }
    }
  }

  if (const json::value* v = checker::find(root, "pools")) {
    if (!v->is_array()) {
      check.expected("$.pools", "an array of pools", *v);
    } else {
      const auto& arr = v->get_array();
      std::vector<model_entry> inline_models;
      for (std::size_t i = 0; i < arr.size(); ++i) {
        auto path = index_path("$.pools", i);
        const json::object* o = check.object(arr[i], path);
        if (!o)
          continue;
        check.known_keys(*o, path, {"id", "devices", "slots", "threads", "model", "engine"});
        pool_entry pool;
        if (!checker::find(*o, "id"))
          check.missing(path + ".id", id_what);
        else
          check.read_id(*o, "id", path, pool.id, id_what);
        if (!pool.id.empty()) {
          bool duplicate = std::any_of(c.pools.begin(), c.pools.end(),
                                       [&](const pool_entry& p) { return p.id == pool.id; });
          if (duplicate)
            check.fail(path + ".id", "expected a pool id not used before in $.pools, found "
                                       + quote(pool.id) + " again");
        }
        if (const json::value* d = checker::find(*o, "devices")) {
          if (!d->is_array()) {
            check.expected(path + ".devices", "an array of GPU device numbers", *d);
          } else {
            const auto& devices = d->get_array();
            for (std::size_t j = 0; j < devices.size(); ++j) {
              auto dpath = index_path(path + ".devices", j);
              const json::value& dv = devices[j];
              if (!dv.is_int64() || dv.get_int64() < 0 || dv.get_int64() > 1023) {
                check.expected(dpath, "a GPU device number from 0 to 1023", dv);
                continue;
              }
              int device = static_cast<int>(dv.get_int64());
              if (std::find(pool.devices.begin(), pool.devices.end(), device)
                  != pool.devices.end()) {
                check.fail(dpath,
                           "expected each device once, found " + std::to_string(device) + " again");
                continue;
              }
              pool.devices.push_back(device);
            }
          }
        }
        check.read_int(*o, "slots", path, 1, 1024, pool.slots);
        check.read_int(*o, "threads", path, 1, 256, pool.threads);
        if (const json::value* m = checker::find(*o, "model"))
          read_pool_model(check, *m, path + ".model", c.models, pool.model, inline_models);
        check.read_choice(*o, "engine", path, {"llorch"}, pool.engine);
        c.pools.push_back(std::move(pool));
      }
      // A model declared inline by a pool joins the node's catalogue so it can be preloaded by id.
      for (auto& m : inline_models) {
        bool present = std::any_of(c.models.begin(), c.models.end(),
                                   [&](const model_entry& e) { return e.id == m.id; });
        if (!present)
          c.models.push_back(std::move(m));
      }
    }
  }
  check.read_log(root, c.log_level);
  check.read_auth(root, c.auth);
}

template <class T, class Parse>
load_result<T> load_with(const std::string& path, Parse parse) {
  constexpr std::uintmax_t max_size = 16u << 20;
  std::error_code ec;
  auto status = std::filesystem::status(path, ec);
  load_result<T> result;
  if (ec || !std::filesystem::exists(status)) {
    result.errors.push_back(path + ": expected a configuration file, found no such file");
    return result;
  }
  if (!std::filesystem::is_regular_file(status)) {
    result.errors.push_back(
      path + ": expected a configuration file, found "
      + (std::filesystem::is_directory(status) ? "a directory" : "a special file"));
    return result;
  }
  auto size = std::filesystem::file_size(path, ec);
  if (!ec && size > max_size) {
    result.errors.push_back(path + ": expected a configuration file under 16 MiB, found "
                            + std::to_string(size) + " bytes");
    return result;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    result.errors.push_back(
      path + ": expected a readable configuration file, found it cannot be opened ("
      + std::strerror(errno) + ")");
    return result;
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) {
    result.errors.push_back(path + ": expected a readable configuration file, found a read error");
    return result;
  }
  return parse(buffer.str(), path);
}

// Reads a variable through `getenv_fn`; unset and empty count as absent.
std::optional<std::string> env(const getenv_function& getenv_fn, const char* name) {
  const char* value = getenv_fn ? getenv_fn(name) : nullptr;
  if (!value || !*value)
    return std::nullopt;
  return std::string(value);
}

void apply_token(auth_settings& auth, const getenv_function& getenv_fn,
                 std::vector<std::string>& errors) {
  auto token = env(getenv_fn, "LLORCH_API_TOKEN");
  if (!token)
    return;
  std::string why;
  if (!checker::token_is_valid(*token, why)) {
    errors.push_back("environment LLORCH_API_TOKEN: expected " + why + ", found a value of "
                     + std::to_string(token->size()) + " bytes that is not");
    return;
  }
  auth.token = *token;
}

} // namespace

load_result<orchestratord_config> parse_orchestratord_config(std::string_view text,
                                                             std::string_view file_name) {
  return parse_with<orchestratord_config>(text, file_name, fill_orchestratord);
}

load_result<pool_managerd_config> parse_pool_managerd_config(std::string_view text,
                                                             std::string_view file_name) {
  return parse_with<pool_managerd_config>(text, file_name, fill_pool_managerd);
}

load_result<orchestratord_config> load_orchestratord_config(const std::string& path) {
  return load_with<orchestratord_config>(path, parse_orchestratord_config);
}

load_result<pool_managerd_config> load_pool_managerd_config(const std::string& path) {
  return load_with<pool_managerd_config>(path, parse_pool_managerd_config);
}

std::vector<std::string> apply_env(orchestratord_config& config, const getenv_function& getenv_fn) {
  std::vector<std::string> errors;
  apply_token(config.auth, getenv_fn, errors);
  if (auto profile = env(getenv_fn, "ORCHESTRATORD_CLOUD_PROFILE")) {
    std::string lower;
    for (char c : *profile)
      lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower == "true" || lower == "1")
      config.cloud_profile = true;
    else if (lower == "false" || lower == "0")
      config.cloud_profile = false;
    else
      errors.push_back(
        "environment ORCHESTRATORD_CLOUD_PROFILE: expected true, false, 1 or 0, found "
        + quote(*profile));
  }
  return errors;
}

std::vector<std::string> apply_env(pool_managerd_config& config, const getenv_function& getenv_fn) {
  std::vector<std::string> errors;
  apply_token(config.auth, getenv_fn, errors);
  return errors;
}

} // namespace llorch::config
