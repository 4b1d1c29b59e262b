#!/usr/bin/env bash
# Guest-jail cost benchmark (not a test): boot time of the TCG test guest through `nitride vm run`
# (jailed) against the same QEMU command line run bare as root (and bare in a cgroup like the
# VM's), and fio through a running guest's own NBD socket against the shared one, in one run
# (rotating repetitions, medians, same-run ratios, load average). Writes bench-results/vm-<timestamp>.json. ~10 minutes.
#   ./scripts/bench-vm.sh [--reps N] [--runtime S] [--ramp S] [--phases boot,fio] [--keep]
set -euo pipefail
source "$(dirname "$0")/lib/bootstrap.sh"
bench_options "$NITRIDE_ROOT/scripts/bench/vm.mjs" "$@"
bootstrap "${NBD_CLIENT_PACKAGES[@]}" "${VM_PACKAGES[@]}" util-linux
exec node scripts/bench/vm.mjs "$@"
