#!/usr/bin/env bash
# Installs exactly the Debian packages llama-orch needs to build and test.
# Idempotent: when everything is present it only runs dpkg-query (well under a second).
set -euo pipefail
packages=(
  build-essential cmake ccache pkg-config
  libcaf-dev libboost1.81-dev libboost-json1.81-dev libspdlog-dev libssl-dev catch2
  libjemalloc-dev   # the daemons' malloc (runtime/CMakeLists.txt)
  curl jq bc openssl iproute2 procps python3 python3-pytest
  prometheus   # promtool, to check every /metrics exposition and the alert rules
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq
  # --no-install-recommends keeps libboost-dev (which would remove Boost 1.81) out.
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
