#pragma once
// handoff_watcher: watches the handoff directory (CONTRACT §4) with inotify, plus a periodic
// rescan as a safety net (missed events, files present at start, a directory that could not be
// created yet). Valid files of known pools go to the sink (messages in handoff_messages.hpp);
// anything else is moved to `<handoff_dir>/rejected/`, logged `handoff_rejected` and counted, and
// the watcher keeps going. Blocking reads of the inotify descriptor happen on a thread of its own,
// never on a CAF scheduler thread; that thread stops when the actor does.
#include <caf/fwd.hpp>

#include <chrono>
#include <memory>
#include <set>
#include <string>

namespace llorch::metrics {
class registry;
}

namespace llorch {

struct handoff_watcher_settings {
  std::string handoff_dir;
  std::set<std::string> known_pools; // files naming any other pool are rejected as foreign
  std::chrono::milliseconds rescan_interval{1000};
};

// Messages: (caf::get_atom) -> (bool directory_usable, bool inotify_watching), answered only after
// the first scan, so a caller can use it to wait until the watcher has started.
//
// `sink` receives (handoff_atom, record) and (handoff_removed_atom, pool_id, replica_id).
// `metrics` may be null (no metrics); otherwise the pool_handoff_* families are updated.
caf::actor spawn_handoff_watcher(caf::actor_system& sys, handoff_watcher_settings settings,
                                 caf::actor sink, std::shared_ptr<metrics::registry> metrics);

} // namespace llorch
