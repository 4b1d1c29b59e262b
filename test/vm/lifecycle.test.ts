/**
 * A VM's lifecycle with a real QEMU (TCG, the guest of scripts/build-guest.sh) on one host (a
 * network namespace with its KMS and daemon): `vm run`, `vm stop`, `vm start` boots the same
 * spec again; the serial console rotates at a lowered cap (4K × 2) and `vm console --previous N`
 * shows the rotated files; `--start-timeout` ends a
 * QEMU that cannot get past its start (its disk's key held up: the KMS is paused) and leaves
 * nothing running. Two guest boots in all.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VmInfo } from '../../src/api/vms.js';
import type { VolumeInfo } from '../../src/api/volumes.js';
import { tempDir } from '../helpers/nitride.js';
import { NsLab, waitFor, type NsHost } from '../helpers/netns.js';
import { startGuestHost, stopGuestHost } from '../helpers/guest-host.js';

const canRun = process.getuid?.() === 0 && existsSync('/usr/bin/qemu-system-x86_64') && existsSync('/dev/net/tun') && existsSync('/usr/bin/setpriv');

const prefix = 'ntl' + randomBytes(3).toString('hex');
const VPC_ID = 'vpc-0e5e00000000000c1';
const SUBNET_ID = 'subnet-0e5e00000000000c1';
const ENI = { id: 'eni-0e5e00000000000e1', mac: '02:00:5e:40:00:01', ip: '172.31.11.10' };
const UID_BASE = 1_910_000_000 + (randomBytes(3).readUIntBE(0, 3) % 1_000_000) * 4;
const ZERO_MIB_SHA = createHash('sha256').update(Buffer.alloc(1 << 20)).digest('hex');

const scratch = tempDir('nitride-vmlife-');
const lab = new NsLab(prefix, scratch.dir);
let host: NsHost;
let guestDir = '';
const vols: Record<string, VolumeInfo> = {};

/** <vm dir>: consoleLog is <vm dir>/root/run/console.log; old files are <vm dir>/console.log.N. */
const vmDirOf = (vm: VmInfo) => path.dirname(path.dirname(path.dirname(vm.consoleLog)));
const read = (f: string) => (existsSync(f) ? readFileSync(f, 'utf8') : '');
/** The console as kept: oldest rotated file first, the live one last. */
function keptConsole(vm: VmInfo): string {
  return [2, 1].map((n) => read(path.join(vmDirOf(vm), `console.log.${n}`))).join('') + read(vm.consoleLog);
}

function guestArgs(name: string, vol: string, extra: string[]): string[] {
  const append = `console=ttyS0 panic=-1 clocksource=hpet nitride.test=verify nitride.ebs=${vol} nitride.mib=1 nitride.expect=${ZERO_MIB_SHA} nitride.after=idle`;
  return ['vm', 'run', '--name', name, '--kernel', path.join(guestDir, 'vmlinuz'), '--initrd', path.join(guestDir, 'initrd.img'), '--memory', '256M', '--append', append, '--volume', `${vol}:boot`, ...extra];
}

/** The pid of this host's KMS (found by its socket on its command line). */
function kmsPid(): number {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = read(`/proc/${entry}/cmdline`).split('\0');
    if (cmdline.includes('serve') && cmdline.includes(host.kmsSocket)) return Number(entry);
  }
  throw new Error('KMS process not found');
}

async function oneLineError(args: string[], pattern: RegExp): Promise<void> {
  const r = await host.cli(args);
  expect(r.code, r.stderr).not.toBe(0);
  expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
  expect(r.stderr).toMatch(pattern);
}

describe.skipIf(!canRun)('VM lifecycle: run, stop, start; console rotation; start timeout', () => {
  beforeAll(async () => {
    ({ host, guestDir } = await startGuestHost(lab, ['--vm-uid-range', `${UID_BASE}-${UID_BASE + 1}`, '--vm-console-max', '4K', '--vm-console-keep', '2'], { vpcId: VPC_ID, subnetId: SUBNET_ID, subnetCidr: '172.31.11.0/24' }));
    await host.json(['eni', 'create', '--subnet', SUBNET_ID, '--id', ENI.id, '--mac', ENI.mac, '--ip', ENI.ip]);
    for (const n of ['data', 'slow']) vols[n] = await host.json<VolumeInfo>(['volume', 'create', '--size', '16M', '--name', n]);
  }, 600_000);

  afterAll(() => stopGuestHost(host, lab, scratch), 60_000);

  it('bad input: one line, non-zero exit, nothing started', async () => {
    await oneLineError(guestArgs('bad', vols['data']!.id, ['--start-timeout', '0']), /^nitride: --start-timeout must be a whole number of seconds from 1 to 600, got '0'$/m);
    await oneLineError(guestArgs('bad', vols['data']!.id, ['--start-timeout', '10m']), /^nitride: --start-timeout must be a whole number of seconds from 1 to 600, got '10m'$/m);
    await oneLineError(['vm', 'start', 'nosuch'], /^nitride: no VM nosuch$/m);
    expect(await host.json<VmInfo[]>(['vm', 'list'])).toEqual([]);
  });

  it('vm run, vm stop, vm start: the same id, volumes and ENI boot again under a new QEMU; the console rotates at its cap', async () => {
    const first = await host.json<VmInfo>([...guestArgs('lc', vols['data']!.id, ['--eni', ENI.id, '--start-timeout', '120'])]);
    expect(first.state).toBe('running');
    let text = '';
    await waitFor('first boot', () => /NITRIDE-(PASS|FAIL)/.test((text = keptConsole(first))), 300_000).catch((err: Error) => {
      throw new Error(`${err.message}; console:\n${text.slice(-3000)}`);
    });
    expect(text, text.slice(-3000)).toContain('NITRIDE-PASS');
    expect(text).toContain(`NITRIDE-VERIFIED vol=${vols['data']!.id}`);
    // A boot prints far more than 4K: rotated, two old files kept, the oldest dropped.
    await waitFor('console rotated', () => existsSync(path.join(vmDirOf(first), 'console.log.2')), 30_000);
    expect(existsSync(path.join(vmDirOf(first), 'console.log.3'))).toBe(false);
    expect(read(first.consoleLog)).not.toContain('Linux version'); // the boot's start is gone
    // `vm console` serves the live file (offsets continue across rotations).
    const shown = await host.cli(['vm', 'console', 'lc']);
    expect(shown.code).toBe(0);
    expect(read(first.consoleLog).startsWith(shown.stdout)).toBe(true);
    // The rotated files through the API: --previous N is console.log.N; past the kept ones, one line.
    for (const n of [1, 2]) {
      const old = await host.cli(['vm', 'console', 'lc', '--previous', String(n)]);
      expect(old.code, old.stderr).toBe(0);
      expect(old.stdout.length).toBeGreaterThan(0);
      expect(old.stdout).toBe(read(path.join(vmDirOf(first), `console.log.${n}`)));
    }
    await oneLineError(['vm', 'console', 'lc', '--previous', '3'], /^nitride: VM lc has no console.log.3 \(2 kept, older ones dropped\)$/m);
    await oneLineError(['vm', 'console', 'lc', '--previous', '0'], /^nitride: --previous must be a whole number from 1 to 100, got '0'$/m);

    await oneLineError(['vm', 'start', 'lc'], /^nitride: VM lc is running; vm stop it first$/m);
    await host.json(['vm', 'stop', 'lc']);
    expect((await host.json<VmInfo>(['vm', 'describe', 'lc'])).state).toBe('stopped');

    const again = await host.json<VmInfo>(['vm', 'start', first.id, '--start-timeout', '120']);
    expect(again).toMatchObject({ id: first.id, name: 'lc', state: 'running', volumes: first.volumes, enis: [ENI.id], memoryMiB: 256, cpus: 1, append: first.append, args: first.args, createdAt: first.createdAt });
    expect(again.pid).not.toBe(first.pid);
    expect(again.uid).toBeGreaterThanOrEqual(UID_BASE);
    expect(readFileSync(`/proc/${again.pid}/status`, 'utf8')).toMatch(new RegExp(`^Uid:\\t${again.uid}\\t`, 'm'));
    // The first run's console went to console.log.1 at the start; the second boot is new output.
    const firstTail = read(path.join(vmDirOf(first), 'console.log.1'));
    expect(firstTail).toContain('NITRIDE-PASS');
    await waitFor('second boot', () => {
      const all = keptConsole(again);
      const at = all.indexOf(firstTail);
      text = at >= 0 ? all.slice(at + firstTail.length) : all;
      return /NITRIDE-(PASS|FAIL)/.test(text);
    }, 300_000).catch((err: Error) => {
      throw new Error(`${err.message}; console:\n${text.slice(-3000)}`);
    });
    expect(text, text.slice(-3000)).toContain('NITRIDE-PASS');
    expect(text).toContain(`NITRIDE-VERIFIED vol=${vols['data']!.id}`);
    expect((await host.json<VolumeInfo>(['volume', 'describe', vols['data']!.id])).attachments).toEqual([{ consumer: `pid ${again.pid}`, connections: 1 }]);
    await host.json(['vm', 'stop', 'lc']);
  }, 900_000);

  it('--start-timeout: a QEMU that does not answer QMP in time is killed, the VM recorded stopped, its volume free', async () => {
    const kms = kmsPid();
    process.kill(kms, 'SIGSTOP'); // the disk's key cannot be unwrapped: QEMU's NBD open hangs before its main loop
    let r;
    try {
      r = await host.cli(guestArgs('slow', vols['slow']!.id, ['--start-timeout', '3']));
    } finally {
      process.kill(kms, 'SIGCONT');
    }
    expect(r.code, r.stderr).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^nitride: QEMU did not answer QMP within 3 s \(--start-timeout\); it was stopped$/m);
    const slow = await host.json<VmInfo>(['vm', 'describe', 'slow']);
    expect(slow).toMatchObject({ state: 'stopped', stopReason: 'QEMU did not answer QMP within 3 s (--start-timeout)' });
    expect(existsSync(`/proc/${slow.pid}`) && read(`/proc/${slow.pid}/cmdline`).includes('nitride-vm-slow')).toBe(false);
    await waitFor('volume free', async () => (await host.json<VolumeInfo>(['volume', 'describe', vols['slow']!.id])).state === 'available', 60_000);
  }, 120_000);
});
