/**
 * FIFO of received chunks, read without concatenating them: a read that fits in the first chunk is a
 * zero-copy subarray; only reads that straddle chunks copy (once, into a buffer of exactly that size).
 */
export class ByteQueue {
  private chunks: Buffer[] = [];
  /** Index of the first live chunk; consumed chunks before it are compacted away in batches. */
  private first = 0;
  /** Bytes of chunks[first] already consumed. */
  private headOffset = 0;
  private total = 0;

  /** Bytes buffered and not yet consumed. */
  get length(): number {
    return this.total;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.total += chunk.length;
  }

  /**
   * The first `n` bytes without consuming them (caller checks `length >= n`). Straddling reads are
   * copied into `scratch` when given (reused for fixed-size headers), else into a buffer from
   * `allocate` (default Buffer.allocUnsafe).
   */
  peek(n: number, scratch?: Buffer, allocate: (n: number) => Buffer = Buffer.allocUnsafe): Buffer {
    if (n > this.total) throw new RangeError(`peek(${n}) with only ${this.total} bytes buffered`);
    const head = this.chunks[this.first];
    if (n === 0 || head === undefined) return Buffer.alloc(0);
    if (head.length - this.headOffset >= n) return head.subarray(this.headOffset, this.headOffset + n);
    const out = scratch !== undefined && scratch.length >= n ? scratch.subarray(0, n) : allocate(n);
    let copied = 0;
    let offset = this.headOffset;
    for (let i = this.first; copied < n; i++) {
      const chunk = this.chunks[i] as Buffer;
      copied += chunk.copy(out, copied, offset, Math.min(chunk.length, offset + n - copied));
      offset = 0;
    }
    return out;
  }

  /** Consume and return `n` bytes; the result is owned by the caller (no scratch reuse). */
  take(n: number, allocate?: (n: number) => Buffer): Buffer {
    const out = this.peek(n, undefined, allocate);
    this.skip(n);
    return out;
  }

  /** Consume up to `n` bytes; returns how many were consumed. */
  skip(n: number): number {
    let remaining = Math.min(n, this.total);
    const consumed = remaining;
    while (remaining > 0) {
      const head = this.chunks[this.first] as Buffer;
      const available = head.length - this.headOffset;
      if (available > remaining) {
        this.headOffset += remaining;
        break;
      }
      remaining -= available;
      this.dropHead();
    }
    this.total -= consumed;
    return consumed;
  }

  /** Consume everything; returns the unread bytes as chunks (for handing the stream to another reader). */
  takeAll(): Buffer[] {
    const out: Buffer[] = [];
    for (let i = this.first; i < this.chunks.length; i++) {
      const chunk = this.chunks[i] as Buffer;
      out.push(i === this.first ? chunk.subarray(this.headOffset) : chunk);
    }
    this.chunks = [];
    this.first = 0;
    this.headOffset = 0;
    this.total = 0;
    return out;
  }

  private dropHead(): void {
    this.chunks[this.first] = EMPTY; // release the memory now
    this.first++;
    this.headOffset = 0;
    if (this.first === this.chunks.length) {
      this.chunks = [];
      this.first = 0;
    } else if (this.first >= 1024 && this.first * 2 >= this.chunks.length) {
      this.chunks = this.chunks.slice(this.first);
      this.first = 0;
    }
  }
}

const EMPTY = Buffer.alloc(0);
