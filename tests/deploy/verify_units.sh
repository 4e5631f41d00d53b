#!/usr/bin/env bash
# usage: verify_units.sh REPO_ROOT [BIN_DIR]
# `systemd-analyze verify` on the units of deploy/systemd, plus an offline security review
# (exposure must stay at or under 3.0, "OK"). Exit 77 (skipped) when systemd-analyze is absent.
#
# verify checks that ExecStart= names an executable, so the units are verified inside a scratch
# root that holds the system's own unit files and, at /usr/local/bin, the daemons from BIN_DIR
# (the build's bin/). Where a daemon is not built, /bin/true stands at its path: verify only
# looks at the file's executable bit, never runs it.
set -euo pipefail
root=${1:?repo root}
bin_dir=${2:-}
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "skip: systemd-analyze is not installed (Debian package systemd)"
  exit 77
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/etc/systemd/system" "$scratch/usr/lib/systemd" "$scratch/usr/local/bin"
cp -a /usr/lib/systemd/system "$scratch/usr/lib/systemd/"
units=()
for unit in "$root"/deploy/systemd/*.service; do
  cp "$unit" "$scratch/etc/systemd/system/"
  units+=("$(basename "$unit")")
done
for daemon in orchestratord pool-managerd; do
  if [[ -n "$bin_dir" && -x "$bin_dir/$daemon" ]]; then
    cp "$bin_dir/$daemon" "$scratch/usr/local/bin/$daemon"
  else
    cp /bin/true "$scratch/usr/local/bin/$daemon"
  fi
done

status=0
# verify exits 0 on unknown keys and bad values (it only warns), so any output is a failure.
out=$(systemd-analyze verify --man=no --root="$scratch" "${units[@]}" 2>&1) || status=1
if [[ -n "$out" ]]; then
  printf 'systemd-analyze verify:\n%s\n' "$out"
  status=1
fi
for u in "${units[@]}"; do
  # ExecStart must name the binary under /usr/local/bin with a config under /etc/llama-orch/.
  grep -Eq "^ExecStart=/usr/local/bin/${u%.service} --config /etc/llama-orch/${u%.service}\.json$" \
    "$root/deploy/systemd/$u" || { echo "$u: ExecStart is not /usr/local/bin/${u%.service} --config /etc/llama-orch/${u%.service}.json"; status=1; }
  for key in 'EnvironmentFile=-/etc/llama-orch/env' 'Restart=on-failure'; do
    grep -qx "$key" "$root/deploy/systemd/$u" || { echo "$u: missing $key"; status=1; }
  done
  report=$(systemd-analyze security --offline=true --root="$scratch" --threshold=30 "$u" 2>&1) \
    || { echo "$u: exposure above 3.0"; status=1; }
  echo "$report" | tail -n 1
done
# The handoff directory must stay writable under ProtectSystem=strict.
grep -qx 'StateDirectory=llama-orch llama-orch/engines' "$root/deploy/systemd/pool-managerd.service" \
  || { echo "pool-managerd.service: /var/lib/llama-orch/engines is not a StateDirectory"; status=1; }
if grep -Eq '^(PrivateDevices=yes|MemoryDenyWriteExecute=yes)' "$root/deploy/systemd/pool-managerd.service"; then
  echo "pool-managerd.service: PrivateDevices/MemoryDenyWriteExecute would break the GPU"; status=1
fi
[[ $status -eq 0 ]] && echo "verified: ${units[*]}"
exit $status
