/**
 * Durable file operations. Atomic write = write a temp file in the same directory,
 * fsync it, rename it over the target, fsync the directory: a crash at any point
 * leaves either the old or the new file, never a torn one.
 */
import { constants as fsc, promises as fs } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { RuntimeError, errnoCode, oneLine } from './errors.js';

/** Write `data` (or its pieces, in order) to `file` atomically and durably. `mode` applies to the new file. */
export async function writeFileAtomic(file: string, data: string | Uint8Array | Iterable<string>, mode = 0o600): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await fs.open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, mode);
  try {
    // Pieces one after another (each from where the last ended): a big text never whole in memory.
    if (typeof data === 'string' || data instanceof Uint8Array) await handle.writeFile(data);
    else for (const piece of data) await handle.writeFile(piece);
    await handle.sync();
  } catch (err) {
    await handle.close().catch(() => {});
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await handle.close();
  try {
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(dir);
}

/** fsync a directory so that a rename or create in it is durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, fsc.O_RDONLY | fsc.O_DIRECTORY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * mkdir -p with a bounded retry. Node's own `recursive: true` spins forever on paths it
 * cannot create but whose parent exists (e.g. under /proc), so we walk up ourselves.
 */
export async function ensureDir(dir: string, mode = 0o700): Promise<void> {
  try {
    await fs.mkdir(dir, { mode });
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'EEXIST') return;
    const parent = path.dirname(dir);
    if (code !== 'ENOENT' || parent === dir) throw err;
    await ensureDir(parent, mode);
    try {
      await fs.mkdir(dir, { mode });
    } catch (again) {
      if (errnoCode(again) !== 'EEXIST') throw again;
    }
  }
}

/** Read and parse a JSON file; undefined if it does not exist. */
export async function readJsonFile<T>(file: string): Promise<T | undefined> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new RuntimeError(`${file} is not valid JSON: ${oneLine(err)}`, 'STATE_CORRUPT');
  }
}
