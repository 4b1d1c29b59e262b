// Who may attach a volume: the consumer rule of VolumeManager, with a real KMS provider and real
// files, and NBD peers given directly (the NBD server passes SO_PEERCRED's pid the same way).
import { spawn } from 'node:child_process';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalKeyProvider } from '../../src/kms/local.js';
import { createLogger } from '../../src/log/logger.js';
import { VolumeManager } from '../../src/volume/manager.js';
import { tempDir } from '../helpers/nitride.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function manager(): Promise<VolumeManager> {
  const t = tempDir('nitride-attach-unit-');
  cleanups.push(t.cleanup);
  const kms = await LocalKeyProvider.open({ sweepIntervalMs: 0 });
  cleanups.push(() => kms.close());
  const m = new VolumeManager({
    volumeDir: path.join(t.dir, 'volumes'),
    ephemeralDir: path.join(t.dir, 'ephemeral'),
    kms,
    logger: createLogger({ level: 'silent' }),
    nbdSocket: path.join(t.dir, 'nbd.sock'),
  });
  await m.load();
  return m;
}

/** The pid of a process that has exited and been reaped. */
async function deadPid(): Promise<number> {
  const child = spawn('true');
  await new Promise((r) => child.once('exit', r));
  return child.pid!;
}

/** A live process other than this one, killed after the test. */
function livePid(): number {
  const child = spawn('sleep', ['600']);
  cleanups.push(() => void child.kill('SIGKILL'));
  return child.pid!;
}

describe('volume attach: one consumer at a time', () => {
  it('a client whose process has exited does not block the next one while its lease is released', async () => {
    const m = await manager();
    const vol = await m.create({ type: 'ebs', size: 1 << 20 });
    const exp = m.lookup(vol.id)!;
    const first = await exp.open({ transport: 'unix', pid: await deadPid() });
    // The server reads the first connection's end only after the next client's request.
    setTimeout(() => void first.release(), 200);
    const second = await exp.open({ transport: 'unix', pid: process.pid });
    await second.release();
  });

  it('a live holder still refuses another consumer at once', async () => {
    const m = await manager();
    const vol = await m.create({ type: 'ebs', size: 1 << 20 });
    const exp = m.lookup(vol.id)!;
    const first = await exp.open({ transport: 'unix', pid: livePid() });
    await expect(exp.open({ transport: 'unix', pid: process.pid })).rejects.toThrow(/attached to another consumer \(pid \d+\)/);
    await first.release();
  });
});
