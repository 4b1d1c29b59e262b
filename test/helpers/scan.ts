/** Crypto proofs: find known plaintext or key bytes in files. */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';

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
