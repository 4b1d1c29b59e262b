#!/usr/bin/env bash
# CLI start-up benchmark (not a test): how long each client verb of `nitride` takes against a
# real daemon and KMS (in a scratch state directory), next to `node -e 0` in the same run;
# the goal is every verb within 2x node's own start. Medians of --runs (20). Prints a table,
# writes bench-results/cli-<timestamp>.json. ~1 minute.
#   ./scripts/bench-cli.sh [--runs N] [--compare-cli OTHER/dist/cli/main.js] [--out FILE.json]
set -euo pipefail
source "$(dirname "$0")/lib/bootstrap.sh"

for arg in "$@"; do
  case "$arg" in -h | --help) exec node "$NITRIDE_ROOT/scripts/bench/cli.mjs" --help ;; esac
done

bootstrap

keep=0
for arg in "$@"; do [ "$arg" = --keep ] && keep=1; done
SCRATCH="$(mktemp -d /var/tmp/nitride-bench-cli.XXXXXX)"

# If the Node script is killed hard: stop the daemon and KMS it started (their pids are in
# $SCRATCH/pids; each command line names $SCRATCH, so a recycled pid is never hit).
cleanup() {
  local f pid
  for f in "$SCRATCH"/pids/*.pid; do
    [ -e "$f" ] || continue
    pid="$(cat "$f")"
    grep -qF "$SCRATCH" "/proc/$pid/cmdline" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  done
  [ "$keep" = 1 ] || rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

node scripts/bench/cli.mjs --cli "$NITRIDE_ROOT/dist/cli/main.js" --scratch "$SCRATCH" "$@"
