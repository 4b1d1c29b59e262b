/**
 * A guest's cgroup: memory and CPU limits for its QEMU. Under systemd the VM's unit carries
 * them (systemd-run -p MemoryMax= -p CPUQuota=, see unit.ts); otherwise a plain
 * directory the jail joins before exec:
 * - cgroup v2 (unified at /sys/fs/cgroup): <root>/nitride/vm-<id>, memory.max and cpu.max;
 * - v1 or hybrid: memory/<own path>/nitride-vm-<id> (memory.limit_in_bytes) and
 *   cpu/<own path>/nitride-vm-<id> (cpu.cfs_quota_us), under the daemon's own cgroups.
 */
import { existsSync, promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { RuntimeError, errnoCode, oneLine } from '../common/errors.js';

/** Memory QEMU uses beyond guest RAM (device model, TCG translation cache, I/O buffers). */
export const QEMU_OVERHEAD_MIB = { tcg: 384, kvm: 128 } as const;
/** CPU for QEMU's own threads (I/O, TCG's housekeeping) beyond one CPU per vCPU, in % of a CPU. */
export const QEMU_CPU_OVERHEAD_PERCENT = 50;
const CPU_PERIOD_US = 100_000;

export interface VmLimits {
  memoryBytes: number;
  /** Percent of one CPU (systemd's CPUQuota=). */
  cpuPercent: number;
}

/** The limits of a VM with `memoryMiB` of RAM and `cpus` vCPUs. */
export function vmLimits(memoryMiB: number, cpus: number, accel: 'tcg' | 'kvm'): VmLimits {
  return { memoryBytes: (memoryMiB + QEMU_OVERHEAD_MIB[accel]) * 1024 * 1024, cpuPercent: cpus * 100 + QEMU_CPU_OVERHEAD_PERCENT };
}

/** systemd-run properties for the same limits. */
export function unitProperties(limits: VmLimits): string[] {
  return ['-p', `MemoryMax=${limits.memoryBytes}`, '-p', `CPUQuota=${limits.cpuPercent}%`];
}

export interface VmCgroup {
  /** Directories created (removed when the VM stops). */
  dirs: string[];
  /** Files QEMU's launcher writes its pid to. */
  procs: string[];
}

/** Where the cgroup hierarchies are (not under `ip netns exec`, which mounts a fresh /sys). */
function cgroupRoot(): string {
  const root = '/sys/fs/cgroup';
  if (existsSync(path.join(root, 'cgroup.controllers')) || existsSync(path.join(root, 'memory', 'cgroup.procs'))) return root;
  throw new RuntimeError(`no cgroup hierarchy at ${root} (a daemon under 'ip netns exec' has a fresh /sys: use nsenter --net); guests need one for their limits`, 'VM_CGROUP');
}

/** Create the VM's cgroup directories with their limits. */
export async function createVmCgroup(id: string, limits: VmLimits): Promise<VmCgroup> {
  const ROOT = cgroupRoot();
  const quota = String(Math.round((limits.cpuPercent / 100) * CPU_PERIOD_US));
  const plan: Array<{ dir: string; files: Array<[string, string]> }> = [];
  if (existsSync(path.join(ROOT, 'cgroup.controllers'))) {
    const parent = path.join(ROOT, 'nitride');
    await enable(ROOT);
    await fs.mkdir(parent, { recursive: true });
    await enable(parent);
    plan.push({ dir: path.join(parent, `vm-${id}`), files: [['memory.max', String(limits.memoryBytes)], ['memory.swap.max', '0'], ['cpu.max', `${quota} ${CPU_PERIOD_US}`]] });
  } else {
    plan.push({ dir: path.join(ROOT, 'memory', ownPath('memory'), `nitride-vm-${id}`), files: [['memory.limit_in_bytes', String(limits.memoryBytes)]] });
    plan.push({ dir: path.join(ROOT, 'cpu', ownPath('cpu'), `nitride-vm-${id}`), files: [['cpu.cfs_period_us', String(CPU_PERIOD_US)], ['cpu.cfs_quota_us', quota]] });
  }
  const made: string[] = [];
  try {
    for (const { dir, files } of plan) {
      await fs.mkdir(dir);
      made.push(dir);
      for (const [file, value] of files) await fs.writeFile(path.join(dir, file), value);
    }
  } catch (err) {
    await removeVmCgroup(made);
    throw new RuntimeError(`cannot set up the VM's cgroup: ${oneLine(err)}`, 'VM_CGROUP');
  }
  return { dirs: made, procs: made.map((d) => path.join(d, 'cgroup.procs')) };
}

/**
 * Remove a stopped VM's cgroup directories (empty once QEMU is gone). QEMU's zombie still counts
 * until the jail's unshare reaps it, so EBUSY is retried for a few seconds.
 */
export async function removeVmCgroup(dirs: readonly string[]): Promise<void> {
  for (const dir of dirs) {
    for (let tries = 0; ; tries++) {
      try {
        await fs.rmdir(dir);
        break;
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') break;
        if (errnoCode(err) !== 'EBUSY' || tries >= 100) throw err;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }
}

/** Turn on the memory and cpu controllers for the children of a v2 cgroup. */
async function enable(dir: string): Promise<void> {
  const on = (await fs.readFile(path.join(dir, 'cgroup.subtree_control'), 'utf8')).split(/\s+/);
  const missing = ['memory', 'cpu'].filter((c) => !on.includes(c));
  if (missing.length) await fs.writeFile(path.join(dir, 'cgroup.subtree_control'), missing.map((c) => `+${c}`).join(' '));
}

/** This process's cgroup in a v1 hierarchy (from /proc/self/cgroup). */
function ownPath(controller: string): string {
  for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
    const [, controllers, where] = line.split(':');
    if (controllers?.split(',').includes(controller)) return where!;
  }
  throw new RuntimeError(`no ${controller} cgroup controller on this host`, 'VM_CGROUP');
}
