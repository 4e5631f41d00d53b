#include "engines/orchestrator_link.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/all.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>

namespace llorch::engine {
namespace {

using link_retry_atom = caf::atom_constant<caf::atom("lnkretry")>;

constexpr auto first_retry = std::chrono::milliseconds(500);
constexpr auto last_retry = std::chrono::milliseconds(5000);

struct link_state {
  static inline const char* name = "orchestrator_link";
  std::string host;
  std::uint16_t port = 0;
  caf::io::middleman_actor middleman; // plain, or the openssl manager's
  caf::actor registry; // what orchestratord publishes there; monitored: its down is a lost link
  std::chrono::milliseconds retry = first_retry;
  bool said_failure = false; // one line per outage, not one per try
};

using link_actor = caf::stateful_actor<link_state>;

void retry_later(link_actor* self) {
  auto& st = self->state;
  self->delayed_send(self, st.retry, link_retry_atom::value);
  st.retry = std::min(st.retry * 2, std::chrono::duration_cast<std::chrono::milliseconds>(last_retry));
}

void connect(link_actor* self) {
  self
    ->request(self->state.middleman, std::chrono::seconds(5), caf::connect_atom::value,
              self->state.host, self->state.port)
    .then(
      [self](const caf::node_id&, caf::strong_actor_ptr& ptr, const std::set<std::string>&) {
        auto& st = self->state;
        if (!ptr)
          return retry_later(self);
        st.registry = caf::actor_cast<caf::actor>(std::move(ptr));
        self->monitor(st.registry);
        st.retry = first_retry;
        st.said_failure = false;
        std::fprintf(stderr, "llorch-engine: linked to orchestratord at %s:%u\n", st.host.c_str(),
                     st.port);
      },
      [self](const caf::error& err) {
        auto& st = self->state;
        if (!st.said_failure)
          std::fprintf(stderr,
                       "llorch-engine: no link to orchestratord at %s:%u (%s); tokens go through "
                       "the node, retrying\n",
                       st.host.c_str(), st.port, self->system().render(err).c_str());
        st.said_failure = true;
        retry_later(self);
      });
}

caf::behavior orchestrator_link(link_actor* self, std::string host, std::uint16_t port, bool tls) {
  self->state.host = std::move(host);
  self->state.port = port;
  self->state.middleman = tls ? self->system().openssl_manager().actor_handle()
                              : self->system().middleman().actor_handle();
  self->set_down_handler([self](const caf::down_msg& dm) {
    auto& st = self->state;
    if (dm.source != st.registry.address())
      return;
    st.registry = nullptr;
    std::fprintf(stderr, "llorch-engine: link to orchestratord lost; tokens go through the node\n");
    st.said_failure = true;
    retry_later(self);
  });
  connect(self);
  return {
    [self](link_retry_atom) {
      if (!self->state.registry)
        connect(self);
    },
  };
}

} // namespace

bool split_host_port(const std::string& endpoint, std::string& host, std::uint16_t& port) {
  auto colon = endpoint.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == endpoint.size()
      || endpoint.size() - colon - 1 > 5)
    return false;
  auto digits = endpoint.substr(colon + 1);
  if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return false;
  auto n = std::stoul(digits);
  if (n == 0 || n > 65535)
    return false;
  host = endpoint.substr(0, colon);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']')
      return false;
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string::npos) {
    return false; // an IPv6 address needs its brackets
  }
  port = static_cast<std::uint16_t>(n);
  return true;
}

caf::actor spawn_orchestrator_link(caf::actor_system& sys, std::string host, std::uint16_t port,
                                   bool tls) {
  return sys.spawn(orchestrator_link, std::move(host), port, tls);
}

} // namespace llorch::engine
