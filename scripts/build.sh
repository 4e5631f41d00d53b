#!/usr/bin/env bash
# Configures and builds into build/ (binaries in build/bin/). Extra args go to cmake.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="${LLORCH_JOBS:-2}"
cmake -S . -B build -DCMAKE_BUILD_TYPE="${LLORCH_BUILD_TYPE:-RelWithDebInfo}" "$@" >/dev/null
cmake --build build -j"$jobs"
