#!/usr/bin/env bash
# The main job, on a fresh Debian 12 host as root: bootstraps, then runs two nitride "hosts"
# (network namespaces joined by a veth underlay, a KMS and a daemon each) and shows:
#   1. encrypted volumes: an EBS-like one (KMS envelope) and an ephemeral one, used by real NBD
#      clients, with the crypto proofs (no plaintext in backing files) and the KMS kill switch;
#   2. the VPC: two guests (network namespaces, one per host) get DHCP leases from their
#      daemons and ping each other across the encrypted underlay; a spoofed source is dropped.
# Everything is torn down at the end. (QEMU guests join with the VM work.)
set -euo pipefail
source "$(dirname "$0")/lib/bootstrap.sh"
bootstrap "${NBD_CLIENT_PACKAGES[@]}" "${VPC_PACKAGES[@]}"

work="$(mktemp -d /tmp/nitride-demo.XXXXXX)"
cli="$NITRIDE_ROOT/dist/cli/main.js"
tag="nd$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')"   # unique prefix for namespaces and links
pids=()
cleanup() {
  set +e
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  sleep 0.5
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
  for ns in "${tag}ha" "${tag}hb" "${tag}ga" "${tag}gb"; do ip netns del "$ns" 2>/dev/null; done
  ip link del "${tag}ua" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
wait_for() { for _ in $(seq 150); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done; echo "timed out: $*" >&2; return 1; }
json() { node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{const v=JSON.parse(s)$1;console.log(typeof v==='object'?JSON.stringify(v):v)})"; }
# on HOST ARGS…: nitride against that host's daemon (and KMS)
on() { local h=$1; shift; NITRIDE_SOCKET="$work/$h/run/control.sock" NITRIDE_KMS_SOCKET="$work/$h/run-kms/kms.sock" node "$cli" "$@"; }

step "two hosts: namespaces ${tag}ha and ${tag}hb joined by a veth underlay (10.250.0.1 <-> .2)"
for h in ha hb; do ip netns add "${tag}$h"; ip -n "${tag}$h" link set lo up; done
ip link add "${tag}ua" type veth peer name "${tag}ub"
ip link set "${tag}ua" netns "${tag}ha"; ip link set "${tag}ub" netns "${tag}hb"
ip -n "${tag}ha" addr add 10.250.0.1/24 dev "${tag}ua"; ip -n "${tag}ha" link set "${tag}ua" up
ip -n "${tag}hb" addr add 10.250.0.2/24 dev "${tag}ub"; ip -n "${tag}hb" link set "${tag}ub" up

start_host() { # start_host ha 10.250.0.1
  local h=$1 ip=$2
  mkdir -p "$work/$h"
  ip netns exec "${tag}$h" node "$cli" kms serve --state-dir "$work/$h/kms" --socket "$work/$h/run-kms/kms.sock" >"$work/$h/kms.log" 2>&1 &
  pids+=("$!")
  wait_for test -S "$work/$h/run-kms/kms.sock"
  ip netns exec "${tag}$h" node "$cli" daemon --state-dir "$work/$h/state" --control-socket "$work/$h/run/control.sock" \
    --kms-socket "$work/$h/run-kms/kms.sock" --vpc-listen "$ip:4789" >>"$work/$h/daemon.log" 2>&1 &
  pids+=("$!")
  eval "daemon_$h=$!"
  wait_for sh -c "NITRIDE_SOCKET=$work/$h/run/control.sock node $cli status --json | grep -q '\"state\": \"up\"'"
}
step "start a KMS and a daemon on each host"
start_host ha 10.250.0.1
start_host hb 10.250.0.2
on ha status

# ---------------------------------------------------------------------------------------------
step "volumes: an EBS-like volume (KMS envelope) and an ephemeral one (key in memory only) on host A"
ebs_json="$(on ha volume create --size 256M --name demo-data --json)"
eph_json="$(on ha volume create --type ephemeral --size 128M --json)"
ebs_uri=$(json .uri <<<"$ebs_json"); key=$(json .encryption.kmsKeyId <<<"$ebs_json")
eph=$(json .id <<<"$eph_json"); eph_uri=$(json .uri <<<"$eph_json")
on ha volume list
echo "NBD URI (qemu-img, nbdinfo, nbdcopy and fio take it as is): $ebs_uri"

step "write a known plaintext through NBD (qemu-img convert) and read it back (nbdcopy)"
marker="$work/marker.raw"
node -e 'let s="";for(let i=0;i<8192;i++)s+=`NITRIDE-DEMO-PLAINTEXT-${String(i).padStart(8,"0")}-the quick brown fox jumps over\n`;process.stdout.write(s.slice(0,262144))' >"$marker"
qemu-img convert -n -f raw -O raw "$marker" "$ebs_uri"
qemu-img convert -n -f raw -O raw "$marker" "$eph_uri"
same() { nbdcopy "$1" "$work/back.raw" && cmp -s -n 262144 "$work/back.raw" "$marker" && echo "$2: read back identical"; }
same "$ebs_uri" ebs
same "$eph_uri" ephemeral
echo "allocation map of the ephemeral volume (never-written space is a hole and reads as zeroes):"
nbdinfo --map "$eph_uri" | head -3

step "crypto proof: the plaintext is in no file under either daemon's or KMS's state"
found=$(grep -rl "NITRIDE-DEMO-PLAINTEXT" "$work/ha" "$work/hb" 2>/dev/null || true)
echo "files holding the plaintext: ${found:-none}"
ls -l "$work/ha/state/volumes" "$work/ha/state/ephemeral" | grep -v '^total'

step "restart host A's daemon: the EBS volume persists, the ephemeral one is crypto-wiped"
kill -TERM "$daemon_ha"; wait "$daemon_ha" || true
start_host_daemon_again() {
  ip netns exec "${tag}ha" node "$cli" daemon --state-dir "$work/ha/state" --control-socket "$work/ha/run/control.sock" \
    --kms-socket "$work/ha/run-kms/kms.sock" --vpc-listen "10.250.0.1:4789" >>"$work/ha/daemon.log" 2>&1 &
  pids+=("$!"); daemon_ha=$!
  wait_for sh -c "NITRIDE_SOCKET=$work/ha/run/control.sock node $cli status --json | grep -q '\"state\": \"up\"'"
}
start_host_daemon_again
same "$ebs_uri" "ebs after the restart"
on ha volume describe "$eph" 2>&1 || echo "(its key died with the old daemon: the data is unrecoverable)"

step "disable the KMS key: the volume can no longer be attached (crypto-shred of a whole family)"
on ha kms disable-key "$key" >/dev/null
qemu-img info "$ebs_uri" 2>&1 | tail -1 || true
on ha kms enable-key "$key" >/dev/null
echo "key enabled again: $(qemu-img info --output=json "$ebs_uri" | json '["virtual-size"]') bytes attachable"

# ---------------------------------------------------------------------------------------------
step "VPC: pin each other's public keys, same VPC/subnet/ENI tables on both hosts"
ka=$(on ha key show); kb=$(on hb key show)
echo "host A key: $ka"; echo "host B key: $kb"
on ha peer add --name hb --endpoint 10.250.0.2:4789 --public-key "$kb" >/dev/null
on hb peer add --name ha --endpoint 10.250.0.1:4789 --public-key "$ka" >/dev/null
vpc=vpc-0d3e0000000000001; subnet=subnet-0d3e0000000000001
for h in ha hb; do
  on "$h" vpc create --cidr 172.31.0.0/16 --id "$vpc" >/dev/null
  on "$h" subnet create --vpc "$vpc" --cidr 172.31.1.0/24 --id "$subnet" >/dev/null
done
eni_a=$(on ha eni create --subnet "$subnet" --id eni-0d3e00000000000aa --mac 02:00:5e:10:00:0a --ip 172.31.1.10 --kind veth --json)
on hb eni create --subnet "$subnet" --id eni-0d3e00000000000aa --mac 02:00:5e:10:00:0a --ip 172.31.1.10 --host ha >/dev/null
eni_b=$(on hb eni create --subnet "$subnet" --id eni-0d3e00000000000bb --mac 02:00:5e:10:00:0b --ip 172.31.1.11 --kind veth --json)
on ha eni create --subnet "$subnet" --id eni-0d3e00000000000bb --mac 02:00:5e:10:00:0b --ip 172.31.1.11 --host hb >/dev/null
on ha eni list
wait_for sh -c "NITRIDE_SOCKET=$work/ha/run/control.sock node $cli peer list | grep -q established"
on ha peer list

guest() { # guest ga ha "$eni_json": a namespace guest on the ENI's guest-side veth, configured by DHCP
  local g=$1 h=$2 ifname
  ifname=$(json .guestInterface <<<"$3")
  ip netns add "${tag}$g"
  ip -n "${tag}$h" link set "$ifname" netns "${tag}$g"
  ip -n "${tag}$g" link set lo up; ip -n "${tag}$g" link set "$ifname" up
  cat >"$work/udhcpc-$g.sh" <<'SCRIPT'
#!/bin/sh
case "$1" in bound|renew)
  ip addr flush dev "$interface"; ip addr add "$ip/${mask:-24}" dev "$interface"
  [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
  [ -n "$router" ] && ip route replace default via "$router" dev "$interface"
  echo "lease: $interface $ip/$mask router $router mtu $mtu" ;;
esac
SCRIPT
  chmod +x "$work/udhcpc-$g.sh"
  ip netns exec "${tag}$g" busybox udhcpc -i "$ifname" -n -q -f -t 5 -T 2 -s "$work/udhcpc-$g.sh" 2>/dev/null | grep lease
  eval "if_$g=$ifname"
}
step "guests: one network namespace per host, addressed by the daemons' DHCP"
guest ga ha "$eni_a"
guest gb hb "$eni_b"

step "guest A pings guest B across the encrypted underlay"
ip netns exec "${tag}ga" busybox ping -c 5 -W 2 172.31.1.11 | tail -2

step "a spoofed source is dropped by the source/destination check"
ip -n "${tag}ga" addr add 172.31.1.99/24 dev "$if_ga"
ip netns exec "${tag}ga" busybox ping -c 3 -W 1 -I 172.31.1.99 172.31.1.11 | grep -E "packets transmitted" || true
on ha vpc stats --json | json '.enis' | node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{for(const [id,e] of Object.entries(JSON.parse(s)))console.log(id,'rx',e.rxFrames,'tx',e.txFrames,'spoofed',e.drops.spoofed)})"

step "underlay counters on host A (datagrams to and from host B are AES-256-GCM sealed)"
on ha vpc stats --json | json '.peers' 

step "audit trail of host A (mutating calls: who, what, result), last lines"
tail -n 3 "$work/ha/state/audit.log"

step "stop both hosts with SIGTERM (in-flight I/O drained, keys destroyed)"
kill -TERM "$daemon_ha" "$daemon_hb"; wait "$daemon_ha" "$daemon_hb" && echo "both daemons exited with 0"
