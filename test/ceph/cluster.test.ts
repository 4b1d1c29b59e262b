// The one-node cluster the Ceph tests run on: private, on its own port, torn down after.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCeph, type CephCluster } from '../helpers/ceph.js';

describe('one-node Ceph cluster', () => {
  let a: CephCluster;
  let b: CephCluster;
  beforeAll(async () => {
    // Two at once, as two suites on one machine would start them.
    [a, b] = await Promise.all([startCeph(), startCeph()]);
  }, 240_000);
  afterAll(async () => {
    await Promise.all([a?.destroy(), b?.destroy()]);
  }, 60_000);

  it('serves RBD on a port of its own, independent of another cluster', async () => {
    expect(a.monAddr).not.toBe(b.monAddr);
    await a.rbd('create', `${a.pool}/img-a`, '--size', '16M');
    expect((await a.rbd('ls', a.pool)).trim()).toBe('img-a');
    expect((await b.rbd('ls', b.pool)).trim()).toBe('');
  });

  it('destroy removes its directory and ends its daemons', async () => {
    const c = await startCeph();
    const dir = c.dir;
    const run = path.join(dir, 'run');
    const pids = readdirSync(run).filter((f) => f.endsWith('.pid')).map((f) => Number(readFileSync(path.join(run, f), 'utf8')));
    expect(pids.length).toBe(3); // mon, mgr, osd
    await c.destroy();
    expect(existsSync(dir)).toBe(false);
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow();
  }, 240_000);
});
