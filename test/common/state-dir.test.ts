import { promises as fs, writeFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { StateDir } from '../../src/common/state-dir.js';
import { writeFileAtomic, readJsonFile } from '../../src/common/durable-fs.js';
import { tempDir } from '../helpers/nitride.js';

let cleanups: Array<() => void> = [];
afterEach(() => {
  cleanups.forEach((c) => c());
  cleanups = [];
});
function scratch(): string {
  const t = tempDir();
  cleanups.push(t.cleanup);
  return t.dir;
}

describe('writeFileAtomic', () => {
  it('creates, replaces and leaves no temp files; mode 0600', async () => {
    const dir = scratch();
    const file = path.join(dir, 'meta.json');
    await writeFileAtomic(file, JSON.stringify({ a: 1 }));
    await writeFileAtomic(file, JSON.stringify({ a: 2 }));
    expect(await readJsonFile(file)).toEqual({ a: 2 });
    expect(await fs.readdir(dir)).toEqual(['meta.json']);
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it('fails cleanly when the directory is missing, leaving nothing behind', async () => {
    const dir = scratch();
    await expect(writeFileAtomic(path.join(dir, 'nope', 'x'), 'data')).rejects.toThrow(/ENOENT/);
    expect(await fs.readdir(dir)).toEqual([]);
  });

  it('readJsonFile: undefined when absent, a clear error when corrupt', async () => {
    const dir = scratch();
    expect(await readJsonFile(path.join(dir, 'absent.json'))).toBeUndefined();
    writeFileSync(path.join(dir, 'bad.json'), '{not json');
    await expect(readJsonFile(path.join(dir, 'bad.json'))).rejects.toThrow(/bad\.json is not valid JSON/);
  });
});

describe('StateDir', () => {
  it('creates the directory 0700 and takes the pid lock', async () => {
    const root = path.join(scratch(), 'state');
    const state = await StateDir.open(root, 'daemon');
    expect(statSync(root).mode & 0o777).toBe(0o700);
    expect((await fs.readFile(path.join(root, 'daemon.pid'), 'utf8')).trim()).toBe(String(process.pid));
    await state.release();
    await expect(fs.access(path.join(root, 'daemon.pid'))).rejects.toThrow();
  });

  it('refuses a directory locked by a live process and names its pid', async () => {
    const root = scratch();
    writeFileSync(path.join(root, 'daemon.pid'), '1\n'); // pid 1 is always alive
    await expect(StateDir.open(root, 'daemon')).rejects.toThrow(/another nitride daemon \(pid 1\)/);
    expect((await fs.readFile(path.join(root, 'daemon.pid'), 'utf8')).trim()).toBe('1');
  });

  it('replaces a stale lock', async () => {
    const root = scratch();
    writeFileSync(path.join(root, 'daemon.pid'), '4194300\n'); // above any pid_max in use here
    const state = await StateDir.open(root, 'daemon');
    expect((await fs.readFile(path.join(root, 'daemon.pid'), 'utf8')).trim()).toBe(String(process.pid));
    await state.release();
  });

  it("each service has its own lock: the KMS's is kms.pid, named in its refusal", async () => {
    const root = scratch();
    const kms = await StateDir.open(root, 'kms');
    expect((await fs.readFile(path.join(root, 'kms.pid'), 'utf8')).trim()).toBe(String(process.pid));
    expect(await fs.readdir(root)).toEqual(['kms.pid']);
    await kms.release();
    writeFileSync(path.join(root, 'kms.pid'), '1\n');
    await expect(StateDir.open(root, 'kms')).rejects.toThrow(/^another nitride kms \(pid 1\) is using state directory /);
  });

  it('reports an unusable path in one line', async () => {
    const dir = scratch();
    writeFileSync(path.join(dir, 'file'), 'x');
    await expect(StateDir.open(path.join(dir, 'file', 'state'), 'daemon')).rejects.toThrow(/^state directory .* is not usable: .*ENOTDIR/);
  });
});
