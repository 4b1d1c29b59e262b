/**
 * A guest as its own transient systemd service, when the daemon runs under systemd.
 *
 * Why a service and not a scope: a scope holds a process the daemon forked, so the jail would
 * inherit the daemon unit's sandbox (two capabilities, no mount/namespace syscalls, no
 * setuid, NoNewPrivileges): under the shipped nitride.service no jail can be built there.
 * A service is forked by PID 1 with none of it; the daemon's unit stays hardened, and the
 * guest's own unit carries its limits (MemoryMax, CPUQuota) and outlives daemon restarts.
 *
 * The unit runs `node launcher.js <vm dir>/launch.json` as root (see launcher.ts): it opens
 * the guest's TAPs by name (the daemon's fds cannot cross into another unit on systemd 252,
 * which has no ExtraFileDescriptors=) and execs the jail with them as fd 3, 4, …: QEMU is the
 * unit's main pid, and still opens no device itself.
 *
 * The daemon then reaches the guest through its unit only: ProtectProc=invisible hides the
 * guest's /proc entries from it and without CAP_KILL it cannot signal another uid, so liveness
 * is QEMU's pid in the unit's cgroup.procs (readable under ProtectControlGroups)
 * and signals go through `systemctl kill`.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { unitProperties, type VmLimits } from './cgroup.js';

/** What the launcher reads (written by the daemon into the VM's root-only directory). */
export interface LaunchFile {
  /** TAP interfaces to open, in the order of QEMU's fd=3, 4, … */
  taps: string[];
  /** The jail command (jail.ts jailCommand). */
  command: string[];
}

export const LAUNCHER = fileURLToPath(new URL('./launcher.js', import.meta.url));

/** Whether the daemon runs as a systemd service (INVOCATION_ID is set for services) with systemd-run at hand. */
export function underSystemd(env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(env.INVOCATION_ID) && existsSync('/usr/bin/systemd-run');
}

export function vmUnitName(id: string): string {
  return `nitride-vm-${id}.service`;
}

/**
 * The systemd-run command that starts VM `id`'s unit. Type=exec: systemd-run fails if the
 * launcher cannot be executed. UMask=0000: the QMP socket and console QEMU creates in its run/
 * must be reachable by the daemon (root without CAP_DAC_OVERRIDE); run/ itself (the guest's
 * uid, group root, 0770) keeps everyone else out.
 */
export function unitCommand(id: string, limits: VmLimits, launchFile: string, qemuLog: string, node = process.execPath): string[] {
  return [
    '/usr/bin/systemd-run', `--unit=${vmUnitName(id)}`, '--quiet', '--collect',
    '-p', 'Type=exec', ...unitProperties(limits), '-p', 'UMask=0000',
    '-p', `StandardOutput=append:${qemuLog}`, '-p', `StandardError=append:${qemuLog}`,
    '--', node, LAUNCHER, launchFile,
  ];
}

/** `systemctl kill` with SIGNAL to the unit's processes (QEMU). */
export function unitKillCommand(unit: string, signal: 'SIGTERM' | 'SIGKILL'): string[] {
  return ['/usr/bin/systemctl', 'kill', `--signal=${signal}`, unit];
}

/** The unit's cgroup directory: a sibling of the daemon's own (both in system.slice), from /proc/self/cgroup. */
export function unitCgroupDir(unit: string, selfCgroup = readText('/proc/self/cgroup')): string | undefined {
  const own = /^0::(\/.*)$/m.exec(selfCgroup)?.[1];
  if (!own) return undefined;
  const rel = path.join(path.dirname(own), unit);
  for (const mount of ['/sys/fs/cgroup', '/sys/fs/cgroup/unified']) {
    if (existsSync(path.join(mount, 'cgroup.controllers')) || existsSync(path.join(mount, 'cgroup.procs'))) return path.join(mount, rel);
  }
  return undefined;
}

/** Whether the unit's cgroup holds `pid` (the unit is collected when QEMU is gone). */
export function unitHolds(unit: string, pid: number): boolean {
  const dir = unitCgroupDir(unit);
  if (!dir) return false;
  return readText(path.join(dir, 'cgroup.procs')).split('\n').includes(String(pid));
}

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}
