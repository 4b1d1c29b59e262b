/**
 * ebs volumes on Ceph RBD with two real daemons ("hosts": two state directories sharing one
 * KMS over its Unix socket until the network KMS lands) and a real one-node cluster: a volume
 * created on A is listed on B from the image's metadata, written on A, detached, and read back
 * and fio-verified on B (whose `qemu-img map` shows A's writes as data, the rest as holes); a
 * hostile record in the pool is ignored and counted. Snapshots: taken on A, listed and cloned on
 * B; the clone reads the snapshot's data, the parent its newer data.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SnapshotInfo } from '../../src/api/snapshots.js';
import type { VolumeInfo } from '../../src/api/volumes.js';
import type { CephCluster } from '../helpers/ceph.js';
import { startCephHosts, type CephHosts } from '../helpers/ceph-hosts.js';
import type { RunningDaemon } from '../helpers/nitride.js';
import { run, runOk } from '../helpers/run.js';

let hosts: CephHosts;
let ceph: CephCluster;
let a: RunningDaemon;
let b: RunningDaemon;
let dir: string;

const cli = (d: RunningDaemon, ...args: string[]) => hosts.cli(d, ...args);
const json = <T>(d: RunningDaemon, ...args: string[]) => hosts.json<T>(d, ...args);

beforeAll(async () => {
  hosts = await startCephHosts('nitride-rbd-hosts-');
  ({ ceph, dir } = hosts);
  [a, b] = await Promise.all([hosts.host('a'), hosts.host('b')]);
}, 240_000);

afterAll(async () => {
  await hosts?.destroy();
}, 120_000);

describe('ebs volumes on RBD across two hosts', { timeout: 180_000 }, () => {
  let vol: VolumeInfo;

  it('a volume created on A lives in the pool, with its record in the image metadata', async () => {
    vol = await json<VolumeInfo>(a, 'volume', 'create', '--size', '64M', '--name', 'db');
    expect(vol.store).toBe('rbd');
    expect((await ceph.rbd('ls', ceph.pool)).split('\n')).toContain(vol.id);
    const meta = JSON.parse(await ceph.rbd('image-meta', 'get', `${ceph.pool}/${vol.id}`, 'nitride.volume'));
    expect(meta).toMatchObject({ id: vol.id, type: 'ebs', size: 64 << 20, name: 'db', cipher: 'aes-256-xts', dataUnitSize: 4096, store: 'rbd' });
    expect(meta.kms.keyId).toBe(vol.encryption.kmsKeyId);
    expect(typeof meta.kms.wrappedKey).toBe('string');
    // A local file volume still works beside it.
    const local = await json<VolumeInfo>(a, 'volume', 'create', '--size', '4M', '--store', 'local');
    expect(local.store).toBe('local');
  });

  it('volume list on B shows the volume created on A, with the same record', async () => {
    const onB = (await json<VolumeInfo[]>(b, 'volume', 'list')).find((v) => v.id === vol.id);
    expect(onB).toBeDefined();
    const strip = ({ uri: _u, tcpUri: _t, state: _s, attachments: _a, throttled: _th, ...rest }: VolumeInfo) => rest;
    expect(strip(onB!)).toEqual(strip(vol));
  });

  it('written on A and detached, read back and fio-verified on B', async () => {
    await runOk('qemu-io', ['-f', 'raw', vol.uri, '-c', 'write -P 0x5c 0 2M', '-c', 'write -P 0xa1 10M 4k', '-c', 'flush']);
    const onB = await json<VolumeInfo>(b, 'volume', 'describe', vol.id);
    expect(onB.state).toBe('available');
    await runOk('qemu-io', ['-f', 'raw', onB.uri, '-c', 'read -P 0x5c 0 2M', '-c', 'read -P 0xa1 10M 4k', '-c', 'read -P 0 12M 1M']);
    // base:allocation through B's daemon (rbd_diff_iterate2, whole 4 MiB objects): A's writes are data, the rest zero holes.
    const map = JSON.parse(await runOk('qemu-img', ['map', '--output=json', '-f', 'raw', onB.uri])) as Array<{ start: number; length: number; data: boolean; zero: boolean }>;
    expect(map.filter((e) => e.data).map((e) => [e.start / (1 << 20), e.length / (1 << 20)])).toEqual([[0, 4], [8, 4]]);
    expect(map.filter((e) => !e.data).every((e) => e.zero)).toBe(true);
    const out = path.join(dir, 'fio.json');
    const r = await run('fio', ['--name=v', '--ioengine=nbd', `--uri=${onB.uri}`, '--offset=16M', '--rw=randwrite', '--bs=4k', '--size=8M', '--iodepth=16', '--verify=crc32c', '--do_verify=1', '--verify_state_save=0', `--output=${out}`, '--output-format=json']);
    expect(r.code, r.stderr).toBe(0);
    // And A reads what B wrote.
    await runOk('qemu-io', ['-f', 'raw', vol.uri, '-c', 'read -P 0x5c 0 2M']);
  });

  it('a hostile record in the pool is ignored and counted; the daemon keeps serving', async () => {
    const bogus = 'vol-0123456789abcdef0';
    await ceph.rbd('create', `${ceph.pool}/${bogus}`, '--size', '4M');
    await ceph.rbd('image-meta', 'set', `${ceph.pool}/${bogus}`, 'nitride.volume', '{"format":1,"id":"vol-ffffffffffffffff0","type":"ebs"}');
    const list = await json<VolumeInfo[]>(b, 'volume', 'list');
    expect(list.map((v) => v.id)).not.toContain(bogus);
    expect(list.map((v) => v.id)).toContain(vol.id);
    const metrics = await cli(b, 'metrics');
    expect(metrics.stdout).toMatch(/^nitride_rbd_bad_records_total 1$/m);
  });

  it('delete on A removes the image; B forgets it', async () => {
    const del = await cli(a, 'volume', 'delete', vol.id);
    expect(del.code, del.stderr).toBe(0);
    expect((await ceph.rbd('ls', ceph.pool)).split('\n')).not.toContain(vol.id);
    expect((await json<VolumeInfo[]>(b, 'volume', 'list')).map((v) => v.id)).not.toContain(vol.id);
  });
});

describe('snapshots and clones of rbd volumes', { timeout: 180_000 }, () => {
  it('snapshot on A, clone on B: the clone has the snapshot’s data and its own key wrap; the parent keeps its newer data', async () => {
    const vol = await json<VolumeInfo>(a, 'volume', 'create', '--size', '32M', '--name', 'parent');
    await runOk('qemu-io', ['-f', 'raw', vol.uri, '-c', 'write -P 0x11 0 1M', '-c', 'write -P 0x12 20M 64k', '-c', 'flush']);
    const snap = await json<SnapshotInfo>(a, 'snapshot', 'create', vol.id, '--name', 'before');
    expect(snap).toMatchObject({ volumeId: vol.id, name: 'before', size: 32 << 20 });
    expect(snap.id).toMatch(/^snap-[0-9a-f]{17}$/);
    await runOk('qemu-io', ['-f', 'raw', vol.uri, '-c', 'write -P 0x22 0 1M', '-c', 'flush']);

    expect((await json<SnapshotInfo[]>(b, 'snapshot', 'list')).map((s) => s.id)).toContain(snap.id);
    const clone = await json<VolumeInfo>(b, 'volume', 'create', '--from-snapshot', snap.id, '--name', 'restored');
    expect(clone).toMatchObject({ store: 'rbd', size: 32 << 20, name: 'restored' });
    expect(clone.encryption.kmsKeyId).toBe(vol.encryption.kmsKeyId);
    // The same data key, wrapped anew under the clone's own context.
    const wrapped = async (id: string) => JSON.parse(await ceph.rbd('image-meta', 'get', `${ceph.pool}/${id}`, 'nitride.volume')).kms.wrappedKey as string;
    expect(await wrapped(clone.id)).not.toBe(await wrapped(vol.id));

    await runOk('qemu-io', ['-f', 'raw', clone.uri, '-c', 'read -P 0x11 0 1M', '-c', 'read -P 0x12 20M 64k', '-c', 'write -P 0x33 0 4k', '-c', 'flush']);
    const parentOut = await runOk('qemu-io', ['-f', 'raw', vol.uri, '-c', 'read -P 0x22 0 1M', '-c', 'read -P 0x12 20M 64k']);
    expect(parentOut).not.toMatch(/failed/);
    const cloneOut = await runOk('qemu-io', ['-f', 'raw', clone.uri, '-c', 'read -P 0x33 0 4k', '-c', 'read -P 0x11 4k 1020k']);
    expect(cloneOut).not.toMatch(/failed/);

    const busy = await cli(a, 'volume', 'delete', vol.id);
    expect(busy.code).not.toBe(0);
    expect(busy.stderr).toContain(`volume ${vol.id} has snapshots (${snap.id}); delete them first`);
    // A snapshot with a clone is not deleted (the clone needs it); without, it goes.
    const refused = await cli(a, 'snapshot', 'delete', snap.id);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/has volumes created from it; delete them first/);
    expect((await cli(b, 'volume', 'delete', clone.id)).code).toBe(0);
    const del = await cli(a, 'snapshot', 'delete', snap.id);
    expect(del.code, del.stderr).toBe(0);
    expect((await json<SnapshotInfo[]>(a, 'snapshot', 'list')).map((s) => s.id)).not.toContain(snap.id);
    expect(await ceph.rbd('snap', 'ls', `${ceph.pool}/${vol.id}`)).not.toContain(snap.id);
    expect((await cli(a, 'volume', 'delete', vol.id)).code).toBe(0);
  });
});
