/**
 * Ceph trouble is an error, not a hang: a real daemon (--ceph-timeout 5) on a real one-node
 * cluster, a guest-like NBD client keeping its connection. With the OSD stopped (the data path
 * gone: one OSD holds every object), I/O fails with EIO, the control API keeps answering and
 * `status` says why; with the OSD back, the same connection's I/O works again and `status` says
 * reachable. Then the whole cluster (mon, mgr, OSD) stops and starts again: the OSD comes back on
 * new addresses, which the same connections must learn from the mon (failed before
 * objecter_timeout was set below the op timeout: status stayed unreachable for good).
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DaemonStatus } from '../../src/api/daemon.js';
import type { VolumeInfo } from '../../src/api/volumes.js';
import { startCeph, type CephCluster } from '../helpers/ceph.js';
import { nitride, startDaemon, startKms, tempDir, type RunningDaemon, type RunningKms } from '../helpers/nitride.js';
import { QemuIoSession } from '../helpers/qemu-io.js';

const TIMEOUT_S = 5;
let ceph: CephCluster;
let kms: RunningKms;
let d: RunningDaemon;
let dir: string;
let cleanup: () => void;
let guest: QemuIoSession | undefined;
let vol: VolumeInfo;

const cli = (...args: string[]) => nitride(args, { NITRIDE_SOCKET: d.socket, NITRIDE_KMS_SOCKET: kms.socket });
async function json<T>(...args: string[]): Promise<T> {
  const r = await cli(...args, '--json');
  if (r.code !== 0) throw new Error(`nitride ${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}
/** Polls `status` until `ok(status)` (the pool is re-read every few seconds). */
async function statusUntil(ok: (s: DaemonStatus) => boolean, ms: number): Promise<DaemonStatus> {
  const end = Date.now() + ms;
  for (;;) {
    const s = await json<DaemonStatus>('status');
    if (ok(s) || Date.now() > end) return s;
    await new Promise((r) => setTimeout(r, 500));
  }
}

beforeAll(async () => {
  ({ dir, cleanup } = tempDir('nitride-rbd-outage-'));
  ceph = await startCeph();
  kms = await startKms({ stateDir: path.join(dir, 'kms'), socket: path.join(dir, 'run-kms', 'kms.sock') });
  d = await startDaemon({
    stateDir: path.join(dir, 'd'),
    socket: path.join(dir, 'run-d', 'control.sock'),
    args: ['--kms-socket', kms.socket, '--ceph-conf', ceph.conf, '--ceph-pool', ceph.pool, '--ceph-id', ceph.id, '--ceph-timeout', String(TIMEOUT_S), '--host-id', 'h1'],
  });
}, 240_000);

afterAll(async () => {
  await guest?.close().catch(() => {});
  await d?.stop('SIGKILL');
  await kms?.stop('SIGKILL');
  await ceph?.destroy();
  cleanup?.();
}, 120_000);

describe('the Ceph cluster\'s data path goes away and comes back', { timeout: 240_000 }, () => {

  it('status shows the Ceph store: pool, host id, reachable', async () => {
    const s = await statusUntil((x) => x.ceph?.reachable !== null, 30_000);
    expect(s.ceph).toMatchObject({ pool: ceph.pool, hostId: 'h1', reachable: true, error: null });
    expect(s.health).toBe('ok');
    expect((await cli('status')).stdout).toMatch(/^ceph: +pool rbd as host h1: reachable$/m);
    vol = await json<VolumeInfo>('volume', 'create', '--size', '64M');
    guest = new QemuIoSession(vol.uri);
    await guest.ready();
    expect(await guest.run('write -P 0x11 0 64k')).toMatch(/wrote 65536/);
    expect(await guest.run('flush')).not.toMatch(/failed/);
  });

  it('OSD stopped: I/O fails with EIO (no hang), the API answers, status says why', async () => {
    await ceph.stopDaemons('osd');
    // Not in the cache: the read needs an OSD.
    expect(await guest!.run('read 32M 64k')).toMatch(/read failed: Input\/output error/);
    // A write may be taken by librbd's cache; its flush needs the OSDs.
    const w = (await guest!.run('write -P 0x22 0 64k')) + (await guest!.run('flush'));
    expect(w).toMatch(/(write|flush) failed: Input\/output error/);

    const s = await statusUntil((x) => x.ceph?.reachable === false, 60_000);
    expect(s.ceph?.reachable).toBe(false);
    expect(s.ceph?.error).toMatch(/\S/);
    expect(s.health).toBe('degraded');
    expect(s.problems.join('; ')).toMatch(/Ceph unreachable \(pool rbd\)/);
    expect((await cli('status')).stdout).toMatch(/^ceph: +pool rbd as host h1: unreachable \(.+\)$/m);
    // The daemon keeps serving what it knows.
    expect((await json<VolumeInfo[]>('volume', 'list')).map((v) => v.id)).toContain(vol.id);
  });

  it('OSD back: the same connection’s I/O works again, status says reachable', async () => {
    await ceph.resume();
    const s = await statusUntil((x) => x.ceph?.reachable === true, 90_000);
    expect(s.ceph?.reachable).toBe(true);
    expect(s.health).toBe('ok');
    let out = '';
    // The OSD may take a moment after the mon to serve again: retry briefly.
    for (let i = 0; i < 10; i++) {
      out = (await guest!.run('write -P 0x33 0 64k')) + (await guest!.run('flush'));
      if (!/failed/.test(out)) break;
    }
    expect(out).not.toMatch(/failed/);
    expect(await guest!.run('read -P 0x33 0 64k')).not.toMatch(/failed/);
    expect(await guest!.run('read -P 0 32M 64k')).not.toMatch(/failed/);
  });
});

describe('the whole cluster (mon, mgr and OSD) stops and starts again', { timeout: 300_000 }, () => {
  it('stopped: I/O fails with EIO, status says unreachable; started: the same connection works, listing and new volumes too', async () => {
    await ceph.stop();
    const w = (await guest!.run('write -P 0x44 0 64k')) + (await guest!.run('flush'));
    expect(w).toMatch(/(write|flush) failed: Input\/output error/);
    expect((await statusUntil((x) => x.ceph?.reachable === false, 60_000)).ceph?.reachable).toBe(false);

    await ceph.resume();
    expect((await statusUntil((x) => x.ceph?.reachable === true, 120_000)).ceph?.reachable).toBe(true);
    let out = '';
    for (let i = 0; i < 20; i++) {
      out = (await guest!.run('write -P 0x55 0 64k')) + (await guest!.run('flush'));
      if (!/failed/.test(out)) break;
    }
    expect(out).not.toMatch(/failed/);
    expect(await guest!.run('read -P 0x55 0 64k')).not.toMatch(/failed/);
    // The listing connection found the cluster again too: a new volume shows up in the list.
    const v2 = await json<VolumeInfo>('volume', 'create', '--size', '16M');
    expect((await json<VolumeInfo[]>('volume', 'list')).map((v) => v.id)).toEqual(expect.arrayContaining([vol.id, v2.id]));
  });
});
