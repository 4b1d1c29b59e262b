#!/usr/bin/env bash
# Fleet benchmark (not a test): three etcd members (TLS) and four daemons in network namespaces
# plus light watchers (default 50: 54 hosts): eni create propagation p50/p99 to every host, a
# daemon's RSS and CPU holding 10,000 ENIs against its idle RSS, etcd bytes written per mutation,
# and bench-net's TCP/UDP/ping in fleet mode against standalone, all in one run. Prints tables,
# writes bench-results/fleet-<timestamp>.json. Default run ~10 minutes here; --quick ~3 minutes.
# Options: see scripts/bench/fleet.mjs (--help).
#   ./scripts/bench-fleet.sh [--quick] [--creates N] [--watchers N] [--enis N] [--phases LIST] ...
set -euo pipefail
source "$(dirname "$0")/lib/bootstrap.sh"

bench_options "$NITRIDE_ROOT/scripts/bench/fleet.mjs" "$@"

bootstrap "${VPC_PACKAGES[@]}" "${ETCD_PACKAGES[@]}"

bench_netns_scratch fb fleet "$@"

node scripts/bench/fleet.mjs --cli "$NITRIDE_ROOT/dist/cli/main.js" --scratch "$SCRATCH" --tag "$TAG" "$@"
