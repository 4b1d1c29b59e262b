/** QEMU command lines (pure) and the launcher choice. */
import { describe, expect, it } from 'vitest';
import { LAUNCHER, underSystemd, unitCgroupDir, unitCommand, unitKillCommand } from '../../src/vm/unit.js';
import { vmLimits } from '../../src/vm/cgroup.js';
import { DEFAULT_VM_UID_RANGE, JAIL_SCRIPT, accountIds, allocateUid, jailCommand, jailDevices, missingJailCaps, parseUidRange } from '../../src/vm/jail.js';
import { NBD_RECONNECT_DELAY_S, nvmeSerial, qemuArgs, type QemuSpec } from '../../src/vm/qemu.js';

const spec: QemuSpec = {
  name: 'web-1',
  kernel: '/k',
  initrd: '/i',
  append: 'console=ttyS0',
  memoryMiB: 512,
  cpus: 2,
  accel: 'tcg',
  nbdSocket: '/run/nitride/nbd.sock',
  volumes: [
    { id: 'vol-0123456789abcdef1', boot: false },
    { id: 'vol-0123456789abcdef0', boot: true },
  ],
  nics: [{ ifname: 'ni01234567', mac: '02:00:00:00:00:01' }],
  console: { file: '/s/console.log' },
  qmpSocket: '/s/qmp.sock',
};

describe('qemuArgs', () => {
  it('volumes: NVMe with the EBS-style serial, boot volume first, NBD with reconnect-delay and open-timeout', () => {
    const args = qemuArgs(spec);
    expect(nvmeSerial('vol-0123456789abcdef0')).toBe('vol0123456789abcdef0');
    expect(nvmeSerial('vol-0123456789abcdef0')).toHaveLength(20);
    const blockdevs = args.flatMap((a, i) => (args[i - 1] === '-blockdev' ? [JSON.parse(a) as Record<string, unknown>] : []));
    expect(blockdevs.map((b) => b.export)).toEqual(['vol-0123456789abcdef0', 'vol-0123456789abcdef1']);
    expect(blockdevs[0]).toMatchObject({ driver: 'nbd', server: { type: 'unix', path: '/run/nitride/nbd.sock' }, 'reconnect-delay': NBD_RECONNECT_DELAY_S, 'open-timeout': 30 });
    expect(args).toContain('nvme,id=nvme0,drive=vol0,serial=vol0123456789abcdef0,bootindex=1');
    expect(args).toContain('nvme,id=nvme1,drive=vol1,serial=vol0123456789abcdef1');
  });

  it('NICs on their TAP by name with the ENI MAC; console to a file, QMP socket, TCG', () => {
    const args = qemuArgs(spec);
    expect(args).toContain('tap,id=net0,ifname=ni01234567,script=no,downscript=no');
    expect(args).toContain('virtio-net-pci,netdev=net0,mac=02:00:00:00:00:01');
    expect(args).toContain('file,id=console,path=/s/console.log,append=on');
    expect(args).toContain('socket,id=qmp,path=/s/qmp.sock,server=on,wait=off');
    expect(args).toContain('chardev=qmp,mode=control');
    expect(args.slice(args.indexOf('-machine'), args.indexOf('-machine') + 2)).toEqual(['-machine', 'q35,accel=tcg']);
    expect(args.slice(args.indexOf('-sandbox'), args.indexOf('-sandbox') + 2)).toEqual(['-sandbox', 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny']);
    const stdio = qemuArgs({ ...spec, console: 'stdio', qmpSocket: undefined });
    expect(stdio).toContain('mon:stdio');
    expect(stdio).not.toContain('-mon');
  });
});

describe('qemuArgs with descriptors', () => {
  it('a NIC with an fd: the TAP QEMU inherits, no name, no scripts', () => {
    const args = qemuArgs({ ...spec, nics: [{ ifname: 'ni01234567', mac: '02:00:00:00:00:01', fd: 3 }] });
    expect(args).toContain('tap,id=net0,fd=3');
    expect(args.join(' ')).not.toContain('ifname=');
  });
});

describe('guests as systemd units (unit.ts)', () => {
  const limits = vmLimits(256, 2, 'tcg');
  it('a transient service (forked by PID 1, not a scope of the sandboxed daemon) with the limits, running the launcher', () => {
    expect(underSystemd({})).toBe(false);
    expect(unitCommand('vm-0', limits, '/s/vm-0/launch.json', '/s/vm-0/qemu.log', '/usr/bin/node')).toEqual([
      '/usr/bin/systemd-run', '--unit=nitride-vm-vm-0.service', '--quiet', '--collect',
      '-p', 'Type=exec', '-p', `MemoryMax=${(256 + 384) << 20}`, '-p', 'CPUQuota=250%', '-p', 'UMask=0000',
      '-p', 'StandardOutput=append:/s/vm-0/qemu.log', '-p', 'StandardError=append:/s/vm-0/qemu.log',
      '--', '/usr/bin/node', LAUNCHER, '/s/vm-0/launch.json',
    ]);
    expect(LAUNCHER).toMatch(/\/vm\/launcher\.(js|ts)$/);
    expect(unitKillCommand('nitride-vm-vm-0.service', 'SIGKILL')).toEqual(['/usr/bin/systemctl', 'kill', '--signal=SIGKILL', 'nitride-vm-vm-0.service']);
  });

  it("the unit's cgroup is a sibling of the daemon's (unified hierarchy); none without a v2 line", () => {
    const dir = unitCgroupDir('nitride-vm-x.service', '0::/system.slice/nitride.service\n');
    expect(dir === undefined || /\/system\.slice\/nitride-vm-x\.service$/.test(dir)).toBe(true);
    expect(unitCgroupDir('nitride-vm-x.service', '1:name=systemd:/x\n')).toBeUndefined();
  });
});

describe('the jail (pure parts)', () => {
  it('uid ranges: FIRST-LAST, never root or nobody', () => {
    expect(parseUidRange('200000-200009')).toEqual({ first: 200000, last: 200009 });
    expect(parseUidRange(DEFAULT_VM_UID_RANGE).first).toBeGreaterThan(65534);
    for (const bad of ['0-10', '10-5', '65000-66000', 'x', '1-2-3', '1-4294967295']) expect(() => parseUidRange(bad), bad).toThrow(/--vm-uid-range/);
  });

  it('allocation: the lowest uid neither running VMs nor host accounts hold; none left is undefined', () => {
    const accounts = accountIds('root:x:0:0::/root:/bin/sh\nodd:x:200001:200002::/:/bin/false\n', 'grp:x:200003:\n');
    expect([...accounts].sort()).toEqual([0, 200001, 200002, 200003]);
    const range = { first: 200000, last: 200004 };
    expect(allocateUid(range, new Set([...accounts, 200000]))).toBe(200004);
    expect(allocateUid(range, new Set([...accounts, 200000, 200004]))).toBeUndefined();
  });

  it('the command: own mount namespace, cgroups joined, /dev nodes, then QEMU as the uid via setpriv', () => {
    const argv = jailCommand({ root: '/s/vm x/root', uid: 200000, cgroupProcs: ['/cg/a/cgroup.procs'], devices: jailDevices('tcg'), qemu: '/usr/bin/qemu-system-x86_64', args: ['-m', '1'] });
    expect(argv.slice(0, 8)).toEqual(['unshare', '--mount', '--pid', '--fork', '--kill-child=SIGKILL', '--propagation', 'private', '--']);
    expect(argv.slice(11)).toEqual(['nitride-vm-jail', '/s/vm x/root', '200000', '/cg/a/cgroup.procs', '--', 'null', 'zero', 'urandom', '--', '/usr/bin/qemu-system-x86_64', '-m', '1']);
    expect(JAIL_SCRIPT).toMatch(/setpriv --reuid="\$uid" --regid="\$uid" --clear-groups --inh-caps=-all --ambient-caps=-all --bounding-set=-all --no-new-privs/);
    expect(jailDevices('kvm')).toContain('kvm');
  });

  it('the capabilities the daemon needs to build a jail: all of root, some missing under a sandboxed unit', () => {
    expect(missingJailCaps('Name:\tnode\nCapEff:\t000001ffffffffff\n')).toEqual([]);
    // nitride.service: CAP_NET_ADMIN (12) and CAP_NET_RAW (13) only.
    expect(missingJailCaps('CapEff:\t0000000000003000\n')).toEqual(['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_SETGID', 'CAP_SETUID', 'CAP_SETPCAP', 'CAP_SYS_CHROOT', 'CAP_SYS_ADMIN']);
    expect(missingJailCaps('CapEff:\t00000000001fffff\n')).toEqual(['CAP_SYS_ADMIN']);
  });
});
