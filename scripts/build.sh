#!/usr/bin/env bash
# Configures and builds into build/ (binaries in build/bin/). Extra args go to cmake.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="${LLORCH_JOBS:-2}"
# Let ccache share results between checkouts in different folders (CI builds a fresh clone).
export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=true
cmake -S . -B build -DCMAKE_BUILD_TYPE="${LLORCH_BUILD_TYPE:-RelWithDebInfo}" "$@" >/dev/null
cmake --build build -j"$jobs"
