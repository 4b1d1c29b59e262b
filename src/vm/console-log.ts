/**
 * Serial console rotation: a size cap on the file QEMU appends the guest's console to, with
 * the last N old files kept (console.log.1 newest … console.log.N oldest).
 *
 * How: copy, then truncate (logrotate's copytruncate), done by the daemon on its watch timer
 * and before each `vm console` read. Why not rename + reopen: QEMU holds the file open and
 * has no command to reopen a file chardev. Why not a pipe or socket the daemon drains: the
 * console must not depend on the daemon being up. Across a live update a full pipe would stall
 * the guest's serial port and a socket chardev drops what is written meanwhile; the file keeps
 * everything until the next daemon rotates it. Truncating is safe here because QEMU opens it with
 * append=on (O_APPEND): its next write lands at the new end (0), with no sparse gap. Bytes
 * written between the copy's last read and the truncate are lost, a window of one read call.
 *
 * The old files live in the VM's directory, outside the guest's root: run/ belongs to the
 * guest's uid, and the daemon (root) never creates or renames files where a compromised QEMU
 * could have planted links. The live file is opened with O_NOFOLLOW and must be a regular file.
 */
import { constants as fsc, promises as fs } from 'node:fs';
import path from 'node:path';
import { UsageError, errnoCode } from '../common/errors.js';

/** Defaults: 1 MiB per file, 3 old files. */
export const DEFAULT_CONSOLE_MAX_BYTES = 1 << 20;
export const DEFAULT_CONSOLE_KEEP = 3;
/** Limits of the settings (a cap below 4 KiB would rotate on every boot line). */
const MIN_CONSOLE_MAX_BYTES = 4 << 10;
const MAX_CONSOLE_MAX_BYTES = 1 << 30;
const MAX_CONSOLE_KEEP = 100;

export interface ConsoleRotation {
  maxBytes: number;
  keep: number;
}

/** Checked settings (--vm-console-max, --vm-console-keep). */
export function consoleRotation(maxBytes: number, keep: number): ConsoleRotation {
  if (!Number.isInteger(maxBytes) || maxBytes < MIN_CONSOLE_MAX_BYTES || maxBytes > MAX_CONSOLE_MAX_BYTES) throw new UsageError('--vm-console-max must be from 4K to 1G');
  if (!Number.isInteger(keep) || keep < 0 || keep > MAX_CONSOLE_KEEP) throw new UsageError(`--vm-console-keep must be a whole number from 0 to ${MAX_CONSOLE_KEEP}`);
  return { maxBytes, keep };
}

/** The Nth old file (1 = newest) of console log BASE in DIR. */
export function rotatedName(dir: string, n: number, base = 'console.log'): string {
  return path.join(dir, `${base}.${n}`);
}

/** The renames that make room for a new .1 (oldest first, so none overwrites a kept file); .keep is dropped. */
export function shiftPlan(dir: string, keep: number): Array<[from: string, to: string]> {
  const moves: Array<[string, string]> = [];
  for (let n = keep - 1; n >= 1; n--) moves.push([rotatedName(dir, n), rotatedName(dir, n + 1)]);
  return moves;
}

/**
 * Rotate LIVE into DIR's console.log.1..keep if it is over `maxBytes` (or at all, with
 * `force`: a VM's previous run at `vm start`). Returns the bytes moved out of LIVE (0: nothing done).
 */
export async function rotateConsole(live: string, dir: string, settings: ConsoleRotation, force = false): Promise<number> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(live, fsc.O_RDWR | fsc.O_NOFOLLOW);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ELOOP') return 0;
    throw err;
  }
  try {
    const st = await handle.stat();
    if (!st.isFile() || st.nlink !== 1) return 0;
    if (st.size === 0 || (!force && st.size <= settings.maxBytes)) return 0;
    if (settings.keep > 0) {
      await fs.rm(rotatedName(dir, settings.keep), { force: true });
      for (const [from, to] of shiftPlan(dir, settings.keep)) await fs.rename(from, to).catch((err: unknown) => (errnoCode(err) === 'ENOENT' ? undefined : Promise.reject(err)));
    }
    // Copy to EOF (what QEMU appended meanwhile included), then truncate at once.
    const out = settings.keep > 0 ? await fs.open(rotatedName(dir, 1), fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC | fsc.O_NOFOLLOW, 0o600) : undefined;
    let moved = 0;
    try {
      const buf = Buffer.alloc(256 << 10);
      for (;;) {
        const { bytesRead } = await handle.read(buf, 0, buf.length, moved);
        if (bytesRead === 0) break;
        if (out) await out.write(buf, 0, bytesRead);
        moved += bytesRead;
      }
      await handle.truncate(0);
    } finally {
      await out?.close();
    }
    return moved;
  } finally {
    await handle.close();
  }
}
