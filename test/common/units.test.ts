import { describe, expect, it } from 'vitest';
import { parseSize } from '../../src/common/units.js';

describe('parseSize', () => {
  it('reads binary units and plain bytes', () => {
    expect(parseSize('10G')).toBe(10 * 2 ** 30);
    expect(parseSize('512M')).toBe(512 * 2 ** 20);
    expect(parseSize('1.5T')).toBe(1.5 * 2 ** 40);
    expect(parseSize('4096')).toBe(4096);
    expect(parseSize('64KiB')).toBe(65536);
    expect(parseSize('2gb')).toBe(2 * 2 ** 30);
  });
  it('refuses nonsense with a usage error', () => {
    for (const bad of ['', 'ten', '10X', '-1G', '1.3']) expect(() => parseSize(bad), bad).toThrow(/is not a (size|whole number)/);
  });
});
