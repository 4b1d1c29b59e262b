/**
 * An in-memory BlockBackend: a sparse map of 4 KiB pages. The reference model of the volume
 * semantics (model-based tests compare the real stack against it) and the NBD server's test
 * backend. Never-written, trimmed and zeroed pages are absent and read as zeroes; extents report
 * absent pages as hole+zero and present ones as data. Writes copy the caller's buffer.
 *
 * Counters (`stats`) record what reached the backend (e.g. how many flushes and FUA writes), and
 * an optional `fault` hook lets a test make any request fail with a chosen error.
 */
import { BackendError, type BlockBackend, type BlockCapabilities, type Extent, type WriteFlags, type ZeroFlags } from './backend.js';
import { InFlight, checkRange, readOnlyError, type Op } from './guard.js';

export const MEMORY_PAGE = 4096;

export interface MemoryBackendOptions {
  /** Alignment of offsets and lengths (a power of two ≤ 4096). Default 512. */
  minBlock?: number;
  /** Refuse writes, trims and zeroes with EROFS. Default false. */
  readOnly?: boolean;
  /** Overrides of the declared capabilities (the behaviour is unchanged; for NBD flag tests). */
  capabilities?: Partial<BlockCapabilities>;
  /**
   * Called before every request (after the range check); a returned error fails the request.
   * `op` is also 'flush' for flush().
   */
  fault?: (op: Op | 'flush', offset: number, length: number) => Error | undefined;
}

/** What reached the backend. */
export interface MemoryBackendStats {
  reads: number;
  writes: number;
  /** Writes, trims and zeroes with `fua`. */
  fuaRequests: number;
  flushes: number;
  trims: number;
  zeroes: number;
}

export class MemoryBackend implements BlockBackend {
  readonly capabilities: BlockCapabilities;
  readonly stats: MemoryBackendStats = { reads: 0, writes: 0, fuaRequests: 0, flushes: 0, trims: 0, zeroes: 0 };
  private readonly pages = new Map<number, Buffer>();
  private readonly ops = new InFlight('memory backend');
  private readonly fault: MemoryBackendOptions['fault'];
  private _size: number;

  constructor(size: number, opts: MemoryBackendOptions = {}) {
    const minBlock = opts.minBlock ?? 512;
    if (!Number.isInteger(minBlock) || minBlock < 1 || minBlock > MEMORY_PAGE || (minBlock & (minBlock - 1)) !== 0) {
      throw new BackendError('EINVAL', `minBlock ${minBlock} must be a power of two ≤ ${MEMORY_PAGE}`);
    }
    if (!Number.isSafeInteger(size) || size < 0 || size % minBlock !== 0) {
      throw new BackendError('EINVAL', `size ${size} must be a non-negative multiple of ${minBlock}`);
    }
    this._size = size;
    this.fault = opts.fault;
    this.capabilities = {
      readOnly: opts.readOnly ?? false,
      canFlush: true,
      canFua: true,
      canTrim: true,
      canZero: true,
      canFastZero: true,
      canCache: true,
      canExtents: true,
      canMultiConn: true,
      minBlock,
      preferredBlock: MEMORY_PAGE,
      ...opts.capabilities,
    };
  }

  get size(): number {
    return this._size;
  }

  /** Number of allocated pages (for tests). */
  get allocatedPages(): number {
    return this.pages.size;
  }

  async read(offset: number, buf: Buffer): Promise<void> {
    this.begin('read', offset, buf.length);
    try {
      this.stats.reads++;
      this.forEachPiece(offset, buf.length, (page, from, len, pos) => {
        const p = this.pages.get(page);
        if (p) p.copy(buf, pos, from, from + len);
        else buf.fill(0, pos, pos + len);
      });
    } finally {
      this.ops.leave();
    }
  }

  async write(offset: number, data: Buffer, flags: WriteFlags = {}): Promise<void> {
    this.begin('write', offset, data.length);
    try {
      this.stats.writes++;
      if (flags.fua) this.stats.fuaRequests++;
      this.forEachPiece(offset, data.length, (page, from, len, pos) => {
        let p = this.pages.get(page);
        if (!p) {
          p = Buffer.alloc(MEMORY_PAGE);
          this.pages.set(page, p);
        }
        data.copy(p, from, pos, pos + len);
      });
    } finally {
      this.ops.leave();
    }
  }

  async flush(): Promise<void> {
    this.ops.enter();
    try {
      this.injectFault('flush', 0, 0);
      this.stats.flushes++;
    } finally {
      this.ops.leave();
    }
  }

  async trim(offset: number, length: number, flags: WriteFlags = {}): Promise<void> {
    this.begin('trim', offset, length);
    try {
      this.stats.trims++;
      if (flags.fua) this.stats.fuaRequests++;
      this.discard(offset, length, false);
    } finally {
      this.ops.leave();
    }
  }

  async zero(offset: number, length: number, flags: ZeroFlags = {}): Promise<void> {
    this.begin('zero', offset, length);
    try {
      this.stats.zeroes++;
      if (flags.fua) this.stats.fuaRequests++;
      this.discard(offset, length, flags.noHole === true);
    } finally {
      this.ops.leave();
    }
  }

  async cache(offset: number, length: number): Promise<void> {
    this.begin('cache', offset, length);
    this.ops.leave();
  }

  async extents(offset: number, length: number): Promise<Extent[]> {
    this.begin('extents', offset, length);
    try {
      const out: Extent[] = [];
      const end = offset + length;
      let pos = offset;
      while (pos < end) {
        const page = Math.floor(pos / MEMORY_PAGE);
        const hole = !this.pages.has(page);
        const stop = Math.min(end, (page + 1) * MEMORY_PAGE);
        const last = out[out.length - 1];
        if (last && last.hole === hole) last.length += stop - pos;
        else out.push({ length: stop - pos, hole, zero: hole });
        pos = stop;
      }
      if (out.length === 0) out.push({ length: 0, hole: false, zero: false });
      return out;
    } finally {
      this.ops.leave();
    }
  }

  async resize(newSize: number): Promise<void> {
    this.ops.enter();
    try {
      if (!Number.isSafeInteger(newSize) || newSize < this._size || newSize % this.capabilities.minBlock !== 0) {
        throw new BackendError('EINVAL', `cannot resize from ${this._size} to ${newSize} bytes (grow only, whole blocks)`);
      }
      this._size = newSize;
    } finally {
      this.ops.leave();
    }
  }

  async close(): Promise<void> {
    if (this.ops.closed) return;
    await this.ops.shutdown();
    this.pages.clear();
  }

  /** Enters an operation after checking state, range and permissions, and the fault hook. */
  private begin(op: Op, offset: number, length: number): void {
    this.ops.enter();
    try {
      checkRange(op, offset, length, this._size, this.capabilities.minBlock);
      if (this.capabilities.readOnly && (op === 'write' || op === 'trim' || op === 'zero')) {
        throw readOnlyError('memory backend', op);
      }
      this.injectFault(op, offset, length);
    } catch (err) {
      this.ops.leave();
      throw err;
    }
  }

  private injectFault(op: Op | 'flush', offset: number, length: number): void {
    const err = this.fault?.(op, offset, length);
    if (err) throw err;
  }

  /** Zeroes a range: whole pages are dropped (or, with `allocate`, kept as zero pages). */
  private discard(offset: number, length: number, allocate: boolean): void {
    this.forEachPiece(offset, length, (page, from, len) => {
      const p = this.pages.get(page);
      if (len === MEMORY_PAGE && !allocate) this.pages.delete(page);
      else if (p) p.fill(0, from, from + len);
      else if (allocate) this.pages.set(page, Buffer.alloc(MEMORY_PAGE));
    });
  }

  /** Calls fn(page, offsetInPage, length, positionInRequest) for each page piece of a range. */
  private forEachPiece(offset: number, length: number, fn: (page: number, from: number, len: number, pos: number) => void): void {
    let pos = 0;
    while (pos < length) {
      const abs = offset + pos;
      const page = Math.floor(abs / MEMORY_PAGE);
      const from = abs - page * MEMORY_PAGE;
      const len = Math.min(MEMORY_PAGE - from, length - pos);
      fn(page, from, len, pos);
      pos += len;
    }
  }
}
