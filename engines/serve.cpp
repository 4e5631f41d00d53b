#include "engines/serve.hpp"

#include "engines/orchestrator_link.hpp"

#include <boost/json.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/all.hpp>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <ctime>
#include <climits>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <pthread.h>
#include <unistd.h>

#include "engines/engine_worker.hpp"
#include "llorch_version.hpp"

namespace llorch::engine {

namespace {

std::string now_iso8601() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

// MemAvailable from /proc/meminfo in bytes, 0 when unknown.
std::uint64_t available_memory() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  std::uint64_t kb = 0;
  std::string unit;
  while (f >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return 0;
}

bool write_fd(int fd, const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    const ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    off += static_cast<std::size_t>(n);
  }
  return true;
}

std::string base_name(const std::string& p) {
  const auto slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

} // namespace

std::string handoff_path(const std::string& dir, const std::string& pool_id, const std::string& replica_id) {
  return dir + "/" + pool_id + "-" + replica_id + ".json";
}

status write_handoff(const std::string& path, const handoff_info& h) {
  boost::json::object o;
  o["pool_id"] = h.pool_id;
  o["replica_id"] = h.replica_id;
  o["engine"] = "llorch";
  o["engine_version"] = h.engine_version;
  o["model"] = boost::json::object{{"id", h.model_id}, {"path", h.model_path}};
  o["endpoint"] = h.endpoint;
  o["pid"] = h.pid;
  o["device_mask"] = h.device_mask;
  o["slots_total"] = h.slots_total;
  o["ctx_max"] = h.ctx_max;
  o["written_at"] = now_iso8601();
  const std::string text = boost::json::serialize(o) + "\n";
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return fail("cannot create " + tmp + ": " + std::strerror(errno));
  const bool ok = write_fd(fd, text) && ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  if (!ok) {
    ::unlink(tmp.c_str());
    return fail("cannot write " + tmp + ": " + std::strerror(err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    return fail("cannot rename " + tmp + " to " + path + ": " + std::strerror(e));
  }
  // make the rename itself durable
  const auto slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return done{};
}

status run_serve(const serve_options& o) {
  if (o.handoff_dir.empty()) return fail("--handoff-dir is required");
  if (o.pool_id.empty()) return fail("--pool-id is required");
  if (o.slots < 1) return fail("--slots must be at least 1");
  auto loaded = load_model(o.model_path, o.tokenizer_path);
  if (!loaded) return fail("cannot load the model: " + loaded.message());
  std::shared_ptr<const model> m = *loaded;
  const model_config& c = m->config;
  const int context = o.context <= 0 ? c.seq_len : o.context;
  if (context > c.seq_len)
    return fail("--ctx " + std::to_string(context) + " exceeds the model's context of " + std::to_string(c.seq_len));
  const std::uint64_t kv = static_cast<std::uint64_t>(o.slots) * 2ULL * static_cast<std::uint64_t>(c.n_layers) *
                           static_cast<std::uint64_t>(context) * static_cast<std::uint64_t>(c.kv_dim()) * sizeof(float);
  const std::uint64_t avail = available_memory();
  if (avail != 0 && kv > avail)
    return fail(std::to_string(o.slots) + " slots of context " + std::to_string(context) + " need " +
                std::to_string(kv >> 20) + " MiB of KV cache but only " + std::to_string(avail >> 20) +
                " MiB of memory is available: lower --slots or --ctx");

  // SIGTERM/SIGINT are taken with sigwait below: block them before any thread starts
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  caf::actor_system_config cfg;
  cfg.add_message_types<caf::id_block::llorch_engine>();
  cfg.load<caf::io::middleman>();
  cfg.set("scheduler.max-threads", 1);
  cfg.set("middleman.heartbeat-interval", caf::timespan{std::chrono::milliseconds(o.keepalive_ms)});
  // CAF's worker would poll every 50 us for 25 ms after each message: on a host where the
  // decode thread and the node's daemons share the cores, waking on enqueue is cheaper
  cfg.set("work-stealing.moderate-poll-attempts", std::size_t{0});
  const bool tls = !o.tls_certificate.empty();
  if (tls) { // for the link to orchestratord only: the pool's link on loopback stays plain
    cfg.openssl_certificate = o.tls_certificate;
    cfg.openssl_key = o.tls_key;
    cfg.openssl_cafile = o.tls_ca;
    cfg.load<caf::openssl::manager>();
  }
  caf::actor_system sys{cfg};
  const std::string model_id = o.model_id.empty() ? base_name(o.model_path) : o.model_id;
  auto worker = std::make_shared<engine_worker>(m, o.threads, o.slots, context, model_id);
  auto actor = sys.spawn(engine_actor, worker);
  auto port = sys.middleman().publish(actor, 0, o.host.c_str(), true);
  if (!port) {
    caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
    return fail("cannot publish the engine actor on " + o.host + ": " + sys.render(port.error()));
  }
  handoff_info h;
  h.pool_id = o.pool_id;
  h.replica_id = o.replica_id;
  h.engine_version = llorch::version;
  h.model_id = model_id;
  char resolved[PATH_MAX];
  h.model_path = ::realpath(o.model_path.c_str(), resolved) != nullptr ? std::string(resolved) : o.model_path;
  h.endpoint = o.host + ":" + std::to_string(*port);
  h.device_mask = o.device_mask;
  h.pid = ::getpid();
  h.slots_total = o.slots;
  h.ctx_max = context;
  const std::string path = handoff_path(o.handoff_dir, o.pool_id, o.replica_id);
  if (auto st = write_handoff(path, h); !st) {
    caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
    return st;
  }
  std::fprintf(stderr, "llorch-engine: ready endpoint=%s handoff=%s slots=%d ctx=%d\n", h.endpoint.c_str(),
               path.c_str(), o.slots, context);
  caf::actor link;
  std::string link_host;
  std::uint16_t link_port = 0;
  if (split_host_port(o.orchestrator, link_host, link_port))
    link = spawn_orchestrator_link(sys, link_host, link_port, tls);

  // Wait for SIGTERM/SIGINT; also stop when the parent (the pool-managerd that started us) is
  // gone, so a killed node daemon does not leave orphaned replicas holding memory.
  const pid_t parent = ::getppid();
  std::string why;
  while (why.empty()) {
    const timespec tick{0, 250 * 1000 * 1000};
    const int sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig > 0) why = "signal " + std::to_string(sig);
    else if (parent != 1 && ::getppid() != parent) why = "parent process " + std::to_string(parent) + " exited";
  }
  ::unlink(path.c_str());
  caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
  if (link)
    caf::anon_send_exit(link, caf::exit_reason::user_shutdown);
  worker.reset();
  std::fprintf(stderr, "llorch-engine: stopped (%s), handoff file removed\n", why.c_str());
  return done{};
}

} // namespace llorch::engine
