#!/usr/bin/env bash
# The main job, on a fresh Debian 12 host as root: bootstraps, builds the small test guest
# (cached), then runs two nitride "hosts" (network namespaces joined by a veth underlay, a KMS
# and a daemon each) and one QEMU guest per host:
#   - each guest boots an allowlisted kernel/initrd (a tampered kernel is refused), with an
#     EBS-like and an ephemeral volume as NVMe disks and a VPC ENI as its NIC;
#   - the guests get DHCP leases from their daemons, ping each other across the encrypted
#     underlay, write and verify their disks, and guest B sends its disk data to guest A;
#   - the demo prints a results table, then the crypto proofs: no plaintext on the underlay
#     (captured with tcpdump), none in any backing file, the ephemeral volumes crypto-wiped at
#     the stop, the EBS data intact, and a disabled KMS key blocking attachment.
# Everything is torn down at the end.
set -euo pipefail
source "$(dirname "$0")/lib/bootstrap.sh"
bootstrap "${NBD_CLIENT_PACKAGES[@]}" "${VPC_PACKAGES[@]}" "${VM_PACKAGES[@]}"
started=$(date +%s)
guest="$("$NITRIDE_ROOT/scripts/build-guest.sh")"   # cached: rebuilt only when its inputs change

work="$(mktemp -d /tmp/nitride-demo.XXXXXX)"
cli="$NITRIDE_ROOT/dist/cli/main.js"
tag="nd$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')"   # unique prefix for namespaces and links
pids=()
cleanup() {
  set +e
  for h in ha hb; do   # guests first (they outlive daemons by design)
    for pid in $( { on "$h" vm list --json | json '.filter(v=>v.state==="running").map(v=>v.pid).join(" ")'; } 2>/dev/null); do kill -9 "$pid"; done
  done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  sleep 0.5
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
  for ns in "${tag}ha" "${tag}hb"; do ip netns del "$ns" 2>/dev/null; done
  ip link del "${tag}ua" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
wait_for() { local n=$1; shift; for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done; echo "timed out: $*" >&2; return 1; }
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
  wait_for 150 test -S "$work/$h/run-kms/kms.sock"
  ip netns exec "${tag}$h" node "$cli" daemon --state-dir "$work/$h/state" --control-socket "$work/$h/run/control.sock" \
    --kms-socket "$work/$h/run-kms/kms.sock" --vpc-listen "$ip:4789" >>"$work/$h/daemon.log" 2>&1 &
  pids+=("$!")
  eval "daemon_$h=$!"
  wait_for 150 sh -c "NITRIDE_SOCKET=$work/$h/run/control.sock node $cli status --json | grep -q '\"state\": \"up\"'"
}
step "start a KMS and a daemon on each host"
start_host ha 10.250.0.1
start_host hb 10.250.0.2
on ha status | grep -E '^(health|version|nbd socket|vpc):'

step "VPC: pin each other's public keys; the same VPC, subnet and ENI tables on both hosts (TAP ENIs for QEMU)"
ka=$(on ha key show); kb=$(on hb key show)
on ha peer add --name hb --endpoint 10.250.0.2:4789 --public-key "$kb" >/dev/null
on hb peer add --name ha --endpoint 10.250.0.1:4789 --public-key "$ka" >/dev/null
vpc=vpc-0d3e0000000000001; subnet=subnet-0d3e0000000000001
declare -A eni=([ha]=eni-0d3e00000000000aa [hb]=eni-0d3e00000000000bb) mac=([ha]=02:00:5e:10:00:0a [hb]=02:00:5e:10:00:0b) addr=([ha]=172.31.1.10 [hb]=172.31.1.11)
for h in ha hb; do
  on "$h" vpc create --cidr 172.31.0.0/16 --id "$vpc" >/dev/null
  on "$h" subnet create --vpc "$vpc" --cidr 172.31.1.0/24 --id "$subnet" >/dev/null
done
for h in ha hb; do
  other=$([ "$h" = ha ] && echo hb || echo ha)
  on "$h" eni create --subnet "$subnet" --id "${eni[$h]}" --mac "${mac[$h]}" --ip "${addr[$h]}" >/dev/null
  on "$other" eni create --subnet "$subnet" --id "${eni[$h]}" --mac "${mac[$h]}" --ip "${addr[$h]}" --host "$h" >/dev/null
done
on ha eni list
wait_for 150 sh -c "NITRIDE_SOCKET=$work/ha/run/control.sock node $cli peer list | grep -q established"

step "boot image allowlist (the Nitro firmware check): allow the guest kernel and initrd; a tampered kernel is refused"
for h in ha hb; do for f in vmlinuz initrd.img; do on "$h" image allow "$guest/$f" >/dev/null; done; done
on ha image list
cp "$guest/vmlinuz" "$work/vmlinuz-tampered"; printf 'x' >>"$work/vmlinuz-tampered"
on ha vm run --name evil --kernel "$work/vmlinuz-tampered" --initrd "$guest/initrd.img" 2>&1 | cut -c1-150 || true

step "volumes: an EBS-like (KMS envelope) and an ephemeral (instance store) volume per host"
declare -A ebs eph
for h in ha hb; do
  ebs[$h]=$(on "$h" volume create --size 64M --name "data-$h" --json | json .id)
  eph[$h]=$(on "$h" volume create --type ephemeral --size 16M --json | json .id)
done
on ha volume list

step "capture host A's underlay while the guests run (tcpdump on ${tag}ua)"
ip netns exec "${tag}ha" tcpdump -i "${tag}ua" -s 0 -U -w "$work/underlay.pcap" udp 2>"$work/tcpdump.log" &
tcpdump_pid=$!; pids+=("$tcpdump_pid")
wait_for 50 grep -q listening "$work/tcpdump.log"

step "boot one QEMU guest per host (TCG): NVMe volumes (serial = volume id), the ENI as virtio-net"
plaintext=NITRIDE-DEMO-PLAINTEXT
common="console=ttyS0 panic=-1 clocksource=hpet nitride.test=e2e nitride.pattern=$plaintext nitride.mib=4"
boot_started=$(date +%s.%N)
on ha vm run --name guest-a --kernel "$guest/vmlinuz" --initrd "$guest/initrd.img" --memory 256M --volume "${ebs[ha]}:boot" --volume "${eph[ha]}" --eni "${eni[ha]}" \
  --append "$common nitride.ebs=${ebs[ha]} nitride.eph=${eph[ha]} nitride.peer=${addr[hb]} nitride.recv=5001" >/dev/null
on hb vm run --name guest-b --kernel "$guest/vmlinuz" --initrd "$guest/initrd.img" --memory 256M --volume "${ebs[hb]}:boot" --volume "${eph[hb]}" --eni "${eni[hb]}" \
  --append "$common nitride.ebs=${ebs[hb]} nitride.eph=${eph[hb]} nitride.peer=${addr[ha]} nitride.send=${addr[ha]}:5001" >/dev/null
on ha vm list; on hb vm list | tail -1
echo "guest A's disks as QEMU sees them:"; on ha vm describe guest-a --json | json '.args.filter(a=>a.startsWith("nvme")).map(a=>"  -device "+a).join("\n")'

console_of() { on "$1" vm console "$2"; }
verdict() { console_of "$1" "$2" | grep -qE 'NITRIDE-(PASS|FAIL)'; }
wait_for 1500 verdict hb guest-b; wait_for 1500 verdict ha guest-a
echo "both guests finished in $(node -pe "($(date +%s.%N) - $boot_started).toFixed(1)") s (boot, DHCP, disks, ping, transfer, power-off)"
step "what the guests printed on their serial consoles (nitride vm console)"
for g in "ha guest-a" "hb guest-b"; do set -- $g; echo "--- $2"; console_of "$1" "$2" | grep '^NITRIDE-' | cut -c1-140; done

# ---------------------------------------------------------------------------------------------
field() { grep -m1 "^$2" <<<"$1" | grep -oE "$3=[^ ]+" | cut -d= -f2 | tr -d '\r'; }   # (the serial console ends lines with CR LF)
ca=$(console_of ha guest-a); cb=$(console_of hb guest-b)
wait_for 300 sh -c "NITRIDE_SOCKET=$work/ha/run/control.sock node $cli vm list | grep guest-a | grep -q stopped"
wait_for 300 sh -c "NITRIDE_SOCKET=$work/hb/run/control.sock node $cli vm list | grep guest-b | grep -q stopped"
kill "$tcpdump_pid"; wait "$tcpdump_pid" 2>/dev/null || true
step "results (both guests powered off; their ephemeral volumes were wiped at the stop)"
# read_volume HOST VOL: the volume's plaintext, read by the host through its daemon's NBD socket, into a file
read_volume() { nbdcopy "nbd+unix:///$2?socket=$work/$1/run/nbd.sock" "$work/$2.raw" && echo "$work/$2.raw"; }
host_sha() { head -c $((4 << 20)) "$(read_volume "$1" "$2")" | sha256sum | cut -c1-64; }
printf '%-8s %-5s %-13s %-9s %-11s %-22s %-22s %-8s\n' GUEST HOST "DHCP ADDRESS" "PING" "EPH ZERO" "EBS WRITE/VERIFY" "EBS RE-READ BY HOST" VERDICT
for g in "ha guest-a ca" "hb guest-b cb"; do
  set -- $g; c=${!3}
  want=$(grep "^NITRIDE-DISK vol=${ebs[$1]}" <<<"$c" | grep -oE 'sha256=[0-9a-f]+' | cut -d= -f2)
  got=$(host_sha "$1" "${ebs[$1]}")
  printf '%-8s %-5s %-13s %-9s %-11s %-22s %-22s %-8s\n' "$2" "$1" "$(field "$c" NITRIDE-DHCP ip)" \
    "$(grep -q NITRIDE-PING <<<"$c" && echo "ok ($(field "$c" NITRIDE-PING tries))" || echo FAILED)" \
    "$(grep -q NITRIDE-EPH-ZERO <<<"$c" && echo yes || echo NO)" "ok ${want:0:16}…" \
    "$([ "$got" = "$want" ] && echo "same ${got:0:16}…" || echo "DIFFERENT")" "$(grep -oE 'NITRIDE-(PASS|FAIL)' <<<"$c")"
done
sent=$(grep "^NITRIDE-DISK vol=${ebs[hb]}" <<<"$cb" | grep -oE 'sha256=[0-9a-f]+' | cut -d= -f2)
echo "data across the VPC: guest B sent its 4 MiB disk data, guest A received $(field "$ca" NITRIDE-RECEIVED bytes) bytes, sha256 $([ "$(field "$ca" NITRIDE-RECEIVED sha256)" = "$sent" ] && echo matches || echo DIFFERS)"
on ha vm list; on hb vm list | tail -1
echo "ephemeral volumes crypto-wiped at the stop: $(on ha vm describe guest-a --json | json '.wiped.join(" ")') $(on hb vm describe guest-b --json | json '.wiped.join(" ")')"
printf 'ephemeral volume of guest A after the stop reads as zeroes: '
cmp -s "$(read_volume ha "${eph[ha]}")" <(head -c $((16 << 20)) /dev/zero) && echo yes || echo NO

step "crypto proofs"
packets=$(tcpdump -q -n -r "$work/underlay.pcap" 2>/dev/null | wc -l)
echo "underlay: $packets UDP packets captured on host A ($(stat -c %s "$work/underlay.pcap") bytes; GSO batches count once), e.g.:"
{ tcpdump -q -n -r "$work/underlay.pcap" 2>/dev/null | awk '$NF > 1000' | head -2 | sed 's/^/  /'; } || true
echo "occurrences of '$plaintext' in the capture: $(grep -c -a "$plaintext" "$work/underlay.pcap" || true)"
echo "backing files (volume images, KMS and state under both hosts, console logs excluded):"
found=$(grep -rl -a "$plaintext" "$work/ha" "$work/hb" --exclude=console.log --exclude=vm.json --exclude='*.log' 2>/dev/null || true)
echo "  files holding the plaintext: ${found:-none}"
echo "  while through NBD (decrypted) guest A's volume holds it: $(head -c 4096 "$work/${ebs[ha]}.raw" | grep -c -a "$plaintext") lines in its first 4 KiB"

step "disable host A's KMS key: its EBS volume can no longer be attached (crypto-shred of a whole family)"
key=$(on ha volume describe "${ebs[ha]}" --json | json .encryption.kmsKeyId)
on ha kms disable-key "$key" >/dev/null
qemu-img info "nbd+unix:///${ebs[ha]}?socket=$work/ha/run/nbd.sock" 2>&1 | tail -1 | cut -c1-160 || true
on ha kms enable-key "$key" >/dev/null

step "audit trail of host A (mutating calls: who, what, result), last lines"
tail -n 3 "$work/ha/state/audit.log" | cut -c1-200

step "stop both hosts with SIGTERM"
kill -TERM "$daemon_ha" "$daemon_hb"; wait "$daemon_ha" "$daemon_hb" 2>/dev/null; echo "both daemons stopped"
echo "demo finished in $(( $(date +%s) - started )) s"
