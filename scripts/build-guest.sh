#!/usr/bin/env bash
# Build (or reuse) the small test guest: Debian's cloud kernel and a busybox-static initramfs
# holding the virtio and nbd modules, Debian's nbd-client (with its libraries) and
# scripts/guest/init, which runs the test program named on the kernel command line
# (nitride.test=…) and prints NITRIDE-… markers on the serial console.
#
# Packages are fetched with `apt-get download` and unpacked with `dpkg-deb -x`: the host's
# own kernel, boot setup and nbd configuration are untouched. The result is cached under
# $NITRIDE_GUEST_CACHE (default /var/cache/nitride/guest) in a directory named after a hash
# of the inputs (this script, the init, the package versions), so it is rebuilt only when one
# of them changes. Prints the directory holding vmlinuz and initrd.img.
#
# Usage: scripts/build-guest.sh [--quiet]
set -euo pipefail
source "$(dirname "$0")/lib/bootstrap.sh"
require_root
ensure_packages "${VM_PACKAGES[@]}"

quiet=false
[ "${1:-}" = --quiet ] && quiet=true
say() { $quiet || echo "build-guest: $*" >&2; }

cache="${NITRIDE_GUEST_CACHE:-/var/cache/nitride/guest}"
init="$NITRIDE_ROOT/scripts/guest/init"
mkdir -p "$cache/debs"

# The kernel image package the cloud meta-package points at, e.g. linux-image-6.1.0-56-cloud-amd64.
kernel_pkg="$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -1)"
[ -n "$kernel_pkg" ] || die "cannot resolve linux-image-cloud-amd64 (run apt-get update?)"
# Debian's nbd-client and the libraries it needs beyond what QEMU's host already has.
extra_pkgs=(nbd-client libnl-3-200 libnl-genl-3-200)
candidate() { apt-cache policy "$1" | sed -n 's/^ *Candidate: //p'; }
versions="$kernel_pkg=$(candidate "$kernel_pkg")"
for p in "${extra_pkgs[@]}"; do versions+=" $p=$(candidate "$p")"; done
busybox_version="$(dpkg-query -W -f='${Version}' busybox-static)"
inputs_hash="$( { cat "$0" "$init"; echo "$versions busybox-static=$busybox_version"; } | sha256sum | cut -c1-16)"
out="$cache/$inputs_hash"
if [ -f "$out/initrd.img" ] && [ -f "$out/vmlinuz" ]; then
  touch "$out/inputs.txt" # in use (see the pruning below)
  say "cached: $out"
  echo "$out"
  exit 0
fi

say "building $out ($versions)"
work="$(mktemp -d "$cache/.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
(cd "$cache/debs" && apt-get download -qq "$kernel_pkg" "${extra_pkgs[@]}" 2>/dev/null) || die "apt-get download failed"
mkdir -p "$work/pkg"
for p in "$kernel_pkg" "${extra_pkgs[@]}"; do
  deb="$(ls -t "$cache/debs/${p}_"*.deb | head -1)"
  dpkg-deb -x "$deb" "$work/pkg"
done
kver="${kernel_pkg#linux-image-}"
moddir="$work/pkg/lib/modules/$kver/kernel"

root="$work/root"
mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,tmp,lib/modules,lib64,usr/share/udhcpc}
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"; done
# Modules in load order (dependencies first; from `modprobe -D virtio_pci virtio_blk virtio_net nbd`).
modules="drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_modern_dev
  drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci drivers/block/virtio_blk
  net/core/failover drivers/net/net_failover drivers/net/virtio_net drivers/block/nbd"
for m in $modules; do
  src="$moddir/$m.ko"
  [ -f "$src" ] || die "module $m missing from $kernel_pkg"
  cp "$src" "$root/lib/modules/"
  echo "$(basename "$m")" >>"$root/etc/modules"
done
# nbd-client and the shared libraries ldd finds for it (the unpacked ones first).
cp "$work/pkg/sbin/nbd-client" "$root/sbin/nbd-client"
libpath="$work/pkg/lib/x86_64-linux-gnu:$work/pkg/usr/lib/x86_64-linux-gnu"
LD_LIBRARY_PATH="$libpath" ldd "$work/pkg/sbin/nbd-client" | awk '/=> \// {print $3} /^\t\/lib64/ {print $1}' | while read -r lib; do
  case "$lib" in /lib64/*) cp -L "$lib" "$root/lib64/" ;; *) cp -L "$lib" "$root/lib/" ;; esac
done
LD_LIBRARY_PATH="$libpath" ldd "$work/pkg/sbin/nbd-client" | grep -q 'not found' && die "nbd-client has unresolved libraries"
cp "$init" "$root/init"
chmod 755 "$root/init"

# /dev/console must be in the archive: the kernel opens it before /init runs.
mknod -m 600 "$root/dev/console" c 5 1
(cd "$root" && find . -mindepth 1 | sort | cpio -o -H newc -R 0:0 --quiet) >"$work/initrd.cpio"
mkdir -p "$out.tmp"
gzip -6 <"$work/initrd.cpio" >"$out.tmp/initrd.img"
cp "$work/pkg/boot/vmlinuz-$kver" "$out.tmp/vmlinuz"
echo "$versions busybox-static=$busybox_version" >"$out.tmp/inputs.txt"
rm -rf "$out"
mv "$out.tmp" "$out"
# Builds of other inputs go once unused for a day: another checkout on this host (another
# branch, a CI clone) may be booting its own right now.
for old in "$cache"/*/; do
  case "$old" in "$out/" | "$cache/debs/") ;; *) [ -n "$(find "$old/inputs.txt" -mmin +1440 2>/dev/null)" ] && rm -rf "$old" ;; esac
done
say "built $out ($(du -sh "$out/initrd.img" | cut -f1) initramfs)"
echo "$out"
