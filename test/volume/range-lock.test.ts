import { describe, expect, it } from 'vitest';
import { RangeLock, type LockEntry } from '../../src/volume/range-lock.js';

const granted = (x: LockEntry | Promise<LockEntry>): x is LockEntry => !(x instanceof Promise);

describe('RangeLock', () => {
  it('grants shared entries over the same units together', () => {
    const l = new RangeLock();
    expect(granted(l.acquire(0, 4, false))).toBe(true);
    expect(granted(l.acquire(2, 6, false))).toBe(true);
  });

  it('never makes entries over disjoint units wait, exclusive or not', () => {
    const l = new RangeLock();
    expect(granted(l.acquire(0, 1, true))).toBe(true);
    expect(granted(l.acquire(1, 2, true))).toBe(true);
    expect(granted(l.acquire(2, 3, false))).toBe(true);
    expect(l.size).toBe(3);
  });

  it('makes an exclusive entry wait for overlapping earlier ones, and later ones wait for it (FIFO)', async () => {
    const l = new RangeLock();
    const order: string[] = [];
    const r1 = l.acquire(0, 2, false) as LockEntry;
    const w = l.acquire(1, 2, true);
    expect(granted(w)).toBe(false);
    const r2 = l.acquire(0, 1, false); // no overlap with the writer: runs
    expect(granted(r2)).toBe(true);
    const r3 = l.acquire(1, 3, false); // overlaps the waiting writer: queued behind it
    expect(granted(r3)).toBe(false);
    void (w as Promise<LockEntry>).then((e) => {
      order.push('w');
      l.release(e);
    });
    void (r3 as Promise<LockEntry>).then((e) => {
      order.push('r3');
      l.release(e);
    });
    await Promise.resolve();
    expect(order).toEqual([]);
    l.release(r1);
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual(['w', 'r3']);
    l.release(r2 as LockEntry);
    expect(l.size).toBe(0);
  });

  it('serialises exclusive entries over the same unit', async () => {
    const l = new RangeLock();
    const a = l.acquire(5, 6, true) as LockEntry;
    const b = l.acquire(5, 6, true);
    expect(granted(b)).toBe(false);
    l.release(a);
    const eb = await b;
    expect(eb.start).toBe(5);
    l.release(eb);
    expect(l.size).toBe(0);
  });
});
