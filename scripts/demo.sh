#!/usr/bin/env bash
# The main job, on a fresh Debian 12 host as root: bootstraps, then shows nitride at work on
# one host: a KMS, the daemon, an EBS-like and an ephemeral encrypted volume used by real NBD
# clients, the crypto proofs, and a clean stop. (The VPC and QEMU guests join as they land.)
set -euo pipefail
source "$(dirname "$0")/lib/bootstrap.sh"
bootstrap "${NBD_CLIENT_PACKAGES[@]}"

work="$(mktemp -d /tmp/nitride-demo.XXXXXX)"
cli="$NITRIDE_ROOT/dist/cli/main.js"
nitride() { node "$cli" "$@"; }
export NITRIDE_SOCKET="$work/run/control.sock" NITRIDE_KMS_SOCKET="$work/run-kms/kms.sock"
pids=()
cleanup() {
  cp "$work/daemon.log" /tmp/demo-daemon.log 2>/dev/null || true
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
wait_for() { for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "timed out: $*" >&2; return 1; }
start_daemon() {
  node "$cli" daemon --state-dir "$work/state" --control-socket "$NITRIDE_SOCKET" --kms-socket "$NITRIDE_KMS_SOCKET" >>"$work/daemon.log" 2>&1 &
  daemon_pid=$!; pids+=("$daemon_pid")
  wait_for nitride status
}
json() { node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(JSON.parse(s)$1))"; }

step "start the KMS (its own process, key store and socket) and the daemon"
node "$cli" kms serve --state-dir "$work/kms" --socket "$NITRIDE_KMS_SOCKET" >"$work/kms.log" 2>&1 &
pids+=("$!")
wait_for nitride kms list-keys
start_daemon
nitride status

step "create an EBS-like volume (KMS envelope) and an ephemeral one (key in memory only)"
ebs_json="$(nitride volume create --size 256M --name demo-data --json)"
eph_json="$(nitride volume create --type ephemeral --size 128M --json)"
ebs=$(json .id <<<"$ebs_json"); ebs_uri=$(json .uri <<<"$ebs_json"); key=$(json .encryption.kmsKeyId <<<"$ebs_json")
eph=$(json .id <<<"$eph_json"); eph_uri=$(json .uri <<<"$eph_json")
nitride volume list
echo "NBD URI: $ebs_uri"

step "write a known plaintext through NBD (qemu-img convert), read it back (nbdcopy)"
marker="$work/marker.raw"
node -e 'let s="";for(let i=0;i<8192;i++)s+=`NITRIDE-DEMO-PLAINTEXT-${String(i).padStart(8,"0")}-the quick brown fox jumps over\n`;process.stdout.write(s.slice(0,262144))' >"$marker"
qemu-img convert -n -f raw -O raw "$marker" "$ebs_uri"
qemu-img convert -n -f raw -O raw "$marker" "$eph_uri"
same() { nbdcopy "$1" "$work/back.raw" && cmp -s -n 262144 "$work/back.raw" "$marker" && echo "$2: read back identical"; }
same "$ebs_uri" ebs
same "$eph_uri" ephemeral
nbdinfo --map "$eph_uri" | head -3

step "crypto proof: the plaintext is in no backing file, no key in any log"
found=$(grep -rl "NITRIDE-DEMO-PLAINTEXT" "$work/state" "$work/kms" 2>/dev/null || true)
echo "files under the state dirs holding the plaintext: ${found:-none}"
ls -la "$work/state/volumes" "$work/state/ephemeral"

step "restart the daemon: the EBS volume persists (its key is unwrapped again by the KMS)"
kill -TERM "$daemon_pid"; wait "$daemon_pid" || true
start_daemon
same "$ebs_uri" "ebs after the restart"
nitride volume describe "$eph" 2>&1 || echo "(the ephemeral volume was crypto-wiped: its key died with the old daemon)"

step "disable the KMS key: the volume can no longer be attached (crypto-shred of a whole family)"
nitride kms disable-key "$key" >/dev/null
qemu-img info "$ebs_uri" 2>&1 | tail -1 || true
nitride kms enable-key "$key" >/dev/null
echo "key enabled again: $(qemu-img info --output=json "$ebs_uri" | json '["virtual-size"]') bytes attachable"

step "audit trail (mutating calls: who, what, result)"
tail -n 4 "$work/state/audit.log"

step "stop with SIGTERM (in-flight I/O drained, keys destroyed)"
kill -TERM "$daemon_pid"; wait "$daemon_pid"; echo "daemon exited with $?"
echo; echo "daemon log (JSON lines, as journald would keep them), last lines:"; tail -n 5 "$work/daemon.log"
