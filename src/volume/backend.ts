/**
 * The block backend interface: what the NBD server (and export/import) calls, and
 * what every storage layer implements. Layers stack like nbdkit filters:
 *
 *   NBD connection → EncryptedBackend (AES-256-XTS) → FileBackend (sparse backing file)
 *
 * A backend declares its capabilities; the NBD server derives the protocol's
 * transmission flags from them and never calls what is not declared.
 * Offsets and lengths are plain numbers (exact up to 2^53 bytes = 8 PiB).
 * Errors carry a Node-style `code` (EIO, ENOSPC, EPERM, ENOTSUP…) that the NBD
 * layer maps with one errno map.
 */

import type { RbdImage, XtsCipher } from '../native/addon.js';

export interface BlockCapabilities {
  /** Writes, trims and zeroing are refused. */
  readOnly: boolean;
  /** flush() makes every completed write durable. */
  canFlush: boolean;
  /** Writes with `fua` are durable when they complete. */
  canFua: boolean;
  /** trim() may discard data (reads afterwards are zero for our backends). */
  canTrim: boolean;
  /** zero() is implemented. */
  canZero: boolean;
  /** zero() honours `fastZero` (fails ENOTSUP instead of writing zeroes slowly). */
  canFastZero: boolean;
  /** cache() prefetches. */
  canCache: boolean;
  /** extents() reports holes/zeroes (base:allocation). */
  canExtents: boolean;
  /** Every connection sees the same cache, so flush on one covers writes on all. */
  canMultiConn: boolean;
  /** Smallest I/O unit the backend accepts (offset and length multiples). */
  minBlock: number;
  /** The unit that avoids read-modify-write. */
  preferredBlock: number;
}

export interface WriteFlags {
  /** Force Unit Access: durable before the promise resolves. */
  fua?: boolean;
}

export interface ZeroFlags extends WriteFlags {
  /** Must allocate (write zeroes), not punch a hole. */
  noHole?: boolean;
  /** Fail with ENOTSUP unless zeroing is fast. */
  fastZero?: boolean;
}

/** One run of the allocation map. `hole`: not allocated; `zero`: reads as zeroes. */
export interface Extent {
  length: number;
  hole: boolean;
  zero: boolean;
}

export interface BlockBackend {
  /** Size in bytes (multiple of capabilities.minBlock). */
  readonly size: number;
  readonly capabilities: BlockCapabilities;
  /** Read `buf.length` bytes at `offset` into `buf`. */
  read(offset: number, buf: Buffer): Promise<void>;
  write(offset: number, data: Buffer, flags?: WriteFlags): Promise<void>;
  flush(): Promise<void>;
  trim(offset: number, length: number, flags?: WriteFlags): Promise<void>;
  zero(offset: number, length: number, flags?: ZeroFlags): Promise<void>;
  cache(offset: number, length: number): Promise<void>;
  /** Extents covering at least [offset, offset+length) — may stop early, never empty. */
  extents(offset: number, length: number): Promise<Extent[]>;
  /**
   * Optional: grow the volume to `newSize` bytes (a multiple of capabilities.minBlock, and of the
   * data unit for encrypted volumes); the new space reads as zeroes. Shrinking fails with EINVAL.
   * Connections already open keep the size they negotiated.
   */
  resize?(newSize: number): Promise<void>;
  /**
   * Optional: lets a native data plane (NbdLane, see src/nbd/connection.ts) do unit-aligned reads and writes itself,
   * as exactly what this backend's read()/write() would do on `fd`: a pread (+ decrypt) or an
   * (encrypt +) pwrite. Undefined when that does not hold now (closed, no file, JS I/O only).
   * Everything else (flush, FUA, partial units, errors) still goes through this interface.
   */
  directIo?(): DirectIo | undefined;
  /** Release resources (keys, fds). Flushes first. */
  close(): Promise<void>;
}

/** See {@link BlockBackend.directIo}. */
export interface DirectIo {
  /** The backing file (the user dup()s it and must stop using it before close() resolves)… */
  fd?: number;
  /** …or the backing RBD image (shared: it closes once its last user lets go). */
  rbd?: RbdImage;
  /** Encrypts/decrypts each data unit (all-zero ciphertext reads as zeroes); null: plain. */
  cipher: XtsCipher | null;
  /** Requests aligned to this (offset and length) may be done directly. */
  unit: number;
}

/** An error with the errno-style code the NBD errno map understands. */
export class BackendError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'BackendError';
  }
}
