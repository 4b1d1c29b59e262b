// VolumeManager.close() when systemd's fd store fails (its notify socket gone): every volume is
// still closed, and the running VM's ephemeral volume, whose key could not be kept, is wiped.
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FdStore } from '../../src/common/fd-store.js';
import { LocalKeyProvider } from '../../src/kms/local.js';
import { createLogger } from '../../src/log/logger.js';
import { EphemeralKeyStore } from '../../src/volume/ephemeral-keys.js';
import { VolumeManager } from '../../src/volume/manager.js';
import { tempDir } from '../helpers/nitride.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('volume manager close with a failing fd store', () => {
  it('closes every volume and wipes the ephemeral one it could not hand over', async () => {
    const t = tempDir('nitride-close-unit-');
    cleanups.push(t.cleanup);
    const saved = process.env.NOTIFY_SOCKET;
    process.env.NOTIFY_SOCKET = path.join(t.dir, 'no-such-notify.sock');
    cleanups.push(() => {
      if (saved === undefined) delete process.env.NOTIFY_SOCKET;
      else process.env.NOTIFY_SOCKET = saved;
    });
    const kms = await LocalKeyProvider.open({ sweepIntervalMs: 0 });
    cleanups.push(() => kms.close());
    const ephemeralDir = path.join(t.dir, 'ephemeral');
    const m = new VolumeManager({
      volumeDir: path.join(t.dir, 'volumes'),
      ephemeralDir,
      kms,
      logger: createLogger({ level: 'silent' }),
      nbdSocket: path.join(t.dir, 'nbd.sock'),
      keyStore: new EphemeralKeyStore(FdStore.open()!),
    });
    await m.load();
    const eph = await m.create({ type: 'ephemeral', size: 1 << 20 });
    const ebs = await m.create({ type: 'ebs', size: 1 << 20 });
    const peer = { transport: 'unix' as const, pid: process.pid };
    const ephLease = await m.lookup(eph.id)!.open(peer);
    const ebsLease = await m.lookup(ebs.id)!.open(peer);
    expect(readdirSync(ephemeralDir).some((f) => f.startsWith(eph.id))).toBe(true);
    // Both read while open, so the failures below are the close's doing.
    await ebsLease.backend.read(0, Buffer.alloc(4096));
    await ephLease.backend.read(0, Buffer.alloc(4096));

    await m.close(new Set([eph.id]));
    expect(readdirSync(ephemeralDir).some((f) => f.startsWith(eph.id))).toBe(false);
    // The ebs volume's backend was closed (its key destroyed): its reads fail.
    await expect(ebsLease.backend.read(0, Buffer.alloc(4096))).rejects.toThrow();
    await expect(ephLease.backend.read(0, Buffer.alloc(4096))).rejects.toThrow();
    expect(existsSync(path.join(t.dir, 'volumes'))).toBe(true);
  });
});
