/** The boot image allowlist on real files: hashes, private copies, refusals. */
import { createHash } from 'node:crypto';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ImageAllowlist } from '../../src/vm/images.js';
import { tempDir } from '../helpers/nitride.js';

describe('ImageAllowlist', () => {
  let t: ReturnType<typeof tempDir>;
  let list: ImageAllowlist;
  const file = (name: string, content: string) => {
    const p = path.join(t.dir, name);
    writeFileSync(p, content);
    return p;
  };

  beforeEach(async () => {
    t = tempDir('nitride-images-');
    list = new ImageAllowlist(path.join(t.dir, 'images.json'), path.join(t.dir, 'store'));
    await list.load();
  });
  afterEach(() => t.cleanup());

  it('allows by content: the stored copy is what boots, a changed file is refused', async () => {
    const kernel = file('vmlinuz', 'kernel v1');
    const info = await list.allow(kernel);
    expect(info).toMatchObject({ name: 'vmlinuz', size: 9, sha256: createHash('sha256').update('kernel v1').digest('hex'), source: kernel });
    const resolved = await list.resolve(kernel, 'kernel');
    expect(resolved.path).toBe(path.join(t.dir, 'store', info.sha256));
    expect(readFileSync(resolved.path, 'utf8')).toBe('kernel v1');
    writeFileSync(kernel, 'kernel v2');
    await expect(list.resolve(kernel, 'kernel')).rejects.toThrow(/kernel .*vmlinuz \(sha256 [0-9a-f]{64}\) is not on the boot image allowlist/);
    // Allowing the same content again is a no-op; the list survives a reload.
    expect((await list.allow(file('copy', 'kernel v1'))).sha256).toBe(info.sha256);
    const again = new ImageAllowlist(path.join(t.dir, 'images.json'), path.join(t.dir, 'store'));
    await again.load();
    expect(again.list().map((i) => i.sha256)).toEqual([info.sha256]);
  });

  it('a tampered stored copy is refused; remove by name or hash prefix', async () => {
    const kernel = file('vmlinuz', 'kernel');
    const info = await list.allow(kernel);
    const stored = path.join(t.dir, 'store', info.sha256);
    chmodSync(stored, 0o600);
    writeFileSync(stored, 'evil');
    await expect(list.resolve(kernel, 'kernel')).rejects.toThrow(/stored copy of allowed image vmlinuz .* is missing or altered/);
    await expect(list.allow(file('vmlinuz-2', 'other kernel'), 'vmlinuz')).rejects.toThrow(/an image named 'vmlinuz' is allowed already/);
    await expect(list.remove('nosuch')).rejects.toThrow(/no allowed image nosuch/);
    expect((await list.remove(info.sha256.slice(0, 12))).name).toBe('vmlinuz');
    expect(list.list()).toEqual([]);
  });

  it('by hash (vm start): the stored copy while still allowed, refused once removed, refused if tampered', async () => {
    const info = await list.allow(file('vmlinuz', 'kernel'));
    expect((await list.resolveHash(info.sha256, 'kernel')).path).toBe(path.join(t.dir, 'store', info.sha256));
    const stored = path.join(t.dir, 'store', info.sha256);
    chmodSync(stored, 0o600);
    writeFileSync(stored, 'evil');
    await expect(list.resolveHash(info.sha256, 'kernel')).rejects.toThrow(/stored copy of allowed image vmlinuz .* is missing or altered/);
    await list.remove('vmlinuz');
    await expect(list.resolveHash(info.sha256, 'kernel')).rejects.toThrow(`the kernel this VM ran with (sha256 ${info.sha256}) is no longer on the boot image allowlist`);
  });

  it('unreadable or non-regular files are usage errors', async () => {
    await expect(list.allow(path.join(t.dir, 'missing'))).rejects.toThrow(/cannot read .*missing: no such file/);
    await expect(list.allow(t.dir)).rejects.toThrow(/is not a regular file/);
  });
});
