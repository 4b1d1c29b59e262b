/**
 * Ephemeral keys in systemd's fd store, seen from the host (as root) for the nspawn tests: the
 * sealed memfds a container's PID 1 holds, the key one of them carries (unwrapped with the
 * container's KMS), and a scan of everything the daemon's unit could write for anything derived
 * from it.
 */
import { closeSync, openSync, readdirSync, readlinkSync } from 'node:fs';
import { KmsClient } from '../../src/kms/client.js';
import { fileSeals } from '../../src/native/addon.js';
import { readHandover } from '../../src/volume/ephemeral-keys.js';
import { ROOT } from './nitride.js';
import type { BootedSystemd } from './nspawn.js';
import { filesUnder, keyNeedles, scanTree } from './scan.js';

/** The memfds systemd (PID `pid`) holds for ephemeral volumes: fd path → volume id. */
export function storedMemfds(pid: number): { path: string; volume: string }[] {
  return readdirSync(`/proc/${pid}/fd`).flatMap((fd) => {
    let link: string;
    try {
      link = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      return [];
    }
    const m = /^\/memfd:eph-(vol-[0-9a-f]+) \(deleted\)$/.exec(link);
    return m ? [{ path: `/proc/${pid}/fd/${fd}`, volume: m[1]! }] : [];
  });
}

/**
 * The one copy of `volumeId`'s key: the wrapped blob in systemd's sealed memfd, unwrapped by the
 * KMS. The caller zeroes `key`.
 */
export async function storedEphemeralKey(sd: BootedSystemd, volumeId: string) {
  const memfd = storedMemfds(sd.pid).find((m) => m.volume === volumeId);
  if (!memfd) throw new Error(`systemd holds no memfd for ${volumeId}`);
  const fd = openSync(memfd.path, 'r');
  let seals, wrapped;
  try {
    seals = fileSeals(fd);
    wrapped = readHandover(volumeId, fd);
  } finally {
    closeSync(fd);
  }
  const blob = Buffer.from(wrapped.wrappedKey, 'base64');
  const kms = new KmsClient({ socketPath: sd.hostPath('/run/nitride-kms/kms.sock'), timeoutMs: 10_000 });
  const { plaintext: key } = await kms.decrypt(blob, { volume: volumeId, purpose: 'ephemeral-handover' });
  return { key, blob, wrappedKey: wrapped.wrappedKey, seals };
}

/**
 * What would betray a stored key: the key as it could leak, its wrapped blob (raw, base64, a
 * prefix), and a handover record. (An ebs volume's metadata names its own `wrappedKey`.)
 */
export function storedKeyNeedles(key: Uint8Array, blob: Buffer, wrappedKey: string): Buffer[] {
  return [...keyNeedles(Buffer.from(key)), blob, Buffer.from(wrappedKey), Buffer.from(wrappedKey.slice(0, 40)), Buffer.from('"handover"')];
}

/**
 * Where any needle occurs (the file, or the journal), with each needle's count ({} when nowhere): everything the unit may
 * write (ProtectSystem=strict: state and runtime directories, its private /tmp and /var/tmp, the
 * journal's files) within all of the container's /var, /run, /tmp and /etc, and the journal's entries.
 */
export async function scanContainer(sd: BootedSystemd, needles: Buffer[]): Promise<Record<string, number[]>> {
  const found = (c: number[]) => c.some((n) => n > 0);
  const counts: Record<string, number[]> = {};
  // This checkout, bound read-only at its own path (nspawn.mjs), is nothing the daemon wrote, and
  // its sources name what the scan looks for when it lies under one of these (/tmp/…, /var/…).
  const checkout = sd.hostPath(ROOT);
  for (const dir of ['/var', '/run', '/tmp', '/etc']) {
    if (!found(scanTree(sd.hostPath(dir), needles, { links: 'skip', skip: [checkout] }))) continue;
    // Name the files (one pass per file only where the tree holds something).
    for (const file of filesUnder(sd.hostPath(dir)).filter((f) => !f.startsWith(`${checkout}/`))) {
      const c = scanTree(file, needles, { links: 'skip' });
      if (found(c)) counts[file.slice(sd.hostPath('').length)] = c;
    }
  }
  const journal = await sd.execOk(['journalctl', '-o', 'export', '--no-pager']);
  const inJournal = needles.map((n) => (journal.includes(n.toString('latin1')) ? 1 : 0));
  if (found(inJournal)) counts.journal = inJournal;
  return counts;
}
