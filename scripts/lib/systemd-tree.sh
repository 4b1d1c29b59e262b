#!/usr/bin/env bash
# Prints the path of a Debian bookworm tree with systemd in it, for booting a real systemd
# with systemd-nspawn (test/systemd/systemd-boot.test.ts). Built once with debootstrap from
# this host's Debian mirror (~50 s, ~250 MB) and cached under /var/cache/nitride; the
# tests boot it with --volatile=overlay, so it is never modified.
# Needs: debootstrap (SYSTEMD_PACKAGES in bootstrap.sh), root.
# Arguments: extra packages (e.g. qemu-system-x86 for guests under systemd): another tree.
set -euo pipefail

# What the tree holds (the cache key): systemd as PID 1, and what the daemon runs (ip, tc).
INCLUDE="systemd,systemd-sysv,dbus,iproute2,procps"
for pkg in "$@"; do INCLUDE="$INCLUDE,$pkg"; done
CACHE="${NITRIDE_CACHE:-/var/cache/nitride}/systemd-tree"
KEY="$(printf '%s' "bookworm $INCLUDE" | sha256sum | cut -c1-16)"
TREE="$CACHE/$KEY"

if [ ! -x "$TREE/lib/systemd/systemd" ]; then
  mirror="$(sed -n 's/^URIs: *\(http[^ ]*\/debian\/\?\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)"
  [ -n "$mirror" ] || mirror="$(awk '$1 == "deb" && $2 ~ /debian\/?$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)"
  [ -n "$mirror" ] || { echo "systemd-tree: no Debian mirror found in the apt sources" >&2; exit 1; }
  mkdir -p "$CACHE"
  rm -rf "$TREE.tmp"
  debootstrap --variant=minbase --include="$INCLUDE" bookworm "$TREE.tmp" "$mirror" >"$CACHE/$KEY.log" 2>&1 \
    || { echo "systemd-tree: debootstrap failed, see $CACHE/$KEY.log" >&2; exit 1; }
  # The tests log in through nsenter, never a console: no getty, no network setup.
  rm -f "$TREE.tmp"/etc/systemd/system/getty.target.wants/*
  mv "$TREE.tmp" "$TREE"
fi
echo "$TREE"
