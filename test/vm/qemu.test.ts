/** QEMU command lines (pure) and the launcher choice. */
import { describe, expect, it } from 'vitest';
import { launchCommand } from '../../src/vm/manager.js';
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
    expect(args).toContain('unix:/s/qmp.sock,server=on,wait=off');
    expect(args.slice(args.indexOf('-machine'), args.indexOf('-machine') + 2)).toEqual(['-machine', 'q35,accel=tcg']);
    expect(args.slice(args.indexOf('-sandbox'), args.indexOf('-sandbox') + 2)).toEqual(['-sandbox', 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny']);
    const stdio = qemuArgs({ ...spec, console: 'stdio', qmpSocket: undefined });
    expect(stdio).toContain('mon:stdio');
    expect(stdio).not.toContain('-qmp');
  });
});

describe('qemuArgs with descriptors', () => {
  it('a NIC with an fd: the TAP QEMU inherits, no name, no scripts', () => {
    const args = qemuArgs({ ...spec, nics: [{ ifname: 'ni01234567', mac: '02:00:00:00:00:01', fd: 3 }] });
    expect(args).toContain('tap,id=net0,fd=3');
    expect(args.join(' ')).not.toContain('ifname=');
  });
});

describe('launchCommand', () => {
  it('runs QEMU directly outside systemd, in its own scope under systemd', () => {
    expect(launchCommand('qemu', ['-m', '1'], 'i-0', {})).toEqual(['qemu', '-m', '1']);
    const under = launchCommand('qemu', ['-m', '1'], 'i-0', { INVOCATION_ID: 'x' });
    if (under[0] === '/usr/bin/systemd-run') expect(under).toEqual(['/usr/bin/systemd-run', '--scope', '--quiet', '--collect', '--unit=nitride-vm-i-0', '--', 'qemu', '-m', '1']);
    else expect(under).toEqual(['qemu', '-m', '1']);
  });
});
