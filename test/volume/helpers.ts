/** Shared helpers of the volume tests: scratch directories on disk and tmpfs, keys, a seeded PRNG. */
import { createCipheriv, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { rejection } from '../helpers/errors.js';

/** Scratch directories to run file-backed tests in: the disk's tmpdir, and tmpfs if present. */
export function scratchRoots(): { name: string; root: string }[] {
  const roots = [{ name: 'disk', root: tmpdir() }];
  if (existsSync('/dev/shm')) roots.push({ name: 'tmpfs', root: '/dev/shm' });
  return roots;
}

export function scratchDir(root: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(root, 'nitride-volume-test-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A valid AES-256-XTS key (halves differ). */
export function randomKey(): Buffer {
  for (;;) {
    const k = randomBytes(64);
    if (!k.subarray(0, 32).equals(k.subarray(32))) return k;
  }
}

/** Reference AES-256-XTS of whole data units: node:crypto, one cipher per unit, plain64 tweak. */
export function referenceEncrypt(key: Buffer, unit: number, firstUnit: number, data: Buffer): Buffer {
  const out = Buffer.alloc(data.length);
  for (let i = 0; i < data.length / unit; i++) {
    const iv = Buffer.alloc(16);
    iv.writeBigUInt64LE(BigInt(firstUnit + i));
    const c = createCipheriv('aes-256-xts', key, iv);
    Buffer.concat([c.update(data.subarray(i * unit, (i + 1) * unit)), c.final()]).copy(out, i * unit);
  }
  return out;
}

/** mulberry32: a small deterministic PRNG, so failures replay with the same seed. */
export function prng(seed: number): { next: () => number; int: (n: number) => number; bytes: (n: number) => Buffer } {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(next() * n);
  const bytes = (n: number): Buffer => {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = int(256);
    return b;
  };
  return { next, int, bytes };
}

/** The open flags of an fd (from /proc/self/fdinfo), e.g. to check O_DSYNC. */
export function fdFlags(fd: number): number {
  const info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  const m = /^flags:\s+([0-7]+)$/m.exec(info);
  if (!m?.[1]) throw new Error(`no flags in fdinfo of fd ${fd}`);
  return parseInt(m[1], 8);
}

/** O_DSYNC on Linux (node's fs.constants has it too; spelled out for the flag test). */
export const O_DSYNC = 0o10000;

/** Expects a promise to reject with an error carrying `code`. */
export async function rejectsWithCode(p: Promise<unknown>, code: string): Promise<Error & { code: string }> {
  const e = await rejection(p, `a rejection with code ${code}`);
  if (e.code !== code) throw new Error(`expected code ${code}, got ${String(e.code)}: ${e.message}`);
  return e as Error & { code: string };
}
