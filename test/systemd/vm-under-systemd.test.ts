/**
 * A guest under the shipped, hardened nitride.service (real systemd in nspawn, QEMU from the
 * tree's own qemu-system-x86, TCG): `vm run` starts it as its own transient unit
 * (src/vm/unit.ts), it boots and writes/verifies its disk and gets its address by DHCP on the
 * TAP the launcher opened, its QEMU is jailed (uid ≠ 0, CapEff 0, Seccomp 2, PID 1 of its own
 * pid namespace), the daemon's unit
 * keeps its sandbox; a `kill -9` of the daemon (systemd's Restart= brings it back) keeps the
 * guest's ephemeral volume, which the guest keeps re-reading intact (its wrapped key waited in
 * systemd's fd store; QEMU's NBD reconnects) and nothing derived from that key is in a file or
 * the journal; a daemon restart re-adopts the guest; `vm stop` ends the unit.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VmInfo } from '../../src/api/vms.js';
import type { VolumeInfo } from '../../src/api/volumes.js';
import { xtsDecrypt } from '../../src/native/addon.js';
import { scanContainer, storedEphemeralKey, storedKeyNeedles } from '../helpers/fd-store.js';
import { CLI, ROOT, nitride, tempDir } from '../helpers/nitride.js';
import { UNIT_ROOT, bootSystemd, canBootSystemd, type BootedSystemd } from '../helpers/nspawn.js';
import { runOk } from '../helpers/run.js';
import { waitFor } from '../helpers/netns.js';

const UNITS = ['nitride-kms.socket', 'nitride-kms.service', 'nitride.service'];
const canRun = canBootSystemd && existsSync('/usr/bin/qemu-system-x86_64');

describe.skipIf(!canRun)('a guest under the hardened nitride.service', () => {
  let sd: BootedSystemd;
  let cleanup: () => void;
  let vm: VmInfo;
  let eph: VolumeInfo;
  const cli = (args: string[]) => sd.execOk([process.execPath, CLI, ...args]);
  const json = async <T>(args: string[]) => JSON.parse(await cli([...args, '--json'])) as T;
  const show = (unit: string, props: string[]) => sd.show(unit, props);
  const procStatus = async (pid: number) =>
    Object.fromEntries(
      (await sd.execOk(['cat', `/proc/${pid}/status`]))
        .split('\n')
        .filter((l) => l.includes(':'))
        .map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]),
    );
  const consoleText = async () => (await sd.exec(['cat', vm.consoleLog])).stdout;

  beforeAll(async () => {
    const guestDir = (await runOk(path.join(ROOT, 'scripts/build-guest.sh'), ['--quiet'], { timeoutMs: 600_000 })).trim();
    let dir: string;
    ({ dir, cleanup } = tempDir('nitride-sdvm-'));
    const r = await nitride(['install-units', '--dir', dir, '--no-reload', '--root', UNIT_ROOT]);
    expect(r.code, r.stderr).toBe(0);
    sd = await bootSystemd(Object.fromEntries(UNITS.map((u) => [path.join(dir, u), u])), { packages: ['qemu-system-x86'], bindRo: [guestDir] });
    await sd.execOk(['systemctl', 'start', 'nitride-kms.socket', 'nitride.service']);
    for (const f of ['vmlinuz', 'initrd.img']) await cli(['image', 'allow', path.join(guestDir, f)]);
    await cli(['vpc', 'create', '--cidr', '172.31.0.0/16', '--id', 'vpc-0123456789abcdef0']);
    await cli(['subnet', 'create', '--vpc', 'vpc-0123456789abcdef0', '--cidr', '172.31.1.0/24', '--id', 'subnet-0123456789abcdef0']);
    await cli(['eni', 'create', '--subnet', 'subnet-0123456789abcdef0', '--id', 'eni-0123456789abcdef0', '--ip', '172.31.1.10']);
    const volume = await json<VolumeInfo>(['volume', 'create', '--size', '16M', '--name', 'sdvm']);
    eph = await json<VolumeInfo>(['volume', 'create', '--type', 'ephemeral', '--size', '16M', '--name', 'sdvm-eph']);
    // The guest writes 1 MiB to the ephemeral volume, then re-reads it every 2 s (after=recheck).
    const append = `console=ttyS0 panic=-1 clocksource=hpet nitride.test=e2e nitride.ebs=${volume.id} nitride.eph=${eph.id} nitride.mib=1 nitride.after=recheck`;
    vm = await json<VmInfo>(['vm', 'run', '--name', 'g', '--kernel', path.join(guestDir, 'vmlinuz'), '--initrd', path.join(guestDir, 'initrd.img'), '--memory', '256M', '--append', append, '--volume', `${volume.id}:boot`, '--volume', eph.id, '--eni', 'eni-0123456789abcdef0', '--start-timeout', '120']).catch(async (err: Error) => {
      // What systemd and QEMU said, for the failure message.
      const journal = await sd.exec(['journalctl', '--no-pager', '-o', 'cat', '-n', '60']);
      const logs = await sd.exec(['sh', '-c', 'tail -n 20 /var/lib/nitride/vms/*/qemu.log']);
      throw new Error(`${err.message}\n--- journal\n${journal.stdout}\n--- qemu.log\n${logs.stdout}${logs.stderr}`);
    });
  }, 1_200_000);

  afterAll(async () => {
    await sd?.shutdown();
    cleanup?.();
  }, 60_000);

  it('the guest boots: its console shows its disk written and verified and its DHCP address', async () => {
    let text = '';
    await waitFor('the guest verdict', async () => /NITRIDE-(PASS|FAIL)/.test((text = await consoleText())), 400_000).catch((err: Error) => {
      throw new Error(`${err.message}\n${text.slice(-3000)}`);
    });
    expect(text).toMatch(/NITRIDE-PASS/);
    expect(text).toContain('172.31.1.10');
    expect(text).toContain(`NITRIDE-EPH-ZERO vol=${eph.id}`);
    expect(text).toMatch(new RegExp(`NITRIDE-DISK vol=${eph.id} .* sha256=[0-9a-f]{64}`));
  }, 420_000);

  it('QEMU is its own unit, jailed: uid not 0, no capabilities, seccomp filter, NoNewPrivs, own pid namespace; the daemon unit keeps its bounding set', async () => {
    const unit = `nitride-vm-${vm.id}.service`;
    const { ActiveState, MainPID } = await show(unit, ['ActiveState', 'MainPID']);
    expect(ActiveState).toBe('active');
    expect((await sd.execOk(['cat', `/proc/${MainPID}/task/${MainPID}/children`])).trim()).toBe(String(vm.pid));
    const st = await procStatus(vm.pid!);
    expect(Number(st.Uid!.split(/\s+/)[0])).toBe(vm.uid);
    expect(vm.uid).toBeGreaterThan(0);
    expect(st.CapEff).toBe('0000000000000000');
    expect(st.Seccomp).toBe('2');
    expect(st.NoNewPrivs).toBe('1');
    // Its own pid namespace, where it is PID 1 (the unit's main pid is the unshare holding it).
    expect(st.NSpid!.split(/\s+/).slice(-1)).toEqual(['1']);
    expect((await show('nitride.service', ['CapabilityBoundingSet'])).CapabilityBoundingSet).toBe('cap_net_admin cap_net_raw');
  });

  it('kill -9 of the daemon: systemd restarts it, the new daemon re-adopts the guest, which reads its ephemeral data back intact', async () => {
    const rechecks = async () => [...(await consoleText()).matchAll(/^NITRIDE-EPH-RECHECK i=(\d+) (\w+)/gm)].map((m) => ({ i: Number(m[1]), result: m[2]! }));
    const lastRecheck = async () => (await rechecks()).at(-1)?.i ?? 0;
    await waitFor('a first re-read of the ephemeral data', async () => (await lastRecheck()) > 0, 120_000);
    const { MainPID: pid, NRestarts: restarts } = await show('nitride.service', ['MainPID', 'NRestarts']);
    await sd.execOk(['kill', '-9', pid!]);
    // Restart=on-failure; READY=1 once every volume is served.
    await waitFor('nitride.service back after kill -9', async () => {
      const { MainPID, ActiveState } = await show('nitride.service', ['MainPID', 'ActiveState']);
      return MainPID !== pid && MainPID !== '0' && ActiveState === 'active';
    }, 120_000);
    expect(Number((await show('nitride.service', ['NRestarts'])).NRestarts)).toBe(Number(restarts) + 1);
    expect(await json<VmInfo>(['vm', 'describe', 'g'])).toMatchObject({ state: 'running', pid: vm.pid });
    // Two more re-reads: at least one whole read issued after the new daemon was serving.
    const since = await lastRecheck();
    await waitFor('re-reads after the restart', async () => (await lastRecheck()) >= since + 2, 120_000);
    const all = await rechecks();
    expect(all.filter((r) => r.result !== 'ok')).toEqual([]);
    expect(await consoleText()).not.toContain('NITRIDE-STEP-FAILED');
  }, 420_000);

  it('the one copy of the ephemeral key is the wrapped blob in systemd\'s sealed memfd: it decrypts what the guest wrote; nothing derived from it is in a file or the journal', async () => {
    const { key, blob, wrappedKey, seals } = await storedEphemeralKey(sd, eph.id);
    expect(seals).toEqual({ write: true, shrink: true, grow: true, seal: true });
    // The image's first MiB, decrypted with that key, is the MiB the guest wrote (its sha on the console).
    const wrote = new RegExp(`NITRIDE-DISK vol=${eph.id} .* sha256=([0-9a-f]{64})`).exec(await consoleText())![1];
    const image = readFileSync(sd.hostPath(`/var/lib/nitride/ephemeral/${eph.id}.img`)).subarray(0, 1 << 20);
    xtsDecrypt(key, eph.encryption.dataUnitSize, 0, image);
    expect(createHash('sha256').update(image).digest('hex')).toBe(wrote);
    const needles = storedKeyNeedles(key, blob, wrappedKey);
    key.fill(0);
    expect(await scanContainer(sd, needles)).toEqual({});
    const meta = JSON.parse(readFileSync(sd.hostPath(`/var/lib/nitride/volumes/${eph.id}.json`), 'utf8')) as Record<string, unknown>;
    expect(Object.keys(meta)).not.toContain('kms');
    expect(JSON.stringify(meta)).not.toMatch(/wrappedKey|handover/);
  }, 300_000);

  it('a daemon restart re-adopts the guest; vm stop ends its unit', async () => {
    await sd.execOk(['systemctl', 'restart', 'nitride.service']);
    const again = await json<VmInfo>(['vm', 'describe', 'g']);
    expect(again).toMatchObject({ state: 'running', pid: vm.pid });
    const stopped = await json<VmInfo>(['vm', 'stop', 'g']);
    expect(stopped.state).toBe('stopped');
    expect((await sd.exec(['systemctl', 'is-active', `nitride-vm-${vm.id}.service`])).stdout.trim()).not.toBe('active');
  }, 120_000);
});
