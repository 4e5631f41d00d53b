#include "actors/node/node_agent.hpp"

#include "actors/node/handoff_messages.hpp"
#include "actors/node/pool.hpp"
#include "engines/engine_protocol.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <catch2/catch.hpp>

using namespace llorch;

namespace {

using release_atom_t = caf::atom_constant<caf::atom("letgo")>;

struct cluster_config : caf::actor_system_config {
  cluster_config() {
    add_message_types<caf::id_block::llorch>();
    add_message_types<caf::id_block::llorch_pool>();
    add_message_types<caf::id_block::llorch_node>();
    add_message_types<caf::id_block::llorch_engine>();
    load<caf::io::middleman>();
  }
};

// A node_registry that holds its answer to a registration until told to let it go, and tells
// the test about every registration and heartbeat with whether the first pool was ready.
struct registry_state {
  caf::response_promise pending;
};

caf::behavior slow_registry(caf::stateful_actor<registry_state>* self, caf::actor test) {
  return {
    [=](register_atom, const std::string&, const node_info& identity, const caf::actor&) {
      self->send(test, register_atom::value, identity.pools.at(0).ready);
      self->state.pending = self->make_response_promise();
      return self->state.pending;
    },
    [=](release_atom_t) { self->state.pending.deliver(registry_reply::make(200, "", "")); },
    [=](heartbeat_atom, const std::string&, const node_heartbeat& hb) {
      self->send(test, heartbeat_atom::value, hb.pools.at(0).ready);
      return registry_reply::make(200, "", "");
    },
  };
}

} // namespace

TEST_CASE("node agent: a pool that becomes ready while the registration is answered is reported "
          "at once, not at the next beat") {
  cluster_config control_cfg, node_cfg;
  caf::actor_system control{control_cfg}, node{node_cfg};
  caf::scoped_actor test{control};
  auto registry = control.spawn(slow_registry, caf::actor_cast<caf::actor>(test));
  auto port = control.middleman().publish(registry, 0, "127.0.0.1", true);
  REQUIRE(port);

  node_agent_settings s;
  s.identity.node_id = "n1";
  pool_status pool;
  pool.pool_id = "pool-1";
  pool.node_id = "n1";
  pool.state = "loading";
  s.identity.pools = {pool};
  s.orchestrator_host = "127.0.0.1";
  s.orchestrator_port = *port;
  s.heartbeat_interval = std::chrono::seconds(10); // a beat in this test is the prompt report
  auto agent = spawn_node_agent(node, s, node.middleman().actor_handle());

  bool ready_at_registration = true;
  test->receive([&](register_atom, bool ready) { ready_at_registration = ready; },
                caf::after(std::chrono::seconds(10)) >> [] { FAIL("no registration"); });
  CHECK_FALSE(ready_at_registration);
  // the engine becomes ready while the registration waits for its answer
  pool.state = "ready";
  pool.ready = true;
  caf::scoped_actor probe{node};
  probe->send(agent, pool_update_atom::value, pool);
  probe->request(agent, std::chrono::seconds(5), caf::get_atom::value)
    .receive([](bool registered, const std::vector<pool_status>& pools) {
               CHECK_FALSE(registered);
               CHECK(pools.at(0).ready);
             },
             [](const caf::error&) { FAIL("the agent did not answer"); });
  test->send(registry, release_atom_t::value);
  bool reported = false;
  test->receive([&](heartbeat_atom, bool ready) { reported = ready; },
                caf::after(std::chrono::seconds(3)) >> [] {});
  CHECK(reported);
  caf::anon_send_exit(agent, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(registry, caf::exit_reason::user_shutdown);
}
