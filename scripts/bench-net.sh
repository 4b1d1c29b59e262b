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

bench_netns_scratch nb net "$@"

node scripts/bench/net.mjs --cli "$NITRIDE_ROOT/dist/cli/main.js" --scratch "$SCRATCH" --tag "$TAG" "$@"
