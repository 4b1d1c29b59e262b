#!/usr/bin/env bash
# Block benchmark (not a test): fio with ioengine=nbd against nitride's ebs and ephemeral volumes
# and, in the same run, qemu-nbd + LUKS, nbdkit's luks filter and nbdkit's file plugin (the
# unencrypted baseline), all on 1 GiB images in one scratch directory. Prints tables (medians over
# repetitions, ratios to nbdkit-file), writes bench-results/block-<timestamp>.{json,svg}.
# Default run ~10 minutes; --quick ~2 minutes. Options: see scripts/bench/block.mjs (--help).
# --ceph: the Ceph group instead (a one-node cluster in the scratch directory; nitride on RBD vs
# QEMU rbd + librbd LUKS2 through qemu-storage-daemon vs fio's rbd engine).
# --limits: provisioned IOPS/throughput on ebs volumes against QEMU's throttle group (qemu-storage-
# daemon) in the same run, and what a limit that never binds costs (scripts/bench/block-limits.mjs).
#   ./scripts/bench-block.sh [--quick] [--runtime S] [--reps N] [--dir /var/tmp] [--ceph|--limits] ...
set -euo pipefail
source "$(dirname "$0")/lib/bootstrap.sh"

bench_options "$NITRIDE_ROOT/scripts/bench/block.mjs" "$@"

require_root
extra=()
# qemu-storage-daemon is in qemu-system-common; QEMU's rbd driver in qemu-block-extra.
for arg in "$@"; do
  case "$arg" in
    --ceph) extra=("${CEPH_PACKAGES[@]}" qemu-system-common) ;;
    --limits) extra=(qemu-system-common) ;;
  esac
done
ensure_packages "${BASE_PACKAGES[@]}" fio qemu-utils nbdkit util-linux "${extra[@]}"
ensure_node_modules
cd "$NITRIDE_ROOT"

# The scratch directory is made here so that this shell can reap whatever the Node script leaves
# behind if it is killed hard (its servers' pids are in $SCRATCH/pids; each command line names
# $SCRATCH, so a recycled pid is never hit; a --ceph cluster's daemons are stopped by its script).
dir=/var/tmp
keep=0
prev=
for arg in "$@"; do
  case "$arg" in --dir=*) dir="${arg#--dir=}" ;; --keep) keep=1 ;; esac
  [ "$prev" = --dir ] && dir="$arg"
  prev="$arg"
done
mkdir -p "$dir"
SCRATCH="$(mktemp -d "$dir/nitride-bench.XXXXXX")"

cleanup() {
  local f pid
  for f in "$SCRATCH"/pids/*.pid; do
    [ -e "$f" ] || continue
    pid="$(cat "$f")"
    if [ -n "$pid" ] && grep -qF "$SCRATCH" "/proc/$pid/cmdline" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in 1 2 3 4 5 6 7 8 9 10; do grep -qF "$SCRATCH" "/proc/$pid/cmdline" 2>/dev/null || break; sleep 0.5; done
      grep -qF "$SCRATCH" "/proc/$pid/cmdline" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  for f in "$SCRATCH"/nitride-ceph-*/ceph.conf; do
    [ -e "$f" ] && bash "$NITRIDE_ROOT/scripts/lib/ceph-one-node.sh" stop "$(dirname "$f")" || true
  done
  [ "$keep" = 1 ] || rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The daemon profile talks to V8's inspector over WebSocket: global in Node >= 22, a flag on 20.
node_flags=()
node -e 'process.exit(typeof WebSocket === "function" ? 0 : 1)' 2>/dev/null || node_flags=(--experimental-websocket)

node "${node_flags[@]}" scripts/bench/block.mjs --cli "$NITRIDE_ROOT/dist/cli/main.js" --scratch "$SCRATCH" "$@"
