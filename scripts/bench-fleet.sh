#!/usr/bin/env bash
# Fleet benchmark (not a test): three etcd members (TLS) and four daemons in network namespaces
# plus light watchers (default 50: 54 hosts): eni create propagation p50/p99 to every host, a
# daemon's RSS and CPU holding 10,000 ENIs against its idle RSS, etcd bytes written per mutation,
# and bench-net's TCP/UDP/ping in fleet mode against standalone, all in one run. Prints tables,
# writes bench-results/fleet-<timestamp>.json. Default run ~15 minutes; --quick ~4 minutes.
# Options: see scripts/bench/fleet.mjs (--help).
#   ./scripts/bench-fleet.sh [--quick] [--creates N] [--watchers N] [--enis N] [--phases LIST] ...
set -euo pipefail
source "$(dirname "$0")/lib/bootstrap.sh"

bench_options "$NITRIDE_ROOT/scripts/bench/fleet.mjs" "$@"

bootstrap "${VPC_PACKAGES[@]}" "${ETCD_PACKAGES[@]}"

keep=0
for arg in "$@"; do [ "$arg" = --keep ] && keep=1; done
SCRATCH="$(mktemp -d /tmp/nitride-bench-fleet.XXXXXX)"
TAG="fb$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')"   # prefix of every namespace the run makes

# If the Node script is killed hard: stop whatever runs in its namespaces (etcd, daemons,
# watchers), delete them.
cleanup() {
  local ns pid
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$TAG" || true); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  [ "$keep" = 1 ] || rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

node scripts/bench/fleet.mjs --cli "$NITRIDE_ROOT/dist/cli/main.js" --scratch "$SCRATCH" --tag "$TAG" "$@"
