/**
 * Boot images and VMs: /v1/images…, /v1/vms…
 *
 *     POST   /v1/images                  AllowImageRequest    → 201 ImageInfo
 *     GET    /v1/images                                       → ImageInfo[]
 *     DELETE /v1/images/:id              (hash, prefix, name) → RemovedImage
 *     POST   /v1/vms                     RunVmRequest         → 201 VmInfo
 *     POST   /v1/vms/qemu-args           RunVmRequest         → QemuArgsReply
 *     GET    /v1/vms                                          → VmInfo[]
 *     GET    /v1/vms/:id                 (id or name)         → VmInfo
 *     POST   /v1/vms/:id/stop            StopVmRequest        → VmInfo
 *     POST   /v1/vms/:id/start           StartVmRequest       → VmInfo
 *     DELETE /v1/vms/:id                                      → Deleted
 *     GET    /v1/vms/:id/console?offset=N[&previous=K]        → ConsoleReply
 */

export const VMS_API = {
  images: '/v1/images',
  image: '/v1/images/:id',
  vms: '/v1/vms',
  qemuArgs: '/v1/vms/qemu-args',
  vm: '/v1/vms/:id',
  stop: '/v1/vms/:id/stop',
  start: '/v1/vms/:id/start',
  console: '/v1/vms/:id/console',
} as const;

export type Accel = 'tcg' | 'kvm';

/** Seconds `vm run|start` waits for QEMU to answer QMP (TCG under load is slow to start). */
export const START_TIMEOUT_S = { min: 1, max: 600, default: 25 } as const;

/** The `--start-timeout` check, shared by the CLI and the server: the error names the flag. */
export function startTimeoutError(seconds: number): string | undefined {
  if (Number.isInteger(seconds) && seconds >= START_TIMEOUT_S.min && seconds <= START_TIMEOUT_S.max) return undefined;
  return `--start-timeout must be a whole number of seconds from ${START_TIMEOUT_S.min} to ${START_TIMEOUT_S.max}`;
}
export type VmState = 'running' | 'stopped';

export interface AllowImageRequest {
  /** The image file, an absolute path on the daemon's host. */
  path: string;
  name?: string;
}

export interface ImageInfo {
  sha256: string;
  name: string;
  size: number;
  /** The file it was allowed from (for people; never used to boot). */
  source: string;
  addedAt: string;
}

export type RemovedImage = ImageInfo & { removed: true };

export interface RunVmRequest {
  name: string;
  kernel: string;
  initrd?: string;
  append?: string;
  memoryMiB?: number;
  cpus?: number;
  accel?: Accel;
  /** "vol-…" or "vol-…:boot". */
  volumes?: string[];
  enis?: string[];
  /**
   * An rbd volume held by another host is taken over: the holder is fenced (Ceph blocklists
   * it, exactly as `volume detach --force`) before QEMU starts. Without it such a volume is
   * refused, naming the holder.
   */
  forceAttach?: boolean;
  /** Seconds to wait for QEMU to answer QMP (START_TIMEOUT_S); past it QEMU is stopped and the run fails. */
  startTimeoutS?: number;
}

/** `vm start`: a stopped VM again, with its stored spec (volumes, ENIs, memory, cpus, images, command line). */
export interface StartVmRequest {
  startTimeoutS?: number;
  /** As RunVmRequest.forceAttach: rbd volumes another host holds are taken over (it is fenced). */
  forceAttach?: boolean;
}

export interface QemuArgsReply {
  args: string[];
}

export interface StopVmRequest {
  /** Kill QEMU at once (SIGKILL). */
  force?: boolean;
}

export interface VmInfo {
  id: string;
  name: string;
  kernel: { sha256: string; name: string };
  initrd: { sha256: string; name: string } | null;
  append: string;
  memoryMiB: number;
  cpus: number;
  accel: Accel;
  volumes: Array<{ id: string; boot: boolean }>;
  enis: string[];
  createdAt: string;
  state: VmState;
  pid: number | null;
  /** The uid (= gid) its QEMU runs as, its own among running VMs (null: not started by the daemon's jail). */
  uid: number | null;
  stoppedAt: string | null;
  stopReason: string | null;
  /** Ephemeral volumes wiped at the stop (for `vm list`/describe). */
  wiped: string[];
  args: string[];
  consoleLog: string;
}

export interface ConsoleQuery {
  /**
   * Where to read from; negative counts from the end. Offsets count every byte the console
   * ever had, rotated files included: a read before the live file's start begins at its start.
   */
  offset?: number;
  /**
   * Read the Nth rotated file instead (1 = newest, up to --vm-console-keep); `offset` then
   * counts within that file.
   */
  previous?: number;
}

export interface ConsoleReply {
  /** Where the next read continues. */
  offset: number;
  text: string;
  state: VmState;
}
