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
 * AES-256-XTS with a key scheduled once. Encryption is in place; data unit
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
   * encrypt/decrypt throws (`code: "ERR_NITRIDE_XTS_DESTROYED"`). Without
   * it the contexts are freed when the object is garbage collected.
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
