/**
 * EncryptedBackend: AES-256-XTS over a lower BlockBackend (an nbdkit-style filter).
 *
 * Format. Data unit `u` (4096 bytes by default, or 512); unit n covers bytes [n·u, (n+1)·u) of the
 * volume and of the lower layer, and its tweak is n (the dm-crypt / qemu "plain64" convention, see
 * XtsCipher). Ciphertext only ever reaches the lower layer: every write is encrypted into a
 * separate buffer (the caller's plaintext is never modified), read-modify-write merges in memory.
 *
 * Never-written data. A unit whose ciphertext in the lower layer is all zero bytes (a hole, or a
 * range the lower layer trimmed/zeroed) reads as plaintext zeroes without being decrypted. The
 * chance that real ciphertext is all zeroes is 2^-(8u). So a fresh sparse volume reads as zeroes,
 * whole-unit trims and zeroes are delegated to the lower layer (punching holes in a FileBackend),
 * and lower-layer holes are reported as hole+zero by extents(). This leaks which units are
 * unwritten or discarded — as any sparse encrypted image does (dm-crypt with discards, LUKS in
 * qcow2) — and nothing else: a unit of plaintext zeroes written by the guest is encrypted like any
 * other.
 *
 * Alignment and locking. Requests need 512-byte alignment only. A write, trim or zero that covers
 * part of a unit reads that unit, merges, and writes it back, holding an exclusive RangeLock entry
 * over the units it touches; every other request holds a shared entry. So two concurrent partial
 * writes to different sectors of one unit both survive, a read never sees a unit torn by another
 * sector's write, and requests on different units never wait for each other.
 *
 * Hot path. When the lower layer is a FileBackend, reads and writes are one addon threadpool job
 * each (preadDecrypt / encryptPwrite: system call + crypto, no main-thread crypto, no extra copy),
 * except that reads up to INLINE_READ_MAX (64 KiB) the page cache can serve are done and
 * decrypted synchronously (tryPreadDecrypt: preadv2 RWF_NOWAIT, no threadpool round trip);
 * otherwise (or with `io: 'js'`) the lower layer's read/write run on the threadpool and XtsCipher
 * runs on the main thread.
 *
 * The key. The constructor takes the 64-byte plaintext key (AES-256 data key ‖ tweak key), keys
 * the cipher and then ZERO-FILLS THE CALLER'S BUFFER, also when it throws: the only remaining copy
 * is the key schedule inside OpenSSL, which close() destroys (OpenSSL cleanses it).
 *
 * Ownership. The EncryptedBackend owns the lower backend: close() closes it (which flushes). The
 * lower layer must read trimmed/zeroed ranges back as zero bytes (FileBackend and MemoryBackend do)
 * and must not be used by anyone else meanwhile.
 *
 * canMultiConn holds (when the lower layer's does): the daemon shares one EncryptedBackend object
 * among all connections of a volume; it keeps no cache and no per-connection state (the lock table
 * only orders concurrent requests), so a completed write is in the lower layer for every
 * connection, and a flush on any connection flushes the one lower layer.
 */
import { XtsCipher } from '../native/addon.js';
import {
  BackendError,
  type BlockBackend,
  type BlockCapabilities,
  type DirectIo,
  type Extent,
  type WriteFlags,
  type ZeroFlags,
} from './backend.js';
import { blockIo } from './block-io.js';
import { FileBackend } from './file-backend.js';
import { RbdBackend } from './rbd-backend.js';
import { InFlight, checkRange, readOnlyError } from './guard.js';
import { RangeLock, type LockEntry } from './range-lock.js';

/** The XTS key: 512 bits. */
export const XTS_KEY_BYTES = 64;
/** Requests need this alignment, whatever the data unit. */
export const ENCRYPTED_MIN_BLOCK = 512;

export interface EncryptedBackendOptions {
  /** XTS data unit in bytes: 4096 (default, about 2x cheaper per byte) or 512. */
  dataUnitSize?: 512 | 4096;
  /**
   * 'auto' (default): the native combined jobs when the lower layer is a FileBackend, else 'js'.
   * 'native' requires a FileBackend. 'js': lower-layer read/write + XtsCipher on the main thread.
   */
  io?: 'auto' | 'native' | 'js';
}

/** What an encrypted layer over a lower layer with `lc` declares (also used before a key is loaded). */
export function encryptedCapabilities(lc: BlockCapabilities, dataUnitSize: number): BlockCapabilities {
  return {
    readOnly: lc.readOnly,
    canFlush: lc.canFlush,
    canFua: lc.canFua,
    canTrim: !lc.readOnly,
    canZero: !lc.readOnly,
    canFastZero: !lc.readOnly && lc.canZero && lc.canFastZero,
    canCache: lc.canCache,
    canExtents: lc.canExtents,
    canMultiConn: lc.canMultiConn,
    minBlock: ENCRYPTED_MIN_BLOCK,
    preferredBlock: Math.max(dataUnitSize, lc.preferredBlock),
  };
}

export class EncryptedBackend implements BlockBackend {
  readonly capabilities: BlockCapabilities;
  /** The XTS data unit in bytes. */
  readonly dataUnitSize: number;
  /** Which hot path this instance uses. */
  readonly io: 'native' | 'js';
  private readonly cipher: XtsCipher;
  private readonly file: FileBackend | undefined;
  private readonly ops = new InFlight('encrypted volume');
  private readonly locks = new RangeLock();
  private readonly zeroUnit: Buffer;

  /**
   * @param lower The layer that stores the ciphertext; owned from now on (closed by close()).
   *   If the constructor throws, it stays the caller's to close.
   * @param key 64 bytes: AES-256 data key then AES-256 tweak key (halves must differ). Zero-filled
   *   by this constructor before it returns or throws.
   */
  constructor(
    private readonly lower: BlockBackend,
    key: Uint8Array,
    opts: EncryptedBackendOptions = {},
  ) {
    try {
      const unit = opts.dataUnitSize ?? 4096;
      if (unit !== 512 && unit !== 4096) throw new BackendError('EINVAL', `data unit ${String(unit)} must be 512 or 4096`);
      if (!(key instanceof Uint8Array) || key.length !== XTS_KEY_BYTES) {
        throw new BackendError('EINVAL', `the volume key must be ${XTS_KEY_BYTES} bytes`);
      }
      const lc = lower.capabilities;
      if (unit % lc.minBlock !== 0) {
        throw new BackendError('EINVAL', `data unit ${unit} is not a multiple of the lower layer's block ${lc.minBlock}`);
      }
      if (lower.size % unit !== 0) {
        throw new BackendError('EINVAL', `volume size ${lower.size} is not a multiple of the data unit ${unit}`);
      }
      const io = opts.io ?? 'auto';
      if (io === 'native' && !(lower instanceof FileBackend)) {
        throw new BackendError('EINVAL', "io: 'native' needs a FileBackend lower layer");
      }
      this.io = io !== 'js' && lower instanceof FileBackend ? 'native' : 'js';
      this.file = this.io === 'native' ? (lower as FileBackend) : undefined;
      this.dataUnitSize = unit;
      this.zeroUnit = Buffer.alloc(unit);
      try {
        this.cipher = new XtsCipher(key, unit);
      } catch (err) {
        throw new BackendError('EINVAL', `bad volume key: ${(err as Error).message}`);
      }
      this.capabilities = encryptedCapabilities(lc, unit);
    } finally {
      if (key instanceof Uint8Array) key.fill(0);
    }
  }

  get size(): number {
    return this.lower.size;
  }

  /** False once close() has destroyed the key schedule. */
  get keyLoaded(): boolean {
    return !this.cipher.destroyed;
  }

  /**
   * Whole-unit reads and writes are a pread + decrypt / encrypt + pwrite of the file (native io
   * only). Partial units are not: they need this layer's read-modify-write under its lock.
   */
  directIo(): DirectIo | undefined {
    // A file when this layer does native file I/O itself; an RBD image (the lane encrypts before librbd).
    const plain = this.file ? this.file.directIo() : this.lower instanceof RbdBackend ? this.lower.directIo() : undefined;
    if (!plain || plain.cipher || this.ops.closed || this.cipher.destroyed) return undefined;
    return { ...plain, cipher: this.cipher, unit: this.dataUnitSize };
  }

  async read(offset: number, buf: Buffer): Promise<void> {
    checkRange('read', offset, buf.length, this.size, ENCRYPTED_MIN_BLOCK);
    if (buf.length === 0) return;
    this.ops.enter();
    const u = this.dataUnitSize;
    const first = Math.floor(offset / u);
    const end = Math.ceil((offset + buf.length) / u);
    const got = this.locks.acquire(first, end, false);
    const entry = got instanceof Promise ? await got : got;
    try {
      if (offset % u === 0 && buf.length % u === 0) {
        await this.readUnits(offset, buf);
      } else {
        const tmp = Buffer.allocUnsafe((end - first) * u);
        await this.readUnits(first * u, tmp);
        const from = offset - first * u;
        tmp.copy(buf, 0, from, from + buf.length);
      }
    } finally {
      this.locks.release(entry);
      this.ops.leave();
    }
  }

  async write(offset: number, data: Buffer, flags: WriteFlags = {}): Promise<void> {
    this.checkWritable('write', offset, data.length);
    if (data.length === 0) return;
    this.ops.enter();
    const u = this.dataUnitSize;
    const aligned = offset % u === 0 && data.length % u === 0;
    const first = Math.floor(offset / u);
    const end = Math.ceil((offset + data.length) / u);
    const got = this.locks.acquire(first, end, !aligned);
    const entry = got instanceof Promise ? await got : got;
    try {
      if (aligned) {
        await this.writeUnits(offset, data, flags.fua === true, false);
      } else {
        // Read-modify-write of the partial edge units (under the exclusive lock).
        const base = first * u;
        const tmp = Buffer.allocUnsafe((end - first) * u);
        const headPartial = offset % u !== 0;
        const tailPartial = (offset + data.length) % u !== 0;
        const edges: Promise<void>[] = [];
        if (headPartial) edges.push(this.readUnits(base, tmp.subarray(0, u)));
        if (tailPartial && (end - 1 > first || !headPartial)) {
          edges.push(this.readUnits((end - 1) * u, tmp.subarray(tmp.length - u)));
        }
        await Promise.all(edges);
        data.copy(tmp, offset - base);
        await this.writeUnits(base, tmp, flags.fua === true, true);
      }
    } finally {
      this.locks.release(entry);
      this.ops.leave();
    }
  }

  async flush(): Promise<void> {
    this.ops.enter();
    try {
      await this.lower.flush();
    } finally {
      this.ops.leave();
    }
  }

  /** Trimmed ranges read back as zeroes (whole units are trimmed in the lower layer). */
  trim(offset: number, length: number, flags: WriteFlags = {}): Promise<void> {
    return this.discard('trim', offset, length, { fua: flags.fua === true });
  }

  zero(offset: number, length: number, flags: ZeroFlags = {}): Promise<void> {
    return this.discard('zero', offset, length, flags);
  }

  async cache(offset: number, length: number): Promise<void> {
    checkRange('cache', offset, length, this.size, ENCRYPTED_MIN_BLOCK);
    if (length === 0) return;
    this.ops.enter();
    try {
      const u = this.dataUnitSize;
      const first = Math.floor(offset / u);
      const end = Math.ceil((offset + length) / u);
      await this.lower.cache(first * u, (end - first) * u);
    } finally {
      this.ops.leave();
    }
  }

  /**
   * The lower layer's map: its holes read as zeroes here too (hole+zero), its data is reported
   * allocated. Clipped to [offset, offset+length).
   */
  async extents(offset: number, length: number): Promise<Extent[]> {
    checkRange('extents', offset, length, this.size, ENCRYPTED_MIN_BLOCK);
    this.ops.enter();
    try {
      const u = this.dataUnitSize;
      const base = Math.floor(offset / u) * u;
      const stop = Math.ceil((offset + length) / u) * u;
      const lowerExtents = await this.lower.extents(base, stop - base);
      const out: Extent[] = [];
      let pos = base;
      const end = offset + length;
      for (const e of lowerExtents) {
        const s = Math.max(pos, offset);
        const t = Math.min(pos + e.length, end);
        if (t > s) out.push({ length: t - s, hole: e.hole, zero: e.zero });
        pos += e.length;
        if (pos >= end) break;
      }
      if (out.length === 0) out.push({ length: 0, hole: false, zero: false });
      return out;
    } finally {
      this.ops.leave();
    }
  }

  async resize(newSize: number): Promise<void> {
    if (!this.lower.resize) throw new BackendError('ENOTSUP', 'the lower layer cannot resize');
    if (!Number.isSafeInteger(newSize) || newSize % this.dataUnitSize !== 0) {
      throw new BackendError('EINVAL', `volume size ${newSize} is not a multiple of the data unit ${this.dataUnitSize}`);
    }
    this.ops.enter();
    try {
      await this.lower.resize(newSize);
    } finally {
      this.ops.leave();
    }
  }

  /**
   * Waits for running requests, closes (and so flushes) the lower layer, and destroys the
   * cipher's key schedule — also when closing the lower layer fails. Idempotent.
   */
  async close(): Promise<void> {
    if (this.ops.closed) return;
    await this.ops.shutdown();
    try {
      await this.lower.close();
    } finally {
      this.cipher.destroy();
    }
  }

  // -------------------------------------------------------------------------------------------
  // Unit-aligned I/O

  /** Reads and decrypts whole units at `offset` into `buf` (all-zero ciphertext → zeroes). */
  private readUnits(offset: number, buf: Buffer): Promise<void> {
    if (this.file) {
      const cipher = this.cipher;
      if (this.file.tryInlineRead(buf.length, (fd) => blockIo.tryPreadDecrypt(fd, cipher, offset, buf))) {
        return Promise.resolve();
      }
      return this.file.useFd((fd) => blockIo.preadDecrypt(fd, cipher, offset, buf));
    }
    return this.lower.read(offset, buf).then(() => this.decryptRuns(offset / this.dataUnitSize, buf));
  }

  /**
   * Encrypts and writes whole units. `owned`: `data` is our own scratch buffer, which the JS path
   * may encrypt in place (the native path never modifies it).
   */
  private writeUnits(offset: number, data: Buffer, fua: boolean, owned: boolean): Promise<void> {
    if (this.file) {
      const cipher = this.cipher;
      try {
        if (!fua && this.file.tryInlineWrite(data.length, (fd) => blockIo.encryptPwriteSync(fd, cipher, offset, data))) return Promise.resolve();
      } catch (err) {
        return Promise.reject(err);
      }
      return this.file.useFd((fd, syncFd) => {
        if (fua && syncFd !== undefined) return blockIo.encryptPwrite(syncFd, cipher, offset, data);
        return blockIo.encryptPwrite(fd, cipher, offset, data, { sync: fua });
      });
    }
    let ct = data;
    if (!owned) {
      ct = Buffer.allocUnsafe(data.length);
      data.copy(ct);
    }
    this.cipher.encrypt(offset / this.dataUnitSize, ct);
    return this.lower.write(offset, ct, { fua });
  }

  /** Decrypts `buf` in place, leaving all-zero units as zeroes; one call per run of data units. */
  private decryptRuns(firstUnit: number, buf: Buffer): void {
    const u = this.dataUnitSize;
    const n = buf.length / u;
    let run = 0;
    for (let i = 0; i <= n; i++) {
      if (i < n && !this.isZeroUnit(buf, i * u)) continue;
      if (i > run) this.cipher.decrypt(firstUnit + run, buf.subarray(run * u, i * u));
      run = i + 1;
    }
  }

  private isZeroUnit(buf: Buffer, at: number): boolean {
    // Real ciphertext almost always fails on the first byte: skip the compare call then.
    if (buf[at] !== 0) return false;
    return buf.compare(this.zeroUnit, 0, this.dataUnitSize, at, at + this.dataUnitSize) === 0;
  }

  // -------------------------------------------------------------------------------------------
  // Trim and zero

  private async discard(op: 'trim' | 'zero', offset: number, length: number, flags: ZeroFlags): Promise<void> {
    this.checkWritable(op, offset, length);
    if (length === 0) return;
    this.ops.enter();
    const u = this.dataUnitSize;
    const end = offset + length;
    const first = Math.floor(offset / u);
    const last = Math.ceil(end / u);
    const innerStart = Math.ceil(offset / u) * u;
    const innerEnd = Math.floor(end / u) * u;
    const aligned = offset % u === 0 && end % u === 0;
    const got = this.locks.acquire(first, last, !aligned);
    const entry = got instanceof Promise ? await got : got;
    try {
      if (flags.fastZero && !this.capabilities.canFastZero) {
        throw new BackendError('ENOTSUP', 'zero: the lower layer cannot zero quickly');
      }
      const jobs: Promise<void>[] = [];
      if (innerEnd > innerStart) jobs.push(this.discardUnits(op, innerStart, innerEnd - innerStart, flags));
      // Partial units at the edges (one unit when the range lies inside a single unit).
      if (offset % u !== 0) {
        jobs.push(this.discardPartial(op, first * u, offset, Math.min(end, (first + 1) * u), flags));
      }
      if (end % u !== 0 && (last - 1 > first || offset % u === 0)) {
        jobs.push(this.discardPartial(op, (last - 1) * u, Math.max(offset, (last - 1) * u), end, flags));
      }
      await Promise.all(jobs);
    } finally {
      this.locks.release(entry);
      this.ops.leave();
    }
  }

  /** Whole units: delegated to the lower layer, whose trimmed/zeroed ranges read as zero bytes. */
  private async discardUnits(op: 'trim' | 'zero', offset: number, length: number, flags: ZeroFlags): Promise<void> {
    const lc = this.lower.capabilities;
    const fua = flags.fua === true;
    if (op === 'trim' && lc.canTrim) return this.lower.trim(offset, length, { fua });
    if (lc.canZero) {
      return this.lower.zero(offset, length, { fua, noHole: flags.noHole === true, fastZero: flags.fastZero === true });
    }
    // A lower layer that can neither: write encrypted zeroes, a megabyte at a time.
    const chunk = 1 << 20;
    for (let pos = offset; pos < offset + length; pos += chunk) {
      await this.writeUnits(pos, Buffer.alloc(Math.min(chunk, offset + length - pos)), fua, true);
    }
  }

  /** Zeroes [from, to) inside the unit at `base`: read-modify-write, or discard if all zero. */
  private async discardPartial(op: 'trim' | 'zero', base: number, from: number, to: number, flags: ZeroFlags): Promise<void> {
    const u = this.dataUnitSize;
    const tmp = Buffer.allocUnsafe(u);
    await this.readUnits(base, tmp);
    tmp.fill(0, from - base, to - base);
    if (tmp.equals(this.zeroUnit) && !(op === 'zero' && flags.noHole)) {
      return this.discardUnits(op, base, u, flags);
    }
    return this.writeUnits(base, tmp, flags.fua === true, true);
  }

  private checkWritable(op: 'write' | 'trim' | 'zero', offset: number, length: number): void {
    checkRange(op, offset, length, this.size, ENCRYPTED_MIN_BLOCK);
    if (this.capabilities.readOnly) throw readOnlyError('encrypted volume', op);
  }
}
