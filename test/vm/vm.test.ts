/**
 * QEMU guests end to end (real QEMU under TCG, the guest of scripts/build-guest.sh): two hosts
 * (network namespaces, a KMS and a daemon each, an encrypted VPC between them), one guest per
 * host with an EBS-like and an ephemeral volume (NVMe) and a TAP ENI (virtio-net).
 *
 * Pass/fail comes from markers the guest prints on its serial console (NITRIDE-PASS /
 * NITRIDE-FAIL and the step markers), never from QEMU's exit code. Boots are shared: guest A's
 * first boot covers DHCP, the ephemeral zero check, disk write/verify, the ping across hosts
 * and the live update; its second boot the persistence check, in parallel with the kernel NBD
 * client guest. Counts and markers, not timings.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, appendFileSync, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VmInfo } from '../../src/api/vms.js';
import type { VolumeInfo } from '../../src/api/volumes.js';
import type { PeerInfo } from '../../src/api/vpc.js';
import { ROOT, tempDir } from '../helpers/nitride.js';
import { NsLab, must, waitFor, type NsHost } from '../helpers/netns.js';
import { runOk } from '../helpers/run.js';

const canRun = process.getuid?.() === 0 && existsSync('/usr/bin/qemu-system-x86_64') && existsSync('/dev/net/tun');

const prefix = 'ntv' + randomBytes(3).toString('hex');
const octet = 16 + (randomBytes(1)[0]! % 200);
const VPC_ID = 'vpc-0e5e00000000000a1';
const SUBNET_ID = 'subnet-0e5e00000000000a1';
const GUEST = {
  a: { eni: 'eni-0e5e000000000000a', mac: '02:00:5e:20:00:0a', ip: '172.31.7.10' },
  b: { eni: 'eni-0e5e000000000000b', mac: '02:00:5e:20:00:0b', ip: '172.31.7.20' },
};
/** The kernel NBD client guest: a third ENI on host A plus a NIC on a host-side network. */
const NBD_GUEST = { eni: 'eni-0e5e000000000000c', mac: '02:00:5e:20:00:0c', ip: '172.31.7.30', hostNicMac: '02:00:5e:21:00:0c' };
const HOSTNET = { hostIp: `10.${octet}.1.1`, guestIp: `10.${octet}.1.2` };
/** Guest kernel options: TCG clocks are unreliable on a busy host. */
const BASE_APPEND = 'console=ttyS0 panic=-1 clocksource=hpet';

const scratch = tempDir('nitride-vm-');
const lab = new NsLab(prefix, scratch.dir);
const userQemus: ChildProcess[] = [];
let guestDir = '';
let a: NsHost;
let b: NsHost;
const vols: Record<string, VolumeInfo> = {};

const sha256 = (buf: Buffer) => createHash('sha256').update(buf).digest('hex');

/** Console text of a VM (the file the daemon's QEMU writes). */
function consoleOf(vm: VmInfo): string {
  return existsSync(vm.consoleLog) ? readFileSync(vm.consoleLog, 'utf8') : '';
}

/** Wait until the guest printed its verdict; returns the console. */
async function verdict(host: NsHost, name: string, timeoutMs = 240_000): Promise<string> {
  const vm = await host.json<VmInfo>(['vm', 'describe', name]);
  let text = '';
  await waitFor(`verdict of ${name}`, () => /NITRIDE-(PASS|FAIL)/.test((text = consoleOf(vm))), timeoutMs).catch((err: Error) => {
    throw new Error(`${err.message}; console:\n${text.slice(-4000)}`);
  });
  return text;
}

/** The value of KEY=… on the console line starting with MARKER. */
function field(consoleText: string, marker: string, key: string): string | undefined {
  const line = consoleText.split('\n').find((l) => l.startsWith(marker));
  return line ? new RegExp(`${key}=(\\S+)`).exec(line)?.[1] : undefined;
}

/** The first `bytes` of a volume, read on the host through the daemon's NBD socket. */
async function readVolume(host: NsHost, id: string, bytes: number): Promise<Buffer> {
  const out = path.join(scratch.dir, `${id}.raw`);
  await runOk('nbdcopy', [`nbd+unix:///${id}?socket=${host.nbdSocket}`, out]);
  return readFileSync(out).subarray(0, bytes);
}

function vmRun(host: NsHost, name: string, append: string, extra: string[]): Promise<VmInfo> {
  return host.json<VmInfo>(['vm', 'run', '--name', name, '--kernel', path.join(guestDir, 'vmlinuz'), '--initrd', path.join(guestDir, 'initrd.img'), '--memory', '256M', '--append', `${BASE_APPEND} ${append}`, ...extra]);
}

describe.skipIf(!canRun)('QEMU guests on two hosts', () => {
  beforeAll(async () => {
    guestDir = (await runOk(path.join(ROOT, 'scripts/build-guest.sh'), ['--quiet'], { timeoutMs: 600_000 })).trim();
    const [nsA, nsB] = [await lab.addNamespace('ha'), await lab.addNamespace('hb')];
    const [ipA, ipB] = await lab.underlay(nsA, nsB, octet);
    // The host-side network of the kernel NBD client test: a plain TAP in host A, no VPC.
    await must('ip', '-n', nsA, 'tuntap', 'add', 'dev', `${prefix}nb`, 'mode', 'tap');
    await must('ip', '-n', nsA, 'addr', 'add', `${HOSTNET.hostIp}/24`, 'dev', `${prefix}nb`);
    await must('ip', '-n', nsA, 'link', 'set', `${prefix}nb`, 'up');
    // No systemd fd store here: the live updates below use the opt-in on-disk handover.
    [a, b] = await Promise.all([lab.startHost('ha', nsA, ipA, ['--nbd-listen', `${HOSTNET.hostIp}:10809`, '--ephemeral-handover-file']), lab.startHost('hb', nsB, ipB, ['--ephemeral-handover-file'])]);
    await lab.peerAll();
    for (const h of [a, b]) {
      await h.json(['vpc', 'create', '--cidr', '172.31.0.0/16', '--id', VPC_ID]);
      await h.json(['subnet', 'create', '--vpc', VPC_ID, '--cidr', '172.31.7.0/24', '--id', SUBNET_ID]);
    }
    for (const [local, remote, g] of [
      [a, b, GUEST.a],
      [b, a, GUEST.b],
    ] as const) {
      await local.json(['eni', 'create', '--subnet', SUBNET_ID, '--id', g.eni, '--mac', g.mac, '--ip', g.ip]);
      await remote.json(['eni', 'create', '--subnet', SUBNET_ID, '--id', g.eni, '--mac', g.mac, '--ip', g.ip, '--host', local.name]);
    }
    await a.json(['eni', 'create', '--subnet', SUBNET_ID, '--id', NBD_GUEST.eni, '--mac', NBD_GUEST.mac, '--ip', NBD_GUEST.ip]);
    for (const h of [a, b]) {
      for (const f of ['vmlinuz', 'initrd.img']) await h.json(['image', 'allow', path.join(guestDir, f)]);
      vols[`${h.name}-ebs`] = await h.json<VolumeInfo>(['volume', 'create', '--size', '64M', '--name', 'data']);
      vols[`${h.name}-eph`] = await h.json<VolumeInfo>(['volume', 'create', '--type', 'ephemeral', '--size', '16M']);
    }
    vols['nbd'] = await a.json<VolumeInfo>(['volume', 'create', '--size', '16M', '--name', 'kernel-nbd']);
    await waitFor('sessions', async () => (await a.json<PeerInfo[]>(['peer', 'list']))[0]?.session === 'established');
  }, 600_000);

  afterAll(async () => {
    for (const h of lab.hosts) {
      const list = await h.json<VmInfo[]>(['vm', 'list']).catch(() => []);
      for (const vm of list) if (vm.state === 'running' && vm.pid) process.kill(vm.pid, 'SIGKILL');
    }
    for (const q of userQemus) if (q.exitCode === null) q.kill('SIGKILL');
    await lab.teardown();
    scratch.cleanup();
  }, 60_000);

  it('a kernel not on the allowlist is refused with a clear error', async () => {
    const tampered = path.join(scratch.dir, 'vmlinuz-tampered');
    copyFileSync(path.join(guestDir, 'vmlinuz'), tampered);
    appendFileSync(tampered, Buffer.from([0]));
    const r = await a.cli(['vm', 'run', '--name', 'evil', '--kernel', tampered, '--initrd', path.join(guestDir, 'initrd.img'), '--volume', vols['ha-ebs']!.id]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^nitride: kernel .*vmlinuz-tampered \(sha256 [0-9a-f]{64}\) is not on the boot image allowlist; run: nitride image allow/);
    expect(await a.json<VmInfo[]>(['vm', 'list'])).toEqual([]);
    expect((await a.json<VolumeInfo>(['volume', 'describe', vols['ha-ebs']!.id])).state).toBe('available');
    // The list: two images, audited.
    expect((await a.json<Array<{ name: string }>>(['image', 'list'])).map((i) => i.name).sort()).toEqual(['initrd.img', 'vmlinuz']);
    expect(readFileSync(path.join(a.dir, 'state', 'audit.log'), 'utf8')).toContain('"action":"image.allow"');
  });

  let consoleA = '';
  let consoleB = '';

  it('two guests: DHCP, ephemeral reads zero, disks write/verify, ping across hosts; a live update of host A is invisible to its guest', async () => {
    const ebsA = vols['ha-ebs']!.id;
    const ebsB = vols['hb-ebs']!.id;
    await vmRun(a, 'ga', `nitride.test=e2e nitride.ebs=${ebsA} nitride.eph=${vols['ha-eph']!.id} nitride.peer=${GUEST.b.ip} nitride.loops=12`, ['--volume', `${ebsA}:boot`, '--volume', vols['ha-eph']!.id, '--eni', GUEST.a.eni]);
    const gb = await vmRun(b, 'gb', `nitride.test=e2e nitride.ebs=${ebsB} nitride.eph=${vols['hb-eph']!.id} nitride.peer=${GUEST.a.ip} nitride.after=idle`, ['--volume', `${ebsB}:boot`, '--volume', vols['hb-eph']!.id, '--eni', GUEST.b.eni]);
    const ga = await a.json<VmInfo>(['vm', 'describe', 'ga']);
    expect(ga).toMatchObject({ state: 'running', accel: 'tcg', enis: [GUEST.a.eni] });
    // EBS identity inside QEMU: NVMe serial = volume id without the dash.
    expect(ga.args.join(' ')).toContain(`serial=${ebsA.replace('-', '')}`);
    expect(ga.args.join(' ')).toMatch(/"reconnect-delay":\d+/);
    expect((await a.json<VolumeInfo>(['volume', 'describe', ebsA])).attachments).toEqual([{ consumer: `pid ${ga.pid}`, connections: 1 }]);

    // Host A's daemon restarts while guest A runs its write/verify + ping loop.
    await waitFor('guest A loop', () => /NITRIDE-LOOP i=3 /.test(consoleOf(ga)), 240_000).catch((err: Error) => {
      throw new Error(`${err.message}; console A:\n${consoleOf(ga).slice(-3000)}`);
    });
    const beforeRestart = consoleOf(ga).length;
    await a.restartDaemon();
    const adopted = await a.json<VmInfo>(['vm', 'describe', 'ga']);
    expect(adopted).toMatchObject({ state: 'running', pid: ga.pid });

    consoleA = await verdict(a, 'ga');
    consoleB = await verdict(b, 'gb');
    expect(consoleB, consoleB.slice(-3000)).toContain('NITRIDE-PASS');
    expect(consoleA, consoleA.slice(-3000)).toContain('NITRIDE-PASS');
    for (const [text, g] of [
      [consoleA, GUEST.a],
      [consoleB, GUEST.b],
    ] as const) {
      expect(field(text, 'NITRIDE-DHCP', 'ip')).toBe(g.ip);
      expect(field(text, 'NITRIDE-DHCP', 'router')).toBe('172.31.7.1');
      expect(field(text, 'NITRIDE-DHCP', 'mtu')).toBe('1420');
      expect(text).toMatch(/NITRIDE-EPH-ZERO vol=vol-\S+ bytes=16777216/);
      expect(text).toMatch(/NITRIDE-PING peer=172\.31\.7\.\d+ tries=\d+/);
      expect(text).not.toMatch(/I\/O error|blk_update_request|nvme.*(timeout|reset)/i);
    }
    // The live update: zero guest I/O errors, and pings went on succeeding after the restart.
    expect(field(consoleA, 'NITRIDE-LOOP-DONE', 'io_errors')).toBe('0');
    // The ephemeral volume kept its data across the restart (its key was handed over).
    expect(consoleA).toContain(`NITRIDE-STILL-THERE vol=${vols['ha-eph']!.id}`);
    const afterRestart = consoleA.slice(beforeRestart).split('\n').filter((l) => l.startsWith('NITRIDE-LOOP i='));
    expect(afterRestart.length).toBeGreaterThan(0);
    expect(afterRestart.every((l) => l.includes('io_errors=0'))).toBe(true);
    expect(afterRestart.some((l) => l.includes('ping=ok'))).toBe(true);
    expect(gb.state).toBe('running');
  }, 600_000);

  it('guest A powered off: its VM is stopped, its EBS data is on the volume, its ephemeral volume was crypto-wiped', async () => {
    await waitFor('VM ga stopped', async () => (await a.json<VmInfo>(['vm', 'describe', 'ga'])).state === 'stopped', 60_000);
    const ga = await a.json<VmInfo>(['vm', 'describe', 'ga']);
    expect(ga.wiped).toEqual([vols['ha-eph']!.id]);
    const ebs = await a.json<VolumeInfo>(['volume', 'describe', vols['ha-ebs']!.id]);
    expect(ebs).toMatchObject({ state: 'available', attachments: [] });
    const written = field(consoleA.split('\n').find((l) => l.includes(vols['ha-ebs']!.id) && l.startsWith('NITRIDE-DISK'))!, 'NITRIDE-DISK', 'sha256');
    expect(sha256(await readVolume(a, vols['ha-ebs']!.id, 4 << 20))).toBe(written);
    // The guest wrote random data to the ephemeral volume; after the stop it reads as zeroes.
    const ephWritten = field(consoleA.split('\n').find((l) => l.includes(vols['ha-eph']!.id) && l.startsWith('NITRIDE-DISK'))!, 'NITRIDE-DISK', 'sha256');
    expect(ephWritten).toMatch(/^[0-9a-f]{64}$/);
    const eph = await readVolume(a, vols['ha-eph']!.id, 16 << 20);
    expect(eph.equals(Buffer.alloc(16 << 20))).toBe(true);
  }, 120_000);

  it('a new QEMU on the same EBS volume sees the data (ephemeral fresh again), while a kernel NBD client guest writes over TCP through a host-side NIC', async () => {
    const ebsA = vols['ha-ebs']!.id;
    const written = field(consoleA.split('\n').find((l) => l.includes(ebsA) && l.startsWith('NITRIDE-DISK'))!, 'NITRIDE-DISK', 'sha256');
    await vmRun(a, 'ga', `nitride.test=verify nitride.ebs=${ebsA} nitride.mib=4 nitride.expect=${written} nitride.eph=${vols['ha-eph']!.id}`, ['--volume', `${ebsA}:boot`, '--volume', vols['ha-eph']!.id, '--eni', GUEST.a.eni]);

    // The kernel client guest is launched by the test from `vm qemu-args` (as a libvirt user
    // would), plus a NIC on the host-side network where the daemon's TCP NBD listener is.
    const append = `${BASE_APPEND} nitride.test=nbd nitride.nbdmac=${NBD_GUEST.hostNicMac} nitride.nbdip=${HOSTNET.guestIp}/24 nitride.nbdserver=${HOSTNET.hostIp} nitride.nbdport=10809 nitride.nbdexport=${vols['nbd']!.id}`;
    const { args } = await a.json<{ args: string[] }>(['vm', 'qemu-args', '--kernel', path.join(guestDir, 'vmlinuz'), '--initrd', path.join(guestDir, 'initrd.img'), '--memory', '256M', '--eni', NBD_GUEST.eni, '--append', append]);
    expect(args).toContain('mon:stdio');
    const qemu = spawn('ip', ['netns', 'exec', a.ns, 'qemu-system-x86_64', ...args, '-netdev', `tap,id=hostnet,ifname=${prefix}nb,script=no,downscript=no`, '-device', `virtio-net-pci,netdev=hostnet,mac=${NBD_GUEST.hostNicMac}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    userQemus.push(qemu);
    let nbdConsole = '';
    qemu.stdout!.on('data', (d: Buffer) => (nbdConsole += d.toString()));
    qemu.stderr!.on('data', (d: Buffer) => (nbdConsole += d.toString()));

    const verifyConsole = await verdict(a, 'ga');
    expect(verifyConsole, verifyConsole.slice(-3000)).toContain('NITRIDE-PASS');
    expect(verifyConsole).toContain(`NITRIDE-VERIFIED vol=${ebsA} sha256=${written}`);
    expect(verifyConsole).toMatch(/NITRIDE-EPH-ZERO/);

    await waitFor('kernel NBD guest verdict', () => /NITRIDE-(PASS|FAIL)/.test(nbdConsole), 240_000).catch((err: Error) => {
      throw new Error(`${err.message}; console:\n${nbdConsole.slice(-4000)}`);
    });
    expect(nbdConsole, nbdConsole.slice(-3000)).toContain('NITRIDE-PASS');
    expect(nbdConsole).toMatch(/NITRIDE-NBD-CONNECTED 32768 sectors of 512 bytes/);
    const nbdSha = /NITRIDE-NBD-VERIFIED sha256=([0-9a-f]{64})/.exec(nbdConsole)?.[1];
    await waitFor('kernel NBD guest exit', () => qemu.exitCode !== null, 60_000);
    await waitFor('kernel NBD client detached', async () => (await a.json<VolumeInfo>(['volume', 'describe', vols['nbd']!.id])).state === 'available', 30_000);
    expect(sha256(await readVolume(a, vols['nbd']!.id, 2 << 20))).toBe(nbdSha);
  }, 600_000);

  it('vm stop: QEMU quits, the EBS volume detaches, the ephemeral volume is crypto-wiped', async () => {
    const before = await b.json<VmInfo>(['vm', 'describe', 'gb']);
    expect(before.state).toBe('running');
    const stopped = await b.json<VmInfo>(['vm', 'stop', 'gb']);
    expect(stopped).toMatchObject({ state: 'stopped', wiped: [vols['hb-eph']!.id] });
    expect(existsSync(`/proc/${before.pid}`) && !readFileSync(`/proc/${before.pid}/stat`, 'utf8').includes(') Z ')).toBe(false);
    expect((await b.json<VolumeInfo>(['volume', 'describe', vols['hb-ebs']!.id])).state).toBe('available');
    const eph = await readVolume(b, vols['hb-eph']!.id, 16 << 20);
    expect(eph.equals(Buffer.alloc(16 << 20))).toBe(true);
    const written = field(consoleB.split('\n').find((l) => l.includes(vols['hb-ebs']!.id) && l.startsWith('NITRIDE-DISK'))!, 'NITRIDE-DISK', 'sha256');
    expect(sha256(await readVolume(b, vols['hb-ebs']!.id, 4 << 20))).toBe(written);
    // Audited, and the console stays readable after the stop.
    expect(readFileSync(path.join(b.dir, 'state', 'audit.log'), 'utf8')).toMatch(/"action":"vm.stop"/);
    const shown = await b.cli(['vm', 'console', 'gb', '--follow']); // returns: the VM is stopped
    expect(shown.stdout).toContain('NITRIDE-PASS');
  }, 120_000);

  it('a guest that died while its daemon was away is found stopped at the next start, its ephemeral volume wiped', async () => {
    const ebsB = vols['hb-ebs']!.id;
    const ephB = vols['hb-eph']!.id;
    const vm = await vmRun(b, 'gb', `nitride.test=verify nitride.ebs=${ebsB} nitride.eph=${ephB} nitride.after=idle`, ['--volume', `${ebsB}:boot`, '--volume', ephB]);
    await waitFor('guest B idle', () => /NITRIDE-(PASS|FAIL)/.test(consoleOf(vm)), 240_000);
    await b.restartDaemon(async () => {
      // The daemon handed the ephemeral key over (wrapped) for its running VM…
      expect(JSON.parse(readFileSync(path.join(b.dir, 'state', 'volumes', `${ephB}.json`), 'utf8')).handover).toMatchObject({ keyId: expect.stringMatching(/^key-/) });
      process.kill(vm.pid!, 'SIGKILL'); // …but the guest dies before the next daemon starts.
      await waitFor('QEMU gone', () => !existsSync(`/proc/${vm.pid}`) || readFileSync(`/proc/${vm.pid}/stat`, 'utf8').includes(') Z '));
    });
    await waitFor('VM gb found stopped', async () => (await b.json<VmInfo>(['vm', 'describe', 'gb'])).state === 'stopped', 30_000);
    expect(await b.json<VmInfo>(['vm', 'describe', 'gb'])).toMatchObject({ stopReason: 'exited while the daemon was away', wiped: [ephB] });
    // The handover left the disk with the next start.
    expect(JSON.parse(readFileSync(path.join(b.dir, 'state', 'volumes', `${ephB}.json`), 'utf8')).handover).toBeUndefined();
    expect((await readVolume(b, ephB, 16 << 20)).equals(Buffer.alloc(16 << 20))).toBe(true);
  }, 300_000);

  it('bad requests get one-line errors and change nothing', async () => {
    const busy = await a.cli(['vm', 'run', '--name', 'gx', '--kernel', path.join(guestDir, 'vmlinuz'), '--volume', 'vol-zz']);
    expect(busy.code).toBe(2);
    expect(busy.stderr).toMatch(/^nitride: bad volume 'vol-zz'/);
    const remote = await a.cli(['vm', 'run', '--name', 'gx', '--kernel', path.join(guestDir, 'vmlinuz'), '--eni', GUEST.b.eni]);
    expect(remote.stderr).toMatch(/ENI eni-0e5e000000000000b lives on host hb, not here/);
    expect((await a.cli(['vm', 'stop', 'nosuchvm'])).stderr).toMatch(/^nitride: no VM nosuchvm/);
    expect((await a.cli(['image', 'remove', 'nosuchimage'])).code).toBe(1);
  });
});

