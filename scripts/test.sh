#!/usr/bin/env bash
# The one test command: set up, build (warnings are errors), run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh -DLLORCH_WERROR=ON
cd build && ctest --output-on-failure -j"${LLORCH_JOBS:-2}" "$@"
