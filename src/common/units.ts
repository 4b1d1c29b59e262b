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
