#!/usr/bin/env bash
# Live-update benchmark (not a test): the I/O pause an NBD client with reconnect-delay sees
# and the UDP packets lost between two guests while `systemctl restart nitride` runs under a
# real systemd (systemd-nspawn), with the fd store and without it (baseline). ~3 minutes.
#   ./scripts/bench-restart.sh [--reps N] [--rate 100M] [--no-iperf]
set -euo pipefail
source "$(dirname "$0")/lib/bootstrap.sh"
for arg in "$@"; do
  case "$arg" in -h | --help) exec node "$NITRIDE_ROOT/scripts/bench/restart.mjs" --help ;; esac
done
# Options first: a bad one is answered before anything is installed, built or started.
require_node
NITRIDE_BENCH_CHECK_ARGS=1 node "$NITRIDE_ROOT/scripts/bench/restart.mjs" "$@" || exit $?
bootstrap "${NBD_CLIENT_PACKAGES[@]}" "${VPC_PACKAGES[@]}" "${SYSTEMD_PACKAGES[@]}"
exec node scripts/bench/restart.mjs "$@"
