/**
 * One writer at a time across hosts, on a real one-node Ceph with two real daemons ("hosts" A
 * and B: two state directories, --host-id host-a/host-b, one KMS) and real NBD clients:
 * - A attached: B's attach is refused naming host-a; `volume describe` on B shows the holder.
 * - A alive, B takes over with `volume detach --force`: every write A flushed is on B, and A's
 *   next writes fail (its Ceph client is blocklisted).
 * - A's daemon killed (-9) mid-write: B forces, every write A flushed is there.
 */
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DetachVolumeResult, VolumeInfo } from '../../src/api/volumes.js';
import type { CephCluster } from '../helpers/ceph.js';
import { startCephHosts, type CephHosts } from '../helpers/ceph-hosts.js';
import type { RunningDaemon } from '../helpers/nitride.js';
import { QemuIoSession } from '../helpers/qemu-io.js';
import { run, runOk } from '../helpers/run.js';

let hosts: CephHosts;
let ceph: CephCluster;
let a: RunningDaemon;
let b: RunningDaemon;
const sessions: QemuIoSession[] = [];

const cli = (d: RunningDaemon, ...args: string[]) => hosts.cli(d, ...args);
const json = <T>(d: RunningDaemon, ...args: string[]) => hosts.json<T>(d, ...args);
function session(uri: string): QemuIoSession {
  const s = new QemuIoSession(uri);
  sessions.push(s);
  return s;
}

beforeAll(async () => {
  hosts = await startCephHosts('nitride-rbd-fence-');
  ({ ceph } = hosts);
  [a, b] = await Promise.all([hosts.host('a', ['--host-id', 'host-a']), hosts.host('b', ['--host-id', 'host-b'])]);
}, 240_000);

afterAll(async () => {
  for (const s of sessions) await s.close().catch(() => {});
  await hosts?.destroy();
}, 120_000);

describe('one writer at a time across hosts', { timeout: 180_000 }, () => {
  let vol: VolumeInfo;
  let onA: QemuIoSession;

  it('A attached: B is refused naming host-a, and describe on B shows the holder', async () => {
    vol = await json<VolumeInfo>(a, 'volume', 'create', '--size', '64M');
    onA = session(vol.uri);
    await onA.ready();
    expect(await onA.run('write -P 0x5a 0 1M')).toMatch(/wrote 1048576/);
    expect(await onA.run('flush')).not.toMatch(/failed/);

    const uriB = (await json<VolumeInfo>(b, 'volume', 'describe', vol.id)).uri;
    const refused = await run('qemu-io', ['-f', 'raw', uriB, '-c', 'read 0 4k']);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(new RegExp(`${vol.id} is attached on host host-a \\(Ceph client\\.\\d+ at [^)]+\\)`));

    const described = await json<VolumeInfo>(b, 'volume', 'describe', vol.id);
    expect(described.holder).toMatchObject({ host: 'host-a', client: expect.stringMatching(/^client\.\d+$/) });
    expect(described.state).toBe('in-use');
    const text = await cli(b, 'volume', 'describe', vol.id);
    expect(text.stdout).toMatch(/^holder: +host host-a \(client\.\d+ at /m);

    // Without --force, detach only names the holder.
    const plain = await cli(b, 'volume', 'detach', vol.id);
    expect(plain.code).not.toBe(0);
    expect(plain.stderr).toMatch(/attached on host host-a .*--force fences/);
    expect(plain.stderr).not.toMatch(/\n\s+at /); // one line, no stack
  });

  it('B takes over with --force while A lives: A’s flushed writes are there, A’s later writes fail', async () => {
    const holder = (await json<VolumeInfo>(b, 'volume', 'describe', vol.id)).holder!;
    const r = await json<DetachVolumeResult>(b, 'volume', 'detach', '--force', vol.id);
    expect(r.fenced).toEqual([holder]);
    // Blocklisted for days (FENCE_SECONDS), not librbd's default hour.
    const entry = (await ceph.ceph('osd', 'blocklist', 'ls')).split('\n').find((l) => l.startsWith(holder.address));
    expect(entry, await ceph.ceph('osd', 'blocklist', 'ls')).toBeDefined();
    expect(Date.parse(entry!.split(' ')[1]!.replace(/\+0000$/, 'Z')) - Date.now()).toBeGreaterThan(2 * 86400_000);
    expect((await json<VolumeInfo>(b, 'volume', 'describe', vol.id)).holder).toBeNull();

    const onB = session((await json<VolumeInfo>(b, 'volume', 'describe', vol.id)).uri);
    await onB.ready();
    expect(await onB.run('read -P 0x5a 0 1M')).toMatch(/read 1048576/);
    expect((await json<VolumeInfo>(a, 'volume', 'describe', vol.id)).holder).toMatchObject({ host: 'host-b' });

    // A's client is fenced: the write may land in librbd's cache, its flush cannot reach the OSDs.
    const late = (await onA.run('write -P 0xee 0 4k')) + (await onA.run('flush'));
    expect(late).toMatch(/(write|flush) failed: Input\/output error/);
    expect(await onB.run('read -P 0x5a 0 1M')).not.toMatch(/failed/);
    await onB.close();
    await onA.close();
  });

  it('A killed mid-write: B forces and finds every write A flushed', async () => {
    const v = await json<VolumeInfo>(a, 'volume', 'create', '--size', '64M');
    // 4k writes at successive offsets, each flushed; line-buffered so progress is visible at once.
    const N = 3000;
    const cmds = Array.from({ length: N }, (_, i) => ['-c', `write -P ${(i % 250) + 1} ${i * 4096} 4k`, '-c', 'flush']).flat();
    const writer = spawn('stdbuf', ['-oL', 'qemu-io', '-f', 'raw', v.uri, ...cmds], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    writer.stdout.on('data', (d: Buffer) => (out += d.toString()));
    writer.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const done = new Promise((resolve) => writer.on('exit', resolve));
    const wrote = () => (out.match(/^wrote 4096\/4096/gm) ?? []).length;
    while (wrote() < 20 && writer.exitCode === null) await new Promise((r) => setTimeout(r, 20));
    await a.stop('SIGKILL');
    await done;
    const n = wrote();
    expect(n).toBeGreaterThanOrEqual(20);
    expect(n).toBeLessThan(N); // it was killed mid-write
    // Write k's "wrote" line means the flush after write k-1 succeeded: writes 0..n-2 are flushed.
    const before = out.slice(0, out.lastIndexOf('wrote 4096/4096'));
    expect(before).not.toMatch(/failed/);

    const r = await json<DetachVolumeResult>(b, 'volume', 'detach', '--force', v.id);
    expect(r.fenced.map((h) => h.host)).toEqual(['host-a']);
    const uriB = (await json<VolumeInfo>(b, 'volume', 'describe', v.id)).uri;
    const reads = Array.from({ length: n - 1 }, (_, i) => ['-c', `read -P ${(i % 250) + 1} ${i * 4096} 4k`]).flat();
    const check = await runOk('qemu-io', ['-f', 'raw', uriB, ...reads]);
    expect(check).not.toMatch(/Pattern verification failed|failed/);
    expect((check.match(/^read 4096\/4096/gm) ?? []).length).toBe(n - 1);
  });
});
