/**
 * Typed loader for the `nitride_native` N-API addon (sources in `native/src/`,
 * built by `npx node-gyp rebuild --directory=native` into
 * `native/build/Release/nitride_native.node`).
 *
 * Errors: every function here throws ordinary `Error`s that carry a string
 * `code` property.
 * - System-call failures: the message names the step and the `strerror` text
 *   (e.g. `"TUNSETIFF ntap0: Device or resource busy"`); `code` is the errno
 *   name (`"EBUSY"`, `"EPERM"`, ...), `errno` is the negated errno number and
 *   `syscall` the failing call, as in Node's own system errors.
 * - Bad arguments: `TypeError` with `code: "ERR_INVALID_ARG_TYPE"`,
 *   `RangeError` with `code: "ERR_OUT_OF_RANGE"`, or `Error` with
 *   `code: "ERR_INVALID_ARG_VALUE"`.
 * - OpenSSL failures: `code: "ERR_OPENSSL"`; use of a destroyed
 *   {@link XtsCipher}: `code: "ERR_NITRIDE_XTS_DESTROYED"`; use of a closed
 *   {@link VpcEngine}: `code: "ERR_NITRIDE_VPC_CLOSED"`.
 * - The promise-returning block I/O functions ({@link punchHole},
 *   {@link preadDecrypt}, ...) validate their arguments synchronously (they
 *   throw) and reject with the system-call error otherwise; the synchronous
 *   ones ({@link seekData}, {@link tryPread}, ...) throw it.
 *
 * @module
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ConntrackFlow } from '../api/security-groups.js';
import { VPC_POLL_US_DEFAULT, type VpcPeerStats, type VpcPortStats, type VpcUnderlayStats, type VpcWorkerStats } from '../api/vpc.js';

/** Options for {@link tapOpen}. */
export interface TapOpenOptions {
  /** Add IFF_VNET_HDR: every frame read/written is preceded by a virtio_net_hdr. */
  vnetHdr?: boolean;
  /** Add IFF_MULTI_QUEUE: the same device may be opened once per queue. */
  multiQueue?: boolean;
  /**
   * TUNSETPERSIST: `true` keeps the device after its last fd closes, `false`
   * clears that. Left unchanged when omitted.
   */
  persist?: boolean;
  /** TUNSETOWNER: uid allowed to attach to the device. */
  owner?: number;
  /** TUNSETGROUP: gid allowed to attach to the device. */
  group?: number;
}

/** An open TAP queue. */
export interface TapHandle {
  /** Non-blocking, close-on-exec fd of /dev/net/tun bound to the device. */
  fd: number;
  /** The device's actual name (as chosen by the kernel for "" or "pfx%d"). */
  name: string;
}

/** Credentials of a Unix-socket peer, as recorded by the kernel at connect(). */
export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

/**
 * An XTS data unit (sector) number: a non-negative safe integer `number`, or
 * a `bigint` in [0, 2^64-1].
 */
export type DataUnitNumber = bigint | number;

/**
 * AES-256-XTS with a key scheduled once. Thread-safe on the native side: the
 * threadpool operations ({@link preadDecrypt}, {@link encryptPwrite}) may use
 * one cipher concurrently with each other and with the main thread (the
 * round keys are read-only; the OpenSSL fallback leases a keyed context per
 * transform from a pool).
 * Encryption is in place; data unit
 * `firstDataUnit + i` covers bytes `[i*dataUnitSize, (i+1)*dataUnitSize)` of
 * the buffer, and its tweak is that number as a 16-byte little-endian value
 * (the dm-crypt / qemu "plain64" convention).
 */
export interface XtsCipher {
  /** Bytes per data unit, as given to the constructor. */
  readonly dataUnitSize: number;
  /**
   * Which code transforms: "vaes-avx512" (the addon's own, on CPUs with VAES
   * and AVX-512) or "openssl" (elsewhere, or with NITRIDE_XTS_IMPL=openssl in
   * the environment). Both give the same bytes.
   */
  readonly implementation: 'vaes-avx512' | 'openssl';
  /** True once {@link XtsCipher.destroy} has been called. */
  readonly destroyed: boolean;
  /**
   * Encrypts `buf` in place. `buf.length` must be a multiple of
   * `dataUnitSize` (RangeError otherwise), and the last data unit number must
   * not exceed 2^64-1.
   */
  encrypt(firstDataUnit: DataUnitNumber, buf: Uint8Array): void;
  /** Decrypts `buf` in place; same rules as {@link XtsCipher.encrypt}. */
  decrypt(firstDataUnit: DataUnitNumber, buf: Uint8Array): void;
  /**
   * Frees the OpenSSL contexts, whose key schedules OpenSSL cleanses
   * (OPENSSL_clear_free) as it frees them. Idempotent; any later
   * encrypt/decrypt (and {@link preadDecrypt}/{@link encryptPwrite} with this
   * cipher) throws (`code: "ERR_NITRIDE_XTS_DESTROYED"`). Threadpool
   * operations already in flight finish normally: the contexts are freed when
   * the last of them completes. Without it the contexts are freed when the
   * object is garbage collected.
   */
  destroy(): void;
}

/** Constructor of {@link XtsCipher}. */
export interface XtsCipherConstructor {
  /**
   * @param key 64 bytes: the AES-256 data key followed by the AES-256 tweak
   *   key. The two halves must differ. The addon keeps no copy of this
   *   buffer (only the key schedules inside OpenSSL); wiping it afterwards is
   *   the caller's business.
   * @param dataUnitSize 512, 1024, 2048 or 4096.
   */
  new (key: Uint8Array, dataUnitSize: number): XtsCipher;
  readonly prototype: XtsCipher;
}

/**
 * AES-256-GCM with 96-bit IVs: the VPC data plane's cipher (native/src/gcm.h),
 * exposed for tests and benchmarks (the engine keys its sessions natively).
 * Not for use from several threads; JS has one anyway.
 */
export interface AesGcm {
  /**
   * Which code runs: "vaes-avx512" (the addon's own, on CPUs with VAES,
   * VPCLMULQDQ and AVX-512) or "openssl" (elsewhere, or with
   * NITRIDE_GCM_IMPL=openssl in the environment). The same for every AesGcm
   * and every VPC session of the process.
   */
  readonly implementation: 'vaes-avx512' | 'openssl';
  /** Encrypts `data` in place and writes the 16-byte tag into `tag`. */
  seal(iv: Uint8Array, aad: Uint8Array, data: Uint8Array, tag: Uint8Array): void;
  /**
   * Authenticates and decrypts `data` in place: true if the tag matches;
   * false otherwise, with `data` zeroed.
   */
  open(iv: Uint8Array, aad: Uint8Array, data: Uint8Array, tag: Uint8Array): boolean;
  /**
   * Benchmark aid: this thread's CPU nanoseconds per seal or open of
   * `length` bytes with 16 bytes of AAD, over `iterations` calls in a native
   * loop (no N-API call per operation).
   */
  cpuNsPerOp(op: 'seal' | 'open', length: number, iterations: number): number;
  /** Frees the key schedule (cleansed); later calls throw ERR_NITRIDE_GCM_DESTROYED. */
  destroy(): void;
}

/** Constructor of {@link AesGcm}. */
export interface AesGcmConstructor {
  /** @param key 32 bytes; not kept (only its schedule, on the native side). */
  new (key: Uint8Array): AesGcm;
  readonly prototype: AesGcm;
}

/** Shape of the raw addon exports. */
interface NativeBinding {
  tapOpen(name: string, opts?: TapOpenOptions): TapHandle;
  tapSetPersist(fd: number, persist: boolean): void;
  closeFd(fd: number): void;
  peerCredentials(fd: number): PeerCredentials;
  sdNotify(state: string, fds?: number[]): boolean;
  sealedMemfd(name: string, bytes: Uint8Array): number;
  fileSeals(fd: number): FileSeals;
  setDumpable(dumpable: boolean): void;
  unixListen(path: string, backlog?: number): number;
  socketAddress(fd: number): SocketAddress;
  isDumpable(): boolean;
  mallocTrim(): boolean;
  execWithFds(argv: string[], fds: number[]): never;
  xtsEncrypt(key: Uint8Array, dataUnitSize: number, firstDataUnit: DataUnitNumber, buf: Uint8Array): void;
  xtsDecrypt(key: Uint8Array, dataUnitSize: number, firstDataUnit: DataUnitNumber, buf: Uint8Array): void;
  XtsCipher: XtsCipherConstructor;
  AesGcm: AesGcmConstructor;
  /**
   * The environment variables that force OpenSSL's AES code instead of the VAES one (XTS, GCM)
   * and the one value they take; unset or empty: the fastest code the CPU runs.
   */
  readonly cipherImplSwitches: { readonly variables: readonly string[]; readonly value: string };
  punchHole(fd: number, offset: number, length: number): Promise<void>;
  zeroRange(fd: number, offset: number, length: number): Promise<void>;
  adviseWillNeed(fd: number, offset: number, length: number): Promise<void>;
  seekData(fd: number, offset: number): number;
  seekHole(fd: number, offset: number): number;
  preadDecrypt(fd: number, cipher: XtsCipher, offset: number, buf: Uint8Array): Promise<void>;
  tryPreadDecrypt(fd: number, cipher: XtsCipher, offset: number, buf: Uint8Array): NowaitResult;
  tryPread(fd: number, offset: number, buf: Uint8Array): NowaitResult;
  encryptPwrite(fd: number, cipher: XtsCipher, offset: number, data: Uint8Array, opts?: EncryptPwriteOptions): Promise<void>;
  encryptPwriteSync(fd: number, cipher: XtsCipher, offset: number, data: Uint8Array): void;
  VpcEngine: NativeVpcEngineConstructor;
  NbdLane: NbdLaneConstructor;
  IoLimiter: IoLimiterConstructor;
  VpcAllowance: VpcAllowanceConstructor;
  VpcPollWindow: VpcPollWindowConstructor;
  RbdCluster: RbdClusterStatic;
  RbdImage: object;
}

/**
 * Result of a synchronous page-cache-only read ({@link tryPreadDecrypt}, {@link tryPread}):
 * 1 done; 0 not (entirely) cached, or at the end of the file: use the threadpool function, the
 * buffer's contents are undefined; -1 the file system has no RWF_NOWAIT reads (e.g. tmpfs): use
 * the threadpool function and stop trying on this file.
 */
export type NowaitResult = 1 | 0 | -1;

/** Options of {@link encryptPwrite}. */
export interface EncryptPwriteOptions {
  /** fdatasync(fd) after the write, before the promise resolves (FUA). */
  sync?: boolean;
}

const ADDON_RELATIVE_PATH = join('native', 'build', 'Release', 'nitride_native.node');

/**
 * Finds the nitride package root by walking up from this file (src/native/
 * under vitest/tsx, dist/native/ once compiled) to the first directory whose
 * package.json is named "nitride".
 */
function findPackageRoot(start: string): string {
  let dir = start;
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        const parsed = JSON.parse(readFileSync(pkg, 'utf8')) as { name?: unknown };
        if (parsed.name === 'nitride') return dir;
      } catch {
        // Unreadable or not JSON: keep walking up.
      }
    }
    const parent = dirname(dir);
    if (parent === dir) {
      throw new Error(`nitride: cannot find the package root (package.json named "nitride") above ${start}`);
    }
    dir = parent;
  }
}

/** Absolute path of the compiled addon. */
export const nativeAddonPath: string = join(
  findPackageRoot(dirname(fileURLToPath(import.meta.url))),
  ADDON_RELATIVE_PATH,
);

function loadBinding(): NativeBinding {
  const require = createRequire(import.meta.url);
  try {
    return require(nativeAddonPath) as NativeBinding;
  } catch (err) {
    throw new Error(
      `nitride: cannot load the native addon ${nativeAddonPath} ` +
        `(build it with \`npx node-gyp rebuild --directory=native\`): ${(err as Error).message}`,
      { cause: err },
    );
  }
}

const binding: NativeBinding = loadBinding();

/**
 * Opens (creating it if needed) a TAP device: opens /dev/net/tun with
 * O_RDWR|O_NONBLOCK|O_CLOEXEC, then TUNSETIFF with IFF_TAP|IFF_NO_PI (plus
 * IFF_VNET_HDR / IFF_MULTI_QUEUE when asked), then TUNSETOWNER / TUNSETGROUP /
 * TUNSETPERSIST for the options given. On any failure the fd is closed.
 *
 * @param name Device name (at most 15 bytes), "" for a kernel-chosen "tapN",
 *   or a pattern such as "ntap%d".
 * @returns The fd (caller closes it with {@link closeFd}) and the real name.
 * @throws Error with `code` = errno name, e.g. "EBUSY" when a single-queue
 *   device is already attached, "EPERM" without CAP_NET_ADMIN, "EINVAL" when
 *   the IFF_MULTI_QUEUE flag differs from an existing device's.
 */
export function tapOpen(name: string, opts: TapOpenOptions = {}): TapHandle {
  return binding.tapOpen(name, opts);
}

/** TUNSETPERSIST on an fd returned by {@link tapOpen}. @throws Error with errno `code`. */
export function tapSetPersist(fd: number, persist: boolean): void {
  binding.tapSetPersist(fd, persist);
}

/**
 * close(2) on a raw fd (e.g. a TAP fd). EINTR counts as success (Linux has
 * released the fd by then). @throws Error with errno `code` (e.g. "EBADF").
 */
export function closeFd(fd: number): void {
  binding.closeFd(fd);
}

/**
 * getsockopt(SO_PEERCRED) on a connected Unix-socket fd, e.g. the
 * `socketFd()` (src/common/socket-handle.ts) of an accepted `net.Socket`.
 * @throws Error with errno `code` ("ENOTSOCK", "EBADF", ...).
 */
export function peerCredentials(fd: number): PeerCredentials {
  return binding.peerCredentials(fd);
}

/**
 * Sends `state` (e.g. "READY=1", "STATUS=...", "STOPPING=1") as one datagram
 * to the Unix socket named by $NOTIFY_SOCKET (a path, or "@name" for the
 * abstract namespace); `fds` travel with it as SCM_RIGHTS (for FDSTORE=1).
 * @returns false when NOTIFY_SOCKET is unset or empty, true once sent.
 * @throws Error with errno `code` when sending fails.
 */
export function sdNotify(state: string, fds?: number[]): boolean {
  return binding.sdNotify(state, fds);
}

/** The seals of a memory file (fcntl F_GET_SEALS). */
export interface FileSeals {
  write: boolean;
  shrink: boolean;
  grow: boolean;
  seal: boolean;
}

/**
 * A new memory file (memfd_create, close-on-exec) holding `bytes`, sealed against any change:
 * F_SEAL_WRITE, F_SEAL_SHRINK, F_SEAL_GROW and F_SEAL_SEAL. RAM only; the caller owns the fd.
 */
export function sealedMemfd(name: string, bytes: Uint8Array): number {
  return binding.sealedMemfd(name, bytes);
}

/** The seals of `fd`. @throws Error with code EINVAL when `fd` is not a sealable memory file. */
export function fileSeals(fd: number): FileSeals {
  return binding.fileSeals(fd);
}

/**
 * prctl(PR_SET_DUMPABLE): false makes the process non-dumpable — no core dump, no ptrace
 * or /proc/PID/mem access by other processes of its user, /proc/PID owned by root.
 */
export function setDumpable(dumpable: boolean): void {
  binding.setDumpable(dumpable);
}

/** What a socket fd is bound to (getsockname), whether it is a stream socket and listening. */
export type SocketAddress = ({ family: 'unix'; path: string } | { family: 'ipv4' | 'ipv6'; address: string; port: number } | { family: 'other' }) & {
  stream: boolean;
  listening: boolean;
};

/**
 * Bind and listen on a Unix stream socket; returns the fd (close-on-exec). Served with
 * `server.listen({ fd })`, its path survives the server's close (libuv unlinks only paths it
 * bound itself): what a socket kept in systemd's fd store across a restart needs.
 */
export function unixListen(path: string, backlog = 511): number {
  return binding.unixListen(path, backlog);
}

export function socketAddress(fd: number): SocketAddress {
  return binding.socketAddress(fd);
}

/**
 * Replace this process (execvp) with `argv`, which inherits `fds` as fd 3, 4, … (every other
 * fd Node opened is close-on-exec). Returns only by throwing (errno `code`).
 */
export function execWithFds(argv: string[], fds: number[]): never {
  return binding.execWithFds(argv, fds);
}

/** prctl(PR_GET_DUMPABLE). */
export function isDumpable(): boolean {
  return binding.isDumpable();
}

/** malloc_trim(0): the freed pages of glibc's heaps back to the system; whether any went. */
export function mallocTrim(): boolean {
  return binding.mallocTrim();
}

/**
 * One-shot AES-256-XTS encryption in place (keys a fresh OpenSSL context per
 * call; prefer {@link XtsCipher} on hot paths). See {@link XtsCipher} for the
 * tweak convention and length rules.
 * @param key 64 bytes, halves different.
 * @param dataUnitSize 512, 1024, 2048 or 4096.
 */
export function xtsEncrypt(key: Uint8Array, dataUnitSize: number, firstDataUnit: DataUnitNumber, buf: Uint8Array): void {
  binding.xtsEncrypt(key, dataUnitSize, firstDataUnit, buf);
}

/** One-shot AES-256-XTS decryption in place; see {@link xtsEncrypt}. */
export function xtsDecrypt(key: Uint8Array, dataUnitSize: number, firstDataUnit: DataUnitNumber, buf: Uint8Array): void {
  binding.xtsDecrypt(key, dataUnitSize, firstDataUnit, buf);
}

/** AES-256-XTS with a key scheduled once; see the {@link XtsCipher} interface. */
export const XtsCipher: XtsCipherConstructor = binding.XtsCipher;

/** AES-256-GCM with a key scheduled once; see the {@link AesGcm} interface. */
export const AesGcm: AesGcmConstructor = binding.AesGcm;

/**
 * Where `env` sets a cipher implementation switch to a value the ciphers would ignore: a one-line
 * message naming the variable, else null.
 */
export function cipherImplSettingError(env: NodeJS.ProcessEnv): string | null {
  const { variables, value } = binding.cipherImplSwitches;
  const bad = variables.find((name) => env[name] !== undefined && env[name] !== '' && env[name] !== value);
  return bad === undefined ? null : `${bad} must be unset or "${value}"`;
}

// ---------------------------------------------------------------------------
// Block-volume I/O (native/src/blockio.cc). Offsets and lengths are
// non-negative safe integers (RangeError otherwise). Each promise-returning
// function is one libuv threadpool job; the fd must stay open until its
// promise settles, and a Buffer passed in is referenced (kept alive) until
// then. Rejections are node-style system errors (`code` = errno name,
// `errno`, `syscall`), or `code: "ERR_OPENSSL"`.

/**
 * fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length):
 * deallocates the range, which then reads as zeroes; the file size is kept.
 * A zero length resolves without a system call.
 * @throws (rejects) `ENOTSUP` (= EOPNOTSUPP) on file systems without hole punching.
 */
export const punchHole: (fd: number, offset: number, length: number) => Promise<void> = binding.punchHole;

/**
 * fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, offset, length):
 * the range reads as zeroes and stays allocated (unwritten extents on ext4/xfs).
 * @throws (rejects) `ENOTSUP` (= EOPNOTSUPP) where unsupported (e.g. tmpfs).
 */
export const zeroRange: (fd: number, offset: number, length: number) => Promise<void> = binding.zeroRange;

/**
 * posix_fadvise(fd, offset, length, POSIX_FADV_WILLNEED) on the threadpool: starts reading the
 * range into the page cache (readahead) and resolves without waiting for it.
 */
export const adviseWillNeed: (fd: number, offset: number, length: number) => Promise<void> = binding.adviseWillNeed;

/**
 * lseek(fd, offset, SEEK_DATA): the first offset ≥ `offset` holding data, or
 * -1 if there is none before the end of the file (ENXIO). Synchronous.
 */
export const seekData: (fd: number, offset: number) => number = binding.seekData;

/**
 * lseek(fd, offset, SEEK_HOLE): the first offset ≥ `offset` in a hole (the
 * end of the file counts as one), or -1 if `offset` is at or past the end
 * (ENXIO). Synchronous.
 */
export const seekHole: (fd: number, offset: number) => number = binding.seekHole;

/**
 * One threadpool job: pread(fd, buf, offset) (bytes past the end of the file
 * read as zeroes), then AES-256-XTS decryption of `buf` in place with tweak
 * `offset / cipher.dataUnitSize + i` for its i-th data unit. A data unit
 * whose ciphertext is all zero bytes (never written, punched or zeroed) is
 * left as zeroes, not decrypted. `offset` and `buf.length` must be multiples
 * of `cipher.dataUnitSize`.
 */
export const preadDecrypt: (fd: number, cipher: XtsCipher, offset: number, buf: Uint8Array) => Promise<void> =
  binding.preadDecrypt;

/**
 * {@link preadDecrypt} done synchronously on the calling thread, but only if the page cache
 * holds the whole range: preadv2(RWF_NOWAIT) never waits for the disk (a 4 KiB cached read +
 * decrypt costs a few CPU-µs this way, several times less than a threadpool round trip). Same
 * arguments, checks and zero-unit rule; see {@link NowaitResult}. Other errors throw.
 */
export const tryPreadDecrypt: (fd: number, cipher: XtsCipher, offset: number, buf: Uint8Array) => NowaitResult =
  binding.tryPreadDecrypt;

/**
 * A plain pread of `buf.length` bytes at `offset`, synchronously, only if the page cache holds
 * them (preadv2 RWF_NOWAIT); see {@link NowaitResult}. Other errors throw.
 */
export const tryPread: (fd: number, offset: number, buf: Uint8Array) => NowaitResult = binding.tryPread;

/**
 * One threadpool job: AES-256-XTS encryption of `data` (tweaks as in
 * {@link preadDecrypt}) into a scratch buffer of the worker thread, so that
 * `data` is never modified, then pwrite at `offset`, then fdatasync(fd) if
 * `opts.sync`. `offset` and `data.length` must be multiples of
 * `cipher.dataUnitSize`. On a write error part of the range may have been
 * written.
 */
export const encryptPwrite: (
  fd: number,
  cipher: XtsCipher,
  offset: number,
  data: Uint8Array,
  opts?: EncryptPwriteOptions,
) => Promise<void> = binding.encryptPwrite;

/**
 * encryptPwrite on the calling thread, for small (≤ 1 MiB), non-FUA writes: a buffered
 * pwrite into the page cache costs a few µs, less than a threadpool round trip. Throws
 * a system error (with `code`) on failure.
 */
export const encryptPwriteSync: (fd: number, cipher: XtsCipher, offset: number, data: Uint8Array) => void = binding.encryptPwriteSync;

// ---------------------------------------------------------------------------
// VPC data plane (native/src/vpc_*.cc): the per-frame loop of the VPC NIC.
// The addon owns the per-frame loop; TypeScript owns the control plane (ARP
// and DHCP responders, the handshake, the tables).

/** Options of the {@link VpcEngine} constructor. */
export interface VpcEngineOptions {
  /** Numeric IPv4 or IPv6 address of the underlay UDP socket ("::" binds dual-stack). */
  bindAddress: string;
  /** UDP port; 0 = ephemeral (read it back from {@link VpcEngine.port}). */
  bindPort: number;
  /** The worker's longest busy-poll before it sleeps, µs (default VPC_POLL_US_DEFAULT; 0: never; at most VPC_POLL_US_MAX). */
  pollUs?: number;
  /**
   * Receives every {@link VpcControlEvent}, on the JS thread, in order. An
   * exception thrown here does not stop the engine or the delivery of the
   * other events: it is rethrown on a later tick (an uncaught exception).
   */
  onControl: (event: VpcControlEvent) => void;
}

/** Configuration of one ENI (port). */
export interface VpcPortOptions {
  /** The ENI's MAC address (6 bytes, unicast): the only allowed Ethernet source with `sourceCheck`. */
  mac: Uint8Array;
  /**
   * The ENI's IPv4 address (dotted quad), or null before it has one: then,
   * with `sourceCheck`, only DHCP client messages (0.0.0.0:68 -> :67) and
   * ARP probes (sender IP 0.0.0.0) leave the guest.
   */
  ipv4: string | null;
  /**
   * Anti-spoofing. On: the Ethernet source must be `mac`; IPv4 packets must
   * come from `ipv4` (or be DHCP client messages from 0.0.0.0); ARP sender
   * MAC/IP must be `mac`/`ipv4` (or 0.0.0.0); every other ethertype (IPv6
   * included) is dropped (`filtered`). Violations count as `spoofed`.
   */
  sourceCheck: boolean;
  /**
   * IP MTU of the ENI, 68..9001. Guest frames longer than mtu + 14 bytes
   * (GSO super-frames: longer segments) are dropped as `oversize`, and so
   * are frames for this ENI that exceed it. Underlay overhead is 32 bytes
   * plus UDP/IP headers: keep mtu + 14 + 32 + 28 within the underlay path MTU.
   */
  mtu: number;
  /**
   * Allowances (native/src/vpc_allowance.h), each applied separately into the guest and out
   * of it: bits/s and packets/s (a GSO super-frame: its segments and their bytes). Absent or 0:
   * unlimited. A frame over one is counted (`bwIn/bwOut/ppsAllowanceExceeded`) and waits until
   * its tokens are there if that is within `allowanceQueueUs` µs (and the port's queue has room),
   * else it is dropped; a change applies to the next frame, with full buckets.
   */
  bandwidth?: number;
  pps?: number;
  /** 0..1,000,000 µs; absent on addPort or 0: over-limit frames are dropped. */
  allowanceQueueUs?: number;
}

/**
 * Where frames whose destination MAC is a given address go: a local port,
 * a peer (encrypted over the underlay), or the control plane (punted to
 * onControl with reason "route", e.g. for the gateway's MAC).
 */
export type VpcRouteTarget = { port: number } | { peer: number } | { control: true };

/** A peer's underlay address: numeric IPv4/IPv6 address (no DNS) and UDP port. */
export interface VpcEndpoint {
  host: string;
  port: number;
}

/**
 * Keys and indexes of one session with a peer, from the TypeScript
 * handshake. The engine copies the keys into OpenSSL contexts (it keeps no
 * other copy) and cleanses them when the session is replaced, cleared, its
 * peer removed, or the engine closed. The caller should zero its Buffers
 * (`buf.fill(0)`) right after {@link VpcEngine.setSession} returns.
 */
export interface VpcSessionKeys {
  /** u32 the peer puts in messages to us (the receiver index); unique among this engine's sessions. */
  localIndex: number;
  /** u32 we put in messages to the peer (its localIndex). */
  remoteIndex: number;
  /** 32-byte AES-256-GCM key for messages we send (the peer's recvKey). */
  sendKey: Uint8Array;
  /** 32-byte AES-256-GCM key for messages we receive (the peer's sendKey); must differ from sendKey. */
  recvKey: Uint8Array;
}

/** Options of {@link VpcEngine.setSession}. */
export interface VpcSetSessionOptions {
  /**
   * false (default, the handshake initiator): the session becomes current
   * (used for sending) at once; a pending one (which the peer may already
   * send on, after simultaneous rekeys), else the previous current one, is
   * kept for receiving only. true (the responder): the
   * session only receives until the first authenticated message arrives on
   * it, then becomes current (a `session-active` event), the old current one
   * kept for receiving. Installing the responder's side as pending before
   * the initiator switches loses nothing during a rekey.
   */
  pending?: boolean;
  /**
   * The peer announced UNDERLAY_CAP_CSUM_PARTIAL in this session's handshake: segments of
   * guests' GSO super-frames go to it marked "checksum partial" instead of checksummed
   * (src/vpc/constants.ts). Default false (what an older peer needs).
   */
  csumPartial?: boolean;
}

/**
 * Soft limits of a session: after `packets` messages sent, or `seconds`
 * since it was installed (checked when sending), the engine emits one
 * `rekey-needed` event for it and keeps using it. Defaults: 2^32 packets,
 * 120 s. The hard limit (2^60 messages; the session then stops sending,
 * frames count as `noSession`, event reason "exhausted") is fixed.
 */
export interface VpcRekeyLimits {
  packets?: number;
  seconds?: number;
}

/** Why a guest frame was punted to the control plane instead of forwarded. */
export type VpcPuntReason = 'arp' | 'dhcp' | 'broadcast' | 'multicast' | 'route';

/**
 * A control frame from a guest: ARP, IPv4 UDP to port 67 (DHCP), any
 * broadcast/multicast frame (the VPC forwards none), or a frame for a MAC
 * routed to `{ control: true }`. Its transport checksum is complete. When JS
 * falls behind (more than 2048 events queued), frames are dropped and counted
 * as `puntOverflow`.
 */
export interface VpcFrameEvent {
  type: 'frame';
  portId: number;
  reason: VpcPuntReason;
  /** The Ethernet frame (a copy; the listener may keep it). */
  frame: Buffer;
}

/**
 * An underlay datagram of a type the data plane does not handle (anything
 * but 4 = data and 5 = plaintext; 1/2/3 are the handshake's), from any
 * source, with the sender's address.
 */
export interface VpcHandshakeEvent {
  type: 'handshake';
  /** Sender's address (IPv4 dotted quad also on a dual-stack socket). */
  host: string;
  port: number;
  /** The whole datagram, type byte included. */
  data: Buffer;
}

/** A session of peer `peerId` reached a soft limit (or the hard one: "exhausted"). */
export interface VpcRekeyNeededEvent {
  type: 'rekey-needed';
  peerId: number;
  localIndex: number;
  reason: 'packets' | 'age' | 'exhausted';
}

/** A pending session (setSession with `pending: true`) received its first message and is now current. */
export interface VpcSessionActiveEvent {
  type: 'session-active';
  peerId: number;
  localIndex: number;
}

/** The packet socket of a port reported an error (e.g. ENETDOWN: the netdev went down or away). Once per change. */
export interface VpcPortErrorEvent {
  type: 'port-error';
  portId: number;
  /** errno name, e.g. "ENETDOWN". */
  code: string;
  message: string;
}

export type VpcControlEvent =
  | VpcFrameEvent
  | VpcHandshakeEvent
  | VpcRekeyNeededEvent
  | VpcSessionActiveEvent
  | VpcPortErrorEvent;

/** Connection tracking of a port with security groups (vpc_sg.h). */
export interface VpcSecurityOptions {
  /** Flows tracked at most; then new flows are dropped (`conntrackFull`). */
  maxFlows: number;
  /** Idle timeout of an established TCP flow, seconds (60 – 5 days). */
  tcpEstablishedTimeout: number;
  /** The subnet's network ACL entries (nacl-table.ts), checked before the groups; absent: none. */
  nacl?: Uint8Array;
}

/** What {@link VpcEngine.conntrack} returns. */
export interface VpcConntrackSnapshot {
  count: number;
  max: number;
  flows: ConntrackFlow[];
}

/** One flow key's counters over an interval (vpc_flowlog.h). */
export interface VpcFlowCounts {
  srcaddr: string;
  dstaddr: string;
  /** 0 for protocols without ports. */
  srcport: number;
  dstport: number;
  protocol: number;
  packets: number;
  /** IP bytes. */
  bytes: number;
  /** First and last packet, Unix ms. */
  start: number;
  end: number;
  accept: boolean;
}

/** What {@link VpcEngine.takeFlowLog} returns. */
export interface VpcFlowLogTake {
  /** Packets not counted since the last take: the table was full. */
  dropped: number;
  flows: VpcFlowCounts[];
}

/** Snapshot returned by {@link VpcEngine.stats}. */
export interface VpcStats {
  ports: Record<number, VpcPortStats>;
  peers: Record<number, VpcPeerStats>;
  underlay: VpcUnderlayStats;
  worker: VpcWorkerStats;
}

/** The raw native object (vpc_napi.cc). */
interface NativeVpcEngine {
  readonly port: number;
  readonly closed: boolean;
  addPort(portId: number, ifname: string, opts: VpcPortOptions, fd?: number): void;
  portFd(portId: number): number;
  holdPorts(): void;
  releasePorts(): void;
  updatePort(portId: number, opts: Partial<VpcPortOptions>): void;
  removePort(portId: number): boolean;
  setRoute(mac: Uint8Array, target: VpcRouteTarget): void;
  deleteRoute(mac: Uint8Array): boolean;
  addPeer(peerId: number, endpoint: VpcEndpoint): void;
  removePeer(peerId: number): boolean;
  setPeerEndpoint(peerId: number, endpoint: VpcEndpoint): void;
  setPlaintext(peerId: number, enabled: boolean): void;
  setSession(peerId: number, session: VpcSessionKeys, opts?: VpcSetSessionOptions): void;
  clearSessions(peerId: number): void;
  sendKeepalive(peerId: number): boolean;
  setRekeyLimits(limits: VpcRekeyLimits): void;
  sendFrame(portId: number, frame: Uint8Array): void;
  sendUnderlay(host: string, port: number, datagram: Uint8Array): void;
  stats(): VpcStats;
  setSecurity(portId: number, table: Uint8Array | null, opts?: VpcSecurityOptions): void;
  flushConntrack(portId: number): number;
  conntrack(portId: number, max: number): VpcConntrackSnapshot;
  setFlowLog(portId: number, maxKeys: number): void;
  takeFlowLog(portId: number): VpcFlowLogTake;
  close(): void;
  ref(): void;
  unref(): void;
}

interface NativeVpcEngineConstructor {
  new (bindAddress: string, bindPort: number, pollUs: number, onEvents: (events: VpcControlEvent[]) => void): NativeVpcEngine;
}

/**
 * The VPC NIC data plane of one host: a native worker thread that forwards
 * Ethernet frames between local ENIs and, AES-256-GCM encrypted in UDP
 * datagrams, to the engines of other hosts (wire format in
 * native/src/vpc_wire.h).
 *
 * Each ENI ("port") is a host-side netdev: the host end of a veth pair whose
 * other end is in the guest's netns, or the host side of a TAP whose fd QEMU
 * holds. The engine reads it with an AF_PACKET socket (it needs
 * CAP_NET_RAW) that sees what the guest sends but not what the engine
 * itself transmits. It does not configure the netdev: the caller brings it
 * up, keeps the host stack out of it (no addresses, IPv6 disabled, and a tc
 * ingress drop: `tc qdisc add dev X clsact; tc filter add dev X ingress
 * matchall action drop`, or where the kernel lacks cls_matchall/act_gact,
 * as this project's test machines do, the one-instruction classic BPF
 * program `tc filter add dev X ingress bpf da bytecode '1,6 0 0 2'`
 * (`ret TC_ACT_SHOT`); packet sockets see frames before tc ingress), and
 * may leave GSO/checksum offloads on: the engine passes GSO super-frames
 * between local ports as they are, segments them (completing checksums) for
 * other hosts, sends the segments of one super-frame as one UDP GSO send,
 * receives with UDP GRO, and coalesces consecutive TCP segments from a peer
 * back into one super-frame for the guest (checksums verified first).
 *
 * Per guest frame, in order: length (mtu) check, source check, control
 * frames (ARP, DHCP, broadcast/multicast) punted to `onControl` and not
 * forwarded, then the forwarding table by destination MAC: a local port, a
 * peer, the control plane, or a drop (`noRoute`). Frames from a peer are
 * authenticated, replay-checked, and delivered by destination MAC to a
 * local port only if their source MAC is routed to that same peer.
 *
 * Threads: one worker (epoll over all sockets, recvmmsg/sendmmsg batches of
 * up to 64); every method here is synchronous, safe while it runs, and only
 * takes the table lock briefly (the worker takes it once per batch). Table
 * changes apply from the next frame processed. Memory: about 9 MiB of
 * buffers per engine (64 KiB receive slots for super-frames), touched as
 * used.
 * Routes and peers may refer to ids that do not exist (yet): such frames
 * count as `noRoute`.
 *
 * Keep a reference and call {@link VpcEngine.close}: an open engine keeps
 * the process alive (like a socket) unless {@link VpcEngine.unref}'d.
 *
 * Ids (port, peer) and session indexes are u32 integers. Invalid arguments
 * throw TypeError/RangeError/`ERR_INVALID_ARG_VALUE` errors; system-call
 * failures throw errors with the errno name as `code`; any call but
 * {@link VpcEngine.stats}/{@link VpcEngine.close} on a closed engine throws
 * `ERR_NITRIDE_VPC_CLOSED`.
 */
export class VpcEngine {
  readonly #native: NativeVpcEngine;

  /**
   * Creates the underlay UDP socket (bound, 4 MiB buffers) and starts the
   * worker thread.
   * @throws Error with an errno `code` if the socket cannot be bound (e.g. "EADDRINUSE").
   */
  constructor(opts: VpcEngineOptions) {
    const { bindAddress, bindPort, pollUs = VPC_POLL_US_DEFAULT, onControl } = opts;
    if (typeof onControl !== 'function') {
      throw Object.assign(new TypeError('VpcEngine: onControl must be a function'), { code: 'ERR_INVALID_ARG_TYPE' });
    }
    this.#native = new binding.VpcEngine(bindAddress, bindPort, pollUs, (events) => {
      for (const event of events) {
        try {
          onControl(event);
        } catch (err) {
          process.nextTick(() => {
            throw err;
          });
        }
      }
    });
  }

  /** The bound underlay UDP port. */
  get port(): number {
    return this.#native.port;
  }

  /** True once {@link VpcEngine.close} has been called. */
  get closed(): boolean {
    return this.#native.closed;
  }

  /**
   * Attaches port `portId` to the netdev `ifname` (must exist, be an
   * Ethernet device, in the engine's network namespace).
   * @throws `ERR_INVALID_ARG_VALUE` if `portId` exists; "ENODEV" if the
   *   netdev does not exist; "EPERM" without CAP_NET_RAW.
   */
  addPort(portId: number, ifname: string, opts: VpcPortOptions, fd?: number): void {
    this.#native.addPort(portId, ifname, opts, fd);
  }

  /**
   * The port's AF_PACKET socket, for systemd's fd store: kept across a restart it queues the
   * guest's frames until the next engine adopts it (`addPort(…, fd)`, which checks that it
   * is a packet socket bound to that interface). -1 if there is no such port.
   */
  portFd(portId: number): number {
    return this.#native.portFd(portId);
  }

  /**
   * Ports added until {@link releasePorts} are not read yet: ports whose kept sockets hold
   * queued frames start forwarding together, once every port and route is in place.
   */
  holdPorts(): void {
    this.#native.holdPorts();
  }

  releasePorts(): void {
    this.#native.releasePorts();
  }

  /** Changes some options of a port (absent fields keep their value). @throws if there is no such port. */
  updatePort(portId: number, opts: Partial<VpcPortOptions>): void {
    this.#native.updatePort(portId, opts);
  }

  /** Detaches a port and closes its packet socket. Routes to it stay (and count `noRoute`). @returns false if there was no such port. */
  removePort(portId: number): boolean {
    return this.#native.removePort(portId);
  }

  /** Adds or replaces the route of a unicast destination MAC. */
  setRoute(mac: Uint8Array, target: VpcRouteTarget): void {
    this.#native.setRoute(mac, target);
  }

  /** @returns false if there was no route for `mac`. */
  deleteRoute(mac: Uint8Array): boolean {
    return this.#native.deleteRoute(mac);
  }

  /**
   * Adds a peer host. Data messages are accepted only from exactly its
   * endpoint (no roaming: the control plane moves it with
   * {@link VpcEngine.setPeerEndpoint}).
   * @throws `ERR_INVALID_ARG_VALUE` if the id exists or another peer has this endpoint.
   */
  addPeer(peerId: number, endpoint: VpcEndpoint): void {
    this.#native.addPeer(peerId, endpoint);
  }

  /** Removes a peer and its sessions (keys cleansed). Routes to it stay. @returns false if there was no such peer. */
  removePeer(peerId: number): boolean {
    return this.#native.removePeer(peerId);
  }

  /** Changes a peer's underlay endpoint. */
  setPeerEndpoint(peerId: number, endpoint: VpcEndpoint): void {
    this.#native.setPeerEndpoint(peerId, endpoint);
  }

  /**
   * Explicit opt-in plaintext mode for one peer: frames to it go
   * unencrypted (type 5), and type-5 messages from it are accepted (from a
   * peer not in this mode they are dropped as `notPlaintext`). Encrypted
   * messages are still accepted in this mode.
   */
  setPlaintext(peerId: number, enabled: boolean): void {
    this.#native.setPlaintext(peerId, enabled);
  }

  /**
   * Installs a session with a peer (see {@link VpcSessionKeys} and
   * {@link VpcSetSessionOptions}); counters start at 0. Zero the key
   * Buffers afterwards: the engine keeps its own copy.
   * @throws `ERR_INVALID_ARG_VALUE` if `localIndex` is used by another
   *   session that stays, or the keys are equal; RangeError for keys that
   *   are not 32 bytes.
   */
  setSession(peerId: number, session: VpcSessionKeys, opts?: VpcSetSessionOptions): void {
    this.#native.setSession(peerId, session, opts);
  }

  /** Drops every session of a peer (keys cleansed); frames to it then count as `noSession`. */
  clearSessions(peerId: number): void {
    this.#native.clearSessions(peerId);
  }

  /**
   * Sends an empty data message to the peer on the current session: the handshake initiator's
   * confirmation, so the responder promotes its pending session at once instead of at the next
   * frame. False (nothing sent) without a current session or in plaintext mode.
   */
  sendKeepalive(peerId: number): boolean {
    return this.#native.sendKeepalive(peerId);
  }

  /** Sets the soft limits for the `rekey-needed` event (see {@link VpcRekeyLimits}); omitted fields reset to the default. */
  setRekeyLimits(limits: VpcRekeyLimits): void {
    this.#native.setRekeyLimits(limits);
  }

  /**
   * Sends a frame into the guest of a port (e.g. an ARP or DHCP reply),
   * synchronously. Counted in the port's txFrames.
   * @throws RangeError unless 14 <= length <= mtu + 14; an errno error if
   *   the send fails (e.g. "ENOBUFS", "ENETDOWN").
   */
  sendFrame(portId: number, frame: Uint8Array): void {
    this.#native.sendFrame(portId, frame);
  }

  /** Sends one datagram (e.g. a handshake message) from the underlay socket, synchronously. */
  sendUnderlay(host: string, port: number, datagram: Uint8Array): void {
    this.#native.sendUnderlay(host, port, datagram);
  }

  /** A snapshot of the counters (still available after close). */
  stats(): VpcStats {
    return this.#native.stats();
  }

  /**
   * The port's security groups: `table` is src/vpc/sg-table.ts's encoding (compiled into the
   * classifier here, then swapped in whole: the next packet sees it); null: none, every packet
   * passes and the tracked flows are dropped. Tracked flows survive a new table.
   * @throws on a malformed table or an unknown port.
   */
  setSecurity(portId: number, table: Uint8Array | null, opts?: VpcSecurityOptions): void {
    this.#native.setSecurity(portId, table, opts);
  }

  /** Forgets the port's tracked flows (their next packets are judged by the rules as new); how many there were. */
  flushConntrack(portId: number): number {
    return this.#native.flushConntrack(portId);
  }

  /** Up to `max` of the port's tracked flows, and how many there are. */
  conntrack(portId: number, max: number): VpcConntrackSnapshot {
    return this.#native.conntrack(portId, max);
  }

  /** Flow-log counters of a port: on with room for `maxKeys` flow keys per interval, off with 0. */
  setFlowLog(portId: number, maxKeys: number): void {
    this.#native.setFlowLog(portId, maxKeys);
  }

  /** Takes the port's flow-log counters since the last take (the data plane starts a new table). */
  takeFlowLog(portId: number): VpcFlowLogTake {
    return this.#native.takeFlowLog(portId);
  }

  /**
   * Stops and joins the worker thread, closes every socket and cleanses
   * every session key. Events still queued are dropped; onControl is not
   * called after this returns. Idempotent.
   */
  close(): void {
    this.#native.close();
  }

  /** Lets the process exit while the engine is open (like `socket.unref()`). */
  unref(): this {
    this.#native.unref();
    return this;
  }

  /** Undoes {@link VpcEngine.unref}. */
  ref(): this {
    this.#native.ref();
    return this;
  }
}

// ---------------------------------------------------------------------------
// NBD data plane (native/src/nbd_lane.cc): one thread per connection in
// transmission, serving unit-aligned READ/WRITE itself and forwarding every
// other request to JS (src/nbd/connection.ts drives it).

/** Options of a {@link NbdLane}. The descriptors are dup'ed: the caller keeps its own. */
export interface NbdLaneOptions {
  /** The connected client socket (non-blocking). */
  socketFd: number;
  /** The backing file (or rbdImage). */
  fileFd?: number;
  /** The backing RBD image (librbd aio instead of pread/pwrite). */
  rbdImage?: RbdImage;
  /** Decrypts reads and encrypts writes; null for a plain file. */
  cipher: XtsCipher | null;
  /** Alignment of fast-path requests when there is no cipher (else the cipher's data unit). */
  unit?: number;
  /** Export size in bytes as negotiated. */
  size: number;
  /** Largest WRITE payload accepted (larger ones are drained up to maxDiscard and forwarded). */
  maxPayload: number;
  /** Larger WRITE payloads end the connection (protocol violation). */
  maxDiscard: number;
  /** Structured replies were negotiated. */
  structured: boolean;
  readOnly: boolean;
  /** Upper bounds (seconds) of the latency histogram in {@link NbdLane.takeStats}. */
  latencyBuckets: readonly number[];
  /** Request bytes already read from the socket. */
  initialInput?: Uint8Array;
  /** The volume's limiter, shared with its other connections: READ and WRITE wait for its tokens. */
  limiter?: IoLimiter;
}

/** A request as the NBD transmission phase carries it (the JS decoder's NbdRequest extends this). */
export interface NbdLaneRequest {
  /** NBD_CMD_* (unknown values are passed through; validateRequest rejects them). */
  type: number;
  /** NBD_CMD_FLAG_* bits. */
  flags: number;
  /** Opaque, echoed in every reply (the spec's "handle"). */
  cookie: bigint;
  offset: bigint;
  length: number;
  /** WRITE only: exactly `length` bytes (empty for a zero-length write); absent if discarded. */
  payload?: Buffer;
  /** WRITE whose payload exceeded maxPayload: bytes were discarded, reply EINVAL. */
  payloadDiscarded?: true;
}

/** What a lane reports to JS, in order: a forwarded request (as the JS decoder would give it), its end, its exit. */
export type NbdLaneEvent =
  | ({ kind: 'request' } & NbdLaneRequest)
  | { kind: 'end'; reason: 'eof' | 'disc' | 'violation' | 'error'; message: string }
  | { kind: 'exit' };

export interface NbdLane {
  /** The reply to one forwarded request (every forwarded request gets exactly one). */
  send(buffers: readonly Uint8Array[]): void;
  /** Reads no more requests (daemon stop); replies still go out. */
  stopReading(): void;
  /** Flushes queued replies, closes the lane's descriptors, then emits 'exit'. */
  close(): void;
  /**
   * Fast-path counters since the last call: for READ then WRITE, [ops, bytes, latencySumSeconds,
   * one count per latency bucket, +Inf].
   */
  takeStats(): Float64Array;
}

export interface NbdLaneConstructor {
  new (options: NbdLaneOptions, onEvent: (event: NbdLaneEvent) => void): NbdLane;
}

export const NbdLane: NbdLaneConstructor = binding.NbdLane;

// ---------------------------------------------------------------------------
// IoLimiter (native/src/io_limiter.h): a volume's provisioned IOPS and throughput, token
// buckets shared by all its connections (lanes and the event-loop plane). Times are seconds of
// the limiter's monotonic clock (IoLimiter.now()); `now` arguments exist for tests.

/** Rates per second; ceilings in I/Os or bytes. Absent or 0: not limited / no burst. */
export interface IoLimiterLimits {
  iops?: number;
  bytesPerSecond?: number;
  /** gp2-style burst: the rate while credits last (above iops), and the credit ceiling. */
  burstIops?: number;
  burstIoCredits?: number;
  burstBytesPerSecond?: number;
  burstBytes?: number;
}

export interface IoLimiterCounters {
  /** Time requests waited for the IOPS limit (the union of their waits), up to now. */
  throttledIopsSeconds: number;
  /** The same for the throughput limit. */
  throttledThroughputSeconds: number;
  /** Burst credits left; null without a burst. */
  burstIoCredits: number | null;
  burstBytes: number | null;
}

export interface IoLimiter {
  /** Replaces the limits (live): tokens carry over up to the new ceilings. */
  set(limits: IoLimiterLimits, now?: number): void;
  /** Reserves tokens for a request of `length` bytes; returns the seconds it must wait (0: none). */
  reserve(length: number, now?: number): number;
  counters(now?: number): IoLimiterCounters;
  /** Bumped by every set(). */
  generation(): number;
}

export interface IoLimiterConstructor {
  new (limits?: IoLimiterLimits, now?: number): IoLimiter;
  /** The limiters' clock, seconds. */
  now(): number;
}

export const IoLimiter: IoLimiterConstructor = binding.IoLimiter;

/**
 * The engine's per-ENI shaper of one direction on an injected clock (seconds), for its unit
 * test: admit() charges a frame and says 'pass', or which allowance dropped it (no queue);
 * schedule() says which allowance it exceeded on arrival and when it may go (null: dropped).
 */
export interface VpcAllowance {
  admit(bytes: number, packets: number, now: number): VpcAllowanceVerdict;
  schedule(bytes: number, packets: number, now: number): { over: VpcAllowanceVerdict; at: number | null };
}
export type VpcAllowanceVerdict = 'pass' | 'bandwidth' | 'packets';

export interface VpcAllowanceConstructor {
  new (limits: Pick<VpcPortOptions, 'bandwidth' | 'pps' | 'allowanceQueueUs'>, now: number): VpcAllowance;
}

export const VpcAllowance: VpcAllowanceConstructor = binding.VpcAllowance;

/**
 * The engine worker's busy-poll window (native/src/vpc_poll.h) on idle times the caller passes
 * in (seconds), for its unit test: idle() says whether a poll was open ('none'), caught the next
 * event ('won') or ran out ('lost'), and adapts `window` (seconds) as the worker does.
 */
export interface VpcPollWindow {
  idle(seconds: number): 'none' | 'won' | 'lost';
  readonly window: number;
}

export interface VpcPollWindowConstructor {
  new (maxUs: number): VpcPollWindow;
}

export const VpcPollWindow: VpcPollWindowConstructor = binding.VpcPollWindow;

// ---------------------------------------------------------------------------
// Ceph RBD (native/src/rbd.cc): librbd's C API, loaded with dlopen on the first connect
// (`code: "ERR_NITRIDE_NO_LIBRBD"` when it is not installed). Failed calls reject with
// Node-style system errors (`code: "ETIMEDOUT"`, `errno`, `syscall`: the librbd function).

export interface RbdConnectOptions {
  /** ceph.conf path (mon addresses, keyring). */
  conf: string;
  /** Client id: `admin` for client.admin. */
  id: string;
  /** The pool of the volumes' images. */
  pool: string;
  /** Cluster requests (OSD and mon) fail with ETIMEDOUT after this long. Default 30. */
  timeoutSeconds?: number;
}

export interface RbdLocker {
  /** The holder's client name (`client.4123`). */
  client: string;
  /** What the holder named its lock (nitride: the host). */
  cookie: string;
  /** The holder's address (what blocklist() fences). */
  address: string;
}

/** One connection to a cluster, on one pool. */
export interface RbdCluster {
  create(name: string, size: number): Promise<void>;
  remove(name: string): Promise<void>;
  /** A copy-on-write child image of a (protected) snapshot. */
  clone(parent: string, snap: string, child: string): Promise<void>;
  list(): Promise<string[]>;
  open(name: string, readOnly?: boolean): Promise<RbdImage>;
  /** This client's address as the cluster sees it. */
  address(): Promise<string>;
  /** `ceph osd blocklist add ADDRESS` for `seconds`. */
  blocklist(address: string, seconds: number): Promise<void>;
  close(): Promise<void>;
}

export interface RbdClusterStatic {
  connect(options: RbdConnectOptions): Promise<RbdCluster>;
}

/**
 * An open image. read/write/flush/discard/writeZeroes are librbd aio; `flush()` resolves once
 * the OSDs acknowledged every completed write. NbdLanes share the image: it is closed by
 * the last user after close().
 */
export interface RbdImage {
  readonly size: number;
  readonly closed: boolean;
  read(offset: number, buf: Uint8Array): Promise<void>;
  write(offset: number, data: Uint8Array): Promise<void>;
  flush(): Promise<void>;
  discard(offset: number, length: number): Promise<void>;
  writeZeroes(offset: number, length: number): Promise<void>;
  resize(size: number): Promise<void>;
  metadataGet(key: string): Promise<string | null>;
  metadataSet(key: string, value: string): Promise<void>;
  /** Removes a key (none is fine). */
  metadataRemove(key: string): Promise<void>;
  /** Exclusive advisory lock under `cookie` (EBUSY when another client holds one). */
  lock(cookie: string): Promise<void>;
  unlock(cookie: string): Promise<void>;
  breakLock(client: string, cookie: string): Promise<void>;
  lockers(): Promise<RbdLocker[]>;
  /** A snapshot, protected (clonable; cannot be removed while it has clones). */
  snapCreate(name: string): Promise<void>;
  /** Unprotects and removes a snapshot (EBUSY while it has clones). */
  snapRemove(name: string): Promise<void>;
  snapList(): Promise<Array<{ name: string; size: number }>>;
  /** Stored ranges in [offset, offset+length), whole objects, flat [off, len, off, len, …], sorted and merged; the rest reads as zeroes. */
  allocated(offset: number, length: number): Promise<number[]>;
  close(): Promise<void>;
}

export const RbdCluster: RbdClusterStatic = binding.RbdCluster;
