/**
 * QEMU command lines for nitride guests (pure: no I/O, unit-tested).
 *
 * - Volumes are NVMe controllers whose serial is the volume id without its dash (what EBS
 *   shows: `vol0123…`, 20 characters, NVMe's limit), backed by the daemon's NBD socket with
 *   `reconnect-delay` (requests pause, not fail, while the daemon restarts) and
 *   `open-timeout` (QEMU may start while the daemon is still coming up).
 * - ENIs are virtio-net devices with the ENI's MAC on the ENI's TAP, which the daemon opens
 *   and hands over as an inherited fd (QEMU needs neither /dev/net/tun nor CAP_NET_ADMIN);
 *   `vm qemu-args` (QEMU run by a user) names the TAP instead.
 * - QEMU's seccomp sandbox is on (SANDBOX): no obsolete syscalls, no setuid/setgid/caps, no
 *   fork/exec, no scheduler/affinity changes, for whoever runs it.
 * QEMU 7.2's NVMe controller has no model property (it always reports "QEMU NVMe Ctrl"), so
 * the serial is what identifies a nitride volume inside the guest.
 */
import type { Accel } from '../api/vms.js';

/** Seconds QEMU holds guest I/O while the NBD server is away (a daemon restart). Under the
 * Linux NVMe driver's 30 s I/O timeout would abort requests; a restart takes a few seconds. */
export const NBD_RECONNECT_DELAY_S = 30;
/** Seconds QEMU waits for the NBD server at start. */
export const NBD_OPEN_TIMEOUT_S = 30;


export interface QemuVolume {
  id: string;
  boot: boolean;
}

export interface QemuNic {
  ifname: string;
  mac: string;
  /** The TAP as an fd QEMU inherits (opened by the daemon); without it QEMU opens `ifname`. */
  fd?: number;
}

/** `-sandbox`: every option QEMU 7.2 has, each on its strictest setting. */
export const SANDBOX = 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny';

export interface QemuSpec {
  name: string;
  kernel: string;
  initrd?: string;
  append: string;
  memoryMiB: number;
  cpus: number;
  accel: Accel;
  nbdSocket: string;
  volumes: QemuVolume[];
  nics: QemuNic[];
  /** Serial console to this file (appended), or to QEMU's stdio for users who run QEMU themselves. */
  console: { file: string } | 'stdio';
  /** QMP socket the daemon controls the VM through. */
  qmpSocket?: string;
}

/** The NVMe serial of a volume: its id without the dash (vol-0123… → vol0123…). */
export function nvmeSerial(volumeId: string): string {
  return volumeId.replace('-', '');
}

/** A value inside a QEMU `key=value,…` option: a literal comma is written twice. */
export function qemuOptValue(value: string): string {
  return value.replaceAll(',', ',,');
}

export function qemuArgs(spec: QemuSpec): string[] {
  const args = [
    '-name', `${spec.name},process=nitride-vm-${spec.name}`,
    '-nodefaults', '-no-user-config', '-display', 'none',
    '-machine', `q35,accel=${spec.accel}`,
    '-cpu', spec.accel === 'kvm' ? 'host' : 'max',
    '-m', `${spec.memoryMiB}M`,
    '-smp', String(spec.cpus),
    // A guest reboot ends this QEMU: the VM is stopped (its instance store wiped) and `vm run` starts a new one.
    '-no-reboot',
    '-sandbox', SANDBOX,
    '-kernel', spec.kernel,
    ...(spec.initrd ? ['-initrd', spec.initrd] : []),
    '-append', spec.append,
  ];
  if (spec.console === 'stdio') args.push('-serial', 'mon:stdio');
  else args.push('-chardev', `file,id=console,path=${qemuOptValue(spec.console.file)},append=on`, '-serial', 'chardev:console');
  // -chardev rather than -qmp's legacy `unix:PATH,…` form, which has no escape for a comma in PATH.
  if (spec.qmpSocket) args.push('-chardev', `socket,id=qmp,path=${qemuOptValue(spec.qmpSocket)},server=on,wait=off`, '-mon', 'chardev=qmp,mode=control');
  // The boot volume first: it becomes nvme0n1.
  const volumes = [...spec.volumes].sort((a, b) => Number(b.boot) - Number(a.boot));
  volumes.forEach((v, i) => {
    const blockdev = {
      driver: 'nbd',
      'node-name': `vol${i}`,
      server: { type: 'unix', path: spec.nbdSocket },
      export: v.id,
      'reconnect-delay': NBD_RECONNECT_DELAY_S,
      'open-timeout': NBD_OPEN_TIMEOUT_S,
    };
    args.push('-blockdev', JSON.stringify(blockdev));
    args.push('-device', `nvme,id=nvme${i},drive=vol${i},serial=${nvmeSerial(v.id)}${v.boot ? ',bootindex=1' : ''}`);
  });
  spec.nics.forEach((n, i) => {
    args.push('-netdev', n.fd === undefined ? `tap,id=net${i},ifname=${n.ifname},script=no,downscript=no` : `tap,id=net${i},fd=${n.fd}`);
    args.push('-device', `virtio-net-pci,netdev=net${i},mac=${n.mac}`);
  });
  return args;
}
