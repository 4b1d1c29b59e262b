/**
 * nitride under a real systemd (systemd-nspawn --boot of a debootstrap'd Debian tree): the
 * units `nitride install-units` writes start (KMS by socket activation, the daemon Type=notify),
 * serve a volume to qemu-io, stop cleanly, restart with the data intact; DeviceAllow is really
 * enforced; the journal has the lifecycle lines. Counts and states, no timings.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ID_PATTERNS } from '../../src/api/ids.js';
import type { VolumeInfo } from '../../src/api/volumes.js';
import type { EniInfo } from '../../src/api/vpc.js';
import { CLI, nitride, tempDir } from '../helpers/nitride.js';
import { UNIT_ROOT, bootSystemd, canBootSystemd, type BootedSystemd } from '../helpers/nspawn.js';
import { runOk } from '../helpers/run.js';

const UNITS = ['nitride-kms.socket', 'nitride-kms.service', 'nitride.service'];

describe.skipIf(!canBootSystemd)('nitride units under systemd', () => {
  let sd: BootedSystemd;
  let cleanup: () => void;
  let volume: VolumeInfo;
  const cli = (args: string[]) => sd.execOk([process.execPath, CLI, ...args]);
  const show = (unit: string, props: string[]) => sd.show(unit, props);
  const qemuIo = (commands: string[]) =>
    runOk('qemu-io', ['-f', 'raw', `nbd+unix:///${volume.id}?socket=${sd.hostPath('/run/nitride/nbd.sock')}`, ...commands.flatMap((c) => ['-c', c])]);

  beforeAll(async () => {
    let dir: string;
    ({ dir, cleanup } = tempDir('nitride-sd-'));
    const r = await nitride(['install-units', '--dir', dir, '--no-reload', '--root', UNIT_ROOT]);
    expect(r.code, r.stderr).toBe(0);
    sd = await bootSystemd(Object.fromEntries(UNITS.map((u) => [path.join(dir, u), u])));
  }, 600_000);

  afterAll(async () => {
    await sd?.shutdown();
    cleanup?.();
  }, 60_000);

  it('starts the KMS socket and the daemon; the KMS is socket-activated as a dynamic user; READY came', async () => {
    await sd.execOk(['systemctl', 'start', 'nitride-kms.socket', 'nitride.service']);
    expect(await show('nitride.service', ['ActiveState', 'SubState', 'Type'])).toEqual({ ActiveState: 'active', SubState: 'running', Type: 'notify' });
    // The daemon's first VPC start unwrapped the host key through the KMS socket: that started the KMS.
    const kms = await show('nitride-kms.service', ['ActiveState', 'TriggeredBy', 'MainPID']);
    expect(kms).toMatchObject({ ActiveState: 'active', TriggeredBy: 'nitride-kms.socket' });
    // A dynamic user, and non-dumpable: its /proc files belong to root, not to that user.
    const uid = Number((await sd.execOk(['grep', '^Uid:', `/proc/${kms.MainPID}/status`])).split(/\s+/)[1]);
    expect(uid).toBeGreaterThan(0);
    expect((await sd.execOk(['stat', '-c', '%u', `/proc/${kms.MainPID}/environ`])).trim()).toBe('0');
    const daemonStatus = JSON.parse(await cli(['status', '--json'])) as { health: string; vpc: { state: string } };
    expect(daemonStatus).toMatchObject({ health: 'ok', vpc: { state: 'up' } });
    expect((await show('nitride.service', ['StatusText'])).StatusText).toBe('serving');
  });

  it('creates a volume and serves it over NBD to qemu-io on the host', async () => {
    volume = JSON.parse(await cli(['volume', 'create', '--size', '16M', '--name', 'sd', '--json'])) as VolumeInfo;
    const out = await qemuIo(['write -P 0x5d 0 64k', 'read -P 0x5d 0 64k']);
    expect(out).not.toMatch(/fail|mismatch/i);
  });

  it('DeviceAllow is enforced: the daemon creates a TAP, a unit with DevicePolicy=closed and no DeviceAllow cannot open /dev/net/tun', async () => {
    await cli(['vpc', 'create', '--cidr', '172.31.0.0/16', '--id', 'vpc-0123456789abcdef0']);
    await cli(['subnet', 'create', '--vpc', 'vpc-0123456789abcdef0', '--cidr', '172.31.1.0/24', '--id', 'subnet-0123456789abcdef0']);
    const eni = JSON.parse(await cli(['eni', 'create', '--subnet', 'subnet-0123456789abcdef0', '--json'])) as EniInfo;
    expect(await sd.execOk(['ip', '-d', 'link', 'show', 'dev', eni.hostInterface])).toMatch(/tun type tap/);
    const open = `require('fs').openSync('/dev/net/tun', 'r+')`;
    const denied = await sd.exec(['systemd-run', '--wait', '--pipe', '--quiet', '-p', 'DevicePolicy=closed', process.execPath, '-e', open]);
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toMatch(/EPERM|operation not permitted/i);
    const allowed = await sd.exec(['systemd-run', '--wait', '--pipe', '--quiet', '-p', 'DevicePolicy=closed', '-p', 'DeviceAllow=/dev/net/tun rw', process.execPath, '-e', open]);
    expect(allowed.code, allowed.stderr).toBe(0);
  });

  it('stops cleanly (exit 0), restarts, and the volume still holds its data; five more cycles stay clean', async () => {
    await sd.execOk(['systemctl', 'stop', 'nitride.service']);
    expect(await show('nitride.service', ['ActiveState', 'Result', 'ExecMainStatus'])).toEqual({ ActiveState: 'inactive', Result: 'success', ExecMainStatus: '0' });
    await sd.execOk(['systemctl', 'start', 'nitride.service']);
    expect(await qemuIo(['read -P 0x5d 0 64k'])).not.toMatch(/fail|mismatch/i);
    for (let i = 0; i < 5; i++) {
      await sd.execOk(['systemctl', 'reset-failed', 'nitride.service']).catch(() => '');
      await sd.execOk(['systemctl', 'restart', 'nitride.service']);
      expect((await show('nitride.service', ['ActiveState'])).ActiveState).toBe('active');
    }
    expect(await qemuIo(['read -P 0x5d 0 64k'])).not.toMatch(/fail|mismatch/i);
    // The KMS restarts too, and its socket keeps the daemon's path working meanwhile.
    await sd.execOk(['systemctl', 'restart', 'nitride-kms.service']);
    await sd.execOk(['systemctl', 'restart', 'nitride.service']);
    expect(await qemuIo(['read -P 0x5d 0 64k'])).not.toMatch(/fail|mismatch/i);
  });

  it('live update: a restart keeps the listening sockets (fd store), and a qemu-io client with reconnect-delay doing I/O across it sees no error', async () => {
    const store = async () => (await show('nitride.service', ['NFileDescriptorStore'])).NFileDescriptorStore;
    const inode = async () => (await sd.execOk(['stat', '-c', '%i', '/run/nitride/nbd.sock', '/run/nitride/control.sock'])).trim();
    // control, nbd, and the packet socket of the TAP ENI created above.
    expect(await store()).toBe('3');
    const before = await inode();
    const opts = `driver=nbd,server.type=unix,server.path=${sd.hostPath('/run/nitride/nbd.sock')},export=${volume.id},reconnect-delay=20`;
    const commands: string[] = [];
    for (let i = 0; i < 300; i++) commands.push('read -P 0x5d 0 64k', 'sleep 10');
    const client = runOk('qemu-io', ['--image-opts', opts, ...commands.flatMap((c) => ['-c', c])], { timeoutMs: 120_000 });
    await new Promise((r) => setTimeout(r, 800));
    await sd.execOk(['systemctl', 'restart', 'nitride.service']);
    const out = await client;
    expect(out.match(/^read 65536\/65536 bytes at offset 0$/gm)).toHaveLength(300);
    expect(out).not.toMatch(/fail|error|mismatch/i);
    expect(await inode()).toBe(before);
    expect(await store()).toBe('3');
    // The new run says it took the sockets over.
    const journal = await sd.execOk(['journalctl', '-u', 'nitride.service', '-o', 'cat', '--no-pager', '-n', '20']);
    const eniSocket = `eni-${ID_PATTERNS.eni.source.slice(1, -1)}`;
    expect(journal).toMatch(new RegExp(`"adoptedSockets":\\["control","nbd","${eniSocket}"\\].*"msg":"daemon started"`));
  });

  it('the journal holds one line per lifecycle event', async () => {
    const daemon = await sd.execOk(['journalctl', '-u', 'nitride.service', '-o', 'cat', '--no-pager']);
    const started = daemon.split('\n').filter((l) => l.includes('"msg":"daemon started"')).length;
    const stopped = daemon.split('\n').filter((l) => l.includes('"msg":"daemon stopped"')).length;
    expect(started).toBe(9);
    expect(stopped).toBe(8);
    expect(daemon).toContain('"msg":"volume created"');
    const kms = await sd.execOk(['journalctl', '-u', 'nitride-kms.service', '-o', 'cat', '--no-pager']);
    expect(kms).toContain('"msg":"kms started"');
    expect(kms).toContain('"msg":"kms stopped"');
  });
});
