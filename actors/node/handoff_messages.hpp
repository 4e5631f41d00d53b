#pragma once
// Messages of the handoff watcher to its sink (the node's pools), in the `llorch_node` type-ID
// block; register it with cfg.add_message_types<caf::id_block::llorch_node>().
//
//   (handoff_atom, handoff::handoff_record)               a valid file appeared or changed
//   (handoff_removed_atom, std::string pool_id, std::string replica_id)
//                                                         a file that was valid went away
#include "actors/node/handoff_file.hpp"

#include <caf/all.hpp>

namespace llorch::handoff {

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, handoff_record& x) {
  return f(caf::meta::type_name("handoff_record"), x.pool_id, x.replica_id, x.engine,
           x.engine_version, x.model_id, x.model_path, x.model_digest, x.endpoint, x.endpoint_host,
           x.endpoint_port, x.pid, x.device_mask, x.slots_total, x.ctx_max, x.written_at,
           x.written_at_ms, x.path);
}

} // namespace llorch::handoff

namespace llorch {

using handoff_atom = caf::atom_constant<caf::atom("handoff")>;
using handoff_removed_atom = caf::atom_constant<caf::atom("handoffrm")>;

} // namespace llorch

CAF_BEGIN_TYPE_ID_BLOCK(llorch_node, caf::first_custom_type_id + 100)
  CAF_ADD_TYPE_ID(llorch_node, (llorch::handoff::handoff_record))
CAF_END_TYPE_ID_BLOCK(llorch_node)
