/**
 * Ephemeral volumes across a live update and a crash under a real systemd (nspawn): the wrapped
 * key of an attached ephemeral volume waits in a sealed memfd in systemd's fd store, so both
 * `systemctl restart` and a `kill -9` followed by systemd's restart keep the data a client
 * (qemu-io, standing in for a guest's QEMU: the daemon keeps any attached ephemeral volume, a
 * VM's included) wrote; and nothing derived from the key is in any file the daemon could write
 * (the unit's sandbox limits it to its state and runtime directories and its private /tmp),
 * nor in the journal.
 */
import { closeSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DaemonStatus } from '../../src/api/daemon.js';
import type { VolumeInfo } from '../../src/api/volumes.js';
import { xtsDecrypt } from '../../src/native/addon.js';
import { scanContainer, storedEphemeralKey, storedKeyNeedles, storedMemfds } from '../helpers/fd-store.js';
import { CLI, nitride, tempDir } from '../helpers/nitride.js';
import { UNIT_ROOT, bootSystemd, canBootSystemd, type BootedSystemd } from '../helpers/nspawn.js';
import { runOk } from '../helpers/run.js';
import { waitFor } from '../helpers/netns.js';

const UNITS = ['nitride-kms.socket', 'nitride-kms.service', 'nitride.service'];
/** Copies of the state directory taken before each start of the daemon. */
const SNAPSHOTS = '/var/tmp/nitride-prestart';
/** A volume id written here has its metadata removed before the next start. */
const FORGET = '/run/nitride-test-forget';

describe.skipIf(!canBootSystemd)('ephemeral volumes across a live update and a crash, under systemd', () => {
  let sd: BootedSystemd;
  let cleanup: () => void;
  let volume: VolumeInfo;
  const cli = (args: string[]) => sd.execOk([process.execPath, CLI, ...args]);
  const show = async (unit: string, prop: string) => (await sd.show(unit, [prop]))[prop] ?? '';
  const status = async () => JSON.parse(await cli(['status', '--json'])) as DaemonStatus;
  const nbdUri = () => `nbd+unix:///${volume.id}?socket=${sd.hostPath('/run/nitride/nbd.sock')}`;
  const qemuIo = (commands: string[]) => runOk('qemu-io', ['-f', 'raw', nbdUri(), ...commands.flatMap((c) => ['-c', c])]);
  /** A client that keeps the volume open across the daemon's restart (as QEMU does), reading the pattern. */
  const holdingClient = () => {
    const opts = `driver=nbd,server.type=unix,server.path=${sd.hostPath('/run/nitride/nbd.sock')},export=${volume.id},reconnect-delay=30`;
    const commands: string[] = [];
    for (let i = 0; i < 60; i++) commands.push('read -P 0xa7 0 1M', 'sleep 100');
    return runOk('qemu-io', ['--image-opts', opts, ...commands.flatMap((c) => ['-c', c])], { timeoutMs: 240_000 });
  };
  const expectAllRead = (out: string) => {
    expect(out.match(/^read 1048576\/1048576 bytes at offset 0$/gm)).toHaveLength(60);
    expect(out).not.toMatch(/fail|error|mismatch/i);
  };
  /** Waits (systemd reads FDSTORE messages when it gets to them) until the store holds memfds of exactly `ids`. */
  const holds = async (ids: string[]) => {
    const want = JSON.stringify([...ids].sort());
    let seen = '';
    await waitFor(`the fd store holding ${want}`, () => (seen = JSON.stringify(storedMemfds(sd.pid).map((m) => m.volume).sort())) === want, 30_000).catch(() => {
      throw new Error(`systemd holds the memfds of ${seen}, not ${want}`);
    });
  };
  /** Waits until the unit's NFileDescriptorStore is `n`. */
  const storeCount = async (n: number) => {
    let seen = '';
    await waitFor(`NFileDescriptorStore=${n}`, async () => (seen = await show('nitride.service', 'NFileDescriptorStore')) === String(n), 30_000).catch(() => {
      throw new Error(`NFileDescriptorStore is ${seen}, not ${n}`);
    });
  };

  beforeAll(async () => {
    let dir: string;
    ({ dir, cleanup } = tempDir('nitride-sd-eph-'));
    const r = await nitride(['install-units', '--dir', dir, '--no-reload', '--root', UNIT_ROOT]);
    expect(r.code, r.stderr).toBe(0);
    sd = await bootSystemd(Object.fromEntries(UNITS.map((u) => [path.join(dir, u), u])));
    // Before each start, a copy of the state directory as the next daemon finds it (a handover
    // written at the stop and deleted at the start would otherwise leave no trace to scan), and
    // the metadata of the volume named in FORGET removed (the daemon no longer knows it).
    mkdirSync(sd.hostPath('/etc/systemd/system/nitride.service.d'), { recursive: true });
    writeFileSync(
      sd.hostPath('/etc/systemd/system/nitride.service.d/test.conf'),
      [
        '[Service]',
        `ExecStartPre=+/bin/sh -c 'mkdir -p ${SNAPSHOTS} && cp -a /var/lib/nitride ${SNAPSHOTS}/$$$$'`,
        `ExecStartPre=+/bin/sh -c 'f=$$(cat ${FORGET} 2>/dev/null) && rm -f /var/lib/nitride/volumes/$$f.json; rm -f ${FORGET}'`,
        '',
      ].join('\n'),
    );
    await sd.execOk(['systemctl', 'daemon-reload']);
    await sd.execOk(['systemctl', 'start', 'nitride-kms.socket', 'nitride.service']);
  }, 600_000);

  afterAll(async () => {
    await sd?.shutdown();
    cleanup?.();
  }, 60_000);

  it('status says ephemeral volumes cross restarts in the fd store; an attach puts one sealed memfd there', async () => {
    expect((await status()).volumes.ephemeralHandover).toEqual({ via: 'fd-store', kept: 0 });
    expect(await cli(['status'])).toMatch(/^ephemeral handover:\s+systemd fd store \(0 kept\)/m);
    volume = JSON.parse(await cli(['volume', 'create', '--type', 'ephemeral', '--size', '16M', '--json'])) as VolumeInfo;
    await holds([]);
    const stored = Number(await show('nitride.service', 'NFileDescriptorStore'));
    expect(await qemuIo(['write -P 0xa7 0 1M', 'read -P 0xa7 0 1M'])).not.toMatch(/fail|mismatch/i);
    await storeCount(stored + 1);
    await holds([volume.id]);
    expect((await status()).volumes.ephemeralHandover).toEqual({ via: 'fd-store', kept: 1 });
  });

  it('live update: `systemctl restart` while a client holds the volume; the client sees no error and the data is there', async () => {
    const pid = await show('nitride.service', 'MainPID');
    const client = holdingClient();
    await new Promise((r) => setTimeout(r, 1000));
    await sd.execOk(['systemctl', 'restart', 'nitride.service']);
    expect(await show('nitride.service', 'MainPID')).not.toBe(pid);
    expectAllRead(await client);
    expect(await qemuIo(['read -P 0xa7 0 1M'])).not.toMatch(/fail|mismatch/i);
    await holds([volume.id]);
    const journal = await sd.execOk(['journalctl', '-u', 'nitride.service', '-o', 'cat', '--no-pager']);
    expect(journal).toContain('"msg":"ephemeral volume kept for the next daemon (wrapped key in the fd store)"');
    expect(journal).toMatch(new RegExp(`"volume":"${volume.id}".*"msg":"ephemeral volume taken over from the previous daemon \\(key in the fd store\\)"`));
  }, 300_000);

  it('kill -9 of the daemon: systemd restarts it, the fd store kept the key, the client sees no error and the data is there', async () => {
    const pid = await show('nitride.service', 'MainPID');
    const client = holdingClient();
    await new Promise((r) => setTimeout(r, 1000));
    await sd.execOk(['kill', '-9', pid]);
    // Restart=on-failure; READY=1 once every volume is served.
    for (let i = 0; ; i++) {
      const [main, state] = [await show('nitride.service', 'MainPID'), await show('nitride.service', 'ActiveState')];
      if (main !== pid && main !== '0' && state === 'active') break;
      if (i > 600) throw new Error(`nitride.service not back after kill -9: ${state}, MainPID ${main}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(await show('nitride.service', 'NRestarts')).toBe('1');
    expectAllRead(await client);
    expect(await qemuIo(['read -P 0xa7 0 1M'])).not.toMatch(/fail|mismatch/i);
    expect((await status()).volumes.ephemeralHandover).toEqual({ via: 'fd-store', kept: 1 });
  }, 300_000);

  it('neither the key, nor its wrapped blob, nor metadata naming one is in any file the daemon could write or in the journal', async () => {
    // The one copy: systemd's sealed memfd. Read it (as root on the host), unwrap the blob with the KMS.
    const { key, blob, wrappedKey, seals } = await storedEphemeralKey(sd, volume.id);
    expect(seals).toEqual({ write: true, shrink: true, grow: true, seal: true });
    // It is the volume's key: it decrypts the image's first data unit to what the client wrote.
    const image = sd.hostPath(`/var/lib/nitride/ephemeral/${volume.id}.img`);
    const unit = Buffer.alloc(volume.encryption.dataUnitSize);
    const img = openSync(image, 'r');
    try {
      readSync(img, unit, 0, unit.length, 0);
    } finally {
      closeSync(img);
    }
    xtsDecrypt(key, unit.length, 0, unit);
    expect(unit.equals(Buffer.alloc(unit.length, 0xa7))).toBe(true);

    // Copies: the key itself is zeroed once the test is done with it.
    const needles = [...storedKeyNeedles(key, blob, wrappedKey), Buffer.from('wrappedKey')]; // no ebs volume here
    key.fill(0);
    // The rest of /var and /run hold the state directory as each of the three starts found it.
    expect(readdirSync(sd.hostPath(SNAPSHOTS))).toHaveLength(3);
    expect(await scanContainer(sd, needles)).toEqual({});
    const meta = JSON.parse(readFileSync(sd.hostPath(`/var/lib/nitride/volumes/${volume.id}.json`), 'utf8')) as Record<string, unknown>;
    expect(Object.keys(meta).sort()).toEqual(['cipher', 'createdAt', 'dataUnitSize', 'format', 'id', 'multiAttach', 'size', 'store', 'type']);
  }, 300_000);

  it('at start, a memfd for a volume the daemon does not know is dropped from the store', async () => {
    const other = JSON.parse(await cli(['volume', 'create', '--type', 'ephemeral', '--size', '4M', '--json'])) as VolumeInfo;
    await runOk('qemu-io', ['-f', 'raw', `nbd+unix:///${other.id}?socket=${sd.hostPath('/run/nitride/nbd.sock')}`, '-c', 'write -P 0x11 0 64k']);
    await holds([volume.id, other.id]);
    const stored = Number(await show('nitride.service', 'NFileDescriptorStore'));
    writeFileSync(sd.hostPath(FORGET), other.id);
    await sd.execOk(['systemctl', 'restart', 'nitride.service']);
    await holds([volume.id]);
    await storeCount(stored - 1);
    expect((await sd.exec([process.execPath, CLI, 'volume', 'describe', other.id])).code).toBe(1);
    expect(await qemuIo(['read -P 0xa7 0 1M'])).not.toMatch(/fail|mismatch/i);
    const journal = await sd.execOk(['journalctl', '-u', 'nitride.service', '-o', 'cat', '--no-pager', '-n', '30']);
    expect(journal).toMatch(new RegExp(`"dropped":\\["eph-${other.id}"\\].*"msg":"fd store entries nothing here uses dropped"`));
  }, 300_000);

  it('delete takes the memfd out of the store; a full stop (systemd empties the store) wipes what is left', async () => {
    const stored = Number(await show('nitride.service', 'NFileDescriptorStore'));
    await cli(['volume', 'delete', volume.id]);
    await storeCount(stored - 1);
    await holds([]);

    const other = JSON.parse(await cli(['volume', 'create', '--type', 'ephemeral', '--size', '4M', '--json'])) as VolumeInfo;
    volume = other;
    await qemuIo(['write -P 0xa7 0 64k']);
    await holds([other.id]);
    await sd.execOk(['systemctl', 'stop', 'nitride.service']);
    await sd.execOk(['systemctl', 'start', 'nitride.service']);
    expect((await sd.exec([process.execPath, CLI, 'volume', 'describe', other.id])).code).toBe(1);
    await holds([]);
    const journal = await sd.execOk(['journalctl', '-u', 'nitride.service', '-o', 'cat', '--no-pager', '-n', '30']);
    expect(journal).toMatch(new RegExp(`"volume":"${other.id}".*crypto-wiped`));
  }, 300_000);
});
