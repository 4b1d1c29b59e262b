import { describe, expect, it } from 'vitest';
import { ByteQueue } from '../../src/nbd/byte-queue.js';

describe('ByteQueue', () => {
  const data = Buffer.from(Array.from({ length: 5000 }, (_, i) => i & 0xff));

  it('reads across many small chunks, compacting as it goes', () => {
    const queue = new ByteQueue();
    for (const byte of data) queue.push(Buffer.from([byte]));
    queue.push(Buffer.alloc(0));
    expect(queue.length).toBe(5000);
    const parts: Buffer[] = [];
    for (let taken = 0; taken < 5000; ) {
      const n = Math.min(1 + (taken % 13), 5000 - taken);
      parts.push(queue.take(n));
      taken += n;
    }
    expect(Buffer.concat(parts).equals(data)).toBe(true);
    expect(queue.length).toBe(0);
  });

  it('peeks without consuming, into scratch when straddling', () => {
    const queue = new ByteQueue();
    queue.push(data.subarray(0, 3));
    queue.push(data.subarray(3, 10));
    const scratch = Buffer.alloc(8);
    const view = queue.peek(5, scratch);
    expect(view.buffer).toBe(scratch.buffer);
    expect(view.equals(data.subarray(0, 5))).toBe(true);
    expect(queue.peek(2).buffer).toBe(data.buffer); // within the first chunk: zero-copy
    expect(queue.length).toBe(10);
    expect(() => queue.peek(11)).toThrow(RangeError);
  });

  it('skips at most what is buffered and hands back the rest', () => {
    const queue = new ByteQueue();
    queue.push(data.subarray(0, 4));
    queue.push(data.subarray(4, 8));
    expect(queue.skip(5)).toBe(5);
    expect(queue.skip(100)).toBe(3);
    queue.push(data.subarray(8, 12));
    queue.push(data.subarray(12, 16));
    queue.skip(1);
    expect(Buffer.concat(queue.takeAll()).equals(data.subarray(9, 16))).toBe(true);
    expect(queue.length).toBe(0);
  });
});
