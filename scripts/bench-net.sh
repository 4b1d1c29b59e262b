#!/usr/bin/env bash
# Network benchmark (not a test): two hosts as network namespaces joined by a veth underlay, one
# namespace guest per host, iperf3 (TCP 1 and 4 streams, 64-byte UDP packet rate) and ping RTT
# guest to guest through nitride and, in the same run, the plain routed kernel path (the
# ceiling), OpenVPN 2.6 (TAP, AES-256-GCM), tinc 1.0 (switch mode) and wireguard-go. Prints
# tables (medians over repetitions, same-run ratios), writes bench-results/net-<timestamp>.{json,svg}.
# Default run ~8 minutes; --quick ~2 minutes. Options: see scripts/bench/net.mjs (--help).
#   ./scripts/bench-net.sh [--quick] [--time S] [--reps N] [--paths nitride,plain,...] ...
set -euo pipefail
source "$(dirname "$0")/lib/bootstrap.sh"

bench_options "$NITRIDE_ROOT/scripts/bench/net.mjs" "$@"

bootstrap "${VPC_PACKAGES[@]}" "${ETCD_PACKAGES[@]}" openssl openvpn tinc wireguard-go wireguard-tools nftables

keep=0
for arg in "$@"; do [ "$arg" = --keep ] && keep=1; done
SCRATCH="$(mktemp -d /tmp/nitride-bench-net.XXXXXX)"
TAG="nb$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')"   # prefix of every namespace the run makes

# If the Node script is killed hard: stop whatever runs in its namespaces, delete them.
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

node scripts/bench/net.mjs --cli "$NITRIDE_ROOT/dist/cli/main.js" --scratch "$SCRATCH" --tag "$TAG" "$@"
