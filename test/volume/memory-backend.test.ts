import { describe, expect, it } from 'vitest';
import { MemoryBackend } from '../../src/volume/memory-backend.js';
import { rejectsWithCode } from './helpers.js';

describe('MemoryBackend', () => {
  it('reads zeroes until written, then what was written (copying the caller buffer)', async () => {
    const m = new MemoryBackend(1 << 20);
    const buf = Buffer.alloc(8192, 0xee);
    await m.read(4096, buf);
    expect(buf.every((b) => b === 0)).toBe(true);
    const data = Buffer.alloc(1536, 7);
    await m.write(3584, data);
    data.fill(9); // the backend kept its own copy
    await m.read(3072, buf.subarray(0, 4096));
    expect(buf.subarray(0, 512).every((b) => b === 0)).toBe(true);
    expect(buf.subarray(512, 2048).every((b) => b === 7)).toBe(true);
    expect(buf.subarray(2048, 4096).every((b) => b === 0)).toBe(true);
  });

  it('reports absent pages as hole+zero, written ones as data, clipped to the request', async () => {
    const m = new MemoryBackend(64 << 10);
    await m.write(8192, Buffer.alloc(512, 1));
    expect(await m.extents(0, 64 << 10)).toEqual([
      { length: 8192, hole: true, zero: true },
      { length: 4096, hole: false, zero: false },
      { length: (64 << 10) - 12288, hole: true, zero: true },
    ]);
    expect(await m.extents(8704, 1024)).toEqual([{ length: 1024, hole: false, zero: false }]);
  });

  it('trim and zero drop whole pages; noHole keeps them allocated', async () => {
    const m = new MemoryBackend(64 << 10);
    await m.write(0, Buffer.alloc(16384, 3));
    await m.trim(0, 4096);
    await m.zero(4096, 4096);
    await m.zero(8192, 4096, { noHole: true });
    await m.trim(12288 + 512, 512);
    expect(m.allocatedPages).toBe(2);
    const b = Buffer.alloc(16384);
    await m.read(0, b);
    expect(b.subarray(0, 12288).every((x) => x === 0)).toBe(true);
    expect(b.subarray(12288, 12800).every((x) => x === 3)).toBe(true);
    expect(b.subarray(12800, 13312).every((x) => x === 0)).toBe(true);
    expect(b.subarray(13312).every((x) => x === 3)).toBe(true);
  });

  it('counts flushes and FUA requests, and injects faults', async () => {
    const m = new MemoryBackend(1 << 20, {
      fault: (op, offset) => (op === 'write' && offset === 4096 ? Object.assign(new Error('boom'), { code: 'EIO' }) : undefined),
    });
    await m.write(0, Buffer.alloc(512), { fua: true });
    await m.flush();
    expect(m.stats).toMatchObject({ writes: 1, fuaRequests: 1, flushes: 1 });
    await rejectsWithCode(m.write(4096, Buffer.alloc(512)), 'EIO');
  });

  it('refuses bad ranges, read-only writes and use after close with codes', async () => {
    const m = new MemoryBackend(1 << 20);
    await rejectsWithCode(m.write(1 << 20, Buffer.alloc(512)), 'ENOSPC');
    await rejectsWithCode(m.zero((1 << 20) - 512, 1024), 'ENOSPC');
    await rejectsWithCode(m.read(1 << 20, Buffer.alloc(512)), 'EINVAL');
    await rejectsWithCode(m.trim(100, 512), 'EINVAL');
    await rejectsWithCode(m.read(0, Buffer.alloc(100)), 'EINVAL');
    const ro = new MemoryBackend(4096, { readOnly: true });
    await rejectsWithCode(ro.write(0, Buffer.alloc(512)), 'EROFS');
    await m.close();
    await rejectsWithCode(m.read(0, Buffer.alloc(512)), 'ESHUTDOWN');
    await m.close(); // idempotent
  });

  it('grows with resize() and refuses to shrink', async () => {
    const m = new MemoryBackend(4096);
    await m.resize(8192);
    expect(m.size).toBe(8192);
    await m.write(4096, Buffer.alloc(4096, 1));
    await rejectsWithCode(m.resize(4096), 'EINVAL');
  });
});
