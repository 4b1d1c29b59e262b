/**
 * The VM manager: QEMU guests whose disks are nitride volumes (NVMe over the daemon's NBD
 * socket) and whose NICs are nitride ENIs (virtio-net on the ENI's TAP), booted only from
 * allowlisted kernels/initrds.
 *
 * Lifecycle:
 * - run (and start: a stopped VM again, same id, its stored spec, a uid allocated anew): checks (names, allowlist, volumes free, ENIs local TAPs and free), writes the record,
 *   starts QEMU in its own session (under systemd: in its own transient service, see unit.ts),
 *   waits until QEMU answers QMP (at most --start-timeout; past it QEMU is killed and the run
 *   fails), records pid + process start time.
 * - a daemon stop leaves QEMU running (live update): guests see an NBD pause
 *   (`reconnect-delay`), their TAPs persist. The next daemon re-adopts every recorded QEMU
 *   whose pid still has the recorded start time, and watches it.
 * - stop (or QEMU exiting on its own, e.g. guest poweroff): QEMU quits (SIGTERM, then SIGKILL),
 *   its NBD connections close so each EBS-like volume's data key is destroyed when its last
 *   connection leaves, and each ephemeral volume is crypto-wiped (new key, empty image), as
 *   instance store is on stop.
 *
 * Files: <state>/vms/<id>/vm.json (atomic writes), root/run/console.log (serial console,
 * appended; rotated into console.log.1..N here, see console-log.ts), qemu.log (QEMU's own messages), qmp.sock, nbd.sock (the guest's own NBD socket: only its
 * volumes are served there; QEMU never sees the shared one).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants as fsc, existsSync, openSync, closeSync, promises as fs, readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { ConflictError, NotFoundError, RuntimeError, UsageError, errnoCode, oneLine } from '../common/errors.js';
import { ensureDir, readJsonFile, writeFileAtomic } from '../common/durable-fs.js';
import type { Logger } from '../log/logger.js';
import { describeHolder, type VolumeManager } from '../volume/manager.js';
import type { VpcManager } from '../vpc/manager.js';
import { sha256File, type ImageAllowlist } from './images.js';
import { createVmCgroup, removeVmCgroup, vmLimits } from './cgroup.js';
import { accountIds, allocateUid, jailCommand, jailDevices, missingJailCaps, parseUidRange, DEFAULT_VM_UID_RANGE, type UidRange } from './jail.js';
import { RestrictedCatalog } from '../nbd/exports.js';
import type { NbdServer } from '../nbd/server.js';
import { firstChild, processIsRunning, processStartTime } from './process.js';
import { underSystemd, unitCommand, unitHolds, unitKillCommand, vmUnitName, type LaunchFile } from './unit.js';
import { run } from '../common/run.js';
import { QmpClient } from './qmp.js';
import { qemuArgs, type QemuSpec } from './qemu.js';
import { consoleRotation, rotateConsole, rotatedName, DEFAULT_CONSOLE_KEEP, DEFAULT_CONSOLE_MAX_BYTES, type ConsoleRotation } from './console-log.js';
import { isResourceId, newResourceId } from '../api/ids.js';
import { START_TIMEOUT_S, type Accel, type ConsoleReply, type RunVmRequest, type StartVmRequest, type VmInfo, type VmState } from '../api/vms.js';
import { LOCAL_HOST_ID } from '../api/vpc.js';
import { SerialQueue } from '../common/serial.js';
import { closeFd, tapOpen } from '../native/addon.js';

export const DEFAULT_QEMU = 'qemu-system-x86_64';
const DEFAULT_APPEND = 'console=ttyS0 panic=-1';
/** How long `stop` waits after SIGTERM before SIGKILL. */
const STOP_TIMEOUT_MS = 15_000;
/** Console bytes returned per call. */
const CONSOLE_CHUNK = 256 << 10;

/** What is stored per VM: what the API shows, less the console path, plus what re-adoption checks. */
interface VmRecord extends Omit<VmInfo, 'consoleLog'> {
  format: 1;
  pidStartTime: string | null;
  /** cgroup directories created for it (removed at the stop). */
  cgroups: string[];
  /** Console bytes rotated out of console.log so far: console offsets count from the first byte ever. */
  consoleBase?: number;
  /** Its systemd unit, when QEMU runs as one (unit.ts): liveness and signals go through it. */
  unit?: string;
}

/** An allowed image and its stored copy. */
type Resolved = Awaited<ReturnType<ImageAllowlist['resolve']>>;

/** The allowed boot images of a run: stored copies and the hashes they must have. */
interface BootImages {
  kernel: { path: string; sha256: string };
  initrd?: { path: string; sha256: string };
}

/** Paths inside a guest's root (see jail.ts). */
const JAILED = {
  kernel: '/boot/kernel',
  initrd: '/boot/initrd',
  run: '/run',
  nbd: '/run/nbd.sock',
  qmp: '/run/qmp.sock',
  console: '/run/console.log',
} as const;

export interface VmManagerOptions {
  vmDir: string;
  logger: Logger;
  volumes: VolumeManager;
  vpc: VpcManager;
  images: ImageAllowlist;
  /** The shared (root-only) NBD socket, named in `vm qemu-args` for QEMUs run by users. */
  nbdSocket: string;
  /** Where each guest's own NBD socket is served (only its volumes, only to its uid). */
  nbd: Pick<NbdServer, 'listenGuest'>;
  /** QEMU binary (default qemu-system-x86_64 on PATH); it must be under /usr. */
  qemu?: string;
  /** uids (= gids) for guests, one per running VM (default DEFAULT_VM_UID_RANGE). */
  uidRange?: UidRange;
  /** Serial console cap and old files kept (default 1 MiB × 3). */
  consoleRotation?: ConsoleRotation;
}

class Vm {
  /** Serialises stop/cleanup of this VM. */
  readonly queue = new SerialQueue();
  cleanup: Promise<void> | undefined;
  /** A console rotation in progress. */
  rotation: Promise<void> | undefined;
  /** Why QEMU is exiting, when the daemon ended it (for the record). */
  exitReason: string | undefined;
  constructor(public record: VmRecord) {}
}

export class VmManager {
  private readonly vms = new Map<string, Vm>();
  private readonly log: Logger;
  private watcher: NodeJS.Timeout | undefined;
  /** Stoppers of the guests' NBD sockets, by VM id. */
  private readonly guestSockets = new Map<string, () => Promise<void>>();
  /** Serialises `run` (name and resource checks, then launch). */
  private readonly runQueue = new SerialQueue();

  private readonly uidRange: UidRange;
  private readonly rotation: ConsoleRotation;

  constructor(private readonly options: VmManagerOptions) {
    this.log = options.logger.child({ component: 'vm' });
    this.uidRange = options.uidRange ?? parseUidRange(DEFAULT_VM_UID_RANGE);
    this.rotation = options.consoleRotation ?? consoleRotation(DEFAULT_CONSOLE_MAX_BYTES, DEFAULT_CONSOLE_KEEP);
  }

  /** Load records and re-adopt running QEMUs; VMs whose QEMU died meanwhile are stopped (cleaned up). */
  async load(): Promise<void> {
    await ensureDir(this.options.vmDir);
    for (const entry of await fs.readdir(this.options.vmDir)) {
      if (!isResourceId('vm', entry)) continue;
      const record = await readJsonFile<VmRecord>(this.recordPath(entry));
      if (!record) continue;
      const vm = new Vm(record);
      this.vms.set(record.id, vm);
      if (record.state !== 'running') continue;
      if (qemuAlive(record)) {
        this.log.info({ vm: record.id, name: record.name, pid: record.pid }, 'running VM re-adopted');
      } else {
        this.log.warn({ vm: record.id, name: record.name }, 'VM process ended while the daemon was away');
        void this.afterExit(vm, 'exited while the daemon was away');
      }
    }
    this.watcher = setInterval(() => this.watch(), 1000);
    this.watcher.unref();
  }

  /** Stop watching. QEMU processes keep running: the next daemon re-adopts them. */
  async close(): Promise<void> {
    if (this.watcher) clearInterval(this.watcher);
    this.watcher = undefined;
    await Promise.all([...this.vms.values()].map((vm) => vm.cleanup?.catch(() => {})));
  }

  /** Serve the NBD socket of every running VM (re-adopted QEMUs reconnect to it). */
  async serveGuests(): Promise<void> {
    for (const vm of this.vms.values()) if (vm.record.state === 'running' && !vm.cleanup) await this.serveGuest(vm);
  }

  list(): VmInfo[] {
    return [...this.vms.values()].map((vm) => this.info(vm));
  }

  describe(ref: string): VmInfo {
    return this.info(this.get(ref));
  }

  /** The QEMU arguments `run` would use, for people who launch QEMU themselves (console on stdio, no QMP). */
  async qemuArgsFor(opts: RunVmRequest): Promise<string[]> {
    const { spec } = await this.plan(opts, 'stdio', undefined);
    return qemuArgs(spec);
  }

  run(opts: RunVmRequest): Promise<VmInfo> {
    return this.runQueue.run(() => this.runNow(opts));
  }

  /** Start a stopped VM again with its stored spec (same id, volumes, ENIs, images; a uid allocated anew). */
  start(ref: string, opts: StartVmRequest = {}): Promise<VmInfo> {
    return this.runQueue.run(() => this.startNow(ref, opts));
  }

  async stop(ref: string, force = false): Promise<VmInfo> {
    const vm = this.get(ref);
    if (vm.record.state === 'stopped' && !vm.cleanup) return this.info(vm);
    const { pid } = vm.record;
    if (qemuAlive(vm.record)) {
      vm.exitReason ??= force ? 'stopped (forced)' : 'stopped';
      await signalQemu(vm.record, force ? 'SIGKILL' : 'SIGTERM');
      const end = Date.now() + STOP_TIMEOUT_MS;
      while (qemuAlive(vm.record)) {
        if (Date.now() > end) {
          this.log.warn({ vm: vm.record.id, pid }, 'QEMU ignored SIGTERM; killing it');
          await signalQemu(vm.record, 'SIGKILL');
        }
        await sleep(50);
      }
    }
    await this.afterExit(vm, force ? 'stopped (forced)' : 'stopped');
    return this.info(vm);
  }

  /** Remove a stopped VM's record, console and logs. */
  async remove(ref: string): Promise<void> {
    const vm = this.get(ref);
    if (vm.record.state !== 'stopped' || vm.cleanup) throw new ConflictError(`VM ${vm.record.name} is running; stop it first`, 'VM_RUNNING');
    this.vms.delete(vm.record.id);
    await fs.rm(this.dirOf(vm.record.id), { recursive: true, force: true });
  }

  /**
   * Console output from byte `offset` (negative: the last -offset bytes); offsets span rotations.
   * With `previous` N: the Nth rotated file (1 = newest), offsets within it.
   */
  async console(ref: string, offset: number, previous?: number): Promise<ConsoleReply> {
    const vm = this.get(ref);
    await this.rotate(vm);
    if (previous !== undefined) return this.previousConsole(vm, offset, previous);
    const base = vm.record.consoleBase ?? 0;
    const file = this.consolePath(vm.record.id);
    let handle: fs.FileHandle;
    try {
      // run/ belongs to the guest's uid: never follow a link it may have put there.
      handle = await fs.open(file, fsc.O_RDONLY | fsc.O_NOFOLLOW);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return { offset: base, text: '', state: vm.record.state };
      throw err;
    }
    try {
      const size = (await handle.stat()).size;
      // Where to read in the live file; what was rotated out is in console.log.1… (not served here).
      const start = offset < 0 ? Math.max(0, size + offset) : Math.min(Math.max(0, offset - base), size);
      const buf = Buffer.alloc(Math.min(CONSOLE_CHUNK, size - start));
      const { bytesRead } = await handle.read(buf, 0, buf.length, start);
      return { offset: base + start + bytesRead, text: buf.subarray(0, bytesRead).toString('utf8'), state: vm.cleanup ? 'running' : vm.record.state };
    } finally {
      await handle.close();
    }
  }

  /** A rotated console file (in the VM's directory, written only by the daemon). */
  private async previousConsole(vm: Vm, offset: number, n: number): Promise<ConsoleReply> {
    const state = vm.cleanup ? 'running' : vm.record.state;
    let text: Buffer;
    try {
      text = await fs.readFile(rotatedName(this.dirOf(vm.record.id), n));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') throw new NotFoundError(`VM ${vm.record.name} has no console.log.${n} (${this.rotation.keep} kept, older ones dropped)`, 'NO_SUCH_CONSOLE');
      throw err;
    }
    const start = offset < 0 ? Math.max(0, text.length + offset) : Math.min(offset, text.length);
    const chunk = text.subarray(start, start + CONSOLE_CHUNK);
    return { offset: start + chunk.length, text: chunk.toString('utf8'), state };
  }

  /** Volumes of running VMs: a daemon stop hands their ephemeral keys over to the next daemon. */
  volumesInUse(): Set<string> {
    return new Set([...this.vms.values()].filter((v) => v.record.state === 'running').flatMap((v) => v.record.volumes.map((x) => x.id)));
  }

  status(): { total: number; running: number } {
    const all = [...this.vms.values()];
    return { total: all.length, running: all.filter((v) => v.record.state === 'running').length };
  }

  // ---------------------------------------------------------------------------- run

  private async runNow(opts: RunVmRequest): Promise<VmInfo> {
    const id = newResourceId('vm', randomBytes);
    const timeoutS = opts.startTimeoutS ?? START_TIMEOUT_S.default;
    const { spec, record, images } = await this.plan(opts, { file: JAILED.console }, JAILED.qmp, id);
    const qemu = this.launchChecks(spec, record);
    // A stopped VM of the same name is replaced (its console and record go).
    const old = [...this.vms.values()].find((v) => v.record.name === opts.name);
    if (old) await this.remove(old.record.id);
    await ensureDir(this.dirOf(id));
    const vm = new Vm(record);
    return this.launch(vm, spec, images, qemu, timeoutS, opts.forceAttach === true, () => fs.rm(this.dirOf(id), { recursive: true, force: true }));
  }

  private async startNow(ref: string, opts: StartVmRequest): Promise<VmInfo> {
    const vm = this.get(ref);
    const previous = vm.record;
    if (previous.state === 'running' || vm.cleanup) throw new ConflictError(`VM ${previous.name} is running; vm stop it first`, 'VM_RUNNING');
    const timeoutS = opts.startTimeoutS ?? START_TIMEOUT_S.default;
    const boot = {
      kernel: await this.options.images.resolveHash(previous.kernel.sha256, 'kernel'),
      ...(previous.initrd ? { initrd: await this.options.images.resolveHash(previous.initrd.sha256, 'initrd') } : {}),
    };
    const request: RunVmRequest = {
      name: previous.name,
      kernel: boot.kernel.path,
      append: previous.append,
      memoryMiB: previous.memoryMiB,
      cpus: previous.cpus,
      accel: previous.accel,
      volumes: previous.volumes.map((v) => v.id + (v.boot ? ':boot' : '')),
      enis: previous.enis,
    };
    const { spec, record, images } = await this.plan(request, { file: JAILED.console }, JAILED.qmp, previous.id, boot);
    const qemu = this.launchChecks(spec, record);
    // The previous run's console becomes console.log.1; its root (owned by its old uid) is rebuilt.
    await vm.rotation;
    const moved = await rotateConsole(this.consolePath(previous.id), this.dirOf(previous.id), this.rotation, true);
    previous.consoleBase = (previous.consoleBase ?? 0) + moved;
    await fs.rm(this.rootOf(previous.id), { recursive: true, force: true });
    record.createdAt = previous.createdAt;
    record.consoleBase = previous.consoleBase;
    vm.record = record;
    vm.exitReason = undefined;
    return this.launch(vm, spec, images, qemu, timeoutS, opts.forceAttach === true, async () => {
      vm.record = previous;
      await fs.rm(this.rootOf(previous.id), { recursive: true, force: true });
      await this.save(previous);
    });
  }

  /** Jail paths into the spec, the jail precondition, a uid; returns QEMU's path. */
  private launchChecks(spec: QemuSpec, record: VmRecord): string {
    // QEMU sees its jail's root: paths in its arguments are inside it.
    spec.nbdSocket = JAILED.nbd;
    spec.kernel = JAILED.kernel;
    if (spec.initrd) spec.initrd = JAILED.initrd;
    // Under systemd the jail is built in the guest's own unit, not with the daemon's privileges.
    const missing = underSystemd() ? [] : missingJailCaps(readText('/proc/self/status'));
    if (missing.length) throw new RuntimeError(`cannot jail QEMU: the daemon lacks ${missing.join(', ')} (a sandboxed service unit?); guests never run unjailed`, 'VM_JAIL_UNAVAILABLE');
    record.uid = this.allocateUid();
    return resolveQemu(this.options.qemu ?? DEFAULT_QEMU);
  }

  /**
   * Build the root, serve the guest's NBD socket, spawn the jailed QEMU and wait for QMP.
   * `undo` runs if nothing was spawned (run: the VM's directory goes; start: the old record is back).
   */
  private async launch(vm: Vm, spec: QemuSpec, images: BootImages, qemu: string, timeoutS: number, forceAttach: boolean, undo: () => Promise<void>): Promise<VmInfo> {
    const record = vm.record;
    const { id } = record;
    const uid = record.uid!;
    const dir = this.dirOf(id);
    const qmpSocket = path.join(this.rootOf(id), JAILED.qmp);
    let child: ReturnType<typeof spawn> | undefined;
    let unshare = 0;
    try {
      const unit = underSystemd() ? vmUnitName(id) : undefined;
      if (unit) record.unit = unit;
      else delete record.unit;
      await this.buildRoot(id, uid, record.accel, images, unit !== undefined);
      const limits = vmLimits(record.memoryMiB, record.cpus, record.accel);
      const cgroup = unit ? { dirs: [], procs: [] } : await createVmCgroup(id, limits);
      record.cgroups = cgroup.dirs;
      await this.serveGuest(vm);
      await this.claimHeldVolumes(record.volumes, forceAttach);
      // QEMU gets each TAP as fd 3, 4, …: it opens no device by name.
      spec.nics.forEach((n, i) => (n.fd = FIRST_INHERITED_FD + i));
      record.args = qemuArgs(spec);
      const jail = jailCommand({ root: this.rootOf(id), uid, cgroupProcs: cgroup.procs, devices: jailDevices(record.accel), qemu, args: record.args });
      if (unit) {
        // Its own unit (unit.ts): the launcher there opens the TAPs, as root outside our sandbox.
        await this.save(record);
        const launchFile = path.join(dir, 'launch.json');
        await writeFileAtomic(launchFile, JSON.stringify({ taps: spec.nics.map((n) => n.ifname), command: jail } satisfies LaunchFile) + '\n');
        closeSync(openSync(path.join(dir, 'qemu.log'), 'a', 0o600)); // systemd appends to it
        const [cmd, ...args] = unitCommand(id, limits, launchFile, path.join(dir, 'qemu.log'));
        const started = await run(cmd!, args);
        if (started.code !== 0) throw new RuntimeError(`cannot start the VM's unit ${unit}: ${oneLine(started.out)}`, 'QEMU_START_FAILED');
        // The main pid is the jail's unshare, alive as long as QEMU; QEMU's own pid comes from QMP below
        // (the unit's other processes may still be the jail's mount or chown until then).
        unshare = Number((await run('/usr/bin/systemctl', ['show', '--property=MainPID', '--value', unit])).out) || 0;
      } else {
        const taps = openTaps(spec.nics.map((n) => n.ifname));
        try {
          await this.save(record);
          const logFd = openSync(path.join(dir, 'qemu.log'), 'a', 0o600);
          try {
            // Own session: signals to the daemon's process group (Ctrl-C, a service manager's stop)
            // do not reach the guest. Not waited for: a daemon restart must leave QEMU running.
            child = spawn(jail[0]!, jail.slice(1), { detached: true, stdio: ['ignore', logFd, logFd, ...taps] });
          } finally {
            closeSync(logFd);
          }
        } finally {
          for (const fd of taps) closeFd(fd);
        }
      }
    } catch (err) {
      await this.unserveGuest(id);
      await removeVmCgroup(record.cgroups).catch(() => {});
      await undo();
      throw err;
    }
    this.vms.set(id, vm);
    if (child) {
      const spawnError = new Promise<Error>((resolve) => child!.once('error', resolve));
      child.unref();
      if (child.pid === undefined) {
        const err = await spawnError;
        record.state = 'stopped';
        record.stopReason = `QEMU did not start: ${oneLine(err)}`;
        await this.save(record);
        await this.unserveGuest(id);
        await removeVmCgroup(record.cgroups).catch(() => {});
        throw new RuntimeError(`cannot start ${qemu}: ${oneLine(err)}`, 'QEMU_START_FAILED');
      }
      // The exit event is quicker than the watcher for our own children (unshare ends with QEMU).
      child.once('exit', () => void this.afterExit(vm, vm.exitReason ?? 'QEMU exited'));
      const spawned = child;
      // QEMU is the child unshare forks into the guest's pid namespace.
      record.pid = (await forked(() => firstChild(spawned.pid!), () => spawned.exitCode !== null || spawned.signalCode !== null)) ?? null;
      record.pidStartTime = record.pid === null ? null : (processStartTime(record.pid) ?? null);
    }
    const pid = record.pid;
    await this.save(record);
    this.log.info({ vm: id, name: record.name, pid, unit: record.unit, accel: record.accel, volumes: record.volumes.map((v) => v.id), enis: record.enis }, 'VM started');
    const exited = () => (child ? child.exitCode !== null || child.signalCode !== null : unshare === 0 || !unitHolds(record.unit!, unshare));

    // Up = QEMU answers QMP (its devices, NBD disks and TAPs included, are set up by then).
    const end = Date.now() + timeoutS * 1000;
    for (;;) {
      if (vm.record.state === 'stopped' || exited() || vm.cleanup) {
        await this.afterExit(vm, 'QEMU exited at start');
        const why = (await tail(path.join(dir, 'qemu.log'), 1500)).trim();
        throw new RuntimeError(`QEMU exited at start${why ? `: ${why}` : ''}`, 'QEMU_START_FAILED');
      }
      if (existsSync(qmpSocket)) {
        try {
          // Bounded by what is left of the deadline: a QEMU stuck before its main loop accepts but never greets.
          const qmp = await QmpClient.connect(qmpSocket, Math.max(100, Math.min(5000, end - Date.now())));
          await qmp.execute('query-status');
          const qemuPid = qmp.peerPid();
          qmp.close();
          if (record.unit && qemuPid !== undefined) {
            record.pid = qemuPid;
            await this.save(record);
          }
          break;
        } catch {
          /* not ready yet */
        }
      }
      if (Date.now() > end) {
        // Nothing half-started stays behind: QEMU is killed and the VM recorded stopped.
        const why = `QEMU did not answer QMP within ${timeoutS} s (--start-timeout)`;
        this.log.warn({ vm: id, timeoutS }, 'QEMU did not answer QMP in time; killing it');
        vm.exitReason = why;
        await signalQemu(record, 'SIGKILL');
        while (!exited()) await sleep(50);
        await this.afterExit(vm, why);
        throw new RuntimeError(`${why}; it was stopped`, 'QEMU_START_TIMEOUT');
      }
      await sleep(100);
    }
    return this.info(vm);
  }

  /** Validate a run request and build the QEMU spec (no side effects). */
  private async plan(opts: RunVmRequest, consoleTarget: QemuSpec['console'], qmpSocket: string | undefined, id = '', boot?: { kernel: Resolved; initrd?: Resolved }): Promise<{ spec: QemuSpec; record: VmRecord; images: BootImages }> {
    const running = [...this.vms.values()].filter((v) => v.record.state === 'running' || v.cleanup);
    if (running.some((v) => v.record.name === opts.name)) throw new ConflictError(`a VM named ${opts.name} is running`, 'VM_NAME_TAKEN');
    const accel = opts.accel ?? 'tcg';
    if (accel === 'kvm') {
      try {
        accessSync('/dev/kvm', fsc.R_OK | fsc.W_OK);
      } catch {
        throw new UsageError('--accel kvm needs a usable /dev/kvm; use --accel tcg');
      }
    }
    const memoryMiB = opts.memoryMiB ?? 512;
    const cpus = opts.cpus ?? 1;
    if (!Number.isInteger(memoryMiB) || memoryMiB < 64 || memoryMiB > 65536) throw new UsageError('memory must be between 64 MiB and 64 GiB');
    if (!Number.isInteger(cpus) || cpus < 1 || cpus > 64) throw new UsageError('cpus must be between 1 and 64');

    const kernel = boot?.kernel ?? (await this.options.images.resolve(opts.kernel, 'kernel'));
    const initrd = boot ? boot.initrd : opts.initrd ? await this.options.images.resolve(opts.initrd, 'initrd') : undefined;

    const volumes = (opts.volumes ?? []).map(parseVolumeRef);
    if (volumes.length) await this.options.volumes.refreshed(); // an rbd volume another host created a moment ago
    if (volumes.filter((v) => v.boot).length > 1) throw new UsageError('only one volume can be the boot volume');
    if (new Set(volumes.map((v) => v.id)).size !== volumes.length) throw new UsageError('a volume is given twice');
    for (const v of volumes) {
      const info = this.options.volumes.describe(v.id);
      const user = running.find((r) => r.record.volumes.some((rv) => rv.id === v.id));
      if (user) throw new ConflictError(`volume ${v.id} is attached to VM ${user.record.name}`, 'VOLUME_IN_USE');
      if (info.state === 'in-use' && !info.multiAttach) {
        throw new ConflictError(`volume ${v.id} is attached to another consumer (${info.attachments.map((a) => a.consumer).join(', ')})`, 'VOLUME_IN_USE');
      }
    }
    const enis = opts.enis ?? [];
    if (new Set(enis).size !== enis.length) throw new UsageError('an ENI is given twice');
    const nics = enis.map((eniId) => {
      const eni = this.options.vpc.getEni(eniId);
      if (eni.hostId !== LOCAL_HOST_ID) throw new UsageError(`ENI ${eniId} lives on host ${eni.hostId}, not here`);
      if (eni.kind !== 'tap') throw new UsageError(`ENI ${eniId} is a ${eni.kind} ENI; QEMU needs a tap ENI (eni create --kind tap)`);
      const user = running.find((r) => r.record.enis.includes(eniId));
      if (user) throw new ConflictError(`ENI ${eniId} is attached to VM ${user.record.name}`, 'ENI_IN_USE');
      return { ifname: eni.hostInterface, mac: eni.mac };
    });

    const append = opts.append ?? DEFAULT_APPEND;
    const spec: QemuSpec = {
      name: opts.name,
      kernel: kernel.path,
      ...(initrd ? { initrd: initrd.path } : {}),
      append,
      memoryMiB,
      cpus,
      accel,
      nbdSocket: this.options.nbdSocket,
      volumes,
      nics,
      console: consoleTarget,
      ...(qmpSocket ? { qmpSocket } : {}),
    };
    const record: VmRecord = {
      format: 1,
      id,
      name: opts.name,
      kernel: { sha256: kernel.image.sha256, name: kernel.image.name },
      initrd: initrd ? { sha256: initrd.image.sha256, name: initrd.image.name } : null,
      append,
      memoryMiB,
      cpus,
      accel,
      volumes,
      enis,
      createdAt: new Date().toISOString(),
      state: 'running',
      pid: null,
      pidStartTime: null,
      stoppedAt: null,
      stopReason: null,
      wiped: [],
      args: [],
      uid: null,
      cgroups: [],
    };
    return { spec, record, images: { kernel: { path: kernel.path, sha256: kernel.image.sha256 }, ...(initrd ? { initrd: { path: initrd.path, sha256: initrd.image.sha256 } } : {}) } };
  }

  /**
   * rbd volumes another host holds (its lock on the image): refused naming the holder, or, with
   * `force`, freed by `volume detach --force`'s own code (the holder is blocklisted, then its lock
   * broken), so the half-dead host can never write again once this guest does.
   */
  private async claimHeldVolumes(volumes: Array<{ id: string }>, force: boolean): Promise<void> {
    const volumeManager = this.options.volumes;
    for (const { id } of volumes) {
      if (volumeManager.describe(id).store !== 'rbd') continue;
      if (force) {
        const { fenced } = await volumeManager.detach(id, true);
        if (fenced.length) this.log.warn({ volume: id, fenced: fenced.map((h) => h.host) }, 'vm run --force-attach: volume taken over');
        continue;
      }
      const { holder } = await volumeManager.describeWithHolder(id);
      if (holder) throw new ConflictError(`volume ${id} is attached on ${describeHolder(holder)}; --force-attach fences that host and takes the volume over`, 'VOLUME_IN_USE');
    }
  }

  // ---------------------------------------------------------------------------- stop

  /** Once QEMU is gone: wait for its NBD connections to close (EBS keys destroyed), wipe ephemeral volumes, record. */
  private afterExit(vm: Vm, reason: string): Promise<void> {
    if (vm.record.state === 'stopped') return vm.cleanup ?? Promise.resolve();
    vm.cleanup ??= vm.queue
      .run(async () => {
        await this.unserveGuest(vm.record.id);
        await removeVmCgroup(vm.record.cgroups ?? []).catch((err: unknown) => this.log.warn({ vm: vm.record.id, err: oneLine(err) }, 'cannot remove the VM cgroup'));
        const wiped: string[] = [];
        for (const v of vm.record.volumes) {
          const volumes = this.options.volumes;
          let type: string;
          try {
            type = volumes.describe(v.id).type;
          } catch {
            continue; // deleted meanwhile (ephemeral volumes do not survive a daemon restart)
          }
          if (!(await volumes.waitDetached(v.id, 10_000))) this.log.warn({ vm: vm.record.id, volume: v.id }, 'volume still attached after QEMU exit');
          if (type === 'ephemeral') {
            try {
              await volumes.wipeEphemeral(v.id);
              wiped.push(v.id);
            } catch (err) {
              this.log.error({ vm: vm.record.id, volume: v.id, err: oneLine(err) }, 'cannot wipe ephemeral volume');
            }
          }
        }
        vm.record = { ...vm.record, state: 'stopped', stoppedAt: new Date().toISOString(), stopReason: reason, wiped };
        await this.save(vm.record);
        this.log.info({ vm: vm.record.id, name: vm.record.name, reason, wiped }, 'VM stopped (volumes detached)');
      })
      .finally(() => {
        vm.cleanup = undefined;
      });
    return vm.cleanup;
  }

  private watch(): void {
    for (const vm of this.vms.values()) {
      if (vm.record.state !== 'running' || vm.cleanup || vm.record.pid === null) continue;
      if (!qemuAlive(vm.record)) void this.afterExit(vm, 'QEMU exited');
      else void this.rotate(vm);
    }
  }

  /** Rotate the VM's console if it is over the cap (one rotation at a time per VM). */
  private rotate(vm: Vm): Promise<void> {
    vm.rotation ??= (async () => {
      const moved = await rotateConsole(this.consolePath(vm.record.id), this.dirOf(vm.record.id), this.rotation);
      if (moved === 0) return;
      vm.record.consoleBase = (vm.record.consoleBase ?? 0) + moved;
      await this.save(vm.record);
    })()
      .catch((err: unknown) => this.log.warn({ vm: vm.record.id, err: oneLine(err) }, 'cannot rotate the console log'))
      .finally(() => {
        vm.rotation = undefined;
      });
    return vm.rotation;
  }

  // ---------------------------------------------------------------------------- helpers

  private async serveGuest(vm: Vm): Promise<void> {
    const catalog = new RestrictedCatalog(this.options.volumes, () => new Set(vm.record.volumes.map((v) => v.id)), `VM ${vm.record.name}`);
    const stop = await this.options.nbd.listenGuest(path.join(this.rootOf(vm.record.id), JAILED.nbd), catalog, vm.record.uid ?? undefined, vm.record.unit !== undefined);
    this.guestSockets.set(vm.record.id, stop);
  }

  private async unserveGuest(id: string): Promise<void> {
    const stop = this.guestSockets.get(id);
    this.guestSockets.delete(id);
    await stop?.().catch((err: unknown) => this.log.warn({ vm: id, err: oneLine(err) }, 'cannot stop the guest NBD socket'));
  }

  private get(ref: string): Vm {
    const vm = this.vms.get(ref) ?? [...this.vms.values()].find((v) => v.record.name === ref);
    if (!vm) throw new NotFoundError(`no VM ${ref}`, 'NO_SUCH_VM');
    return vm;
  }

  private info(vm: Vm): VmInfo {
    const { format: _format, pidStartTime: _start, consoleBase: _base, unit: _unit, ...rest } = vm.record;
    return { ...rest, consoleLog: this.consolePath(vm.record.id) };
  }

  private dirOf(id: string): string {
    return path.join(this.options.vmDir, id);
  }

  private recordPath(id: string): string {
    return path.join(this.dirOf(id), 'vm.json');
  }

  /** The guest's root directory (its QEMU is chrooted there). */
  private rootOf(id: string): string {
    return path.join(this.dirOf(id), 'root');
  }

  private consolePath(id: string): string {
    return path.join(this.rootOf(id), JAILED.console);
  }

  /** A guest uid no running VM and no host account has. */
  private allocateUid(): number {
    const running = [...this.vms.values()].filter((v) => v.record.state === 'running' || v.cleanup);
    const taken = new Set(running.flatMap((v) => (v.record.uid === null || v.record.uid === undefined ? [] : [v.record.uid])));
    for (const id of accountIds(readText('/etc/passwd'), readText('/etc/group'))) taken.add(id);
    const uid = allocateUid(this.uidRange, taken);
    if (uid === undefined) throw new ConflictError(`no free guest uid in the VM uid range ${this.uidRange.first}-${this.uidRange.last} (${running.length} VMs running); widen --vm-uid-range`, 'VM_UIDS_EXHAUSTED');
    return uid;
  }

  /**
   * The guest's root: copies of its boot images (re-hashed: what QEMU reads is what was
   * allowed), mount points for /usr and its /dev nodes, and run/ (its own: sockets, console).
   */
  private async buildRoot(id: string, uid: number, accel: Accel, images: BootImages, viaUnit: boolean): Promise<void> {
    const root = this.rootOf(id);
    // Modes set explicitly: the daemon's umask (0077 under nitride.service) would shut the guest's uid out.
    for (const d of ['', 'boot', 'usr', 'dev']) {
      await fs.mkdir(path.join(root, d), { mode: 0o755 });
      await fs.chmod(path.join(root, d), 0o755);
    }
    for (const [link, target] of [['lib', 'usr/lib'], ['lib64', 'usr/lib64'], ['bin', 'usr/bin'], ['sbin', 'usr/sbin']]) await fs.symlink(target!, path.join(root, link!));
    for (const dev of jailDevices(accel)) await fs.writeFile(path.join(root, 'dev', dev), '', { mode: 0o600 });
    for (const [role, image] of [['kernel', images.kernel], ['initrd', images.initrd]] as const) {
      if (!image) continue;
      const copy = path.join(root, role === 'kernel' ? JAILED.kernel : JAILED.initrd);
      await fs.copyFile(image.path, copy);
      await fs.chmod(copy, 0o444);
      if ((await sha256File(copy)).sha256 !== image.sha256) throw new RuntimeError(`the ${role} copied for VM ${id} does not match its allowed hash`, 'IMAGE_STORE_CORRUPT');
    }
    const run = path.join(root, JAILED.run);
    await fs.mkdir(run, { mode: 0o700 });
    if (viaUnit) {
      // The jail (root, in the guest's unit) makes it the uid's, group root: only that uid and
      // the daemon (root without CAP_CHOWN or CAP_DAC_OVERRIDE under the hardened unit, and
      // without setgid bits: RestrictSUIDSGID) enter it; what QEMU creates inside is 0666/0777
      // (the unit's UMask=0000), so the directory is the gate.
      await fs.chmod(run, 0o770);
    } else {
      await fs.chown(run, uid, uid);
    }
  }

  private async save(record: VmRecord): Promise<void> {
    await writeFileAtomic(this.recordPath(record.id), JSON.stringify(record, null, 2) + '\n');
  }
}

/** The first fd a child inherits after stdin/stdout/stderr. */
const FIRST_INHERITED_FD = 3;

/** Open each TAP (with virtio-net headers, as QEMU would); all or none. */
function openTaps(ifnames: string[]): number[] {
  const fds: number[] = [];
  try {
    for (const name of ifnames) fds.push(tapOpen(name, { vnetHdr: true }).fd);
  } catch (err) {
    for (const fd of fds) closeFd(fd);
    throw new RuntimeError(`cannot open TAP ${ifnames[fds.length]}: ${oneLine(err)}`, 'TAP_OPEN');
  }
  return fds;
}

/** "vol-…" or "vol-…:boot". */
function parseVolumeRef(ref: string): { id: string; boot: boolean } {
  const boot = ref.endsWith(':boot');
  const id = boot ? ref.slice(0, -':boot'.length) : ref;
  if (!isResourceId('volume', id)) throw new UsageError(`bad volume '${ref}': expected vol-<17 hex digits>[:boot]`);
  return { id, boot };
}

/** The pid `find` returns once the jail's unshare has forked QEMU (undefined if it `ended` first, or after 30 s). */
async function forked(find: () => number | undefined, ended: () => boolean): Promise<number | undefined> {
  const end = Date.now() + 30_000;
  for (;;) {
    const pid = find();
    if (pid !== undefined) return pid;
    if (ended() || Date.now() > end) return undefined;
    await sleep(20);
  }
}

/** Whether the VM's QEMU still runs: its unit holds its pid, or (no unit) its pid has the recorded start time. */
function qemuAlive(record: VmRecord): boolean {
  if (record.pid === null) return false;
  if (record.unit) return unitHolds(record.unit, record.pid);
  return record.pidStartTime !== null && processIsRunning(record.pid, record.pidStartTime);
}

/** Signal QEMU: through its unit (the daemon may not signal another uid) or directly. */
async function signalQemu(record: VmRecord, signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
  if (record.unit) {
    const [cmd, ...args] = unitKillCommand(record.unit, signal);
    await run(cmd!, args);
  } else if (record.pid !== null) {
    process.kill(record.pid, signal);
  }
}

/** QEMU's absolute path; it must live under /usr, the only host tree a guest's root shows. */
function resolveQemu(qemu: string): string {
  const found = qemu.includes('/') ? qemu : (process.env.PATH ?? '/usr/bin').split(':').map((d) => path.join(d, qemu)).find((f) => existsSync(f));
  if (!found) throw new RuntimeError(`${qemu} not found on PATH; install qemu-system-x86`, 'QEMU_START_FAILED');
  const real = realpathSync(found);
  if (!real.startsWith('/usr/')) throw new RuntimeError(`QEMU ${real} is outside /usr; a guest's jail shows only /usr`, 'QEMU_START_FAILED');
  return real;
}

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

async function tail(file: string, bytes: number): Promise<string> {
  try {
    const text = await fs.readFile(file, 'utf8');
    return text.slice(-bytes);
  } catch {
    return '';
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
