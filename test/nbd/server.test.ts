/**
 * The NBD server against real clients (qemu-io, qemu-img, nbdinfo, nbdcopy, fio, libnbd
 * via Python) and raw sockets, twice: over in-memory backends (requests served on the event
 * loop) and over encrypted files (the native data plane, NbdLane, serving aligned READ/WRITE on
 * its own thread and forwarding the rest). Volume-level tests (KMS, persistence) live in
 * test/volume and test/daemon.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, writeFileSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NbdServer } from '../../src/nbd/server.js';
import { RestrictedCatalog, StaticCatalog, sharedExport, ExportRefusedError, type NbdExport } from '../../src/nbd/exports.js';
import { MemoryBackend } from '../../src/volume/memory-backend.js';
import { FileBackend } from '../../src/volume/file-backend.js';
import { EncryptedBackend } from '../../src/volume/encrypted-backend.js';
import type { BlockBackend } from '../../src/volume/backend.js';
import { randomKey } from '../volume/helpers.js';
import { createLogger } from '../../src/log/logger.js';
import { NbdMagic } from '../../src/nbd/constants.js';
import { tempDir } from '../helpers/nitride.js';
import { nbdPython, run, runOk } from '../helpers/run.js';

const SIZE = 64 << 20;

type Plane = 'event loop' | 'native data plane';

async function makeBackend(plane: Plane, dir: string, name: string, size: number): Promise<BlockBackend> {
  if (plane === 'event loop') return new MemoryBackend(size);
  return new EncryptedBackend(await FileBackend.create(path.join(dir, `${name}.img`), size), randomKey());
}

describe.each<Plane>(['event loop', 'native data plane'])('NBD server (%s)', (plane) => {
  let server: NbdServer;
  let socket: string;
  let dir: string;
  let cleanup: () => void;
  let tcpPort: number;
  let backends: BlockBackend[];
  const uri = (name = 'mem') => `nbd+unix:///${name}?socket=${socket}`;

  const refusing: NbdExport = {
    name: 'refused',
    describe: () => ({ size: 1 << 20, capabilities: new MemoryBackend(1 << 20).capabilities }),
    open: async () => {
      throw new ExportRefusedError('volume refused is attached to another consumer');
    },
  };

  beforeAll(async () => {
    ({ dir, cleanup } = tempDir());
    socket = path.join(dir, 'nbd.sock');
    backends = [await makeBackend(plane, dir, 'mem', SIZE), await makeBackend(plane, dir, 'small', 1 << 20)];
    const exports = [sharedExport('mem', backends[0]!, 'memory export'), sharedExport('small', backends[1]!), refusing];
    server = new NbdServer({ catalog: new StaticCatalog(exports), logger: createLogger({ level: 'silent' }) });
    await server.listenUnix(socket);
    tcpPort = await server.listenTcp('127.0.0.1', 0);
  });
  afterAll(async () => {
    await server.close();
    for (const b of backends) await b.close();
    cleanup();
  });

  describe('NBD server with real clients', () => {
    it('nbdinfo sees the export, its flags, block sizes and base:allocation', async () => {
      const info = JSON.parse(await runOk('nbdinfo', ['--json', uri()]));
      expect(info.protocol).toBe('newstyle-fixed');
      expect(info.structured).toBe(true);
      const e = info.exports[0];
      expect(e).toMatchObject({
        'export-name': 'mem',
        description: 'memory export',
        'export-size': SIZE,
        is_read_only: false,
        can_flush: true,
        can_fua: true,
        can_trim: true,
        can_zero: true,
        block_size_minimum: 512,
        block_size_preferred: 4096,
        block_size_maximum: 32 << 20,
      });
      expect(e.contexts).toContain('base:allocation');
      const list = await runOk('nbdinfo', ['--list', '--json', `nbd+unix://?socket=${socket}`]);
      expect(JSON.parse(list).exports.map((x: { 'export-name': string }) => x['export-name']).sort()).toEqual(['mem', 'refused', 'small']);
    });

    it('qemu-io writes patterns (incl. 512-byte I/O) and reads them back', async () => {
      const out = await runOk('qemu-io', ['-f', 'raw', uri(), '-c', 'write -P 0xab 0 1M', '-c', 'write -P 0x11 1536 512', '-c', 'write -z 2M 64k', '-c', 'flush',
        '-c', 'read -P 0xab 0 1536', '-c', 'read -P 0x11 1536 512', '-c', 'read -P 0xab 2048 1046528', '-c', 'read -P 0 2M 64k']);
      expect(out).not.toMatch(/Pattern verification failed|error/i);
      expect(out.match(/^read /gm)).toHaveLength(4);
    });

    it('qemu-img convert in and out round-trips an image; nbdcopy too', async () => {
      const img = path.join(dir, 'in.raw');
      const data = randomBytes(4 << 20);
      writeFileSync(img, data);
      await runOk('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', img, uri()]);
      await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri(), path.join(dir, 'out.raw')]);
      expect(createHash('sha256').update(readFileSync(path.join(dir, 'out.raw')).subarray(0, data.length)).digest('hex')).toBe(
        createHash('sha256').update(data).digest('hex'),
      );
      await runOk('nbdcopy', [img, uri()]);
      const back = await run('nbdcopy', [uri(), '-'], {});
      expect(back.code).toBe(0);
    });

    it('fio ioengine=nbd with verify=crc32c passes at QD32', async () => {
      const r = await run('fio', ['--name=verify', '--ioengine=nbd', `--uri=${uri()}`, '--rw=randwrite', '--bs=4k', '--size=8M', '--iodepth=32', '--verify=crc32c', '--do_verify=1', '--verify_state_save=0', '--output-format=json']);
      expect(r.code, r.stderr).toBe(0);
      const job = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))).jobs[0];
      expect(job.error).toBe(0);
      expect(job.write.io_bytes).toBe(8 << 20);
    });

    it('fio with mixed 512 B–4 MiB writes at QD8 verifies (large payloads are read in place)', async () => {
      const r = await run('fio', ['--name=mixed', '--ioengine=nbd', `--uri=${uri()}`, '--rw=randwrite', '--bsrange=512-4M', '--bs_unaligned=0',
        '--size=32M', '--iodepth=8', '--verify=crc32c', '--do_verify=1', '--verify_state_save=0', '--output-format=json']);
      expect(r.code, r.stderr).toBe(0);
      const job = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))).jobs[0];
      expect(job.error).toBe(0);
      expect(job.write.io_bytes).toBeGreaterThanOrEqual(32 << 20);
    });

    it('TCP listener serves the same exports', async () => {
      const out = await runOk('qemu-io', ['-f', 'raw', `nbd://127.0.0.1:${tcpPort}/small`, '-c', 'write -P 0x5a 0 4k', '-c', 'read -P 0x5a 0 4k']);
      expect(out).not.toMatch(/failed/);
    });

    it('a refused export gets a clear error, not a hang', async () => {
      // QEMU prints the server's message (libnbd keeps it in its debug log only)
      const r = await run('qemu-img', ['info', uri('refused')]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/Denied by server[\s\S]*server reported: volume refused is attached to another consumer/);
    });
  });

  describe('NBD server bad input (libnbd strict mode off)', () => {
    const script = (exportName: string, body: string) => `
import nbd, json
h = nbd.NBD()
h.set_strict_mode(0)
h.connect_uri(${JSON.stringify(uri(exportName))})
res = {}
def attempt(name, fn):
    try:
        fn(); res[name] = 0
    except nbd.Error as e:
        res[name] = e.errno
${body}
h.pwrite(b'x'*512, 0)
res['after'] = h.pread(512, 0) == b'x'*512
print(json.dumps(res))
`;
    it('answers out-of-range, misaligned, oversize, unknown command and flag with the right errno and stays in sync', async () => {
      const res = await nbdPython<Record<string, string | boolean>>(
          script('small', `
attempt('read_past_end', lambda: h.pread(4096, (1<<20) - 512))
attempt('write_past_end', lambda: h.pwrite(b'a'*4096, (1<<20) - 512))
attempt('misaligned_read', lambda: h.pread(100, 3))
attempt('misaligned_write', lambda: h.pwrite(b'a'*100, 7))
attempt('oversize_read', lambda: h.pread(64<<20, 0))
attempt('unknown_flag', lambda: h.pread(512, 0, 0x80))
attempt('trim_past_end', lambda: h.trim(4096, 1<<20))
attempt('zero_past_end', lambda: h.zero(4096, 1<<20))
attempt('fast_zero_unadvertised', lambda: h.zero(4096, 0, nbd.CMD_FLAG_FAST_ZERO))
`),
      );
      expect(res).toMatchObject({
        read_past_end: 'EINVAL',
        write_past_end: 'ENOSPC',
        misaligned_read: 'EINVAL',
        misaligned_write: 'EINVAL',
        oversize_read: 'EINVAL',
        unknown_flag: 'EINVAL',
        trim_past_end: 'EINVAL',
        zero_past_end: 'ENOSPC',
        after: true,
      });
    });

    it('an oversize WRITE payload (40 MiB) is drained and refused; the connection stays usable', async () => {
      const res = await nbdPython<Record<string, string | boolean>>(
        script('mem', `
attempt('oversize_write', lambda: h.pwrite(b'z'*(40<<20), 0))
`),
      );
      expect(res).toMatchObject({ oversize_write: 'EINVAL', after: true });
    });

    it('simple replies (no structured replies, as the kernel client) work for read/write/flush', async () => {
      const res = await nbdPython<Record<string, unknown>>(`
import nbd, json
h = nbd.NBD()
h.set_request_structured_replies(False)
h.set_request_block_size(False)
h.connect_uri(${JSON.stringify(`nbd+unix:///small?socket=${socket}`)})
h.pwrite(b'k'*512, 512)
h.flush()
ok = h.pread(512, 512) == b'k'*512
try:
    h.pread(512, 1<<20); err = 0
except nbd.Error as e:
    err = e.errno
print(json.dumps({'structured': h.get_structured_replies_negotiated(), 'ok': ok, 'err': err}))
`);
      expect(res).toEqual({ structured: false, ok: true, err: 'EINVAL' });
    });

    async function rawExchange(bytes: Buffer, waitMs = 300): Promise<{ received: Buffer; closed: boolean }> {
      return new Promise((resolve, reject) => {
        const s = net.connect(socket);
        const chunks: Buffer[] = [];
        let closed = false;
        s.on('data', (d) => chunks.push(d));
        s.on('close', () => (closed = true));
        s.on('error', reject);
        s.on('connect', () => s.write(bytes));
        setTimeout(() => {
          const result = { received: Buffer.concat(chunks), closed };
          s.destroy();
          resolve(result);
        }, waitMs);
      });
    }

    it('garbage and truncated handshakes are dropped; others keep being served', async () => {
      const garbage = await rawExchange(Buffer.from('GET / HTTP/1.1\r\n\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxx'));
      expect(garbage.received.subarray(0, 8).toString()).toBe('NBDMAGIC');
      expect(garbage.closed).toBe(true);
      const truncated = await rawExchange(Buffer.from([0, 0, 0, 3, 0x49, 0x48]));
      expect(truncated.closed).toBe(false); // still waiting for the rest, harmlessly
      const badFlags = await rawExchange(Buffer.from([0xff, 0xff, 0xff, 0xff]));
      expect(badFlags.closed).toBe(true);
      const out = await runOk('qemu-io', ['-f', 'raw', uri('small'), '-c', 'read 0 4k']);
      expect(out).toMatch(/^read 4096\/4096/m);
    });

    it('a connection ended by NBD_OPT_ABORT is closed, not left paused', async () => {
      const u32 = (n: number) => Buffer.from([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
      const abort = Buffer.concat([u32(3), Buffer.from('IHAVEOPT'), u32(2), u32(0)]);
      const s = net.connect(socket);
      const got: Buffer[] = [];
      await new Promise<void>((resolve, reject) => {
        s.on('error', reject);
        s.on('connect', () => s.write(abort));
        s.on('data', (d) => {
          got.push(d);
          if (Buffer.concat(got).length >= 18 + 20) resolve(); // greeting + the ABORT ack
        });
      });
      s.end(); // the client closes only after the server's ack, as libnbd does
      const deadline = Date.now() + 4000; // under the server's 5-s grace
      while (server.connectionCount > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(server.connectionCount).toBe(0);
      s.destroy();
    });

    it('kernel-client style: EXPORT_NAME, NO_ZEROES, simple replies, 512-byte write/read', async () => {
      const u32 = (n: number) => {
        const b = Buffer.alloc(4);
        b.writeUInt32BE(n);
        return b;
      };
      const option = (opt: number, data: Buffer) => Buffer.concat([Buffer.from('IHAVEOPT'), u32(opt), u32(data.length), data]);
      const request = (type: number, cookie: number, offset: number, length: number, payload?: Buffer) => {
        const h = Buffer.alloc(28);
        h.writeUInt32BE(0x25609513, 0);
        h.writeUInt16BE(0, 4);
        h.writeUInt16BE(type, 6);
        h.writeBigUInt64BE(BigInt(cookie), 8);
        h.writeBigUInt64BE(BigInt(offset), 16);
        h.writeUInt32BE(length, 24);
        return payload ? Buffer.concat([h, payload]) : h;
      };
      const sector = Buffer.alloc(512, 0x42);
      const stream = Buffer.concat([u32(3), option(1, Buffer.from('small')), request(1, 7, 1024, 512, sector), request(0, 8, 1024, 512), request(2, 9, 0, 0)]);
      const { received } = await rawExchange(stream, 500);
      expect(received.subarray(0, 8).toString()).toBe('NBDMAGIC');
      let p = 18; // greeting
      expect(received.readBigUInt64BE(p)).toBe(BigInt(1 << 20)); // export size
      p += 10; // size + flags, no zeroes
      expect(received.readUInt32BE(p)).toBe(NbdMagic.SIMPLE_REPLY);
      expect(received.readUInt32BE(p + 4)).toBe(0);
      expect(received.readBigUInt64BE(p + 8)).toBe(7n);
      p += 16;
      expect(received.readUInt32BE(p + 4)).toBe(0);
      expect(received.readBigUInt64BE(p + 8)).toBe(8n);
      expect(received.subarray(p + 16, p + 16 + 512).equals(sector)).toBe(true);
      expect(received.length).toBe(p + 16 + 512);
    });
  });
});

describe('a guest NBD socket (RestrictedCatalog, listenGuest)', () => {
  let server: NbdServer;
  let socket: string;
  let tmp: { dir: string; cleanup: () => void };
  const backends = [new MemoryBackend(1 << 20), new MemoryBackend(2 << 20)];
  const attached = new Set(['mine']);
  let stop: () => Promise<void>;

  beforeAll(async () => {
    tmp = tempDir();
    socket = path.join(tmp.dir, 'guest.sock');
    const all = new StaticCatalog([sharedExport('mine', backends[0]!), sharedExport('theirs', backends[1]!)]);
    server = new NbdServer({ catalog: all, logger: createLogger({ level: 'silent' }) });
    stop = await server.listenGuest(socket, new RestrictedCatalog(all, () => attached, 'VM web-1'), undefined);
  });
  afterAll(async () => {
    await server.close();
    tmp.cleanup();
  });

  it("serves the guest's own export and lists only it", async () => {
    const info = JSON.parse(await runOk('nbdinfo', ['--json', `nbd+unix:///mine?socket=${socket}`]));
    expect(info.exports[0]['export-size']).toBe(1 << 20);
    const list = JSON.parse(await runOk('nbdinfo', ['--json', '--list', `nbd+unix://?socket=${socket}`]));
    expect(list.exports.map((x: { 'export-name': string }) => x['export-name'])).toEqual(['mine']);
  });

  it('an export that exists but is not attached is refused at NBD_OPT_GO with the reason', async () => {
    const r = await run('qemu-img', ['info', `nbd+unix:///theirs?socket=${socket}`]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Denied by server[\s\S]*server reported: export 'theirs' is not attached to VM web-1; this socket serves only its volumes/);
  });

  it('stopping it removes the socket', async () => {
    await stop();
    expect(existsSync(socket)).toBe(false);
  });
});
