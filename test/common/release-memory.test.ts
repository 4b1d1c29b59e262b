/**
 * releaseMemory (src/common/release-memory.ts): a full collection frees what nothing reaches
 * any more, and exposing gc() for it leaves the process's own global without one.
 */
import { describe, expect, it } from 'vitest';
import { releaseMemory } from '../../src/common/release-memory.js';

describe('releaseMemory', () => {
  it('collects unreachable objects at once, without a global gc()', () => {
    let garbage: Array<{ n: number; s: string }> | null = Array.from({ length: 200_000 }, (_, n) => ({ n, s: `x${n}` }));
    const held = process.memoryUsage().heapUsed;
    expect(garbage.length).toBe(200_000);
    garbage = null;
    releaseMemory();
    // ~10 MB of objects were unreachable: a full collection frees them all.
    expect(process.memoryUsage().heapUsed).toBeLessThan(held - 5 * 2 ** 20);
    expect((globalThis as { gc?: unknown }).gc).toBeUndefined();
    releaseMemory(); // the second call reuses the same gc()
  });
});
