/** Byte sizes as people write them: "10G", "512M", "1.5T", "4096". Binary units (G = GiB), as EBS and qemu-img use. */
import { UsageError } from './errors.js';

const SHIFT: Record<string, number> = { '': 0, B: 0, K: 10, M: 20, G: 30, T: 40, P: 50 };

export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:i?B)?\s*$/i.exec(text);
  if (!m) throw new UsageError(`'${text}' is not a size (examples: 10G, 512M, 1T, 1048576)`);
  const bytes = Number(m[1]) * 2 ** SHIFT[m[2]!.toUpperCase()]!;
  if (!Number.isSafeInteger(bytes)) throw new UsageError(`'${text}' is not a whole number of bytes`);
  return bytes;
}

/** A whole count, e.g. IOPS: "3000", "16k" (k = 1000). */
export function parseCount(text: string, what: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(k?)\s*$/i.exec(text);
  const n = m ? Number(m[1]) * (m[2] ? 1000 : 1) : NaN;
  if (!Number.isSafeInteger(n)) throw new UsageError(`${what}: '${text}' is not a whole number (examples: 3000, 16k)`);
  return n;
}

/** A throughput in MiB/s, as EBS states it: "125", "125MiB/s", "1GiB/s". */
export function parseMiBps(text: string, what: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(?:(M|G)(?:iB\/s)?)?\s*$/i.exec(text);
  if (!m) throw new UsageError(`${what}: '${text}' is not a throughput in MiB/s (examples: 125, 125MiB/s, 1GiB/s)`);
  return Number(m[1]) * (m[2]?.toUpperCase() === 'G' ? 1024 : 1);
}

const BIT_RATE: Record<string, number> = { '': 1, K: 1e3, M: 1e6, G: 1e9, T: 1e12 };

/** A network rate in bits per second, decimal units as link speeds are stated: "200Mbit", "1Gbit", "1.5Gbit/s", "500000". */
export function parseBitRate(text: string, what: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(?:([KMGT]?)(?:bit(?:\/s)?|bps))?\s*$/i.exec(text);
  const n = m ? Math.round(Number(m[1]) * BIT_RATE[(m[2] ?? '').toUpperCase()]!) : NaN;
  if (!Number.isSafeInteger(n)) throw new UsageError(`${what}: '${text}' is not a bit rate (examples: 200Mbit, 1Gbit, 500kbit)`);
  return n;
}

/** Bits per second for people: "200 Mbit/s", "1.5 Gbit/s". */
export function formatBitRate(bps: number): string {
  for (const [unit, scale] of [['T', 1e12], ['G', 1e9], ['M', 1e6], ['k', 1e3]] as const) if (bps >= scale) return `${Number((bps / scale).toPrecision(6))} ${unit}bit/s`;
  return `${bps} bit/s`;
}
