/**
 * Reusable I/O buffers (READ replies and WRITE payloads that straddle socket chunks). Allocating a fresh 1 MiB Buffer per READ showed up as ~18% of the
 * daemon's time in garbage collection on sequential reads; replies hand their data buffer
 * back once the socket has taken it (the write callback), and the next READ of that size
 * reuses it. A buffer is always filled completely by the backend before it is sent, so no
 * bytes of one request can reach another.
 */
export class BufferPool {
  private readonly free = new Map<number, Buffer[]>();
  private pooledBytes = 0;

  /**
   * @param maxBytes Most bytes kept idle in the pool.
   * @param maxSize Larger buffers are never pooled.
   */
  constructor(
    private readonly maxBytes = 64 << 20,
    private readonly maxSize = 4 << 20,
  ) {}

  take(size: number): Buffer {
    const list = this.free.get(size);
    const buf = list?.pop();
    if (buf) {
      this.pooledBytes -= size;
      return buf;
    }
    return Buffer.allocUnsafe(size);
  }

  give(buf: Buffer): void {
    const size = buf.length;
    if (size === 0 || size > this.maxSize || this.pooledBytes + size > this.maxBytes) return;
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    list.push(buf);
    this.pooledBytes += size;
  }
}

/** One pool for all connections of the process. */
export const ioBuffers = new BufferPool();
