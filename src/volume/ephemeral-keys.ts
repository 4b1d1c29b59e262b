/**
 * Ephemeral volumes across a live update, without a file: the KMS-wrapped copy of an attached
 * ephemeral volume's key goes into a sealed memfd (RAM only, sealed against write, shrink, grow
 * and new seals) kept in systemd's fd store under `eph-<volume id>`. systemd holds it across a
 * `systemctl restart` and across a crash (`kill -9`, then Restart=), and hands it back in
 * LISTEN_FDS; the next daemon checks the seals, the size and the volume it names, and unwraps the
 * key through the KMS when the client reconnects.
 *
 * The wrapped blob rather than the 64-byte XTS key: the plaintext then stays where it always
 * lives, inside the cipher; memfd pages can be swapped out, and what would reach swap is
 * useless without the KMS (and the KMS's encryption context binds it to this volume id).
 */
import { closeSync, fstatSync, readSync } from 'node:fs';
import type { FdStore } from '../common/fd-store.js';
import { fileSeals, sealedMemfd } from '../native/addon.js';

/** A data key wrapped by the KMS under `keyId` version `keyVersion`, base64. */
export interface WrappedKeyRecord {
  keyId: string;
  keyVersion: number;
  wrappedKey: string;
}

/** Names of the fd-store entries (systemd's FDNAME=). */
export const EPHEMERAL_FD_PREFIX = 'eph-';
export const ephemeralFdName = (volumeId: string) => `${EPHEMERAL_FD_PREFIX}${volumeId}`;

const MAGIC = Buffer.from('nitride-ephemeral-key/1\n');
/** A wrapped 64-byte key and its KMS key id take a few hundred bytes. */
export const MAX_HANDOVER_BYTES = 4096;

/** The memfd's contents: a magic line, then the volume id and its wrapped key as JSON. */
export function encodeHandover(volumeId: string, key: WrappedKeyRecord): Buffer {
  const body = Buffer.from(JSON.stringify({ volume: volumeId, keyId: key.keyId, keyVersion: key.keyVersion, wrappedKey: key.wrappedKey }));
  const out = Buffer.concat([MAGIC, body]);
  if (out.length > MAX_HANDOVER_BYTES) throw new Error(`handover of ${volumeId} is ${out.length} bytes (at most ${MAX_HANDOVER_BYTES})`);
  return out;
}

/** The wrapped key in `bytes` if they are a handover of `volumeId`; throws saying why not. */
export function decodeHandover(volumeId: string, bytes: Buffer): WrappedKeyRecord {
  if (bytes.length > MAX_HANDOVER_BYTES) throw new Error(`${bytes.length} bytes (at most ${MAX_HANDOVER_BYTES})`);
  if (!bytes.subarray(0, MAGIC.length).equals(MAGIC)) throw new Error('not a nitride ephemeral key handover');
  let v: Partial<WrappedKeyRecord & { volume: string }>;
  try {
    v = JSON.parse(bytes.subarray(MAGIC.length).toString('utf8')) as typeof v;
  } catch {
    throw new Error('malformed handover');
  }
  if (v.volume !== volumeId) throw new Error(`names volume ${String(v.volume)}`);
  if (typeof v.keyId !== 'string' || !Number.isSafeInteger(v.keyVersion) || typeof v.wrappedKey !== 'string' || !/^[A-Za-z0-9+/]+=*$/.test(v.wrappedKey)) {
    throw new Error('malformed handover');
  }
  return { keyId: v.keyId, keyVersion: v.keyVersion!, wrappedKey: v.wrappedKey };
}

/** A sealed memfd holding the handover of `volumeId` (the caller closes it). */
export function sealHandover(volumeId: string, key: WrappedKeyRecord): number {
  return sealedMemfd(ephemeralFdName(volumeId), encodeHandover(volumeId, key));
}

/** The handover in memfd `fd`, which must be fully sealed (so nobody could have changed it). */
export function readHandover(volumeId: string, fd: number): WrappedKeyRecord {
  let seals;
  try {
    seals = fileSeals(fd);
  } catch {
    throw new Error('not a sealable memory file');
  }
  if (!seals.write || !seals.shrink || !seals.grow || !seals.seal) throw new Error('not sealed');
  const size = fstatSync(fd).size;
  if (size > MAX_HANDOVER_BYTES) throw new Error(`${size} bytes (at most ${MAX_HANDOVER_BYTES})`);
  const buf = Buffer.alloc(size);
  if (readSync(fd, buf, 0, size, 0) !== size) throw new Error('short read');
  return decodeHandover(volumeId, buf);
}

/** The ephemeral keys this daemon keeps in systemd's fd store. */
export class EphemeralKeyStore {
  private readonly kept = new Set<string>();

  constructor(private readonly store: FdStore) {}

  /** Put the handover of `volumeId` in the store (replacing what it held for that volume). */
  keep(volumeId: string, key: WrappedKeyRecord): void {
    if (this.kept.has(volumeId)) this.store.remove(ephemeralFdName(volumeId));
    const fd = sealHandover(volumeId, key);
    try {
      this.store.keep(ephemeralFdName(volumeId), fd);
    } finally {
      closeSync(fd); // systemd has its own copy
    }
    this.kept.add(volumeId);
  }

  has(volumeId: string): boolean {
    return this.kept.has(volumeId);
  }

  /** Take `volumeId` out of the store (its key was destroyed). */
  remove(volumeId: string): void {
    if (!this.kept.delete(volumeId)) return;
    this.store.remove(ephemeralFdName(volumeId));
  }

  /**
   * The key the previous run kept for `volumeId`, which stays in the store. Undefined if there is
   * none; one that fails the checks is dropped from the store and `onBad` says why.
   */
  adopt(volumeId: string, onBad: (why: string) => void): WrappedKeyRecord | undefined {
    const fd = this.store.take(ephemeralFdName(volumeId));
    if (fd === undefined) return undefined;
    try {
      const key = readHandover(volumeId, fd);
      this.kept.add(volumeId);
      return key;
    } catch (err) {
      onBad((err as Error).message);
      this.store.remove(ephemeralFdName(volumeId));
      return undefined;
    } finally {
      closeSync(fd);
    }
  }

  /** How many volumes have their key in the store. */
  get size(): number {
    return this.kept.size;
  }
}
