/**
 * A guest under the shipped, hardened nitride.service (real systemd in nspawn, QEMU from the
 * tree's own qemu-system-x86, TCG): `vm run` starts it as its own transient unit
 * (src/vm/unit.ts), it boots and writes/verifies its disk and gets its address by DHCP on the
 * TAP the launcher opened, its QEMU is jailed (uid ≠ 0, CapEff 0, Seccomp 2, PID 1 of its own
 * pid namespace), the daemon's unit
 * keeps its sandbox, and a daemon restart re-adopts the guest; `vm stop` ends the unit.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VmInfo } from '../../src/api/vms.js';
import type { VolumeInfo } from '../../src/api/volumes.js';
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
    const append = `console=ttyS0 panic=-1 clocksource=hpet nitride.test=e2e nitride.ebs=${volume.id} nitride.mib=1 nitride.after=idle`;
    vm = await json<VmInfo>(['vm', 'run', '--name', 'g', '--kernel', path.join(guestDir, 'vmlinuz'), '--initrd', path.join(guestDir, 'initrd.img'), '--memory', '256M', '--append', append, '--volume', `${volume.id}:boot`, '--eni', 'eni-0123456789abcdef0', '--start-timeout', '120']).catch(async (err: Error) => {
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

  it('a daemon restart re-adopts the guest; vm stop ends its unit', async () => {
    await sd.execOk(['systemctl', 'restart', 'nitride.service']);
    const again = await json<VmInfo>(['vm', 'describe', 'g']);
    expect(again).toMatchObject({ state: 'running', pid: vm.pid });
    const stopped = await json<VmInfo>(['vm', 'stop', 'g']);
    expect(stopped.state).toBe('stopped');
    expect((await sd.exec(['systemctl', 'is-active', `nitride-vm-${vm.id}.service`])).stdout.trim()).not.toBe('active');
  }, 120_000);
});
