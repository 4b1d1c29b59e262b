/**
 * The jail a guest's QEMU runs in (after Firecracker's jailer), built from util-linux tools so
 * that no privileged code of ours runs in the child:
 *   unshare --mount --pid    its own mount namespace (propagation private) and pid namespace:
 *                            unshare forks once and waits; its child becomes PID 1 there and
 *                            is QEMU (QMP is a Unix socket: namespaces do not matter to it).
 *                            --kill-child: QEMU never outlives the unshare that holds it.
 *   sh (JAIL_SCRIPT)         joins its cgroups, bind-mounts /usr read-only and the few /dev
 *                            nodes it needs into its root, chroots there
 *   setpriv                  becomes the VM's own uid/gid, no supplementary groups, no
 *                            capabilities (effective, permitted, inheritable, ambient, bounding),
 *                            NoNewPrivs
 *   qemu                     then turns on its own seccomp sandbox (qemu.ts SANDBOX).
 * Past the fork every step execs the next, so unshare's only child is QEMU (the pid recorded).
 *
 * The root (<vm dir>/root, root-owned 0755) holds: boot/ (copies of the kernel and initrd,
 * 0444), run/ (the VM's uid, 0700: its NBD and QMP sockets and its console), dev/, usr/ and
 * the lib/bin links. Nothing else of the host is visible; the daemon's state, the control and
 * KMS sockets and other guests' files are outside it.
 *
 * Pure: command lines and uid allocation; the manager does the file work.
 */
import { UsageError } from '../common/errors.js';

/** A range of uids (and equal gids) for guests, one per running VM. */
export interface UidRange {
  first: number;
  last: number;
}

/** Default guest uids: above systemd's container range (524288–1879048191), unused by distributions. */
export const DEFAULT_VM_UID_RANGE = '1879048192-1879113727';

/** Parse "FIRST-LAST" (inclusive). Never 0 or nobody (65534), at most 2^31-2. */
export function parseUidRange(text: string, what = '--vm-uid-range'): UidRange {
  const m = /^(\d{1,10})-(\d{1,10})$/.exec(text);
  const first = m ? Number(m[1]) : NaN;
  const last = m ? Number(m[2]) : NaN;
  if (!m || first < 1 || last < first || last > 0x7ffffffe) throw new UsageError(`${what} must be FIRST-LAST uids, 1 ≤ FIRST ≤ LAST < 2^31-1, got '${text}'`);
  if (first <= 65534 && 65534 <= last) throw new UsageError(`${what} ${text} includes nobody (65534); guests never share an identity`);
  return { first, last };
}

/** The lowest uid of `range` that no running VM and no account of the host (`taken`) holds. */
export function allocateUid(range: UidRange, taken: ReadonlySet<number>): number | undefined {
  for (let uid = range.first; uid <= range.last; uid++) if (!taken.has(uid)) return uid;
  return undefined;
}

/** The uids and gids of /etc/passwd and /etc/group text: a guest never gets one. */
export function accountIds(passwd: string, group: string): Set<number> {
  const ids = new Set<number>();
  for (const line of passwd.split('\n')) {
    const f = line.split(':');
    if (f.length >= 4) [f[2], f[3]].forEach((x) => /^\d+$/.test(x!) && ids.add(Number(x)));
  }
  for (const line of group.split('\n')) {
    const f = line.split(':');
    if (f.length >= 3 && /^\d+$/.test(f[2]!)) ids.add(Number(f[2]));
  }
  return ids;
}

/** /dev nodes a guest's QEMU may open inside its root. */
export function jailDevices(accel: 'tcg' | 'kvm'): string[] {
  return ['null', 'zero', 'urandom', ...(accel === 'kvm' ? ['kvm'] : [])];
}

/**
 * Runs as root in the new mount namespace. $1 root, $2 uid, then cgroup.procs files up to
 * "--", then the /dev nodes up to "--", then QEMU and its arguments.
 */
export const JAIL_SCRIPT = `set -eu
root=$1 uid=$2
shift 2
while [ "$1" != -- ]; do echo $$ > "$1"; shift; done
shift
chown "$uid" "$root/run"
mount --make-rprivate /
mount --bind -o ro /usr "$root/usr"
while [ "$1" != -- ]; do mount --bind "/dev/$1" "$root/dev/$1"; shift; done
shift
exec chroot "$root" /usr/bin/setpriv --reuid="$uid" --regid="$uid" --clear-groups --inh-caps=-all --ambient-caps=-all --bounding-set=-all --no-new-privs -- "$@"
`;

/** Capabilities the daemon needs to build a jail (chown run/, mount, chroot, drop to the uid). */
const JAIL_CAPS: Array<[string, number]> = [
  ['CAP_CHOWN', 0],
  ['CAP_DAC_OVERRIDE', 1],
  ['CAP_SETGID', 6],
  ['CAP_SETUID', 7],
  ['CAP_SETPCAP', 8],
  ['CAP_SYS_CHROOT', 18],
  ['CAP_SYS_ADMIN', 21],
];

/** The jail's capabilities missing from `/proc/self/status` text (CapEff). */
export function missingJailCaps(procStatus: string): string[] {
  const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(procStatus)?.[1];
  const eff = hex ? BigInt(`0x${hex}`) : 0n;
  return JAIL_CAPS.filter(([, bit]) => (eff & (1n << BigInt(bit))) === 0n).map(([name]) => name);
}

export interface JailSpec {
  /** The VM's root directory on the host. */
  root: string;
  uid: number;
  /** cgroup.procs files to join (none under systemd: the unit does it). */
  cgroupProcs: string[];
  devices: string[];
  /** QEMU as named inside the root (/usr/bin/…). */
  qemu: string;
  args: string[];
}

/** The command that starts QEMU in its jail. */
export function jailCommand(spec: JailSpec): string[] {
  return ['unshare', '--mount', '--pid', '--fork', '--kill-child=SIGKILL', '--propagation', 'private', '--', 'sh', '-c', JAIL_SCRIPT, 'nitride-vm-jail', spec.root, String(spec.uid), ...spec.cgroupProcs, '--', ...spec.devices, '--', spec.qemu, ...spec.args];
}
