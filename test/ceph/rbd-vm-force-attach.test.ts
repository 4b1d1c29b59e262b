/**
 * `vm run --force-attach` on a real one-node Ceph with two real daemons ("hosts" A and B, one
 * KMS), a real NBD client holding the volume on A and a real QEMU guest (TCG, the guest of
 * scripts/build-guest.sh) on B:
 * - without the flag, B's `vm run` is refused naming host-a, and no QEMU starts;
 * - with it, A is fenced exactly as by `volume detach --force` (blocklisted, lock broken), the
 *   guest starts holding the volume, A's later writes fail, and the guest reads what A flushed;
 * - `vm start` of that guest (stopped) while a third host C holds the volume: refused the same
 *   way without the flag, and with `--force-attach` C is fenced and the guest boots again.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VmInfo } from '../../src/api/vms.js';
import type { VolumeInfo } from '../../src/api/volumes.js';
import { startCephHosts, type CephHosts } from '../helpers/ceph-hosts.js';
import { waitFor } from '../helpers/netns.js';
import { ROOT, type RunningDaemon } from '../helpers/nitride.js';
import { QemuIoSession } from '../helpers/qemu-io.js';
import { runOk } from '../helpers/run.js';

const canRun = process.getuid?.() === 0 && existsSync('/usr/bin/qemu-system-x86_64') && existsSync('/usr/bin/setpriv');
/** Two guest uids unique to this run (other daemons on the host use their own). */
const UID_BASE = 1_900_000_000 + (randomBytes(3).readUIntBE(0, 3) % 1_000_000) * 4;

let hosts: CephHosts;
let a: RunningDaemon;
let b: RunningDaemon;
let guestDir = '';
let onA: QemuIoSession | undefined;
let onC: QemuIoSession | undefined;
let vol: VolumeInfo;
let taker: VmInfo;
const expected = createHash('sha256').update(Buffer.alloc(1 << 20, 0x5a)).digest('hex');
const consoleOf = (vm: VmInfo) => (existsSync(vm.consoleLog) ? readFileSync(vm.consoleLog, 'utf8') : '');
/** Wait for the guest's verdict on its console (it checks the volume holds 1 MiB of 0x5a). */
async function verdict(vm: VmInfo): Promise<string> {
  let text = '';
  await waitFor('guest verdict', () => /NITRIDE-(PASS|FAIL)/.test((text = consoleOf(vm))), 240_000).catch((err: Error) => {
    throw new Error(`${err.message}\n${text.slice(-3000)}`);
  });
  return text;
}
const cli = (d: RunningDaemon, ...args: string[]) => hosts.cli(d, ...args);
const json = <T>(d: RunningDaemon, ...args: string[]) => hosts.json<T>(d, ...args);

describe.skipIf(!canRun)('vm run --force-attach takes an rbd volume over from another host', { timeout: 300_000 }, () => {
  beforeAll(async () => {
    guestDir = (await runOk(path.join(ROOT, 'scripts/build-guest.sh'), ['--quiet'], { timeoutMs: 600_000 })).trim();
    hosts = await startCephHosts('nitride-rbd-vm-');
    const host = (name: string, uid: number) => hosts.host(name, ['--host-id', `host-${name}`, '--vm-uid-range', `${uid}-${uid}`]);
    [a, b] = await Promise.all([host('a', UID_BASE), host('b', UID_BASE + 1)]);
    for (const f of ['vmlinuz', 'initrd.img']) await json(b, 'image', 'allow', path.join(guestDir, f));
  }, 600_000);

  afterAll(async () => {
    await onA?.close().catch(() => {});
    await onC?.close().catch(() => {});
    const vms = b ? await json<VmInfo[]>(b, 'vm', 'list').catch(() => []) : [];
    for (const vm of vms) if (vm.state === 'running') await cli(b, 'vm', 'stop', '--force', vm.id);
    await hosts?.destroy();
  }, 120_000);

  it('refused naming the holder without the flag; with it A is fenced and B’s guest reads what A flushed', async () => {
    vol = await json<VolumeInfo>(a, 'volume', 'create', '--size', '16M');
    expect(vol.store).toBe('rbd');
    onA = new QemuIoSession(vol.uri);
    await onA.ready();
    expect(await onA.run('write -P 0x5a 0 1M')).toMatch(/wrote 1048576/);
    expect(await onA.run('flush')).not.toMatch(/failed/);

    const run = (name: string, ...extra: string[]) => [
      'vm', 'run', '--name', name, '--kernel', path.join(guestDir, 'vmlinuz'), '--initrd', path.join(guestDir, 'initrd.img'), '--memory', '256M', '--volume', `${vol.id}:boot`,
      '--append', `console=ttyS0 panic=-1 clocksource=hpet nitride.test=verify nitride.ebs=${vol.id} nitride.mib=1 nitride.expect=${expected}`, ...extra,
    ];
    const refused = await cli(b, ...run('plain'));
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(new RegExp(`^nitride: volume ${vol.id} is attached on host host-a \\(Ceph client\\.\\d+ at [^)]+\\); --force-attach fences`));
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect((await json<VmInfo[]>(b, 'vm', 'list')).filter((v) => v.state === 'running')).toEqual([]);
    expect((await json<VolumeInfo>(b, 'volume', 'describe', vol.id)).holder).toMatchObject({ host: 'host-a' });

    const holder = (await json<VolumeInfo>(b, 'volume', 'describe', vol.id)).holder!;
    const vm = (taker = await json<VmInfo>(b, ...run('taker', '--force-attach')));
    expect(vm.state).toBe('running');
    // A is blocklisted (as by volume detach --force) and B's guest holds the volume.
    expect((await hosts.ceph.ceph('osd', 'blocklist', 'ls')).split('\n').some((l) => l.startsWith(holder.address))).toBe(true);
    expect((await json<VolumeInfo>(a, 'volume', 'describe', vol.id)).holder).toMatchObject({ host: 'host-b' });

    // A's client is fenced: the write may land in librbd's cache, its flush cannot reach the OSDs.
    const late = (await onA.run('write -P 0xee 0 4k')) + (await onA.run('flush'));
    expect(late).toMatch(/(write|flush) failed: Input\/output error/);

    const text = await verdict(vm);
    expect(text).toContain(`NITRIDE-VERIFIED vol=${vol.id} sha256=${expected}`);
    expect(text).toMatch(/NITRIDE-PASS/);
  });

  it('vm start of the stopped guest while host C holds the volume: refused naming host-c; --force-attach fences C and the guest boots', async () => {
    // The verify guest powers off after its verdict: the VM stops, its volume detaches.
    await waitFor('the guest to stop', async () => (await json<VmInfo>(b, 'vm', 'describe', taker.id)).state === 'stopped', 120_000);
    const c = await hosts.host('c', ['--host-id', 'host-c']);
    const onHostC = (await json<VolumeInfo>(c, 'volume', 'describe', vol.id)).uri;
    onC = new QemuIoSession(onHostC);
    await onC.ready();
    expect(await onC.run('write -P 0x5a 0 1M')).toMatch(/wrote 1048576/);
    expect(await onC.run('flush')).not.toMatch(/failed/);

    const refused = await cli(b, 'vm', 'start', 'taker');
    expect(refused.code).not.toBe(0);
    expect(refused.stderr.trim()).toMatch(new RegExp(`^nitride: volume ${vol.id} is attached on host host-c \\(Ceph client\\.\\d+ at [^)]+\\); --force-attach fences[^\\n]*$`));
    expect((await json<VmInfo>(b, 'vm', 'describe', 'taker')).state).toBe('stopped');

    const started = await json<VmInfo>(b, 'vm', 'start', 'taker', '--force-attach');
    expect(started).toMatchObject({ id: taker.id, state: 'running' });
    expect((await json<VolumeInfo>(c, 'volume', 'describe', vol.id)).holder).toMatchObject({ host: 'host-b' });
    const text = await verdict(started);
    expect(text).toContain(`NITRIDE-VERIFIED vol=${vol.id} sha256=${expected}`);
    expect(text).toMatch(/NITRIDE-PASS/);
  });
});
