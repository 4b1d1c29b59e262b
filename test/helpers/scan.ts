/**
 * Crypto proofs: find known plaintext or key bytes in files. `scanTree` counts occurrences under a
 * directory reading sparse files by their data extents only, so a 4 GiB OSD block file costs what
 * it holds.
 */
import { closeSync, existsSync, lstatSync, openSync, readFileSync, readSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { seekData, seekHole } from '../../src/native/addon.js';

/** Every regular file under `dir`. */
export function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name));
}

export function containsBytes(file: string, needle: Buffer): boolean {
  return readFileSync(file).includes(needle);
}

/** A key as it could leak: raw, hex, base64, and each half (the two XTS keys). */
export function keyNeedles(key: Buffer): Buffer[] {
  const half = key.length / 2;
  return [key, Buffer.from(key.toString('hex')), Buffer.from(key.toString('base64')), key.subarray(0, half), key.subarray(half)];
}

const CHUNK = 8 << 20;

/**
 * `links: 'skip'` does not follow symbolic links (a tree seen through /proc/PID/root, whose
 * absolute links point into the host's tree).
 */
export function scanTree(root: string, needles: Buffer[], options: { links?: 'follow' | 'skip'; skip?: string[] } = {}): number[] {
  const counts = needles.map(() => 0);
  const overlap = Math.max(...needles.map((n) => n.length)) - 1;
  const stat = options.links === 'skip' ? lstatSync : statSync;
  const buf = Buffer.alloc(CHUNK + overlap);
  const walk = (p: string): void => {
    let st;
    try {
      st = stat(p);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // gone meanwhile (a live system's /run)
      throw err;
    }
    if (st.isDirectory()) return options.skip?.includes(p) ? undefined : readdirSync(p).forEach((e) => walk(path.join(p, e)));
    if (!st.isFile()) return;
    const fd = openSync(p, 'r');
    try {
      let pos = 0;
      for (;;) {
        let start: number;
        try {
          start = seekData(fd, pos);
        } catch {
          break; // ENXIO: no data after pos
        }
        if (start < 0 || start >= st.size) break;
        const end = Math.min(seekHole(fd, start), st.size);
        for (let at = start; at < end; at += CHUNK) {
          const n = readSync(fd, buf, 0, Math.min(CHUNK + overlap, end - at), at);
          const view = buf.subarray(0, n);
          needles.forEach((needle, i) => {
            // Count matches that start inside this chunk (the overlap belongs to the next one).
            for (let k = view.indexOf(needle); k !== -1 && k < CHUNK; k = view.indexOf(needle, k + 1)) counts[i] = (counts[i] ?? 0) + 1;
          });
        }
        pos = end;
      }
    } finally {
      closeSync(fd);
    }
  };
  walk(root);
  return counts;
}
