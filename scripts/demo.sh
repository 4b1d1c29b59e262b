#!/usr/bin/env bash
# The main job, on a fresh Debian 12 host as root: bootstraps, builds the small test guest
# (cached), then runs a nitride fleet in network namespaces joined by one underlay bridge: a
# control-plane namespace with a three-member etcd (TLS, a client certificate per host, RBAC: a
# role per host) and the network KMS, and two hosts, each a daemon in fleet mode (its own host
# KMS keeps only its host key) with one QEMU guest:
#   - no `peer add` and no remote ENI records: the hosts find each other through their etcd
#     records, and the VPC model (VPC, subnet, ENIs, addresses allocated by etcd) is in etcd;
#   - each guest boots an allowlisted kernel/initrd (a tampered kernel is refused), with an
#     EBS-like and an ephemeral volume as NVMe disks and a VPC ENI as its NIC; the volume data
#     keys come from the one network KMS, under a grant per host;
#   - the guests get DHCP leases from their daemons, ping each other across the encrypted
#     underlay, write and verify their disks, and guest B sends its disk data to guest A;
#   - the demo prints a results table, then the crypto proofs: no plaintext on the underlay
#     (captured with tcpdump), none in any backing file, the ephemeral volumes crypto-wiped at
#     the stop, the EBS data intact, and a disabled KMS key blocking attachment.
# With --ceph (a few minutes more: a second guest boot), the EBS volumes are RBD images on a
# one-node Ceph cluster in the control plane: host A is stopped, and guest A's volume boots on
# host B, which verifies the data guest A wrote; the OSD's store is scanned for the plaintext.
# Everything (namespaces, etcd, Ceph, KMSes, daemons, guests) is torn down at the end, also after
# a failure.
set -euo pipefail
with_ceph=0
case "${1:-}" in --ceph) with_ceph=1 ;; "") ;; *) echo "usage: demo.sh [--ceph]" >&2; exit 2 ;; esac
source "$(dirname "$0")/lib/bootstrap.sh"
bootstrap "${NBD_CLIENT_PACKAGES[@]}" "${VPC_PACKAGES[@]}" "${VM_PACKAGES[@]}" "${ETCD_PACKAGES[@]}" $([ $with_ceph = 1 ] && echo "${CEPH_PACKAGES[@]}")
started=$(date +%s)

work="$(mktemp -d /tmp/nitride-demo.XXXXXX)"
cli="$NITRIDE_ROOT/dist/cli/main.js"
tag="nd$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')"   # unique prefix for namespaces and links
namespaces=("${tag}cp" "${tag}ha" "${tag}hb")
pids=()
cleanup() {
  set +e
  disown -a   # no "Killed" notices for the jobs ended below
  for h in ha hb; do   # guests first (they outlive daemons by design)
    for pid in $( { on "$h" vm list --json | json '.filter(v=>v.state==="running").map(v=>v.pid).join(" ")'; } 2>/dev/null); do kill -9 "$pid"; done
  done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  sleep 0.5
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
  # whatever still runs in the demo's namespaces (a guest whose daemon died first)
  for ns in "${namespaces[@]}"; do for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid"; done; done
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null; done
  [ -f "$work/ceph/ceph.conf" ] && bash "$NITRIDE_ROOT/scripts/lib/ceph-one-node.sh" stop "$work/ceph"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM   # (so that an interrupted demo cleans up too)
step() { printf '\n\033[1m== %s\033[0m (at %d s)\n' "$*" $(( $(date +%s) - started )); }
wait_for() { local n=$1; shift; for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done; echo "timed out: $*" >&2; return 1; }
json() { node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{const v=JSON.parse(s)$1;console.log(typeof v==='object'?JSON.stringify(v):v)})"; }
# on HOST ARGS…: nitride against that host's daemon (and its host KMS)
on() { local h=$1; shift; NITRIDE_SOCKET="$work/$h/run/control.sock" NITRIDE_KMS_SOCKET="$work/$h/run-kms/kms.sock" node "$cli" "$@"; }
# kms ARGS…: the network KMS's root-only socket (key management and grants)
kms() { NITRIDE_KMS_SOCKET="$work/netkms-run/kms.sock" node "$cli" kms "$@"; }
in_cp() { ip netns exec "${tag}cp" "$@"; }
guest="$("$NITRIDE_ROOT/scripts/build-guest.sh")"   # cached: rebuilt only when its inputs change

step "a fleet on one underlay carrying jumbo frames (MTU 9100): hosts ${tag}ha (10.250.0.1) and ${tag}hb (.2), control plane ${tag}cp (.251-.254) on its bridge"
for ns in "${namespaces[@]}"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip -n "${tag}cp" link add "${tag}br" type bridge; ip -n "${tag}cp" link set "${tag}br" up
members=(10.250.0.251 10.250.0.252 10.250.0.253); kms_addr=10.250.0.254
for a in "${members[@]}" "$kms_addr"; do ip -n "${tag}cp" addr add "$a/24" dev "${tag}br"; done
declare -A underlay=([ha]=10.250.0.1 [hb]=10.250.0.2)
for h in ha hb; do
  ip link add "${tag}u$h" mtu 9100 type veth peer name "${tag}p$h" mtu 9100
  ip link set "${tag}u$h" netns "${tag}$h"; ip link set "${tag}p$h" netns "${tag}cp"
  ip -n "${tag}cp" link set "${tag}p$h" master "${tag}br"; ip -n "${tag}cp" link set "${tag}p$h" up
  ip -n "${tag}$h" addr add "${underlay[$h]}/24" dev "${tag}u$h"; ip -n "${tag}$h" link set "${tag}u$h" up
done

ceph_args=()
if [ $with_ceph = 1 ]; then   # started now, waited for before the daemons start
  MON_ADDR="$kms_addr:3300" in_cp bash "$NITRIDE_ROOT/scripts/lib/ceph-one-node.sh" start "$work/ceph" $((2 << 30)) >"$work/ceph-start.log" 2>&1 &
  ceph_pid=$!
  ceph_args=(--ceph-conf "$work/ceph/ceph.conf" --ceph-pool rbd --ceph-id admin)
fi

step "a three-member etcd in ${tag}cp: TLS both ways, a client certificate per host (CN = host id; scripts/fleet-pki.sh)"
pki="$work/pki"
"$NITRIDE_ROOT/scripts/fleet-pki.sh" "$pki" ca
"$NITRIDE_ROOT/scripts/fleet-pki.sh" "$pki" server etcd "${members[@]}"
for user in root ha hb; do "$NITRIDE_ROOT/scripts/fleet-pki.sh" "$pki" client "$user"; done
endpoints=$(printf 'https://%s:2379,' "${members[@]}"); endpoints=${endpoints%,}
cluster=$(for i in 0 1 2; do printf 'm%d=https://%s:2380,' "$i" "${members[$i]}"; done); cluster=${cluster%,}
tls=(--cert-file "$pki/etcd.crt" --key-file "$pki/etcd.key" --trusted-ca-file "$pki/ca.crt" --client-cert-auth
  --peer-cert-file "$pki/etcd.crt" --peer-key-file "$pki/etcd.key" --peer-trusted-ca-file "$pki/ca.crt" --peer-client-cert-auth)
for i in 0 1 2; do
  m=${members[$i]}
  in_cp etcd --name "m$i" --data-dir "$work/etcd/m$i" --listen-client-urls "https://$m:2379" --advertise-client-urls "https://$m:2379" \
    --listen-peer-urls "https://$m:2380" --initial-advertise-peer-urls "https://$m:2380" --initial-cluster "$cluster" \
    --initial-cluster-state new --initial-cluster-token "$tag" "${tls[@]}" --logger zap --log-level warn >"$work/etcd-m$i.log" 2>&1 &
  pids+=("$!")
done
# etcdctl [USER] ARGS…: as that user (default root), from the control plane
etcdctl_as() { local u=$1; shift; in_cp env ETCDCTL_API=3 ETCDCTL_ENDPOINTS="$endpoints" ETCDCTL_CACERT="$pki/ca.crt" ETCDCTL_CERT="$pki/$u.crt" ETCDCTL_KEY="$pki/$u.key" "$@"; }
wait_for 300 etcdctl_as root etcdctl endpoint health
etcdctl_as root etcdctl endpoint status -w table
etcdctl_as root bash "$NITRIDE_ROOT/scripts/fleet-etcd-rbac.sh" enable
etcdctl_as root bash "$NITRIDE_ROOT/scripts/fleet-etcd-rbac.sh" host ha hb
echo "RBAC on (scripts/fleet-etcd-rbac.sh): users $(etcdctl_as root etcdctl user list | tr '\n' ' ')"

step "one network KMS for the fleet (kms serve --listen $kms_addr:7700; hosts authenticate with their host keys)"
in_cp node "$cli" kms serve --state-dir "$work/netkms" --socket "$work/netkms-run/kms.sock" --listen "$kms_addr:7700" >"$work/netkms.log" 2>&1 &
pids+=("$!")
wait_for 150 sh -c "NITRIDE_KMS_SOCKET='$work/netkms-run/kms.sock' node '$cli' kms status --json | grep -q publicKey"
kms_key=$(kms status --json | json .network.publicKey)
echo "KMS public key (every daemon pins it): $kms_key"

start_host() { # start_host ha: a host KMS (its host key only) and a daemon in fleet mode
  local h=$1
  mkdir -p "$work/$h"
  ip netns exec "${tag}$h" node "$cli" kms serve --state-dir "$work/$h/kms" --socket "$work/$h/run-kms/kms.sock" >"$work/$h/kms.log" 2>&1 &
  pids+=("$!")
  wait_for 150 test -S "$work/$h/run-kms/kms.sock"
  # nsenter --net, not `ip netns exec`: that mounts a fresh /sys, without the cgroup tree guests are jailed in
  nsenter --net="/run/netns/${tag}$h" node "$cli" daemon --state-dir "$work/$h/state" --control-socket "$work/$h/run/control.sock" \
    --kms-socket "$work/$h/run-kms/kms.sock" --kms-endpoint "$kms_addr:7700" --kms-public-key "$kms_key" --vpc-listen "${underlay[$h]}:4789" --vpc-underlay-mtu 9100 \
    --fleet-endpoints "$endpoints" --fleet-ca "$pki/ca.crt" --fleet-cert "$pki/$h.crt" --fleet-key "$pki/$h.key" "${ceph_args[@]}" >>"$work/$h/daemon.log" 2>&1 &
  pids+=("$!")
  eval "daemon_$h=$!"
  wait_for 150 sh -c "NITRIDE_SOCKET='$work/$h/run/control.sock' node '$cli' status --json | grep -q '\"state\": \"up\"'"
}
if [ $with_ceph = 1 ]; then
  step "a one-node Ceph cluster in ${tag}cp (mon at $kms_addr:3300, one OSD): the EBS volumes are RBD images"
  wait "$ceph_pid" || { tail -5 "$work/ceph-start.log"; exit 1; }
  in_cp ceph -c "$work/ceph/ceph.conf" -s | grep -E 'health:|osd:|pools:'
fi
step "start each host: a daemon in fleet mode (--fleet-endpoints, its certificate) and its host KMS; no peer add"
start_host ha
start_host hb
on ha status | grep -E '^(health|version|nbd socket|vpc|fleet):'
fleet_up() { [ "$(on "$1" fleet hosts --json | json '.filter(x=>!x.self&&x.session==="established").length')" = 1 ]; }
wait_for 300 fleet_up ha; wait_for 300 fleet_up hb
echo "host A's view (nitride fleet hosts):"; on ha fleet hosts | cut -c1-150
echo "host B (nitride fleet status):"; on hb fleet status | grep -E '^(fleet|registered|revision|ignored records):'
printf "host B's credentials writing host A's record: "
{ etcdctl_as hb etcdctl put /nitride/hosts/ha forged 2>&1 || true; } | tail -1
for h in ha hb; do kms grant create --host "$h" --public-key "$(on "$h" key show)" --key alias/nitride/ebs --context 'volume=vol-*' >/dev/null; done
echo "network KMS grants:"; kms grant list | cut -c1-150

step "the VPC model in etcd: the VPC made on host A (MTU 9001, as AWS's), its subnet on host B, one TAP ENI per host (addresses allocated by etcd)"
vpc=$(on ha vpc create --cidr 172.31.0.0/16 --mtu 9001 --json | json .id)
subnet=$(on hb subnet create --vpc "$vpc" --cidr 172.31.1.0/24 --json | json .id)
declare -A eni addr
for h in ha hb; do
  e=$(on "$h" eni create --subnet "$subnet" --json)
  eni[$h]=$(json .id <<<"$e"); addr[$h]=$(json .privateIp <<<"$e")
done
both_enis() { [ "$(on "$1" eni list --json | json .length)" = 2 ]; }
wait_for 150 both_enis ha; wait_for 150 both_enis hb
on ha eni list
echo "etcd holds: $(etcdctl_as root etcdctl get /nitride/ --prefix --keys-only | grep -v '^$' | sed -E 's#^/nitride/([a-z]+)/.*#\1#' | sort | uniq -c | awk '{printf "%s %s, ", $1, $2}' | sed 's/, $//')"

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

step "capture host A's underlay while the guests run (tcpdump on ${tag}uha)"
ip netns exec "${tag}ha" tcpdump -i "${tag}uha" -s 0 -U -w "$work/underlay.pcap" udp 2>"$work/tcpdump.log" &
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
echo "data across the VPC: guest B sent its 4 MiB disk data, guest A received $(field "$ca" NITRIDE-RECEIVED bytes) bytes, sha256 $([ "$(field "$ca" NITRIDE-RECEIVED sha256)" = "$sent" ] && echo matches || echo DIFFERS) (guests' MTU from DHCP: $(field "$ca" NITRIDE-DHCP mtu) and $(field "$cb" NITRIDE-DHCP mtu))"
on ha vm list; on hb vm list | tail -1
echo "ephemeral volumes crypto-wiped at the stop: $(on ha vm describe guest-a --json | json '.wiped.join(" ")') $(on hb vm describe guest-b --json | json '.wiped.join(" ")')"
printf 'ephemeral volume of guest A after the stop reads as zeroes: '
cmp -s "$(read_volume ha "${eph[ha]}")" <(head -c $((16 << 20)) /dev/zero) && echo yes || echo NO

step "crypto proofs"
packets=$(tcpdump -q -n -r "$work/underlay.pcap" 2>/dev/null | wc -l)
echo "underlay: $packets UDP packets captured on host A ($(stat -c %s "$work/underlay.pcap") bytes; GSO batches count once), e.g.:"
{ tcpdump -q -n -r "$work/underlay.pcap" 2>/dev/null | awk '$NF > 1000' | head -2 | sed 's/^/  /'; } || true
echo "occurrences of '$plaintext' in the capture: $(grep -c -a "$plaintext" "$work/underlay.pcap" || true)"
echo "backing files (volume images, KMS and state under both hosts$([ $with_ceph = 1 ] && echo ", the Ceph OSD's block file and mon store"), console logs excluded):"
found=$(grep -rl -a "$plaintext" "$work/ha" "$work/hb" --exclude=console.log --exclude=vm.json --exclude='*.log' 2>/dev/null || true)
[ $with_ceph = 1 ] && found+=$(grep -rl -a "$plaintext" "$work/ceph" --exclude='*.log' 2>/dev/null || true)   # the OSD's block file and the mon's store
echo "  files holding the plaintext: ${found:-none}"
echo "  while through NBD (decrypted) guest A's volume holds it: $(head -c 4096 "$work/${ebs[ha]}.raw" | grep -c -a "$plaintext") lines in its first 4 KiB"

step "disable the fleet's EBS master key on the network KMS: host A's EBS volume can no longer be attached (crypto-shred of a whole family)"
key=$(on ha volume describe "${ebs[ha]}" --json | json .encryption.kmsKeyId)
kms disable-key "$key" >/dev/null
qemu-img info "nbd+unix:///${ebs[ha]}?socket=$work/ha/run/nbd.sock" 2>&1 | tail -1 | cut -c1-160 || true
kms enable-key "$key" >/dev/null

step "audit trails: host A's daemon (mutating calls: who, what, result), and the network KMS (calls by host)"
tail -n 3 "$work/ha/state/audit.log" | cut -c1-200
node -e "const c={};for(const l of require('fs').readFileSync(process.argv[1],'utf8').trim().split('\n')){const e=JSON.parse(l);if(!e.caller||!e.caller.host)continue;const k=e.caller.host+' '+e.action+' '+e.status;c[k]=(c[k]||0)+1}for(const[k,n]of Object.entries(c))console.log('  '+k+': '+n)" "$work/netkms/audit.log"

if [ $with_ceph = 1 ]; then
  step "EBS on Ceph outlives its host: host A stopped, guest A's volume boots on host B, which reads guest A's data"
  kill -TERM "$daemon_ha"; wait "$daemon_ha" 2>/dev/null || true; echo "host A's daemon stopped"
  echo "host B lists host A's volume (its record is the image's metadata):"; on hb volume list | grep -E "^ID|${ebs[ha]}"
  want=$(grep "^NITRIDE-DISK vol=${ebs[ha]}" <<<"$ca" | grep -oE 'sha256=[0-9a-f]+' | cut -d= -f2)
  on hb vm run --name guest-a-on-b --kernel "$guest/vmlinuz" --initrd "$guest/initrd.img" --memory 256M --volume "${ebs[ha]}:boot" \
    --append "console=ttyS0 panic=-1 clocksource=hpet nitride.test=verify nitride.ebs=${ebs[ha]} nitride.mib=4 nitride.expect=$want" >/dev/null
  wait_for 1500 verdict hb guest-a-on-b
  console_of hb guest-a-on-b | grep -E '^NITRIDE-(VERIFIED|FAIL)' | cut -c1-140
  echo "guest A wrote sha256 ${want:0:16}… on host A; on host B the guest reads $(console_of hb guest-a-on-b | grep -q "^NITRIDE-VERIFIED.*$want" && echo "the same: data intact" || echo "something else: DIFFERENT")"
  wait_for 300 sh -c "NITRIDE_SOCKET=$work/hb/run/control.sock node $cli vm list | grep guest-a-on-b | grep -q stopped"
  step "stop host B with SIGTERM"
  kill -TERM "$daemon_hb"; wait "$daemon_hb" 2>/dev/null; echo "host B's daemon stopped"
else
  step "stop both hosts with SIGTERM"
  kill -TERM "$daemon_ha" "$daemon_hb"; wait "$daemon_ha" "$daemon_hb" 2>/dev/null; echo "both daemons stopped"
fi
echo "etcd after the stop: host records kept until their 10 s leases expire ($(etcdctl_as root etcdctl get /nitride/hosts/ --prefix --keys-only | grep -c . || true) now)"
echo "demo finished in $(( $(date +%s) - started )) s"
