/**
 * The native data plane (NbdLane, native/src/nbd_lane.cc) behind a real NbdServer, with real
 * clients: it engages for encrypted file backends (a thread of its own), serves aligned I/O,
 * forwards the rest to the event loop, feeds the export's counters, and lets go of its thread,
 * descriptors and lease when a client vanishes mid-request. Protocol coverage over both planes is
 * in server.test.ts.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NbdServer } from '../../src/nbd/server.js';
import { StaticCatalog, type NbdExport } from '../../src/nbd/exports.js';
import { ExportIoStats } from '../../src/nbd/io-stats.js';
import { NbdCmd } from '../../src/nbd/constants.js';
import { FileBackend } from '../../src/volume/file-backend.js';
import { EncryptedBackend } from '../../src/volume/encrypted-backend.js';
import { createLogger } from '../../src/log/logger.js';
import { tempDir } from '../helpers/nitride.js';
import { nbdPython, runOk } from '../helpers/run.js';
import { randomKey } from '../volume/helpers.js';
import { IoLimiter } from '../../src/native/addon.js';

const SIZE = 16 << 20;
let dir: string;
let cleanup: () => void;
let backend: EncryptedBackend;
const stats = new ExportIoStats();
let leases = { opened: 0, released: 0 };
const servers: NbdServer[] = [];

const vol: NbdExport = {
  name: 'vol',
  stats,
  describe: () => ({ size: backend.size, capabilities: backend.capabilities }),
  open: async () => {
    leases.opened++;
    return { backend, release: async () => void leases.released++ };
  },
};

/** The same backend behind a limit of 1000 IOPS. */
const limited: NbdExport = { ...vol, name: 'limited', limiter: new IoLimiter({ iops: 1000 }) };

async function serve(dataPlane: 'native' | 'js'): Promise<string> {
  const server = new NbdServer({ catalog: new StaticCatalog([vol, limited]), logger: createLogger({ level: 'silent' }), dataPlane });
  const socket = path.join(dir, `${dataPlane}-${servers.length}.sock`);
  await server.listenUnix(socket);
  servers.push(server);
  return socket;
}

/** This process's threads by id and name (one that ends between the listing and the read is gone). */
const threads = () =>
  readdirSync('/proc/self/task').flatMap((t) => {
    try {
      return [{ tid: t, name: readFileSync(`/proc/self/task/${t}/comm`, 'utf8').trim() }];
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  });
const threadNames = () => threads().map((t) => t.name);
const laneTids = () => threads().flatMap((t) => (t.name === 'nitride-nbd' ? [t.tid] : []));
const fdCount = () => readdirSync('/proc/self/fd').length;

async function waitFor(what: string, ok: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Runs a libnbd script that holds its connection open for a while; reports whether a lane thread appeared meanwhile. */
async function laneThreadSeenDuring(socket: string): Promise<boolean> {
  let seen = false;
  let done = false;
  const script = nbdPython(`
import nbd, time
h = nbd.NBD()
h.connect_uri(${JSON.stringify(`nbd+unix:///vol?socket=${socket}`)})
h.pwrite(b'q' * 4096, 0)
time.sleep(1.0)
print('null')
`).finally(() => (done = true));
  while (!done) {
    if (threadNames().includes('nitride-nbd')) seen = true;
    await new Promise((r) => setTimeout(r, 25));
  }
  await script;
  return seen;
}

beforeAll(async () => {
  ({ dir, cleanup } = tempDir());
  backend = new EncryptedBackend(await FileBackend.create(path.join(dir, 'vol.img'), SIZE), randomKey());
});
afterAll(async () => {
  for (const s of servers) await s.close();
  await backend.close();
  cleanup();
});

describe('NBD native data plane', () => {
  it('runs a connection on a thread of its own, which ends with the connection; the JS plane has none', async () => {
    const native = await serve('native');
    expect(await laneThreadSeenDuring(native)).toBe(true);
    await waitFor('the lane thread to end', () => !threadNames().includes('nitride-nbd'));
    const js = await serve('js');
    expect(await laneThreadSeenDuring(js)).toBe(false);
  });

  it('serves aligned I/O itself, forwards partial units and flushes, and counts both in the export stats', async () => {
    const socket = await serve('native');
    const before = stats.commands.map((c) => ({ ops: c.ops, bytes: c.bytes }));
    const out = await runOk('qemu-io', ['-f', 'raw', `nbd+unix:///vol?socket=${socket}`,
      '-c', 'write -P 0xaa 0 64k', // whole units: the lane
      '-c', 'write -P 0x11 512 512', // part of a unit: read-modify-write on the event loop
      '-c', 'write -P 0x22 1M 512k', // larger than the lane's inline limit: its workers
      '-c', 'flush',
      '-c', 'read -P 0xaa 4096 8k',
      '-c', 'read -P 0x11 512 512',
      '-c', 'read -P 0xaa 0 512',
      '-c', 'read -P 0x22 1M 512k']);
    expect(out).not.toMatch(/Pattern verification failed|error/i);
    const after = stats.commands;
    expect(after[NbdCmd.WRITE]!.ops - before[NbdCmd.WRITE]!.ops).toBe(3);
    expect(after[NbdCmd.WRITE]!.bytes - before[NbdCmd.WRITE]!.bytes).toBe(64 * 1024 + 512 + 512 * 1024);
    expect(after[NbdCmd.READ]!.ops - before[NbdCmd.READ]!.ops).toBe(4);
    expect(after[NbdCmd.FLUSH]!.ops - before[NbdCmd.FLUSH]!.ops).toBeGreaterThanOrEqual(1);
    const buckets = after[NbdCmd.READ]!.buckets.reduce((a, b) => a + b, 0);
    expect(buckets).toBe(after[NbdCmd.READ]!.ops);
  });

  it('a client that vanishes in the middle of a WRITE payload: the lane ends, its descriptors and the lease go, others are served', async () => {
    const socket = await serve('native');
    const fds = fdCount();
    const released = leases.released;
    const u32 = (n: number) => {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(n);
      return b;
    };
    const header = Buffer.alloc(28);
    header.writeUInt32BE(0x25609513, 0);
    header.writeUInt16BE(1, 6); // WRITE
    header.writeBigUInt64BE(1n, 8);
    header.writeBigUInt64BE(0n, 16);
    header.writeUInt32BE(1 << 20, 24);
    const exportName = Buffer.concat([Buffer.from('IHAVEOPT'), u32(1), u32(3), Buffer.from('vol')]);
    const s = net.connect(socket);
    await new Promise<void>((resolve, reject) => {
      let got = 0;
      s.on('error', reject);
      s.on('connect', () => s.write(Buffer.concat([u32(3), exportName])));
      s.on('data', (d) => {
        got += d.length;
        if (got >= 18 + 10) resolve(); // greeting, then size + flags (NO_ZEROES)
      });
    });
    s.write(Buffer.concat([header, Buffer.alloc(100_000, 0x77)]));
    await new Promise((r) => setTimeout(r, 100));
    s.destroy();
    await waitFor('the lease to be released', () => leases.released === released + 1);
    await waitFor('the lane thread to end', () => !threadNames().includes('nitride-nbd'));
    await waitFor('the lane descriptors to close', () => fdCount() <= fds);
    const out = await runOk('qemu-io', ['-f', 'raw', `nbd+unix:///vol?socket=${socket}`, '-c', 'read -P 0xaa 4096 4k']);
    expect(out).toMatch(/^read 4096\/4096/m);
  });

  it('on a full tmpfs (no RWF_NOWAIT, pwrite fails): the lane hands the write to the event loop, which answers ENOSPC; reads still work', async () => {
    const mnt = path.join(dir, 'tiny');
    mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'nitride-test', mnt]);
    let small: EncryptedBackend | undefined;
    try {
      small = new EncryptedBackend(await FileBackend.create(path.join(mnt, 'small.img'), 8 << 20), randomKey());
      const b = small;
      const exp: NbdExport = { name: 'small', describe: () => ({ size: b.size, capabilities: b.capabilities }), open: async () => ({ backend: b, release: async () => {} }) };
      const server = new NbdServer({ catalog: new StaticCatalog([exp]), logger: createLogger({ level: 'silent' }) });
      servers.push(server);
      const socket = path.join(dir, 'tiny.sock');
      await server.listenUnix(socket);
      const res = await nbdPython<{ errno: string | null; wrote: number; readBack: boolean }>(`
import nbd, json
h = nbd.NBD()
h.connect_uri(${JSON.stringify(`nbd+unix:///small?socket=${socket}`)})
errno = None
wrote = 0
for i in range(64):
    try:
        h.pwrite(bytes([i % 251 + 1]) * 65536, i * 65536)
        wrote += 1
    except nbd.Error as e:
        errno = e.errno
        break
print(json.dumps({'errno': errno, 'wrote': wrote, 'readBack': h.pread(65536, 0) == bytes([1]) * 65536}))
`);
      expect(res.errno).toBe('ENOSPC');
      expect(res.wrote).toBeGreaterThan(0);
      expect(res.readBack).toBe(true);
    } finally {
      await small?.close();
      execFileSync('umount', [mnt]);
    }
  });

  it('reads the page cache cannot serve (the backing file evicted) come back intact', async () => {
    const socket = await serve('native');
    const u = `nbd+unix:///vol?socket=${socket}`;
    const writes = await runOk('qemu-io', ['-f', 'raw', u, '-c', 'write -P 0x5c 4M 64k', '-c', 'write -P 0x6d 6M 1M', '-c', 'flush']);
    expect(writes).not.toMatch(/error/i);
    // Drop the file's clean pages, so reads miss the cache (RWF_NOWAIT fails) and take the blocking path.
    execFileSync('python3', ['-c', `import os; fd = os.open(${JSON.stringify(path.join(dir, 'vol.img'))}, os.O_RDONLY); os.fdatasync(fd); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)`]);
    const out = await runOk('qemu-io', ['-f', 'raw', u, '-c', 'read -P 0x5c 4M 4k', '-c', 'read -P 0x5c 4M 64k', '-c', 'read -P 0x6d 6M 1M', '-c', 'read -P 0 8M 8k']);
    expect(out).not.toMatch(/Pattern verification failed|error/i);
    expect(out.match(/^read /gm)).toHaveLength(4);
  });
  it('while requests wait for the limiter, the lane sleeps once per request, not also for each arriving one', async () => {
    // A QD8 client at a binding limit: every request waits. Before, the lane woke for the
    // client's next request as well as to release each one: two sleeps (voluntary context
    // switches) per I/O where one does.
    const socket = await serve('native');
    const before = new Set(laneTids());
    const n = 400;
    const client = spawn('/usr/bin/python3', ['-c', `
import nbd, sys
h = nbd.NBD()
h.connect_uri(${JSON.stringify(`nbd+unix:///limited?socket=${socket}`)})
bufs = [nbd.Buffer(4096) for _ in range(8)]
def qd8(n):
    issued = 0
    while issued < n or h.aio_in_flight() > 0:
        while issued < n and h.aio_in_flight() < 8:
            h.aio_pread(bufs[issued % 8], (issued % 4096) * 4096, completion=lambda err: 1)
            issued += 1
        h.poll(-1)
qd8(150)  # the 0.1 s bucket (100 I/Os) drains: from here on every request waits
print('ready', flush=True)
sys.stdin.readline()
qd8(${n})
print('done', flush=True)
sys.stdin.readline()
h.shutdown()
`], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines: string[] = [];
    client.stdout.on('data', (d: Buffer) => lines.push(...d.toString().split('\n').filter(Boolean)));
    const exited = new Promise<number | null>((r) => client.on('exit', r));
    try {
      const sleeps = (tid: string) => Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(readFileSync(`/proc/self/task/${tid}/status`, 'utf8'))![1]);
      await waitFor('the client to connect', () => lines.includes('ready'), 20_000);
      const [tid, ...others] = laneTids().filter((t) => !before.has(t));
      expect(tid).toBeDefined();
      expect(others).toEqual([]);
      const s0 = sleeps(tid!);
      client.stdin.write('\n');
      await waitFor('the reads', () => lines.includes('done'), 20_000);
      const per = (sleeps(tid!) - s0) / n;
      client.stdin.write('\n');
      expect(await exited).toBe(0);
      expect(per).toBeLessThan(1.3);
    } finally {
      client.kill();
    }
  });

  it('pipelined large requests of mixed sizes on three connections at once come back intact', async () => {
    const socket = await serve('native');
    // Per connection, in its own 4 MiB region, back to back without waiting: 1 MiB writes (the
    // workers, payloads received into their own buffers), a 4 KiB one right after a large one (the
    // lane itself), an unaligned one (the event loop) and sizes between; then every byte read back.
    const res = await nbdPython<boolean[]>(`
import nbd, json
uri = ${JSON.stringify(`nbd+unix:///vol?socket=${socket}`)}
plan = [(0, 1 << 20), (1 << 20, 1 << 20), (2 << 20, 4096), (2 << 20 | 4096, 300 * 1024 + 512),
        (3 << 20, 256 * 1024 + 4096), (3 << 20 | 512 * 1024, 4096), (3 << 20 | 516 * 1024, 508 * 1024)]
conns = []
for c in range(3):
    h = nbd.NBD()
    h.connect_uri(uri)
    want = bytearray(h.pread(4 << 20, c * (4 << 20)))  # the gaps keep what earlier tests wrote
    for i, (off, n) in enumerate(plan):
        data = bytes(((c * 31 + i * 7 + j) % 251) for j in range(n))
        want[off:off + n] = data
        h.aio_pwrite(data, c * (4 << 20) + off)
    conns.append((h, want))
for h, _ in conns:
    while h.aio_in_flight() > 0:
        h.poll(-1)
ok = []
for c, (h, want) in enumerate(conns):
    bufs = [nbd.Buffer(1 << 20) for _ in range(4)]
    for k in range(4):
        h.aio_pread(bufs[k], c * (4 << 20) + k * (1 << 20))
    while h.aio_in_flight() > 0:
        h.poll(-1)
    ok.append(b''.join(b.to_bytearray() for b in bufs) == want)
    h.shutdown()
print(json.dumps(ok))
`);
    expect(res).toEqual([true, true, true]);
  });
});
