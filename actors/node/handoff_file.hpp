#pragma once
// One handoff file (CONTRACT §4): `<handoff_dir>/<pool_id>-<replica_id>.json`, written atomically
// by an engine replica when it is ready. Reading and validating it is pure (no CAF, no actor), so
// the watcher and the tests share one definition of "valid".
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace llorch::handoff {

// Files above this size are rejected unread: a real handoff file is a few hundred bytes.
inline constexpr std::size_t max_file_bytes = 64 * 1024;

struct handoff_record {
  std::string pool_id;
  std::string replica_id;
  std::string engine;
  std::string engine_version;
  std::string model_id;
  std::string model_path;
  std::string model_digest; // empty when the file gives none
  std::string endpoint;     // as written: "host:port" or "[v6]:port"
  std::string endpoint_host;
  std::uint16_t endpoint_port = 0;
  std::int64_t pid = 0;
  std::string device_mask;
  std::int32_t slots_total = 0;
  std::int32_t ctx_max = 0;
  std::string written_at;         // RFC 3339, as written
  std::int64_t written_at_ms = 0; // the same instant, ms since the Unix epoch
  std::string path;               // the file it came from (set by read_handoff_file)
};

// A parse or read outcome: a record, or a reason an operator can act on.
class handoff_result {
public:
  static handoff_result ok(handoff_record r) {
    handoff_result x;
    x.record_ = std::move(r);
    return x;
  }
  static handoff_result fail(std::string why) {
    handoff_result x;
    x.error_ = std::move(why);
    return x;
  }
  explicit operator bool() const { return record_.has_value(); }
  const handoff_record& record() const { return *record_; }
  handoff_record& record() { return *record_; }
  const std::string& error() const { return error_; }

private:
  std::optional<handoff_record> record_;
  std::string error_;
};

// True for names the watcher looks at: `*.json`, not a dot-file, not a temp file (`.tmp` anywhere
// in the name, e.g. the engine's `pool-0-0.json.tmp.1234`). Everything else is ignored, not
// rejected.
bool is_handoff_candidate(std::string_view file_name);

// Validates `text` as the contents of the file called `file_name` (no directory part).
handoff_result parse_handoff(std::string_view text, std::string_view file_name);

// Which version of a directory entry a record was read from: a file replaced by rename has a new
// inode, a file rewritten in place a new size or mtime.
struct file_identity {
  std::uint64_t device = 0;
  std::uint64_t inode = 0;
  std::int64_t size = 0;
  std::int64_t mtime_ns = 0;
  std::int64_t ctime_ns = 0;
  // FNV-1a of the bytes, set by read_handoff_file; not part of ==. Timestamps are as coarse as the
  // kernel tick and inode numbers are reused, so a quick rewrite can look unchanged by metadata.
  std::uint64_t content_hash = 0;
  bool operator==(const file_identity& o) const {
    return device == o.device && inode == o.inode && size == o.size && mtime_ns == o.mtime_ns &&
           ctime_ns == o.ctime_ns;
  }
  bool operator!=(const file_identity& o) const { return !(*this == o); }
};

// Opens `path` without following a symbolic link and without blocking (a FIFO is refused, not
// waited on), checks it is a regular file of at most max_file_bytes, reads and parses it. When
// `identity` is given it receives the fstat() of what was opened (also on failure, once opened).
handoff_result read_handoff_file(const std::string& path, file_identity* identity = nullptr);

// lstat() of the entry; nullopt when it does not exist (or cannot be looked at).
std::optional<file_identity> identify(const std::string& path);

// "2026-11-29T04:40:00.123Z" (or with a ±hh:mm offset) to ms since the epoch; nullopt if malformed.
std::optional<std::int64_t> parse_rfc3339_ms(std::string_view text);

// True when `text` is well-formed UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF).
bool valid_utf8(std::string_view text);

} // namespace llorch::handoff
