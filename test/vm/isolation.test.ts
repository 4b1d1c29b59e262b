/**
 * Guest isolation with real QEMUs (TCG, the guest of scripts/build-guest.sh) on one host (a
 * network namespace with its KMS and daemon): two guests boot, reach their disk and NIC, and
 * each QEMU is jailed: its own uid, no capabilities, NoNewPrivs, seccomp, its own root and
 * mount namespace, its cgroup with limits, its TAP by fd, an NBD socket serving only its own
 * volumes. Probes run as a guest's uid inside its QEMU's mount namespace and root (nsenter +
 * setpriv: what the jail sets up) and as its uid on the host.
 */
import { existsSync, readFileSync, readlinkSync, readdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VmInfo } from '../../src/api/vms.js';
import type { VolumeInfo } from '../../src/api/volumes.js';
import { ROOT, tempDir } from '../helpers/nitride.js';
import { NsLab, waitFor, type NsHost } from '../helpers/netns.js';
import { startGuestHost, stopGuestHost } from '../helpers/guest-host.js';
import { run, runOk } from '../helpers/run.js';

const canRun = process.getuid?.() === 0 && existsSync('/usr/bin/qemu-system-x86_64') && existsSync('/dev/net/tun') && existsSync('/usr/bin/setpriv');

const prefix = 'nti' + randomBytes(3).toString('hex');
const VPC_ID = 'vpc-0e5e00000000000b1';
const SUBNET_ID = 'subnet-0e5e00000000000b1';
const GUESTS = {
  ja: { eni: 'eni-0e5e00000000000d1', mac: '02:00:5e:30:00:01', ip: '172.31.9.10' },
  jb: { eni: 'eni-0e5e00000000000d2', mac: '02:00:5e:30:00:02', ip: '172.31.9.20' },
};
/** A range of three uids, unique to this run (other daemons on the host use their own). */
const UID_BASE = 1_900_000_000 + (randomBytes(3).readUIntBE(0, 3) % 1_000_000) * 4;

const scratch = tempDir('nitride-jail-');
const lab = new NsLab(prefix, scratch.dir);
let host: NsHost;
let guestDir = '';
const vols: Record<string, VolumeInfo> = {};
const vms: Record<string, VmInfo> = {};

function status(pid: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

/** Run ARGS as the VM's uid inside its QEMU's mount namespace and root. */
function inJail(vm: VmInfo, args: string[]) {
  return run('nsenter', [`--target=${vm.pid}`, '--mount', '--root', '--wd=/', 'setpriv', `--reuid=${vm.uid}`, `--regid=${vm.uid}`, '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs', '--', ...args]);
}

/** Run ARGS as the VM's uid in the host's mount namespace. */
function asUid(vm: VmInfo, args: string[]) {
  return run('setpriv', [`--reuid=${vm.uid}`, `--regid=${vm.uid}`, '--clear-groups', '--inh-caps=-all', '--no-new-privs', '--', ...args]);
}

function consoleOf(vm: VmInfo): string {
  return existsSync(vm.consoleLog) ? readFileSync(vm.consoleLog, 'utf8') : '';
}

describe.skipIf(!canRun)('jailed QEMU guests', () => {
  beforeAll(async () => {
    ({ host, guestDir } = await startGuestHost(lab, ['--vm-uid-range', `${UID_BASE}-${UID_BASE + 1}`], { vpcId: VPC_ID, subnetId: SUBNET_ID, subnetCidr: '172.31.9.0/24' }));
    for (const g of Object.values(GUESTS)) await host.json(['eni', 'create', '--subnet', SUBNET_ID, '--id', g.eni, '--mac', g.mac, '--ip', g.ip]);
    for (const n of ['ja', 'jb']) vols[n] = await host.json<VolumeInfo>(['volume', 'create', '--size', '16M', '--name', n]);
    vols['spare'] = await host.json<VolumeInfo>(['volume', 'create', '--size', '16M', '--name', 'spare']);
    for (const [name, g] of Object.entries(GUESTS)) {
      const args = ['vm', 'run', '--name', name, '--kernel', path.join(guestDir, 'vmlinuz'), '--initrd', path.join(guestDir, 'initrd.img'), '--memory', '256M'];
      const append = `console=ttyS0 panic=-1 clocksource=hpet nitride.test=e2e nitride.ebs=${vols[name]!.id} nitride.mib=1 nitride.after=idle`;
      vms[name] = await host.json<VmInfo>([...args, '--append', append, '--volume', `${vols[name]!.id}:boot`, '--eni', g.eni]);
    }
  }, 600_000);

  afterAll(() => stopGuestHost(host, lab, scratch), 60_000);

  it('both guests boot, get their address by DHCP on the TAP QEMU inherited, and write/verify their disk', async () => {
    for (const [name, g] of Object.entries(GUESTS)) {
      let text = '';
      await waitFor(`verdict of ${name}`, () => /NITRIDE-(PASS|FAIL)/.test((text = consoleOf(vms[name]!))), 300_000).catch((err: Error) => {
        throw new Error(`${err.message}; console:\n${text.slice(-3000)}`);
      });
      expect(text, text.slice(-3000)).toContain('NITRIDE-PASS');
      expect(text).toContain(`NITRIDE-DHCP ip=${g.ip}`);
      expect(text).toMatch(new RegExp(`NITRIDE-DISK vol=${vols[name]!.id} dev=/dev/nvme0n1`));
      // Exactly its own NVMe serials (the volume id without its dash), nobody else's.
      expect(text).toMatch(new RegExp(`^NITRIDE-SERIALS ${vols[name]!.id.replace('-', '')} $`, 'm'));
    }
  }, 600_000);

  it('each QEMU: its own uid (not root, not nobody, not the other one), no capabilities, NoNewPrivs, seccomp filter', () => {
    const uids = new Set<number>();
    for (const vm of Object.values(vms)) {
      const s = status(vm.pid!);
      expect(vm.uid).toBeGreaterThanOrEqual(UID_BASE);
      expect(s.Uid).toBe(`${vm.uid}\t${vm.uid}\t${vm.uid}\t${vm.uid}`);
      expect(s.Gid).toBe(`${vm.uid}\t${vm.uid}\t${vm.uid}\t${vm.uid}`);
      expect(s.Groups).toBe('');
      for (const cap of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) expect(s[cap], cap).toBe('0000000000000000');
      expect(s.NoNewPrivs).toBe('1');
      expect(s.Seccomp).toBe('2');
      uids.add(vm.uid!);
    }
    expect(uids.size).toBe(2);
    expect([...uids]).not.toContain(65534);
  });

  it('each QEMU: chrooted in its own root, in its own mount and pid namespaces (PID 1 there), its TAP an inherited fd', () => {
    for (const vm of Object.values(vms)) {
      const root = path.join(path.dirname(path.dirname(vm.consoleLog)));
      expect(readlinkSync(`/proc/${vm.pid}/root`)).toBe(root);
      expect(readlinkSync(`/proc/${vm.pid}/ns/mnt`)).not.toBe(readlinkSync('/proc/self/ns/mnt'));
      expect(readlinkSync(`/proc/${vm.pid}/ns/pid`)).not.toBe(readlinkSync('/proc/self/ns/pid'));
      expect(status(vm.pid!).NSpid!.split(/\s+/).slice(-1)).toEqual(['1']);
      expect(vm.args.join(' ')).toMatch(/-netdev tap,id=net0,fd=3\b/);
      expect(vm.args.join(' ')).not.toContain('ifname=');
      expect(readlinkSync(`/proc/${vm.pid}/fd/3`)).toBe('/dev/net/tun');
      // Its root holds its boot copies, its run dir, and mount points only.
      expect(readdirSync(root).sort()).toEqual(['bin', 'boot', 'dev', 'lib', 'lib64', 'run', 'sbin', 'usr']);
    }
  });

  it('each QEMU: in its own cgroup with a memory limit of its RAM plus overhead and a CPU quota', () => {
    for (const vm of Object.values(vms)) {
      const lines = readFileSync(`/proc/${vm.pid}/cgroup`, 'utf8').split('\n');
      if (existsSync('/sys/fs/cgroup/cgroup.controllers')) {
        const where = lines.find((l) => l.startsWith('0::'))!.slice(3);
        expect(where).toMatch(new RegExp(`vm-${vm.id}$`));
        expect(Number(readFileSync(path.join('/sys/fs/cgroup', where, 'memory.max'), 'utf8'))).toBe((256 + 384) << 20);
        expect(readFileSync(path.join('/sys/fs/cgroup', where, 'cpu.max'), 'utf8').trim()).toBe('150000 100000');
      } else {
        const mem = lines.find((l) => /^\d+:memory:/.test(l))!.split(':')[2]!;
        const cpu = lines.find((l) => /^\d+:([^:]*,)?cpu(,[^:]*)?:/.test(l))!.split(':')[2]!;
        expect(mem).toMatch(new RegExp(`nitride-vm-${vm.id}$`));
        expect(Number(readFileSync(path.join('/sys/fs/cgroup/memory', mem, 'memory.limit_in_bytes'), 'utf8'))).toBe((256 + 384) << 20);
        expect(readFileSync(path.join('/sys/fs/cgroup/cpu', cpu, 'cpu.cfs_quota_us'), 'utf8').trim()).toBe('150000');
      }
    }
  });

  it("a process with guest A's uid in its jail: another VM's volume is refused by its NBD socket, nothing else of the host is there", async () => {
    const a = vms['ja']!;
    // qemu-img prints the server's reason (nbdinfo shows only the errno).
    const other = await inJail(a, ['qemu-img', 'info', `nbd+unix:///${vols['jb']!.id}?socket=/run/nbd.sock`]);
    expect(other.code).not.toBe(0);
    expect(other.stderr).toContain(`export '${vols['jb']!.id}' is not attached to VM ja; this socket serves only its volumes`);
    const spare = await inJail(a, ['qemu-img', 'info', `nbd+unix:///${vols['spare']!.id}?socket=/run/nbd.sock`]);
    expect(spare.stderr).toContain(`export '${vols['spare']!.id}' is not attached to VM ja`);
    // No TUN device, no daemon state, no control/KMS/shared NBD socket, no other guest's root.
    for (const p of ['/dev/net/tun', host.controlSocket, host.kmsSocket, host.nbdSocket, path.join(host.dir, 'state'), path.dirname(path.dirname(vms['jb']!.consoleLog))]) {
      const r = await inJail(a, ['sh', '-c', `test -e "$1" && echo visible || echo absent`, 'sh', p]);
      expect(r.stdout.trim(), p).toBe('absent');
    }
    const tun = await inJail(a, ['sh', '-c', 'exec 3<>/dev/net/tun']);
    expect(tun.code).not.toBe(0);
    // /usr is read-only in there.
    expect((await inJail(a, ['sh', '-c', 'echo x > /usr/nitride-probe'])).code).not.toBe(0);
  });

  it("guest A's uid on the host: the shared NBD socket, the control and KMS sockets, the daemon's state and guest B's socket are closed to it", async () => {
    const a = vms['ja']!;
    const shared = await asUid(a, ['nbdinfo', `nbd+unix:///${vols['jb']!.id}?socket=${host.nbdSocket}`]);
    expect(shared.code).not.toBe(0);
    expect(shared.stderr).toMatch(/Permission denied/);
    for (const sock of [host.controlSocket, host.kmsSocket, path.join(path.dirname(vms['jb']!.consoleLog), 'nbd.sock')]) {
      const r = await asUid(a, ['python3', '-c', 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])', sock]);
      expect(r.code, sock).not.toBe(0);
      expect(r.stderr, sock).toMatch(/PermissionError|Permission denied/);
    }
    const state = await asUid(a, ['ls', path.join(host.dir, 'state')]);
    expect(state.code).not.toBe(0);
  });

  it("guest B's socket checks the caller's uid too: guest A's uid, even past the file permissions, is dropped and counted", async () => {
    const a = vms['ja']!;
    const before = (await host.json<{ nbd: { guestPeersRefused: number } }>(['status'])).nbd.guestPeersRefused;
    // CAP_DAC_OVERRIDE kept (ambient) gets past run/'s 0700; SO_PEERCRED still says uid A.
    const socket = path.join(path.dirname(vms['jb']!.consoleLog), 'nbd.sock');
    const r = await run('setpriv', [`--reuid=${a.uid}`, `--regid=${a.uid}`, '--clear-groups', '--inh-caps=+dac_override', '--ambient-caps=+dac_override', '--', 'nbdinfo', `nbd+unix:///${vols['jb']!.id}?socket=${socket}`]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).not.toMatch(/Permission denied/);
    expect((await host.json<{ nbd: { guestPeersRefused: number } }>(['status'])).nbd.guestPeersRefused).toBe(before + 1);
  });

  it('a third VM finds the uid range exhausted: one-line error, nothing started', async () => {
    const r = await host.cli(['vm', 'run', '--name', 'jc', '--kernel', path.join(guestDir, 'vmlinuz'), '--initrd', path.join(guestDir, 'initrd.img'), '--memory', '128M', '--volume', vols['spare']!.id]);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(new RegExp(`^nitride: no free guest uid in the VM uid range ${UID_BASE}-${UID_BASE + 1} \\(2 VMs running\\); widen --vm-uid-range`));
    expect((await host.json<VmInfo[]>(['vm', 'list'])).map((v) => v.name).sort()).toEqual(['ja', 'jb']);
  });

  it('vm stop: QEMU gone, its cgroup and NBD socket removed; the uid is free again', async () => {
    const a = vms['ja']!;
    const cgroups = readFileSync(`/proc/${a.pid}/cgroup`, 'utf8').split('\n').filter((l) => l.includes(`vm-${a.id}`)).map((l) => l.split(':')[2]!);
    expect(cgroups.length).toBeGreaterThan(0);
    await host.json(['vm', 'stop', 'ja']);
    expect(existsSync(path.join(path.dirname(a.consoleLog), 'nbd.sock'))).toBe(false);
    for (const where of cgroups) {
      const dirs = ['/sys/fs/cgroup', '/sys/fs/cgroup/memory', '/sys/fs/cgroup/cpu'].map((r) => path.join(r, where));
      expect(dirs.some((d) => existsSync(d)), where).toBe(false);
    }
    const again = await host.json<VmInfo>(['vm', 'run', '--name', 'jc', '--kernel', path.join(guestDir, 'vmlinuz'), '--initrd', path.join(guestDir, 'initrd.img'), '--memory', '128M', '--volume', vols['spare']!.id]);
    expect(again.uid).toBe(a.uid);
    await host.json(['vm', 'stop', 'jc', '--force']);
  }, 120_000);
});
