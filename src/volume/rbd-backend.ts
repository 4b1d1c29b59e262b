/**
 * RbdBackend: a volume stored in a Ceph RBD image (the plain bottom layer, like FileBackend;
 * EncryptedBackend above it means the cluster only ever sees ciphertext).
 *
 * - read/write/flush/trim/zero are librbd aio (native/src/rbd.cc). flush() resolves once the
 *   OSDs acknowledged every completed write (librbd's writeback cache is flushed through), and a
 *   FUA write is a write then that flush.
 * - trim() is rbd discard, zero() rbd write_zeroes: both read back as zero bytes, which the
 *   encryption layer turns into plaintext zeroes (holes).
 * - extents (base:allocation): rbd_diff_iterate2 since the image's creation, parent included (a
 *   clone's shared data is data), in whole objects; the rest is hole+zero (never written or
 *   discarded: reads as zeroes). Without the fast-diff object map (the advisory lock turns it
 *   off) librbd asks the OSDs about each object in the range, so one call covers at most
 *   EXTENTS_SPAN bytes (extents() may stop early).
 * - directIo() hands the image to the NBD lane, which does aligned reads and writes itself
 *   (librbd aio from its own thread, completions decrypt and reply without the event loop).
 * - Errors: librbd's -errno as the Node code; a cluster that does not answer fails requests with
 *   ETIMEDOUT after the connection's timeout, reported to NBD clients as EIO.
 * - canMultiConn: one image handle (one librbd cache) serves every connection of the volume.
 */
import type { RbdImage } from '../native/addon.js';
import { BackendError, type BlockBackend, type BlockCapabilities, type DirectIo, type Extent, type WriteFlags, type ZeroFlags } from './backend.js';
import { InFlight, checkRange, readOnlyError } from './guard.js';

export const RBD_MIN_BLOCK = 512;
/** Most bytes one extents() call asks librbd about: 256 objects of the default 4 MiB. */
const EXTENTS_SPAN = 1 << 30;

/** What an RbdBackend declares. */
export function rbdCapabilities(readOnly: boolean): BlockCapabilities {
  return {
    readOnly,
    canFlush: true,
    canFua: true,
    canTrim: !readOnly,
    canZero: !readOnly,
    canFastZero: false,
    canCache: false,
    canExtents: true,
    canMultiConn: true,
    minBlock: RBD_MIN_BLOCK,
    preferredBlock: 4096,
  };
}

/** A librbd error as the volume layers report it: the cluster's trouble is EIO with the reason. */
function ioError(err: unknown): BackendError {
  const e = err as { code?: string; message?: string };
  const code = e.code === 'ETIMEDOUT' || e.code === 'ESHUTDOWN' || e.code === 'ENOTCONN' || e.code === 'EBLOCKLISTED' ? 'EIO' : (e.code ?? 'EIO');
  return new BackendError(code, e.message ?? String(err));
}

export class RbdBackend implements BlockBackend {
  readonly capabilities: BlockCapabilities;
  private readonly ops = new InFlight('rbd volume');

  /** Takes ownership of `image` (closed by close()). */
  constructor(
    private readonly image: RbdImage,
    /** pool/image, for messages. */
    readonly name: string,
    readOnly = false,
    /** The image's lock this backend holds (released by close()). */
    private readonly lockCookie?: string,
  ) {
    this.capabilities = rbdCapabilities(readOnly);
  }

  get size(): number {
    return this.image.size;
  }

  directIo(): DirectIo | undefined {
    return this.ops.closed || this.image.closed ? undefined : { rbd: this.image, cipher: null, unit: RBD_MIN_BLOCK };
  }

  read(offset: number, buf: Buffer): Promise<void> {
    checkRange('read', offset, buf.length, this.size, RBD_MIN_BLOCK);
    if (buf.length === 0) return Promise.resolve();
    return this.run(() => this.image.read(offset, buf));
  }

  write(offset: number, data: Buffer, flags: WriteFlags = {}): Promise<void> {
    this.writable('write', offset, data.length);
    if (data.length === 0) return Promise.resolve();
    return this.run(async () => {
      await this.image.write(offset, data);
      if (flags.fua) await this.image.flush();
    });
  }

  flush(): Promise<void> {
    return this.run(() => this.image.flush());
  }

  trim(offset: number, length: number, flags: WriteFlags = {}): Promise<void> {
    this.writable('trim', offset, length);
    return this.run(async () => {
      await this.image.discard(offset, length);
      if (flags.fua) await this.image.flush();
    });
  }

  zero(offset: number, length: number, flags: ZeroFlags = {}): Promise<void> {
    this.writable('zero', offset, length);
    if (flags.fastZero) return Promise.reject(new BackendError('ENOTSUP', 'zero: rbd cannot promise a fast zero'));
    return this.run(async () => {
      await this.image.writeZeroes(offset, length);
      if (flags.fua) await this.image.flush();
    });
  }

  cache(): Promise<void> {
    return Promise.resolve();
  }

  async extents(offset: number, length: number): Promise<Extent[]> {
    checkRange('extents', offset, length, this.size, RBD_MIN_BLOCK);
    const span = Math.min(length, EXTENTS_SPAN);
    let runs: number[] = [];
    await this.run(async () => {
      runs = await this.image.allocated(offset, span);
    });
    return extentsOf(offset, span, runs);
  }

  resize(newSize: number): Promise<void> {
    if (newSize < this.size) return Promise.reject(new BackendError('EINVAL', `rbd volumes only grow (${this.size} bytes now)`));
    return this.run(() => this.image.resize(newSize));
  }

  /**
   * Flushes (the OSDs have every write), releases the lock and closes the image (once no lane
   * uses it). A lock that cannot be released (cluster unreachable, this client fenced) stays
   * on the image: the next host's attach is refused until `volume detach --force`.
   */
  async close(): Promise<void> {
    if (this.ops.closed) return;
    await this.ops.shutdown();
    try {
      if (!this.capabilities.readOnly) await this.image.flush().catch((err: unknown) => Promise.reject(ioError(err)));
    } finally {
      try {
        if (this.lockCookie !== undefined) await this.image.unlock(this.lockCookie).catch(() => {});
      } finally {
        await this.image.close();
      }
    }
  }

  private async run(fn: () => Promise<void>): Promise<void> {
    this.ops.enter();
    try {
      await fn();
    } catch (err) {
      throw ioError(err);
    } finally {
      this.ops.leave();
    }
  }

  private writable(op: 'write' | 'trim' | 'zero', offset: number, length: number): void {
    checkRange(op, offset, length, this.size, RBD_MIN_BLOCK);
    if (this.capabilities.readOnly) throw readOnlyError('rbd volume', op);
  }
}

/** Extents covering [offset, offset+length) from the sorted, merged data runs [off, len, …] inside it: the gaps are holes. */
export function extentsOf(offset: number, length: number, runs: readonly number[]): Extent[] {
  const out: Extent[] = [];
  let pos = offset;
  for (let i = 0; i + 1 < runs.length; i += 2) {
    const start = runs[i]!;
    const end = start + runs[i + 1]!;
    if (start > pos) out.push({ length: start - pos, hole: true, zero: true });
    if (end > pos) out.push({ length: end - Math.max(start, pos), hole: false, zero: false });
    pos = Math.max(pos, end);
  }
  if (pos < offset + length || out.length === 0) out.push({ length: offset + length - pos, hole: true, zero: true });
  return out;
}
