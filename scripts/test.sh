#!/usr/bin/env bash
# The one test command: set up, build (warnings are errors), run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The official openai npm client, a real client for the OpenAI-compatible facade's tests.
[ -d tests/integration/openai_client/node_modules/openai ] ||
  (cd tests/integration/openai_client && npm ci --no-audit --no-fund --loglevel=error)
bash scripts/build.sh -DLLORCH_WERROR=ON
cd build && ctest --output-on-failure -j"${LLORCH_JOBS:-2}" "$@"
