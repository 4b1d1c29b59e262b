/**
 * Counts occurrences of byte strings in every file under a directory (sparse files read by their
 * data extents only, so a 4 GiB OSD block file costs what it holds). For the "no plaintext, no
 * key bytes at rest" proofs.
 */
import { closeSync, openSync, readSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { seekData, seekHole } from '../../src/native/addon.js';

const CHUNK = 8 << 20;

export function scanTree(root: string, needles: Buffer[]): number[] {
  const counts = needles.map(() => 0);
  const overlap = Math.max(...needles.map((n) => n.length)) - 1;
  const walk = (p: string): void => {
    const st = statSync(p);
    if (st.isDirectory()) return readdirSync(p).forEach((e) => walk(path.join(p, e)));
    if (!st.isFile()) return;
    const fd = openSync(p, 'r');
    try {
      const buf = Buffer.alloc(CHUNK + overlap);
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
