/**
 * Encrypted volumes end to end: a real KMS process, a real daemon, real NBD clients.
 * Crypto proofs scan the backing files and logs for known plaintext and key bytes.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ID_PATTERNS } from '../../src/api/ids.js';
import type { VolumeInfo } from '../../src/api/volumes.js';
import { CLI, nitride, startDaemon, startHost, type TestHost } from '../helpers/nitride.js';
import { nbdPython, run, runOk } from '../helpers/run.js';
import { containsBytes, filesUnder, keyNeedles } from '../helpers/scan.js';

const MARKER = 'NITRIDE-KNOWN-PLAINTEXT-7f3a9c';
/** A 4 MiB image full of a recognisable text. */
function markerImage(file: string): Buffer {
  const data = Buffer.alloc(4 << 20);
  for (let off = 0; off < data.length; off += 64) data.write(`${MARKER}-${String(off).padStart(12, '0')}\n`, off);
  writeFileSync(file, data);
  return data;
}
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function create(host: TestHost, args: string[]): Promise<VolumeInfo> {
  const r = await host.cli(['volume', 'create', '--json', ...args]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as VolumeInfo;
}

let host: TestHost;
beforeAll(async () => {
  host = await startHost({ daemonArgs: ['--nbd-listen', '127.0.0.1:0'] });
});
afterAll(async () => {
  await host?.stop();
});

describe('volumes through the CLI and real NBD clients', () => {
  it('creates ebs and ephemeral volumes whose URIs qemu-img, nbdinfo and fio accept as they are', async () => {
    const ebs = await create(host, ['--size', '64M', '--name', 'web-data']);
    expect(ebs.id).toMatch(ID_PATTERNS.volume);
    expect(ebs).toMatchObject({ type: 'ebs', size: 64 << 20, name: 'web-data', state: 'available' });
    expect(ebs.encryption.kmsKeyId).toMatch(/^key-/);
    expect(ebs.uri).toBe(`nbd+unix:///${ebs.id}?socket=${host.nbdSocket}`);
    const eph = await create(host, ['--type', 'ephemeral', '--size', '32M']);
    expect(eph).toMatchObject({ type: 'ephemeral', size: 32 << 20 });
    expect(eph.encryption.kmsKeyId).toBeNull();

    const describe = JSON.parse((await host.cli(['volume', 'describe', ebs.id, '--json'])).stdout);
    for (const k of ['id', 'type', 'size', 'uri']) expect(describe[k]).toEqual((ebs as unknown as Record<string, unknown>)[k]);
    const list = JSON.parse((await host.cli(['volume', 'list', '--json'])).stdout) as VolumeInfo[];
    expect(list.map((v) => v.id).sort()).toEqual([ebs.id, eph.id].sort());

    for (const v of [ebs, eph]) {
      const info = JSON.parse(await runOk('nbdinfo', ['--json', v.uri])).exports[0];
      expect(info).toMatchObject({ 'export-size': v.size, can_flush: true, can_fua: true, can_trim: true, can_zero: true, can_multi_conn: true, block_size_minimum: 512 });
      const fio = await run('fio', ['--name=v', '--ioengine=nbd', `--uri=${v.uri}`, '--rw=randwrite', '--bs=4k', '--size=8M', '--iodepth=16', '--verify=crc32c', '--do_verify=1', '--verify_state_save=0', '--output-format=json']);
      expect(fio.code, fio.stderr).toBe(0);
      expect(JSON.parse(fio.stdout.slice(fio.stdout.indexOf('{'))).jobs[0].error).toBe(0);
      const qemu = await runOk('qemu-io', ['-f', 'raw', v.uri, '-c', 'write -P 0x3c 1536 512', '-c', 'read -P 0x3c 1536 512']);
      expect(qemu).not.toMatch(/failed/);
      expect(await runOk('qemu-img', ['info', '--output=json', v.uri])).toContain(`"virtual-size": ${v.size}`);
    }
    const tcp = await runOk('qemu-io', ['-f', 'raw', ebs.tcpUri!, '-c', 'read -P 0x3c 1536 512']);
    expect(tcp).not.toMatch(/failed/);
  });

  it('resize grows a volume (data kept), never shrinks it; nbdinfo --can answers', async () => {
    const vol = await create(host, ['--size', '4M']);
    await runOk('qemu-io', ['-f', 'raw', vol.uri, '-c', 'write -P 0x42 0 64k']);
    const grown = JSON.parse((await host.cli(['volume', 'resize', vol.id, '--size', '8M', '--json'])).stdout) as VolumeInfo;
    expect(grown.size).toBe(8 << 20);
    expect(await runOk('qemu-img', ['info', '--output=json', vol.uri])).toContain(`"virtual-size": ${8 << 20}`);
    expect(await runOk('qemu-io', ['-f', 'raw', vol.uri, '-c', 'read -P 0x42 0 64k', '-c', 'read -P 0 4M 4M'])).not.toMatch(/failed/);
    const shrink = await host.cli(['volume', 'resize', vol.id, '--size', '4M']);
    expect(shrink.code).toBe(2);
    expect(shrink.stderr).toMatch(/volumes only grow/);
    for (const can of ['fua', 'flush', 'trim', 'zero', 'fast-zero', 'multi-conn', 'cache', 'df', 'structured-reply']) {
      expect((await run('nbdinfo', ['--can', can, vol.uri])).code, can).toBe(0);
    }
    expect((await run('nbdinfo', ['--is', 'read-only', vol.uri])).code).not.toBe(0);
  });

  it('ephemeral: never-written blocks read as zeroes and are reported as holes', async () => {
    const eph = await create(host, ['--type', 'ephemeral', '--size', '16M']);
    expect(await runOk('qemu-io', ['-f', 'raw', eph.uri, '-c', 'read -P 0 0 16M'])).not.toMatch(/failed/);
    await runOk('qemu-io', ['-f', 'raw', eph.uri, '-c', 'write -P 0x77 4M 1M']);
    const map = await runOk('nbdinfo', ['--map', '--json', eph.uri]);
    const extents = JSON.parse(map) as Array<{ offset: number; length: number; type: number }>;
    expect(extents.find((e) => e.offset === 0)).toMatchObject({ type: 3 }); // hole,zero
    expect(extents.some((e) => e.offset <= 4 << 20 && e.offset + e.length > 4 << 20 && e.type === 0)).toBe(true);
  });

  it('import/export copy plaintext in and out; the plaintext never reaches any backing file', async () => {
    const vol = await create(host, ['--size', '16M']);
    const eph = await create(host, ['--type', 'ephemeral', '--size', '16M']);
    const image = path.join(host.dir, 'marker.raw');
    const data = markerImage(image);
    for (const v of [vol, eph]) {
      expect((await host.cli(['volume', 'import', v.id, image])).code).toBe(0);
      await runOk('nbdcopy', [image, v.uri]);
      const out = path.join(host.dir, `${v.id}.out`);
      const r = await host.cli(['volume', 'export', v.id, out, '--json']);
      expect(r.code, r.stderr).toBe(0);
      expect(sha(readFileSync(out).subarray(0, data.length))).toBe(sha(data));
    }
    await runOk('qemu-io', ['-f', 'raw', vol.uri, '-c', 'flush']);
    const stored = [...filesUnder(path.join(host.dir, 'state')), ...filesUnder(path.join(host.dir, 'kms'))];
    expect(stored.some((f) => f.endsWith(`${vol.id}.img`))).toBe(true);
    expect(stored.some((f) => f.endsWith(`${eph.id}.img`))).toBe(true);
    for (const f of stored) expect(containsBytes(f, Buffer.from(MARKER)), f).toBe(false);
  });

  it('keys never reach logs, metadata or audit: scan for the unwrapped data key', async () => {
    const vol = await create(host, ['--size', '4M']);
    await runOk('qemu-io', ['-f', 'raw', vol.uri, '-c', 'write -P 0x11 0 64k']);
    const meta = JSON.parse(readFileSync(path.join(host.dir, 'state', 'volumes', `${vol.id}.json`), 'utf8'));
    expect(JSON.stringify(meta)).not.toMatch(/plaintext/i);
    // Unwrap the stored key the way the daemon does, to know what must never appear.
    const { plaintext } = await host.kms.client.decrypt(Buffer.from(meta.kms.wrappedKey, 'base64'), { volume: vol.id });
    expect(plaintext.length).toBe(64);
    const needles = keyNeedles(plaintext);
    const places = [...filesUnder(path.join(host.dir, 'state')), ...filesUnder(path.join(host.dir, 'kms'))];
    for (const f of places) for (const n of needles) expect(containsBytes(f, n), f).toBe(false);
    const logs = Buffer.from(host.daemon.output() + host.kms.output());
    for (const n of needles) expect(logs.includes(n)).toBe(false);
    plaintext.fill(0);
  });

  it('one consumer at a time unless multi-attach; delete refused while attached', async () => {
    const vol = await create(host, ['--size', '4M']);
    const shared = await create(host, ['--size', '4M', '--multi-attach']);
    // Hold a connection from one process while another tries to attach.
    const holder = `
import nbd, sys, time, json, subprocess
h = nbd.NBD(); h.connect_uri(sys.argv[1])
r = subprocess.run(['qemu-img', 'info', sys.argv[1]], capture_output=True, text=True)
d = subprocess.run(['node', sys.argv[2], 'volume', 'delete', sys.argv[3]], capture_output=True, text=True)
print(json.dumps({'code': r.returncode, 'err': r.stderr, 'delcode': d.returncode, 'delerr': d.stderr}))
`;
    const tryBoth = async (v: VolumeInfo) => {
      const r = await run('/usr/bin/python3', ['-c', holder, v.uri, CLI, v.id], { env: { NITRIDE_SOCKET: host.daemon.socket } });
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout.trim().split('\n').pop()!) as { code: number; err: string; delcode: number; delerr: string };
    };
    const single = await tryBoth(vol);
    expect(single.code).not.toBe(0);
    expect(single.err).toMatch(new RegExp(`volume ${vol.id} is attached to another consumer \\(pid \\d+\\)`));
    expect(single.delcode).toBe(1);
    expect(single.delerr.trim()).toMatch(/^nitride: volume vol-[0-9a-f]+ is attached \(pid \d+\); detach it first$/);
    const multi = await tryBoth(shared);
    expect(multi.code).toBe(0);
    // after the holder left, the volume is free again
    expect((await host.cli(['volume', 'describe', vol.id, '--json'])).stdout).toContain('"state": "available"');
  });

  it('nbd-proxy serves libnbd over stdin/stdout (connect_command) and socket activation', async () => {
    const vol = await create(host, ['--size', '4M']);
    const res = await nbdPython<{ size: number; ok: boolean }>(`
import nbd, json
h = nbd.NBD()
h.set_export_name(${JSON.stringify(vol.id)})
h.connect_command(['node', ${JSON.stringify(CLI)}, 'nbd-proxy', '--nbd-socket', ${JSON.stringify(host.nbdSocket)}])
h.pwrite(b'p'*4096, 8192)
print(json.dumps({'size': h.get_size(), 'ok': h.pread(4096, 8192) == b'p'*4096}))
`);
    expect(res).toEqual({ size: 4 << 20, ok: true });
    // the same through systemd socket activation (LISTEN_FDS, fd 3)
    const activated = await nbdPython<{ size: number; ok: boolean }>(`
import nbd, json
h = nbd.NBD()
h.set_export_name(${JSON.stringify(vol.id)})
h.connect_systemd_socket_activation(['node', ${JSON.stringify(CLI)}, 'nbd-proxy', '--nbd-socket', ${JSON.stringify(host.nbdSocket)}])
print(json.dumps({'size': h.get_size(), 'ok': h.pread(4096, 8192) == b'p'*4096}))
`);
    expect(activated).toEqual({ size: 4 << 20, ok: true });
  });

  it('bad CLI input: one line, right exit code', async () => {
    const cases: Array<[string[], number, RegExp]> = [
      [['volume', 'create', '--size', 'ten'], 2, /^nitride: 'ten' is not a size/],
      [['volume', 'create', '--size', '1000'], 2, /^nitride: volume size must be between 1 MiB and 64 TiB/],
      [['volume', 'create', '--size', '1048577'], 2, /multiple of 4096/],
      [['volume', 'create', '--size', '4M', '--type', 'ephemeral', '--kms-key', 'alias/x'], 2, /ephemeral volumes take no KMS key/],
      [['volume', 'create', '--size', '4M', '--kms-key', 'alias/does-not-exist'], 1, /alias\/does-not-exist/],
      [['volume', 'describe', 'vol-00000000000000000'], 1, /^nitride: no volume vol-00000000000000000$/],
      [['volume', 'describe', 'bogus'], 2, /^nitride: invalid volume id: .*must be a volume id/],
      [['volume', 'resize', 'vol-00000000000000000', '--size', '1G'], 1, /no volume/],
      [['volume', 'import', 'vol-00000000000000000', '/nonexistent'], 1, /no volume/],
    ];
    for (const [args, code, message] of cases) {
      const r = await host.cli(args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(code);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr.trim(), args.join(' ')).toMatch(message);
    }
  });
});

describe('keys, KMS and lifetime', () => {
  it('KMS unreachable: ebs create fails with one clear line (exit 1, HTTP 503); ephemeral volumes still work', async () => {
    const dir = path.join(host.dir, 'nokms');
    const d = await startDaemon({ stateDir: path.join(dir, 'state'), socket: path.join(dir, 'run', 'control.sock'), args: ['--kms-socket', path.join(dir, 'absent.sock')] });
    try {
      const r = await nitride(['volume', 'create', '--size', '4M', '--control-socket', d.socket]);
      expect(r.code).toBe(1);
      expect(r.stderr.trim()).toMatch(/^nitride: cannot reach the nitride KMS at .*absent\.sock \(is it running\?\)$/);
      await expect(d.client.call('POST', '/v1/volumes', { type: 'ebs', size: 4 << 20 })).rejects.toMatchObject({ status: 503 });
      expect((await nitride(['volume', 'create', '--type', 'ephemeral', '--size', '4M', '--control-socket', d.socket])).code).toBe(0);
    } finally {
      await d.stop();
    }
  });

  it('an ebs volume survives a daemon restart and reads back identically; its KMS key disabled, it refuses to attach', async () => {
    const vol = await create(host, ['--size', '16M']);
    const image = path.join(host.dir, 'persist.raw');
    const data = markerImage(image);
    await runOk('nbdcopy', [image, vol.uri]);
    await host.restartDaemon('SIGTERM');
    const back = await runOk('nbdcopy', [vol.uri, '-'], {});
    expect(back.length).toBeGreaterThan(0);
    const out = path.join(host.dir, 'persist.out');
    await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', vol.uri, out]);
    expect(sha(readFileSync(out).subarray(0, data.length))).toBe(sha(data));

    expect((await host.cli(['kms', 'disable-key', vol.encryption.kmsKeyId!])).code).toBe(0);
    const refused = await run('qemu-img', ['info', vol.uri]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(new RegExp(`cannot attach ${vol.id}: KMS key ${vol.encryption.kmsKeyId} is disabled`));
    expect((await host.cli(['kms', 'enable-key', vol.encryption.kmsKeyId!])).code).toBe(0);
    expect((await run('qemu-img', ['info', vol.uri])).code).toBe(0);
  });

  it('key rotation: rotate the KMS key, re-wrap the volume key, data still readable', async () => {
    const key = JSON.parse((await host.cli(['kms', 'create-key', '--alias', 'alias/team-a', '--json'])).stdout).keyId as string;
    const vol = await create(host, ['--size', '4M', '--kms-key', 'alias/team-a']);
    expect(vol.encryption).toMatchObject({ kmsKeyId: key, keyVersion: 1 });
    await runOk('qemu-io', ['-f', 'raw', vol.uri, '-c', 'write -P 0x5e 0 1M']);
    expect((await host.cli(['kms', 'rotate-key', key])).code).toBe(0);
    const rewrapped = JSON.parse((await host.cli(['volume', 'rewrap', vol.id, '--json'])).stdout) as VolumeInfo;
    expect(rewrapped.encryption).toMatchObject({ kmsKeyId: key, keyVersion: 2 });
    expect(await runOk('qemu-io', ['-f', 'raw', vol.uri, '-c', 'read -P 0x5e 0 1M'])).not.toMatch(/failed/);
    // and onto another key altogether
    const other = JSON.parse((await host.cli(['kms', 'create-key', '--json'])).stdout).keyId as string;
    const moved = JSON.parse((await host.cli(['volume', 'rewrap', vol.id, '--kms-key', other, '--json'])).stdout) as VolumeInfo;
    expect(moved.encryption.kmsKeyId).toBe(other);
    expect((await host.cli(['kms', 'disable-key', key])).code).toBe(0);
    expect(await runOk('qemu-io', ['-f', 'raw', vol.uri, '-c', 'read -P 0x5e 0 1M'])).not.toMatch(/failed/);
  });

  it('ephemeral data is unrecoverable after delete and after a daemon crash; the space is released', async () => {
    const image = path.join(host.dir, 'eph.raw');
    markerImage(image);
    const a = await create(host, ['--type', 'ephemeral', '--size', '8M']);
    await runOk('nbdcopy', [image, a.uri]);
    const imgA = filesUnder(path.join(host.dir, 'state')).find((f) => f.endsWith(`${a.id}.img`))!;
    const keptA = path.join(host.dir, 'kept-a.img');
    copyFileSync(imgA, keptA); // what an attacker with the disk would have
    expect((await host.cli(['volume', 'delete', a.id])).code).toBe(0);
    expect(existsSync(imgA)).toBe(false);
    expect(containsBytes(keptA, Buffer.from(MARKER))).toBe(false);
    expect(statSync(keptA).size).toBe(8 << 20);

    const b = await create(host, ['--type', 'ephemeral', '--size', '8M']);
    await runOk('nbdcopy', [image, b.uri]);
    const imgB = filesUnder(path.join(host.dir, 'state')).find((f) => f.endsWith(`${b.id}.img`))!;
    const keptB = path.join(host.dir, 'kept-b.img');
    copyFileSync(imgB, keptB);
    await host.restartDaemon('SIGKILL'); // crash: the key dies with the process
    expect(existsSync(imgB)).toBe(false);
    expect((await host.cli(['volume', 'describe', b.id])).code).toBe(1);
    expect(containsBytes(keptB, Buffer.from(MARKER))).toBe(false);
    expect(host.daemon.output()).toContain('crypto-wiped');
  });

  it('kill -9 during a write load: everything acknowledged before a FLUSH reply reads back', async () => {
    const vol = await create(host, ['--size', '64M']);
    // Writer: numbered 4 KiB blocks; after each flush it prints how many blocks are durable.
    const writer = `
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
n = 0
try:
    while n < 16384:
        for _ in range(64):
            h.pwrite(n.to_bytes(8, 'little') * 512, n * 4096); n += 1
        h.flush()
        print(n, flush=True)
except Exception as e:
    print('stopped', e, file=sys.stderr, flush=True)
`;
    const { spawn } = await import('node:child_process');
    const child = spawn('/usr/bin/python3', ['-c', writer, vol.uri], { stdio: ['ignore', 'pipe', 'pipe'] });
    let flushed = 0;
    child.stdout.on('data', (d: Buffer) => {
      for (const line of d.toString().trim().split('\n')) if (/^\d+$/.test(line)) flushed = Number(line);
    });
    const childDone = new Promise((r) => child.on('close', r));
    while (flushed < 1024) await new Promise((r) => setTimeout(r, 20));
    await host.daemon.stop('SIGKILL');
    await childDone;
    const durable = flushed;
    expect(durable).toBeGreaterThanOrEqual(1024);
    await host.restartDaemon();
    const check = await nbdPython<{ bad: number; checked: number }>(`
import nbd, json
h = nbd.NBD(); h.connect_uri(${JSON.stringify(vol.uri)})
bad = 0
for n in range(${durable}):
    if h.pread(4096, n * 4096) != n.to_bytes(8, 'little') * 512: bad += 1
print(json.dumps({'bad': bad, 'checked': ${durable}}))
`);
    expect(check).toEqual({ bad: 0, checked: durable });
  });

  it('audit log records every mutating volume call with the caller and no secrets', async () => {
    const lines = readFileSync(path.join(host.dir, 'state', 'audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const actions = new Set(lines.map((l) => l.action));
    for (const a of ['volume.create', 'volume.delete', 'volume.import', 'volume.export', 'volume.rewrap']) expect(actions).toContain(a);
    const create = lines.find((l) => l.action === 'volume.create' && l.status === 201);
    expect(create.target).toMatch(/^vol-/);
    expect(create.caller.uid).toBe(0);
    expect(JSON.stringify(lines)).not.toMatch(/wrappedKey|plaintext/);
  });
});
