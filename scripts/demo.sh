#!/usr/bin/env bash
# The main job, on a fresh Debian 12 host as root: bootstraps, then shows nitride at work.
# Today: a daemon on a scratch state directory, its status, an audited control call, a
# clean stop. (Volumes, the VPC and guests join as they land.)
set -euo pipefail
source "$(dirname "$0")/lib/bootstrap.sh"
require_root
require_node
ensure_packages "${BASE_PACKAGES[@]}"
ensure_node_modules
cd "$NITRIDE_ROOT"

work="$(mktemp -d /tmp/nitride-demo.XXXXXX)"
nitride() { node "$NITRIDE_ROOT/dist/cli/main.js" "$@"; }
export NITRIDE_SOCKET="$work/control.sock"
daemon_pid=""
cleanup() {
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

step "start the daemon (state in $work/state)"
nitride daemon --state-dir "$work/state" --control-socket "$NITRIDE_SOCKET" >"$work/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do nitride status --json >/dev/null 2>&1 && break; sleep 0.1; done

step "nitride status"
nitride status

step "an audited control call: nitride log-level debug"
nitride log-level debug
echo "audit log:"; cat "$work/state/audit.log"

step "stop with SIGTERM"
kill -TERM "$daemon_pid"; wait "$daemon_pid"; rc=$?; daemon_pid=""
echo "daemon exited with $rc; socket present afterwards: $([ -e "$NITRIDE_SOCKET" ] && echo yes || echo no)"
echo; echo "daemon log (JSON lines, as journald would store them):"; cat "$work/daemon.log"
