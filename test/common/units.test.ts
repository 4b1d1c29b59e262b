import { describe, expect, it } from 'vitest';
import { formatBitRate, parseBitRate, parseSize } from '../../src/common/units.js';

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

describe('parseBitRate / formatBitRate', () => {
  it('reads decimal link-speed units and plain bits/s', () => {
    expect(parseBitRate('200Mbit', '--bandwidth')).toBe(200e6);
    expect(parseBitRate('1Gbit', '--bandwidth')).toBe(1e9);
    expect(parseBitRate('1.5Gbit/s', '--bandwidth')).toBe(1.5e9);
    expect(parseBitRate('500kbit', '--bandwidth')).toBe(500e3);
    expect(parseBitRate('100mbps', '--bandwidth')).toBe(100e6);
    expect(parseBitRate('64000', '--bandwidth')).toBe(64000);
    expect(formatBitRate(200e6)).toBe('200 Mbit/s');
    expect(formatBitRate(1.5e9)).toBe('1.5 Gbit/s');
    expect(formatBitRate(999)).toBe('999 bit/s');
  });
  it('refuses nonsense with a one-line usage error', () => {
    for (const bad of ['', 'fast', '-1Mbit', '200MB', '1 Xbit', '1e9']) expect(() => parseBitRate(bad, '--bandwidth'), bad).toThrow(/^--bandwidth: '.*' is not a bit rate/);
  });
});
