#!/usr/bin/env bash
# Start (or stop) a one-node Ceph cluster in a private directory, for tests, benchmarks and demos
# (test/helpers/ceph.ts, scripts/bench). Debian 12 packages: CEPH_PACKAGES in bootstrap.sh. Measured on this kind of machine: ~12 s from nothing
# to a usable pool 'rbd'; RSS mon 40 MB, mgr 300 MB, osd 800 MB.
#   ceph-one-node.sh start DIR [OSD_BYTES]   -> DIR/ceph.conf, DIR/keyring (client.admin); pool 'rbd'
#   ceph-one-node.sh stop DIR [osd|mon|mgr]  -> every daemon, or only those of one kind
#   ceph-one-node.sh resume DIR              -> start what is stopped again; data kept
# Clients: CEPH_CONF=DIR/ceph.conf (fio ioengine=rbd, rbd, rados), or
#   qemu-io -f raw 'rbd:rbd/IMG:conf=DIR/ceph.conf:id=admin'
# Ports: the mon listens on MON_ADDR (default 127.0.0.1:3300, msgr2 only): callers that may run
# side by side pass a free port each (test/helpers/ceph.ts does); the OSD and mgr take free ports
# themselves. Nothing is written outside DIR (no /etc/ceph, no /var/lib/ceph).
set -euo pipefail
cmd=${1:?start|stop}; D=$(realpath -m "${2:?directory}")
if [ "$cmd" = stop ]; then
  W=${3:-}
  for p in "$D"/run/$W*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
  for i in $(seq 50); do ls "$D"/run/$W*.pid >/dev/null 2>&1 || break; alive=0
    for p in "$D"/run/$W*.pid; do kill -0 "$(cat "$p")" 2>/dev/null && alive=1; done; [ $alive = 0 ] && break; sleep 0.2; done
  # an OSD can take longer than 10 s to stop: end what is left
  for p in "$D"/run/$W*.pid; do [ -f "$p" ] && kill -9 "$(cat "$p")" 2>/dev/null || true; done
  # and return only once they are gone (a caller may remove DIR or start again next)
  for i in $(seq 50); do alive=0
    for p in "$D"/run/$W*.pid; do [ -f "$p" ] && kill -0 "$(cat "$p")" 2>/dev/null && alive=1; done; [ $alive = 0 ] && break; sleep 0.1; done
  exit 0
fi
if [ "$cmd" = resume ]; then
  C=(-c "$D/ceph.conf"); down() { ! { [ -f "$D/run/$1.pid" ] && kill -0 "$(cat "$D/run/$1.pid")" 2>/dev/null; }; }
  if down mon.a; then ceph-mon "${C[@]}" -i a; fi
  if down mgr.x; then ceph-mgr "${C[@]}" -i x; fi
  if down osd.0; then ceph-osd "${C[@]}" -i 0 2>/dev/null; fi
  for i in $(seq 120); do ceph "${C[@]}" pg stat 2>/dev/null | grep -qE "^[0-9]+ pgs: [0-9]+ active\+clean;" && break; sleep 0.25; done
  echo "$D/ceph.conf"; exit 0
fi
MON_ADDR=${MON_ADDR:-127.0.0.1:3300}; OSD_BYTES=${3:-4294967296}
mkdir -p "$D"/{mon,mgr,osd0,run,log}; FSID=$(uuidgen)
cat >"$D/ceph.conf" <<CONF
[global]
fsid = $FSID
mon host = v2:$MON_ADDR
mon initial members = a
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
run dir = $D/run
admin socket = $D/run/\$name.asok
log file = $D/log/\$name.log
pid file = $D/run/\$name.pid
keyring = $D/keyring
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
auth allow insecure global id reclaim = false
mon data avail warn = 1
osd crush chooseleaf type = 0
ms bind ipv6 = false
ms bind msgr1 = false
mon data = $D/mon
[mgr]
mgr data = $D/mgr
keyring = $D/mgr/keyring
[osd]
osd data = $D/osd\$id
keyring = $D/osd\$id/keyring
osd objectstore = bluestore
# the block file must live outside osd data: bluestore links osd data/block to it
bluestore block path = $D/osd\$id.block
bluestore block create = true
bluestore block size = $OSD_BYTES
osd memory target = 1073741824
CONF
C=(-c "$D/ceph.conf")
ceph-authtool --create-keyring "$D/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$D/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
monmaptool --create --addv a "[v2:$MON_ADDR]" --fsid "$FSID" "$D/monmap" >/dev/null
ceph-mon "${C[@]}" --mkfs -i a --monmap "$D/monmap" --keyring "$D/keyring"
ceph-mon "${C[@]}" -i a
ceph "${C[@]}" auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' >"$D/mgr/keyring"
ceph-mgr "${C[@]}" -i x
SECRET=$(ceph-authtool --gen-print-key); UUID=$(uuidgen)
ID=$(echo "{\"cephx_secret\": \"$SECRET\"}" | ceph "${C[@]}" osd new "$UUID" -i -)
ceph-authtool --create-keyring "$D/osd$ID/keyring" --name "osd.$ID" --add-key "$SECRET" >/dev/null
ceph-osd "${C[@]}" -i "$ID" --mkfs --osd-uuid "$UUID" 2>/dev/null
ceph-osd "${C[@]}" -i "$ID"
for i in $(seq 120); do ceph "${C[@]}" osd stat 2>/dev/null | grep -q "1 up" && break; sleep 0.25; done
ceph "${C[@]}" osd pool create rbd 32 32 >/dev/null 2>&1
ceph "${C[@]}" osd pool set rbd size 1 --yes-i-really-mean-it >/dev/null 2>&1
rbd "${C[@]}" pool init rbd
echo "$D/ceph.conf"
