/**
 * Encrypted volumes on a real one-node Ceph: EncryptedBackend over RbdBackend served by the real
 * NbdServer, driven by qemu-io and fio over both data planes (the native lane does librbd aio
 * from its own thread). Ceph must see ciphertext only: the OSD's block file is scanned for a
 * canary and for key bytes (a positive control proves the scan finds what is there).
 * base:allocation comes from rbd_diff_iterate2: `qemu-img map` sees written objects as data and
 * the rest as zero holes, and a clone counts its parent's data.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RbdCluster, type RbdCluster as Cluster } from '../../src/native/addon.js';
import { NbdServer } from '../../src/nbd/server.js';
import { StaticCatalog, type NbdExport } from '../../src/nbd/exports.js';
import { ExportIoStats } from '../../src/nbd/io-stats.js';
import { EncryptedBackend } from '../../src/volume/encrypted-backend.js';
import { RbdBackend } from '../../src/volume/rbd-backend.js';
import { createLogger } from '../../src/log/logger.js';
import { startCeph, type CephCluster } from '../helpers/ceph.js';
import { ROOT, tempDir } from '../helpers/nitride.js';
import { run, runOk } from '../helpers/run.js';
import { QemuIoSession } from '../helpers/qemu-io.js';
import { randomKey } from '../volume/helpers.js';
import { scanTree } from '../helpers/scan.js';

const SIZE = 64 << 20;
const CANARY = 'NITRIDE-RBD-CANARY-7f3a9c1e5b';
let ceph: CephCluster;
let cluster: Cluster;
let backend: EncryptedBackend;
let keyCopy: Buffer;
let dir: string;
let cleanup: () => void;
const servers: NbdServer[] = [];
const lanes = { seen: false };

const vol: NbdExport = {
  name: 'vol',
  stats: new ExportIoStats(),
  describe: () => ({ size: backend.size, capabilities: backend.capabilities }),
  open: async () => ({ backend, release: async () => {} }),
};

/** Exports of the base:allocation test, each a fresh image (open() attaches the backend set for it). */
const mapped = new Map<string, EncryptedBackend>();
const mappedExport = (name: string): NbdExport => ({
  name,
  stats: new ExportIoStats(),
  describe: () => ({ size: mapped.get(name)!.size, capabilities: mapped.get(name)!.capabilities }),
  open: async () => ({ backend: mapped.get(name)!, release: async () => {} }),
});

const threadNames = () => readdirSync('/proc/self/task').map((t) => readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim());

async function serve(dataPlane: 'native' | 'js'): Promise<string> {
  const server = new NbdServer({ catalog: new StaticCatalog([vol, mappedExport('map'), mappedExport('map-clone')]), logger: createLogger({ level: 'silent' }), dataPlane });
  const socket = path.join(dir, `${dataPlane}-${servers.length}.sock`);
  await server.listenUnix(socket);
  servers.push(server);
  return `nbd+unix:///vol?socket=${socket}`;
}

beforeAll(async () => {
  ({ dir, cleanup } = tempDir('nitride-rbd-'));
  ceph = await startCeph();
  cluster = await RbdCluster.connect({ conf: ceph.conf, id: ceph.id, pool: ceph.pool, timeoutSeconds: 20 });
  await cluster.create('vol-enc', SIZE);
  const key = randomKey();
  keyCopy = Buffer.from(key);
  backend = new EncryptedBackend(new RbdBackend(await cluster.open('vol-enc'), 'rbd/vol-enc'), key);
}, 240_000);

afterAll(async () => {
  for (const s of servers) await s.close().catch(() => {});
  await backend?.close().catch(() => {});
  for (const b of mapped.values()) await b.close().catch(() => {});
  await cluster?.close().catch(() => {});
  await ceph?.destroy();
  cleanup?.();
}, 180_000);

describe('encrypted volume on RBD over NBD', { timeout: 180_000 }, () => {
  for (const plane of ['native', 'js'] as const) {
    it(`qemu-io patterns read back (${plane} data plane)`, async () => {
      const uri = await serve(plane);
      const base = plane === 'native' ? 0 : 32 << 20;
      const seen = setInterval(() => threadNames().includes('nitride-nbd') && (lanes.seen = true), 10);
      const out = await runOk('qemu-io', ['-f', 'raw', uri,
        '-c', `write -P 0xab ${base} 1M`, '-c', `write -P 0x11 ${base + 1536} 512`, '-c', `write -z ${base + (2 << 20)} 64k`, '-c', 'flush',
        '-c', `read -P 0xab ${base} 1536`, '-c', `read -P 0x11 ${base + 1536} 512`, '-c', `read -P 0xab ${base + 2048} 1046528`,
        '-c', `read -P 0 ${base + (2 << 20)} 64k`, '-c', `read -P 0 ${base + (4 << 20)} 1M`,
        '-c', `write -P 0x33 ${base + (6 << 20)} 4k`, '-c', `discard ${base + (6 << 20)} 4k`, '-c', `read -P 0 ${base + (6 << 20)} 4k`]);
      clearInterval(seen);
      expect(out).not.toMatch(/Pattern verification failed|error/i);
      if (plane === 'native') expect(lanes.seen).toBe(true);
    });

    it(`fio verify=crc32c at QD16 (${plane} data plane)`, async () => {
      const uri = await serve(plane);
      const r = await run('fio', ['--name=v', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bs=4k', '--size=8M', '--iodepth=16', '--verify=crc32c', '--do_verify=1', '--verify_state_save=0', `--output=${path.join(dir, `fio-${plane}.json`)}`, '--output-format=json']);
      expect(r.code, r.stderr).toBe(0);
      const job = JSON.parse(readFileSync(path.join(dir, `fio-${plane}.json`), 'utf8')).jobs[0];
      expect(job.error).toBe(0);
      expect(job.write.io_bytes).toBe(8 << 20);
    });
  }

  it('replies stay whole and matched with many requests in flight from several connections (native lane)', async () => {
    // librbd's completion threads send replies themselves when nothing is queued ahead, else
    // queue them for the lane thread; 32 reads of up to 256 KiB in flight per connection fill the
    // socket, so replies are also sent in part and finished by the lane thread. A torn or
    // misordered reply fails libnbd's reply parsing or fio's crc32c check.
    const uri = await serve('native');
    const out = path.join(dir, 'fio-many.json');
    const r = await run('fio', ['--name=m', '--ioengine=nbd', `--uri=${uri}`, '--rw=write', '--bsrange=4k-256k', '--offset=40M', '--size=4M',
      '--offset_increment=4M', '--numjobs=4', '--iodepth=32', '--verify=crc32c', '--do_verify=1', '--verify_backlog=64', '--verify_state_save=0',
      `--output=${out}`, '--output-format=json']);
    expect(r.code, r.stderr).toBe(0);
    const jobs = JSON.parse(readFileSync(out, 'utf8')).jobs as { error: number; write: { io_bytes: number }; read: { io_bytes: number } }[];
    expect(jobs).toHaveLength(4);
    for (const job of jobs) {
      expect(job.error).toBe(0);
      expect(job.write.io_bytes).toBe(4 << 20);
      expect(job.read.io_bytes).toBeGreaterThanOrEqual(4 << 20);
    }
  });

  it('a QD1 request sleeps the lane thread once: a completion that sent its reply itself does not wake it (native lane)', async () => {
    // The lane thread sleeps in poll while a librbd request is in flight. Before, every completion
    // woke it through its eventfd only for it to find nothing to do and sleep again: two sleeps
    // (voluntary context switches) per request instead of one.
    const uri = await serve('native');
    const lanesNow = () => new Set(readdirSync('/proc/self/task').filter((t) => readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim() === 'nitride-nbd'));
    const before = lanesNow();
    const session = new QemuIoSession(uri);
    try {
      await session.ready();
      await session.run('read 0 4k');
      const [tid] = [...lanesNow()].filter((t) => !before.has(t));
      expect(tid).toBeDefined();
      const sleeps = () => Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/self/task/${tid}/status`, 'utf8'))![1]);
      const n = 20;
      const s0 = sleeps();
      for (let i = 0; i < n; i++) {
        expect(await session.run(`read -P 0 ${(8 << 20) + i * 4096} 4k`)).not.toMatch(/fail|error/i);
        await new Promise((r) => setTimeout(r, 20)); // a completion's late wake-up, if any, has come and gone
      }
      expect(sleeps() - s0).toBeLessThanOrEqual(n * 1.5);
    } finally {
      await session.close();
    }
  });

  it('an image closed with aio in flight leaves the connection serving (its last share never closes it on a librbd thread)', async () => {
    // rbd_close on a librbd completion thread waits for that thread: before the fix, a round
    // where the completion held the last share hung every image of the connection.
    await cluster.create('closing', 1 << 20);
    for (let round = 0; round < 30; round++) {
      const img = await cluster.open('closing');
      const data = Buffer.alloc(4096, round);
      const ios = Array.from({ length: 16 }, (_, i) => img.write(i * 4096, data));
      ios.push(img.flush());
      await Promise.all([img.close(), ...ios]);
    }
    const img = await cluster.open('closing');
    const back = Buffer.alloc(4096);
    await img.read(15 * 4096, back);
    await img.close();
    expect(back.equals(Buffer.alloc(4096, 29))).toBe(true);
  });

  it('base:allocation from rbd_diff_iterate2: written objects are data, the rest zero holes; a clone counts its parent’s data', async () => {
    const M = 1 << 20;
    const key = randomKey();
    const cloneKey = Buffer.from(key);
    await cluster.create('map', SIZE);
    mapped.set('map', new EncryptedBackend(new RbdBackend(await cluster.open('map'), 'rbd/map'), key));
    const uri = (await serve('native')).replace('///vol?', '///map?');
    const out = await runOk('qemu-io', ['-f', 'raw', uri,
      '-c', 'write -P 0x5c 0 1M', '-c', `write -P 0x5d ${20 * M} 4k`, '-c', `write -P 0x5e ${40 * M} 4M`, '-c', `discard ${40 * M} 4M`, '-c', 'flush',
      '-c', `read -P 0 ${8 * M} 1M`, '-c', `read -P 0 ${40 * M} 4M`, '-c', `read -P 0x5d ${20 * M} 4k`]);
    expect(out).not.toMatch(/Pattern verification failed|error/i);
    // Whole RBD objects (4 MiB): the two written ones are data; never written and discarded ones are holes.
    const dataRuns = async (u: string) => {
      const map = JSON.parse(await runOk('qemu-img', ['map', '--output=json', '-f', 'raw', u])) as Array<{ start: number; length: number; data: boolean; zero: boolean }>;
      expect(map.filter((e) => !e.data).every((e) => e.zero)).toBe(true);
      expect(map.reduce((n, e) => n + e.length, 0)).toBe(SIZE);
      return map.filter((e) => e.data).map((e) => [e.start / M, e.length / M]);
    };
    expect(await dataRuns(uri)).toEqual([[0, 4], [20, 4]]);

    // A clone of a snapshot: the parent's objects are its data too (include_parent), its own writes add to them.
    const snap = await cluster.open('map');
    await snap.snapCreate('s1');
    await snap.close();
    await cluster.clone('map', 's1', 'map-clone');
    mapped.set('map-clone', new EncryptedBackend(new RbdBackend(await cluster.open('map-clone'), 'rbd/map-clone'), cloneKey));
    const cloneUri = uri.replace('///map?', '///map-clone?');
    await runOk('qemu-io', ['-f', 'raw', cloneUri, '-c', `write -P 0x6f ${60 * M} 4k`, '-c', 'flush', '-c', 'read -P 0x5c 0 1M']);
    expect(await dataRuns(cloneUri)).toEqual([[0, 4], [20, 4], [60, 4]]);
    expect(await dataRuns(uri)).toEqual([[0, 4], [20, 4]]);
  });

  it('a script whose only pending work is an rbd write waits for it (node is kept up while aio is in flight)', async () => {
    await cluster.create('exit-wait', 1 << 20);
    const script = path.join(dir, 'exit-wait.mjs');
    writeFileSync(script, [
      `const { RbdCluster } = await import(${JSON.stringify(pathToFileURL(path.join(ROOT, 'dist/native/addon.js')).href)});`,
      `const c = await RbdCluster.connect(${JSON.stringify({ conf: ceph.conf, id: ceph.id, pool: ceph.pool, timeoutSeconds: 20 })});`,
      `const img = await c.open('exit-wait');`,
      `await img.write(0, Buffer.alloc(4096, 7));`,
      `await img.close();`,
      `await c.close();`,
      `console.log('settled');`,
    ].join('\n'));
    const r = await run(process.execPath, [script]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('settled');
  });

  it('Ceph holds ciphertext only: no canary, no key bytes in the OSD store; a plaintext canary is found', async () => {
    const uri = await serve('native');
    const canary = Buffer.alloc(4096, 0);
    for (let i = 0; i < 4096 - CANARY.length; i += 64) canary.write(CANARY, i);
    const file = path.join(dir, 'canary.bin');
    writeFileSync(file, canary);
    await runOk('qemu-io', ['-f', 'raw', uri, '-c', `write -s ${file} 8M 4k`, '-c', 'flush']);
    // Positive control: the same canary, unencrypted, in another image.
    await cluster.create('plain', 1 << 20);
    const plain = await cluster.open('plain');
    await plain.write(0, Buffer.from(`PLAIN-${CANARY}`.padEnd(4096, '.')));
    await plain.flush();
    await plain.close();
    // The OSD's data, its RocksDB (object metadata and the WAL) and the mon's store, at rest.
    await ceph.stop();
    const [hits, plainHits, key1, key2] = scanTree(ceph.dir, [Buffer.from(CANARY), Buffer.from(`PLAIN-${CANARY}`), keyCopy.subarray(0, 16), keyCopy.subarray(32, 48)]);
    expect(plainHits).toBeGreaterThan(0);
    expect(hits).toBe(plainHits); // every canary found is the control's
    expect([key1, key2]).toEqual([0, 0]);
    await ceph.resume();
  }, 180_000);
});
