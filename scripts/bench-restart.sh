#!/usr/bin/env bash
# Live-update benchmark (not a test): the I/O pause an NBD client with reconnect-delay sees
# and the UDP packets lost between two guests while `systemctl restart nitride` runs under a
# real systemd (systemd-nspawn), with the fd store and without it (baseline). ~3 minutes.
#   ./scripts/bench-restart.sh [--reps N] [--rate 100M] [--no-iperf]
set -euo pipefail
source "$(dirname "$0")/lib/bootstrap.sh"
bench_options "$NITRIDE_ROOT/scripts/bench/restart.mjs" "$@"
bootstrap "${NBD_CLIENT_PACKAGES[@]}" "${VPC_PACKAGES[@]}" "${SYSTEMD_PACKAGES[@]}"
exec node scripts/bench/restart.mjs "$@"
