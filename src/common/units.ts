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
