#include "actors/node/handoff_watcher.hpp"

#include "actors/node/handoff_messages.hpp"
#include "runtime/log.hpp"
#include "runtime/metrics.hpp"

#include <caf/all.hpp>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <filesystem>
#include <map>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace llorch {
namespace {

namespace fs = std::filesystem;
using handoff::file_identity;
using handoff::handoff_record;

// Internal messages: from the reader thread, and the rescan timer.
using fs_event_atom = caf::atom_constant<caf::atom("hofsevent")>;
using watch_lost_atom = caf::atom_constant<caf::atom("hofslost")>;
using rescan_atom = caf::atom_constant<caf::atom("horescan")>;

constexpr std::uint32_t watch_mask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM |
                                     IN_CREATE | IN_ONLYDIR | IN_EXCL_UNLINK;

std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string errno_text(int e) {
  return std::strerror(e);
}

// The inotify descriptor and the wake-up eventfd, shared by the actor and the reader thread so
// that whichever lets go last closes them.
struct inotify_fds {
  int inotify = -1;
  int wake = -1;
  ~inotify_fds() {
    if (inotify >= 0)
      ::close(inotify);
    if (wake >= 0)
      ::close(wake);
  }
};

// Blocks in poll() on its own thread and forwards every event to the actor as a message. Holds
// only a weak reference, so it never keeps the actor alive.
class inotify_reader {
public:
  static std::unique_ptr<inotify_reader> start(caf::weak_actor_ptr target, std::string& error) {
    auto fds = std::make_shared<inotify_fds>();
    fds->inotify = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fds->inotify < 0) {
      error = "inotify_init1 failed: " + errno_text(errno);
      return nullptr;
    }
    fds->wake = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fds->wake < 0) {
      error = "eventfd failed: " + errno_text(errno);
      return nullptr;
    }
    std::unique_ptr<inotify_reader> r(new inotify_reader(fds));
    r->thread_ = std::thread([fds, target = std::move(target)] { run(*fds, target); });
    return r;
  }

  ~inotify_reader() {
    std::uint64_t one = 1;
    if (::write(fds_->wake, &one, sizeof one) < 0) {
      // Only fails when the counter would overflow: the thread is being woken already.
    }
    // The actor's last reference may be dropped by the reader itself (after a send), so this can
    // run on the reader thread: it then finishes on its own.
    if (thread_.get_id() == std::this_thread::get_id())
      thread_.detach();
    else if (thread_.joinable())
      thread_.join();
  }

  int fd() const { return fds_->inotify; }

private:
  explicit inotify_reader(std::shared_ptr<inotify_fds> fds) : fds_(std::move(fds)) {}

  static void run(inotify_fds& fds, const caf::weak_actor_ptr& target) {
    alignas(inotify_event) std::array<char, 64 * 1024> buf;
    std::array<pollfd, 2> p{};
    p[0] = {fds.inotify, POLLIN, 0};
    p[1] = {fds.wake, POLLIN, 0};
    for (;;) {
      int r = ::poll(p.data(), p.size(), -1);
      if (r < 0) {
        if (errno == EINTR)
          continue;
        return;
      }
      if (p[1].revents != 0)
        return;
      if ((p[0].revents & POLLIN) == 0)
        continue;
      ssize_t n = ::read(fds.inotify, buf.data(), buf.size());
      if (n <= 0)
        continue; // EAGAIN / EINTR
      const std::int64_t seen = steady_ns();
      auto strong = target.lock();
      if (!strong)
        return;
      auto dest = caf::actor_cast<caf::actor>(strong);
      for (ssize_t off = 0; off + static_cast<ssize_t>(sizeof(inotify_event)) <= n;) {
        inotify_event ev;
        std::memcpy(&ev, buf.data() + off, sizeof ev);
        std::string name;
        if (ev.len > 0) {
          const char* s = buf.data() + off + sizeof(inotify_event);
          name.assign(s, ::strnlen(s, ev.len));
        }
        off += static_cast<ssize_t>(sizeof(inotify_event) + ev.len);
        if ((ev.mask & (IN_IGNORED | IN_Q_OVERFLOW)) != 0)
          caf::anon_send(dest, watch_lost_atom::value, static_cast<std::int32_t>(ev.wd),
                         static_cast<std::uint32_t>(ev.mask));
        else if (!name.empty())
          caf::anon_send(dest, fs_event_atom::value, std::move(name),
                         static_cast<std::uint32_t>(ev.mask), seen);
      }
    }
  }

  std::shared_ptr<inotify_fds> fds_;
  std::thread thread_;
};

struct tracked_file {
  file_identity identity;
  bool valid = false; // false: rejected but could not be moved away (not counted again)
  std::string pool_id;
  std::string replica_id;
};

struct watcher_state {
  static inline const char* name = "handoff_watcher";

  handoff_watcher_settings settings;
  std::string rejected_dir;
  caf::actor sink;
  std::shared_ptr<metrics::registry> registry;
  metrics::family<metrics::counter>* processed = nullptr;
  metrics::histogram* duration = nullptr;

  std::unique_ptr<inotify_reader> reader;
  int wd = -1;
  std::string reader_error; // last inotify failure, logged once per distinct text
  std::string dir_error;    // last directory failure
  std::chrono::steady_clock::time_point dir_error_logged{};
  bool dir_ready = false;

  std::map<std::string, tracked_file> files; // by file name
};

using watcher_actor = caf::stateful_actor<watcher_state>;

// The pool a file name belongs to for the metric label: the longest known pool id that the name
// starts with followed by '-'. Unknown names share one label, so hostile names cannot grow the
// exposition without bound.
std::string pool_label(const watcher_state& st, const std::string& file_name) {
  std::string best;
  for (auto& p : st.settings.known_pools)
    if (file_name.size() > p.size() + 1 && file_name.compare(0, p.size(), p) == 0 &&
        file_name[p.size()] == '-' && p.size() > best.size())
      best = p;
  return best.empty() ? "unknown" : best;
}

void count(watcher_state& st, const std::string& pool, const char* outcome) {
  if (st.processed)
    st.processed->with({pool, outcome}).inc();
}

// Moves `name` into rejected/ under a name not used there yet; returns the new path or "" with
// `error` set.
std::string quarantine(const watcher_state& st, const std::string& name, std::string& error) {
  const std::string from = st.settings.handoff_dir + "/" + name;
  for (int n = 0; n < 10000; ++n) {
    std::string to = st.rejected_dir + "/" + name + (n == 0 ? "" : "." + std::to_string(n));
    if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0)
      return to;
    int e = errno;
    if (e == EEXIST || e == ENOTEMPTY)
      continue;
    if (e == EINVAL || e == ENOSYS) { // file system without RENAME_NOREPLACE
      struct stat sb {};
      if (::lstat(to.c_str(), &sb) == 0)
        continue;
      if (::rename(from.c_str(), to.c_str()) == 0)
        return to;
      e = errno;
    }
    error = "cannot move it to " + st.rejected_dir + ": " + errno_text(e);
    return {};
  }
  error = "cannot move it to " + st.rejected_dir + ": no free name";
  return {};
}

void gone(watcher_actor* self, const std::string& name) {
  auto& st = self->state;
  auto it = st.files.find(name);
  if (it == st.files.end())
    return;
  if (it->second.valid) {
    self->send(st.sink, handoff_removed_atom::value, it->second.pool_id, it->second.replica_id);
    log::info("handoff_removed", {{"pool_id", it->second.pool_id},
                                  {"replica_id", it->second.replica_id},
                                  {"path", st.settings.handoff_dir + "/" + name}});
  }
  st.files.erase(it);
}

void reject(watcher_actor* self, const std::string& name, const std::string& reason,
            const file_identity& identity) {
  auto& st = self->state;
  const std::string path = st.settings.handoff_dir + "/" + name;
  gone(self, name); // a valid file replaced by a bad one: its replica's record is gone
  count(st, pool_label(st, name), "invalid"); // before the file visibly moves
  std::string move_error;
  std::string moved_to = quarantine(st, name, move_error);
  if (moved_to.empty()) {
    // Remember it, so the same file is not rejected (and counted) again on every rescan.
    st.files[name] = tracked_file{identity, false, {}, {}};
    log::error("handoff_rejected",
               {{"path", path}, {"reason", reason}, {"quarantine", move_error}});
  } else {
    log::warn("handoff_rejected", {{"path", path}, {"reason", reason}, {"moved_to", moved_to}});
  }
}

std::string known_list(const watcher_state& st) {
  std::string out;
  for (auto& p : st.settings.known_pools)
    out += (out.empty() ? "" : ", ") + p;
  return out.empty() ? "none" : out;
}

// Metadata alone cannot tell two versions apart when both were written within one kernel tick
// into a reused inode: such recent files are re-read and compared by content.
bool recently_modified(const file_identity& id) {
  const std::int64_t now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
  return now_ns - id.ctime_ns < 2'000'000'000LL; // ctime >= mtime; a rename updates it too
}

// Looks at one directory entry, first seen at `seen_ns` (steady clock).
void examine(watcher_actor* self, const std::string& name, std::int64_t seen_ns) {
  auto& st = self->state;
  if (!handoff::is_handoff_candidate(name))
    return;
  const std::string path = st.settings.handoff_dir + "/" + name;
  auto current = handoff::identify(path);
  if (!current) {
    gone(self, name);
    return;
  }
  auto it = st.files.find(name);
  if (it != st.files.end() && it->second.identity == *current && !recently_modified(*current))
    return; // unchanged since it was last handled
  file_identity opened = *current;
  auto result = handoff::read_handoff_file(path, &opened);
  if (it != st.files.end() && it->second.identity == opened &&
      it->second.identity.content_hash == opened.content_hash)
    return; // read again, same bytes
  if (!result) {
    if (!handoff::identify(path)) { // vanished while being read: nothing to reject
      gone(self, name);
      return;
    }
    reject(self, name, result.error(), opened);
    return;
  }
  handoff_record& rec = result.record();
  if (st.settings.known_pools.count(rec.pool_id) == 0) {
    reject(self, name,
           "pool_id \"" + rec.pool_id + "\" is not a pool of this node (known: " + known_list(st) +
               ")",
           opened);
    return;
  }
  auto& entry = st.files[name];
  if (entry.valid && (entry.pool_id != rec.pool_id || entry.replica_id != rec.replica_id))
    self->send(st.sink, handoff_removed_atom::value, entry.pool_id, entry.replica_id);
  entry = tracked_file{opened, true, rec.pool_id, rec.replica_id};
  const std::string pool_id = rec.pool_id;
  const std::string replica_id = rec.replica_id;
  // Metrics first: whoever acts on the record (a test, a scrape it triggers) already sees them.
  // The send that follows is one mailbox enqueue.
  const double seconds = static_cast<double>(steady_ns() - seen_ns) / 1e9;
  if (st.duration)
    st.duration->observe(seconds < 0 ? 0 : seconds);
  count(st, pool_id, "valid");
  self->send(st.sink, handoff_atom::value, std::move(rec));
  log::info("handoff_processed", {{"pool_id", pool_id},
                                  {"replica_id", replica_id},
                                  {"path", path},
                                  {"latency_ms", seconds * 1000}});
}

// Creates the directory and rejected/ if missing, and (re)adds the inotify watch. False when the
// handoff directory itself is not usable; the error is logged, repeated at most every 30 s.
bool ensure_dir(watcher_actor* self) {
  auto& st = self->state;
  const auto& dir = st.settings.handoff_dir;
  std::error_code ec;
  std::string problem;
  fs::create_directories(dir, ec);
  if (ec)
    problem = "cannot create the handoff directory: " + ec.message();
  else if (!fs::is_directory(dir, ec))
    problem = "the handoff directory path exists but is not a directory";
  else if (::access(dir.c_str(), R_OK | W_OK | X_OK) != 0)
    problem = "the handoff directory is not readable and writable: " + errno_text(errno);
  if (!problem.empty()) {
    auto now = std::chrono::steady_clock::now();
    if (problem != st.dir_error || now - st.dir_error_logged >= std::chrono::seconds(30)) {
      log::error("handoff_dir_unusable",
                 {{"path", dir}, {"reason", problem}, {"action", "retrying on every rescan"}});
      st.dir_error_logged = now;
    }
    st.dir_error = problem;
    st.dir_ready = false;
    return false;
  }
  fs::create_directory(st.rejected_dir, ec);
  if (ec || !fs::is_directory(st.rejected_dir)) {
    std::string why = "cannot create " + st.rejected_dir + ": " +
                      (ec ? ec.message() : std::string("exists but is not a directory"));
    if (why != st.dir_error)
      log::error(
          "handoff_dir_unusable",
          {{"path", dir}, {"reason", why}, {"action", "bad files stay in place until fixed"}});
    st.dir_error = why;
  } else if (!st.dir_ready || !st.dir_error.empty()) {
    log::info("handoff_dir_ready", {{"path", dir}});
    st.dir_error.clear();
  }
  st.dir_ready = true;

  if (!st.reader) {
    std::string why;
    st.reader = inotify_reader::start(caf::weak_actor_ptr{self->ctrl()}, why);
    if (!st.reader && why != st.reader_error) {
      log::error("handoff_inotify_failed",
                 {{"path", dir}, {"reason", why}, {"action", "rescans only"}});
      st.reader_error = why;
    }
  }
  if (st.reader && st.wd < 0) {
    st.wd = ::inotify_add_watch(st.reader->fd(), dir.c_str(), watch_mask);
    if (st.wd < 0) {
      std::string why = "inotify_add_watch failed: " + errno_text(errno);
      if (why != st.reader_error)
        log::error("handoff_inotify_failed",
                   {{"path", dir}, {"reason", why}, {"action", "rescans only"}});
      st.reader_error = why;
    } else {
      st.reader_error.clear();
    }
  }
  return true;
}

void rescan(watcher_actor* self) {
  auto& st = self->state;
  if (!ensure_dir(self)) {
    // Whatever was there is out of reach: its replicas' records no longer stand.
    while (!st.files.empty())
      gone(self, st.files.begin()->first);
    return;
  }
  const std::int64_t now = steady_ns();
  std::set<std::string> present;
  if (DIR* d = ::opendir(st.settings.handoff_dir.c_str())) {
    while (dirent* e = ::readdir(d))
      if (handoff::is_handoff_candidate(e->d_name))
        present.insert(e->d_name);
    ::closedir(d);
  } else {
    log::error("handoff_dir_unusable", {{"path", st.settings.handoff_dir},
                                        {"reason", "cannot list: " + errno_text(errno)}});
    return;
  }
  for (auto& name : present)
    examine(self, name, now);
  std::vector<std::string> missing;
  for (auto& [name, entry] : st.files)
    if (present.count(name) == 0)
      missing.push_back(name);
  for (auto& name : missing)
    gone(self, name);
}

caf::behavior handoff_watcher(watcher_actor* self, handoff_watcher_settings settings,
                              caf::actor sink, std::shared_ptr<metrics::registry> registry) {
  auto& st = self->state;
  st.settings = std::move(settings);
  while (st.settings.handoff_dir.size() > 1 && st.settings.handoff_dir.back() == '/')
    st.settings.handoff_dir.pop_back();
  st.rejected_dir = st.settings.handoff_dir + "/rejected";
  if (st.settings.rescan_interval.count() <= 0)
    st.settings.rescan_interval = std::chrono::milliseconds(1000);
  st.sink = std::move(sink);
  st.registry = std::move(registry);
  if (st.registry) {
    // Exactly the definitions of export_pool_metrics (actors/node/pool_metrics.cpp).
    st.processed =
        &st.registry->counter_family("pool_handoff_files_processed_total",
                                     "Handoff files processed, by outcome", {"pool_id", "outcome"});
    st.duration =
        &st.registry
             ->histogram_family("pool_handoff_processing_duration_seconds",
                                "Time from a handoff file appearing to its pool being ready", {},
                                {0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5})
             .with({});
  }
  log::info("handoff_watcher_started",
            {{"path", st.settings.handoff_dir},
             {"rescan_ms", static_cast<std::int64_t>(st.settings.rescan_interval.count())}});
  // The first scan runs before any message is handled: a query answered later sees its result.
  rescan(self);
  self->delayed_send(self, st.settings.rescan_interval, rescan_atom::value, true);
  return {
      [self](rescan_atom, bool periodic) {
        rescan(self);
        if (periodic)
          self->delayed_send(self, self->state.settings.rescan_interval, rescan_atom::value, true);
      },
      [self](fs_event_atom, const std::string& name, std::uint32_t mask, std::int64_t seen_ns) {
        if ((mask & (IN_DELETE | IN_MOVED_FROM)) != 0) {
          gone(self, name);
        } else if ((mask & IN_CREATE) != 0) {
          // A regular file is read at IN_CLOSE_WRITE, once written. Anything else (a directory, a
          // FIFO, a symbolic link) never gets that event: look at it now.
          struct stat sb {};
          const std::string path = self->state.settings.handoff_dir + "/" + name;
          if (::lstat(path.c_str(), &sb) == 0 && !S_ISREG(sb.st_mode))
            examine(self, name, seen_ns);
        } else {
          examine(self, name, seen_ns);
        }
      },
      [self](caf::get_atom) { return std::make_tuple(self->state.dir_ready, self->state.wd >= 0); },
      [self](watch_lost_atom, std::int32_t wd, std::uint32_t mask) {
        auto& ws = self->state;
        if ((mask & IN_Q_OVERFLOW) != 0) {
          log::warn("handoff_events_lost",
                    {{"path", ws.settings.handoff_dir}, {"action", "rescanning"}});
        } else if (wd == ws.wd) {
          // The directory was removed or moved away: recreate it and watch the new one.
          log::warn("handoff_dir_lost",
                    {{"path", ws.settings.handoff_dir}, {"action", "recreating"}});
          ws.wd = -1;
          ws.dir_ready = false; // logs handoff_dir_ready again once recreated
        }
        self->send(self, rescan_atom::value, false);
      },
  };
}

} // namespace

caf::actor spawn_handoff_watcher(caf::actor_system& sys, handoff_watcher_settings settings,
                                 caf::actor sink, std::shared_ptr<metrics::registry> registry) {
  return sys.spawn(handoff_watcher, std::move(settings), std::move(sink), std::move(registry));
}

} // namespace llorch
