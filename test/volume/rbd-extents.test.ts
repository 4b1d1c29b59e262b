/** extentsOf: librbd's data runs → the allocation map of a range (gaps are zero holes). Pure. */
import { describe, expect, it } from 'vitest';
import { extentsOf } from '../../src/volume/rbd-backend.js';

const hole = (length: number) => ({ length, hole: true, zero: true });
const data = (length: number) => ({ length, hole: false, zero: false });

describe('extentsOf', () => {
  it('no data: one hole over the whole range', () => {
    expect(extentsOf(4096, 8192, [])).toEqual([hole(8192)]);
  });

  it('gaps before, between and after data runs are holes', () => {
    expect(extentsOf(0, 100, [10, 20, 50, 10])).toEqual([hole(10), data(20), hole(20), data(10), hole(40)]);
  });

  it('data at both ends leaves no empty extents', () => {
    expect(extentsOf(100, 50, [100, 20, 120, 30])).toEqual([data(20), data(30)]);
    expect(extentsOf(0, 30, [0, 30])).toEqual([data(30)]);
  });

  it('the extents always cover the range exactly', () => {
    const e = extentsOf(1 << 20, 16 << 20, [(1 << 20) + 4096, 4096, 8 << 20, 4 << 20]);
    expect(e.reduce((n, x) => n + x.length, 0)).toBe(16 << 20);
  });
});
