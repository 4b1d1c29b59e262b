/**
 * The volume limiter's arithmetic (native/src/io_limiter.h), on an injected clock: no timers.
 */
import { describe, expect, it } from 'vitest';
import { IoLimiter } from '../../src/native/addon.js';
import { BUCKET_DEPTH_SECONDS, IO_COUNT_UNIT_BYTES } from '../../src/api/volumes.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const T0 = 1000;

/** Reserves `n` requests of `len` bytes all arriving at `now`; their waits. */
function burst(l: IoLimiter, n: number, len: number, now: number): number[] {
  return Array.from({ length: n }, () => l.reserve(len, now));
}

describe('IoLimiter', () => {
  it('without limits never delays and counts nothing', () => {
    const l = new IoLimiter({}, T0);
    expect(burst(l, 10_000, 4 * KiB, T0).every((w) => w === 0)).toBe(true);
    expect(l.counters(T0 + 1)).toEqual({ throttledIopsSeconds: 0, throttledThroughputSeconds: 0, burstIoCredits: null, burstBytes: null });
  });

  it('spaces requests at the IOPS rate, after a burst of the bucket depth', () => {
    expect(BUCKET_DEPTH_SECONDS).toBe(0.1);
    const l = new IoLimiter({ iops: 1000 }, T0);
    const waits = burst(l, 1000, 4 * KiB, T0);
    // 100 I/Os of depth, and the one that empties it, at once; then one per millisecond.
    for (let k = 0; k <= 100; k++) expect(waits[k]).toBe(0);
    for (let k = 101; k < 1000; k++) expect(waits[k]).toBeCloseTo((k - 100) / 1000, 9);
  });

  it('counts an I/O up to 256 KiB as one and a larger one as ceil(len / 256 KiB)', () => {
    expect(IO_COUNT_UNIT_BYTES).toBe(256 * KiB);
    for (const [len, ios] of [
      [512, 1],
      [256 * KiB, 1],
      [256 * KiB + 1, 2],
      [MiB, 4],
      [32 * MiB, 128],
    ] as const) {
      // 5 IOPS: the depth is one I/O (0.1 s of 5 IOPS is less).
      const l = new IoLimiter({ iops: 5 }, T0);
      l.reserve(len, T0); // first: at once, takes `ios` tokens
      l.reserve(512, T0); // the one-I/O depth: conforms if the debt is under one I/O
      expect(l.reserve(512, T0)).toBeCloseTo(ios / 5, 9);
    }
  });

  it('limits throughput in bytes per second, independently of the IOPS limit', () => {
    const l = new IoLimiter({ iops: 10_000, bytesPerSecond: 100 * MiB }, T0);
    const waits = burst(l, 50, MiB, T0);
    // Depth 10 MiB (0.1 s): 11 requests at once, then one per 10 ms.
    expect(waits[10]).toBe(0);
    for (let k = 11; k < 50; k++) expect(waits[k]).toBeCloseTo((k - 10) * 0.01, 9);
    const c = l.counters(T0 + 10);
    expect(c.throttledIopsSeconds).toBe(0);
    expect(c.throttledThroughputSeconds).toBeCloseTo(waits[49]!, 9);
  });

  it('bursts at the burst rate while credits last, then holds the provisioned rate', () => {
    const l = new IoLimiter({ iops: 100, burstIops: 1000, burstIoCredits: 500 }, T0);
    expect(l.counters(T0).burstIoCredits).toBeCloseTo(500, 6);
    // Requests arriving at 1000/s, each as soon as allowed.
    let now = T0;
    const starts: number[] = [];
    for (let i = 0; i < 1500; i++) {
      const start = now + l.reserve(4 * KiB, now);
      starts.push(start);
      now = start;
    }
    // The credits (500, refilled at 100/s while they drain at 1000/s, after the 100 of the
    // burst bucket's depth) last ~545 requests...
    const fast = starts.findIndex((s, i) => i > 0 && s - starts[i - 1]! > 0.0015);
    expect(fast).toBeGreaterThan(540);
    expect(fast).toBeLessThan(570);
    // ...then the rate is the provisioned one.
    expect((starts[1499]! - starts[999]!) / 500).toBeCloseTo(0.01, 6);
  });

  it('applies a live change at once and re-bases its generation', () => {
    const l = new IoLimiter({ iops: 10 }, T0);
    const g = l.generation();
    burst(l, 20, 4 * KiB, T0); // 1.9 s of debt at 10 IOPS
    l.set({ iops: 1000 }, T0 + 0.5);
    expect(l.generation()).toBe(g + 1);
    // The debt is forgiven (waiting requests re-reserve); the new rate holds from now.
    const waits = burst(l, 100, 4 * KiB, T0 + 0.5);
    expect(waits[0]).toBe(0);
    expect(waits[99]).toBeCloseTo(0.099, 9);
    l.set({}, T0 + 0.6);
    expect(l.reserve(4 * KiB, T0 + 0.6)).toBe(0);
  });

  it('counts throttled time only while requests wait, as the union of their waits', () => {
    const l = new IoLimiter({ iops: 100 }, T0);
    // Under the limit: one request every 20 ms never waits.
    for (let i = 0; i < 50; i++) expect(l.reserve(4 * KiB, T0 + i * 0.02)).toBe(0);
    expect(l.counters(T0 + 1).throttledIopsSeconds).toBe(0);
    // 21 at once at T0+2: 11 go (depth 10), the last waits 0.1 s; the intervals overlap, so
    // 0.1 s in all...
    const waits = burst(l, 21, 4 * KiB, T0 + 2);
    expect(waits[10]).toBe(0);
    expect(waits[20]).toBeCloseTo(0.1, 9);
    // ...counted only as it elapses.
    expect(l.counters(T0 + 2.05).throttledIopsSeconds).toBeCloseTo(0.05, 9);
    expect(l.counters(T0 + 3).throttledIopsSeconds).toBeCloseTo(0.1, 9);
    expect(l.counters(T0 + 3).throttledThroughputSeconds).toBe(0);
  });

  it('refuses bad limits', () => {
    expect(() => new IoLimiter({ iops: -1 })).toThrow(/iops/);
    expect(() => new IoLimiter({ iops: Number.NaN })).toThrow(/iops/);
    expect(() => new IoLimiter({ iops: 'x' as unknown as number })).toThrow(/iops/);
  });
});
