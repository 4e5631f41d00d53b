#include "actors/node/handoff_file.hpp"

#include "runtime/config.hpp"

#include <boost/json.hpp>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <sys/stat.h>
#include <unistd.h>

namespace llorch::handoff {
namespace {

namespace json = boost::json;

// Reasons quote what was found; a hostile value must not turn one log line into a page.
std::string shorten(std::string_view s, std::size_t max = 64) {
  std::string out;
  for (char c : s.substr(0, max)) {
    auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? '?' : c;
  }
  if (s.size() > max)
    out += "...";
  return out;
}

std::string quote(std::string_view s) {
  return "\"" + shorten(s) + "\"";
}

std::string describe(const json::value& v) {
  switch (v.kind()) {
  case json::kind::null:
    return "null";
  case json::kind::bool_:
    return v.get_bool() ? "true" : "false";
  case json::kind::int64:
  case json::kind::uint64:
  case json::kind::double_:
    return "the number " + shorten(json::serialize(v), 32);
  case json::kind::string:
    return "the string " + quote(v.get_string());
  case json::kind::array:
    return "an array";
  case json::kind::object:
    return "an object";
  }
  return "a value";
}

bool has_control(std::string_view s) {
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f)
      return true;
  }
  return false;
}

bool is_device_mask_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ',' ||
         c == '.' || c == '_' || c == ':' || c == '-';
}

bool is_digest_char(char c) {
  auto u = static_cast<unsigned char>(c);
  return u > 0x20 && u < 0x7f;
}

// Validation of one object's fields; the first problem wins (a user fixes one thing at a time
// anyway, and the engine writes all fields or none).
class checker {
public:
  checker(const json::object& o, std::string prefix) : o_(o), prefix_(std::move(prefix)) {}

  const std::string& error() const { return error_; }
  bool failed() const { return !error_.empty(); }

  const json::value* get(std::string_view key, bool required = true) {
    if (failed())
      return nullptr;
    auto* v = o_.if_contains(key);
    if (!v && required)
      error_ = "missing field \"" + prefix_ + std::string(key) + "\"";
    return v;
  }

  void fail(std::string_view key, std::string_view expected, const json::value& found) {
    if (!failed())
      error_ = "field \"" + prefix_ + std::string(key) + "\": expected " + std::string(expected) +
               ", found " + describe(found);
  }

  // A string of 1..max characters without control characters (`pred` narrows it further).
  bool text(std::string_view key, std::string& out, std::size_t max, std::string_view expected,
            bool (*pred)(std::string_view) = nullptr) {
    auto* v = get(key);
    if (!v)
      return false;
    if (!v->is_string() || v->get_string().empty() || v->get_string().size() > max ||
        has_control(v->get_string()) || (pred && !pred(v->get_string()))) {
      fail(key, expected, *v);
      return false;
    }
    out = std::string(v->get_string());
    return true;
  }

  // An integer in [lo, hi]; 4.0 or "4" are not integers here.
  bool integer(std::string_view key, std::int64_t& out, std::int64_t lo, std::int64_t hi) {
    auto* v = get(key);
    if (!v)
      return false;
    std::string expected = "an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
    if (v->is_int64()) {
      out = v->get_int64();
    } else if (v->is_uint64()) {
      out = std::numeric_limits<std::int64_t>::max(); // beyond any range used here
    } else {
      fail(key, expected, *v);
      return false;
    }
    if (out < lo || out > hi) {
      fail(key, expected, *v);
      return false;
    }
    return true;
  }

private:
  const json::object& o_;
  std::string prefix_;
  std::string error_;
};

bool id_ok(std::string_view s) {
  return config::is_valid_id(s);
}

bool device_mask_ok(std::string_view s) {
  for (char c : s)
    if (!is_device_mask_char(c))
      return false;
  return true;
}

bool digest_ok(std::string_view s) {
  for (char c : s)
    if (!is_digest_char(c))
      return false;
  return true;
}

bool rfc3339_ok(std::string_view s) {
  return parse_rfc3339_ms(s).has_value();
}

int digits(std::string_view s, std::size_t pos, std::size_t n, bool& ok) {
  int v = 0;
  if (pos + n > s.size()) {
    ok = false;
    return 0;
  }
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') {
      ok = false;
      return 0;
    }
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

std::string errno_text(int e) {
  return std::strerror(e);
}

} // namespace

bool is_handoff_candidate(std::string_view name) {
  constexpr std::string_view ext = ".json";
  if (name.empty() || name.front() == '.' || name.size() <= ext.size())
    return false;
  if (name.substr(name.size() - ext.size()) != ext)
    return false;
  return name.find(".tmp") == std::string_view::npos;
}

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07u;
    } else {
      return false; // continuation byte first, 0xC0/0xC1 (overlong) or 0xF5..0xFF
    }
    if (i + len > n)
      return false;
    for (std::size_t k = 1; k < len; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0u) != 0x80u)
        return false;
      cp = (cp << 6) | (cc & 0x3Fu);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

std::optional<std::int64_t> parse_rfc3339_ms(std::string_view s) {
  // YYYY-MM-DDTHH:MM:SS[.fraction](Z|+hh:mm|-hh:mm)
  bool ok = true;
  if (s.size() < 20 || s.size() > 40)
    return std::nullopt;
  const int year = digits(s, 0, 4, ok);
  const int month = digits(s, 5, 2, ok);
  const int day = digits(s, 8, 2, ok);
  const int hour = digits(s, 11, 2, ok);
  const int minute = digits(s, 14, 2, ok);
  const int second = digits(s, 17, 2, ok);
  if (!ok || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' ||
      s[16] != ':')
    return std::nullopt;
  static constexpr int month_days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  if (month < 1 || month > 12 || day < 1 || day > month_days[month - 1] ||
      (month == 2 && day == 29 && !leap) || hour > 23 || minute > 59 || second > 60)
    return std::nullopt;
  std::size_t pos = 19;
  int millis = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    std::size_t start = pos;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      if (pos - start < 3)
        millis = millis * 10 + (s[pos] - '0');
      ++pos;
    }
    if (pos == start)
      return std::nullopt;
    for (std::size_t k = pos - start; k < 3; ++k)
      millis *= 10;
  }
  if (pos >= s.size())
    return std::nullopt;
  int offset_min = 0;
  if (s[pos] == 'Z' || s[pos] == 'z') {
    ++pos;
  } else if (s[pos] == '+' || s[pos] == '-') {
    const int sign = s[pos] == '-' ? -1 : 1;
    const int oh = digits(s, pos + 1, 2, ok);
    const int om = digits(s, pos + 4, 2, ok);
    if (!ok || pos + 3 >= s.size() || s[pos + 3] != ':' || oh > 23 || om > 59)
      return std::nullopt;
    offset_min = sign * (oh * 60 + om);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != s.size())
    return std::nullopt;
  const std::int64_t days =
      days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
  const std::int64_t secs = days * 86400 + hour * 3600 + minute * 60 + second - offset_min * 60;
  return secs * 1000 + millis;
}

handoff_result parse_handoff(std::string_view text, std::string_view file_name) {
  if (text.size() > max_file_bytes)
    return handoff_result::fail("larger than " + std::to_string(max_file_bytes) + " bytes (" +
                                std::to_string(text.size()) + " bytes)");
  if (text.empty())
    return handoff_result::fail("empty file (a replica writes its handoff file in one rename)");
  if (!valid_utf8(text))
    return handoff_result::fail("not valid UTF-8");

  json::parse_options opts;
  opts.max_depth = 8; // the format nests two levels; deeper input is hostile
  std::error_code ec;
  json::value root =
      json::parse(json::string_view(text.data(), text.size()), ec, json::storage_ptr(), opts);
  if (ec)
    return handoff_result::fail("not valid JSON: " + ec.message());
  if (!root.is_object())
    return handoff_result::fail("expected a JSON object at the top level, found " + describe(root));
  const auto& o = root.get_object();

  handoff_record r;
  checker c(o, "");
  std::int64_t n = 0;
  c.text("pool_id", r.pool_id, 64, "a pool id of 1 to 64 characters from [A-Za-z0-9._-]", id_ok);
  c.text("replica_id", r.replica_id, 64, "a replica id of 1 to 64 characters from [A-Za-z0-9._-]",
         id_ok);
  c.text("engine", r.engine, 64, "an engine name of 1 to 64 characters from [A-Za-z0-9._-]", id_ok);
  c.text("engine_version", r.engine_version, 128,
         "a version string of 1 to 128 characters without control characters");
  if (auto* m = c.get("model")) {
    if (!m->is_object()) {
      c.fail("model", "an object {\"id\", \"path\", \"digest\"?}", *m);
    } else {
      checker mc(m->get_object(), "model.");
      mc.text("id", r.model_id, 256,
              "a model id of 1 to 256 characters without control characters");
      mc.text("path", r.model_path, 4096,
              "a file path of 1 to 4096 characters without control characters");
      if (auto* d = mc.get("digest", false); d && !d->is_null())
        mc.text("digest", r.model_digest, 256,
                "a digest of 1 to 256 printable characters without spaces, e.g. \"sha256:...\"",
                digest_ok);
      if (mc.failed())
        return handoff_result::fail(mc.error());
    }
  }
  if (c.text("endpoint", r.endpoint, 300,
             "\"host:port\" where the pool reaches the engine, e.g. \"127.0.0.1:41234\"")) {
    std::string why;
    auto ep = config::parse_endpoint(r.endpoint, &why);
    if (!ep)
      c.fail("endpoint", why, *o.if_contains("endpoint"));
    else if (ep->port == 0)
      c.fail("endpoint", "a port from 1 to 65535 (the port the engine is published on)",
             *o.if_contains("endpoint"));
    else if (ep->is_wildcard())
      c.fail("endpoint", "an address the pool can connect to, not a wildcard",
             *o.if_contains("endpoint"));
    else {
      r.endpoint_host = ep->host;
      r.endpoint_port = ep->port;
    }
  }
  if (c.integer("pid", n, 1, std::numeric_limits<std::int32_t>::max()))
    r.pid = n;
  c.text("device_mask", r.device_mask, 256,
         "a device list of 1 to 256 characters from [A-Za-z0-9,._:-], e.g. \"0,1\" or \"cpu\"",
         device_mask_ok);
  if (c.integer("slots_total", n, 1, 1024))
    r.slots_total = static_cast<std::int32_t>(n);
  if (c.integer("ctx_max", n, 1, std::numeric_limits<std::int32_t>::max()))
    r.ctx_max = static_cast<std::int32_t>(n);
  if (c.text("written_at", r.written_at, 40,
             "an RFC 3339 time such as \"2026-11-29T04:40:00.123Z\"", rfc3339_ok))
    r.written_at_ms = *parse_rfc3339_ms(r.written_at);
  if (c.failed())
    return handoff_result::fail(c.error());

  const std::string expected = r.pool_id + "-" + r.replica_id + ".json";
  if (file_name != expected)
    return handoff_result::fail("file name " + quote(file_name) +
                                " does not match its contents: pool_id " + quote(r.pool_id) +
                                " and replica_id " + quote(r.replica_id) + " belong in " +
                                quote(expected));
  return handoff_result::ok(std::move(r));
}

namespace {

file_identity identity_of(const struct stat& st) {
  file_identity id;
  id.device = static_cast<std::uint64_t>(st.st_dev);
  id.inode = static_cast<std::uint64_t>(st.st_ino);
  id.size = static_cast<std::int64_t>(st.st_size);
  id.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  id.ctime_ns = static_cast<std::int64_t>(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec;
  return id;
}

const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode))
    return "a directory";
  if (S_ISFIFO(mode))
    return "a FIFO";
  if (S_ISSOCK(mode))
    return "a socket";
  if (S_ISCHR(mode) || S_ISBLK(mode))
    return "a device";
  return "not a regular file";
}

std::string file_name_of(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

} // namespace

std::optional<file_identity> identify(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0)
    return std::nullopt;
  return identity_of(st);
}

handoff_result read_handoff_file(const std::string& path, file_identity* identity) {
  // O_NONBLOCK: opening a FIFO for reading must not wait for a writer.
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    int e = errno;
    if (e == ELOOP)
      return handoff_result::fail("is a symbolic link (an engine writes a regular file)");
    return handoff_result::fail("cannot open: " + errno_text(e));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    return handoff_result::fail("cannot stat: " + errno_text(e));
  }
  if (identity)
    *identity = identity_of(st);
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return handoff_result::fail(std::string("is ") + kind_of(st.st_mode) + ", not a regular file");
  }
  if (st.st_size > static_cast<off_t>(max_file_bytes)) {
    ::close(fd);
    return handoff_result::fail("larger than " + std::to_string(max_file_bytes) + " bytes (" +
                                std::to_string(st.st_size) + " bytes)");
  }
  // Read one byte past the limit so that a file growing after fstat is still caught.
  std::string text(max_file_bytes + 1, '\0');
  std::size_t got = 0;
  while (got < text.size()) {
    ssize_t k = ::read(fd, text.data() + got, text.size() - got);
    if (k < 0) {
      if (errno == EINTR)
        continue;
      int e = errno;
      ::close(fd);
      return handoff_result::fail("cannot read: " + errno_text(e));
    }
    if (k == 0)
      break;
    got += static_cast<std::size_t>(k);
  }
  ::close(fd);
  text.resize(got);
  if (identity) {
    std::uint64_t h = 14695981039346656037ULL;
    for (char c : text)
      h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
    identity->content_hash = h;
  }
  auto result = parse_handoff(text, file_name_of(path));
  if (result)
    result.record().path = path;
  return result;
}

} // namespace llorch::handoff
