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
 *   {@link XtsCipher}: `code: "ERR_NITRIDE_XTS_DESTROYED"`.
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
 * one cipher concurrently with each other and with the main thread (each
 * transform leases its own copy of the keyed OpenSSL context from a pool).
 * Encryption is in place; data unit
 * `firstDataUnit + i` covers bytes `[i*dataUnitSize, (i+1)*dataUnitSize)` of
 * the buffer, and its tweak is that number as a 16-byte little-endian value
 * (the dm-crypt / qemu "plain64" convention).
 */
export interface XtsCipher {
  /** Bytes per data unit, as given to the constructor. */
  readonly dataUnitSize: number;
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

/** Shape of the raw addon exports. */
interface NativeBinding {
  tapOpen(name: string, opts?: TapOpenOptions): TapHandle;
  tapSetPersist(fd: number, persist: boolean): void;
  closeFd(fd: number): void;
  peerCredentials(fd: number): PeerCredentials;
  sdNotify(state: string): boolean;
  xtsEncrypt(key: Uint8Array, dataUnitSize: number, firstDataUnit: DataUnitNumber, buf: Uint8Array): void;
  xtsDecrypt(key: Uint8Array, dataUnitSize: number, firstDataUnit: DataUnitNumber, buf: Uint8Array): void;
  XtsCipher: XtsCipherConstructor;
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
 * `(socket as any)._handle.fd` of an accepted `net.Socket`.
 * @throws Error with errno `code` ("ENOTSOCK", "EBADF", ...).
 */
export function peerCredentials(fd: number): PeerCredentials {
  return binding.peerCredentials(fd);
}

/**
 * Sends `state` (e.g. "READY=1", "STATUS=...", "STOPPING=1") as one datagram
 * to the Unix socket named by $NOTIFY_SOCKET (a path, or "@name" for the
 * abstract namespace).
 * @returns false when NOTIFY_SOCKET is unset or empty, true once sent.
 * @throws Error with errno `code` when sending fails.
 */
export function sdNotify(state: string): boolean {
  return binding.sdNotify(state);
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
