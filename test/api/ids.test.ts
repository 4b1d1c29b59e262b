/** The resource id format, pinned here once (every other place takes it from src/api/ids.ts). */
import { describe, expect, it } from 'vitest';
import { ID_PATTERNS, idFormat, isResourceId, newResourceId } from '../../src/api/ids.js';

describe('resource ids', () => {
  it('are a prefix, a dash and 17 lowercase hex digits', () => {
    const random = (n: number) => Buffer.alloc(n, 0xab);
    expect(newResourceId('volume', random)).toBe('vol-ababababababababa');
    expect(newResourceId('vm', random)).toBe('i-ababababababababa');
    expect(['vpc', 'subnet', 'eni'].map((k) => newResourceId(k as 'vpc', random).split('-')[0])).toEqual(['vpc', 'subnet', 'eni']);
    expect(isResourceId('eni', 'eni-0123456789abcdef0')).toBe(true);
    for (const bad of ['eni-0123456789abcdef', 'eni-0123456789abcdef01', 'eni-0123456789ABCDEF0', 'vol-0123456789abcdef0', ' eni-0123456789abcdef0']) {
      expect(isResourceId('eni', bad), bad).toBe(false);
    }
    expect(ID_PATTERNS.subnet.test('subnet-0123456789abcdef0')).toBe(true);
    expect(idFormat('volume')).toBe('vol- and 17 hex digits');
  });

  it('new ids are fresh and well-formed with real randomness', async () => {
    const { randomBytes } = await import('node:crypto');
    const ids = new Set(Array.from({ length: 100 }, () => newResourceId('volume', randomBytes)));
    expect(ids.size).toBe(100);
    for (const id of ids) expect(isResourceId('volume', id)).toBe(true);
  });
});
