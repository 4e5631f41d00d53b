#pragma once
// What this host has: CPU cores, memory and, where the NVIDIA driver is installed and a GPU is
// present, its GPUs (through the CUDA driver API, loaded at run time so that the binaries need no
// CUDA to build or start). Without a GPU the list is empty: nothing is ever invented.
#include "runtime/messages.hpp"

#include <string>

namespace llorch {

// `note` says why no GPU was found (no driver, no device, an error), for the start-up log.
node_capabilities probe_host(std::string& note);

} // namespace llorch
