#!/usr/bin/env node
// Micro benchmark of the volume storage layers, called directly (no NBD): 4 KiB random
// read/write and 1 MiB sequential read/write at queue depth 1 and 32 (QD = that many concurrent
// promise loops), on a backing file in a directory of your choice (tmpfs: software cost only,
// every read takes the threadpool since tmpfs has no RWF_NOWAIT; a disk file system: page cache,
// small cached reads are done inline with preadv2(RWF_NOWAIT), real syncs for the FUA runs).
// Compares
//   file        FileBackend alone (no encryption)
//   enc-js      EncryptedBackend(FileBackend), io 'js': FileBackend read/write (fs pread/pwrite
//               on the threadpool, small cached reads inline) + XtsCipher on the main thread
//   enc-native  EncryptedBackend(FileBackend), io 'native': one addon threadpool job per request
//               (preadDecrypt / encryptPwrite), small cached reads inline (tryPreadDecrypt)
// (`--unit 512` switches the encrypted configurations to 512-byte data units.) The file is filled
// first so that reads decrypt real ciphertext. Each cell is the median over the rounds of the
// throughput of one round; "cpu" is the process CPU time (all threads) per request.
// With --fua: 4 KiB random FUA writes instead, for both FUA modes ('dsync': write through an
// O_DSYNC fd; 'fdatasync': write then fdatasync) — meaningful on a disk, not on tmpfs.
//
// Usage: npm run build && node scripts/bench-volume.mjs [--dir /dev/shm] [--size-mb 256]
//          [--seconds 1] [--rounds 5] [--unit 4096] [--configs file,enc-js,enc-native] [--fua]
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { benchOptions, optionsChecked, pickById, positiveOption, usageExit } from './lib/bench-common.mjs';

const USAGE = `usage: node scripts/bench-volume.mjs [--dir /dev/shm] [--size-mb 256] [--seconds 1] [--rounds 5]
         [--unit 4096] [--configs file,enc-js,enc-native] [--fua]`;
const opt = benchOptions('bench-volume', USAGE, {
  dir: { type: 'string', default: '/dev/shm' },
  'size-mb': { type: 'string' },
  seconds: { type: 'string' },
  rounds: { type: 'string' },
  unit: { type: 'string', default: '4096' },
  configs: { type: 'string' },
  fua: { type: 'boolean', default: false },
});
const SIZE = Math.round(positiveOption('bench-volume', opt['size-mb'], 256, 'size-mb')) << 20;
const SECONDS = positiveOption('bench-volume', opt.seconds, 1, 'seconds');
const ROUNDS = Math.round(positiveOption('bench-volume', opt.rounds, 5, 'rounds'));
if (opt.unit !== '512' && opt.unit !== '4096') usageExit('bench-volume', '--unit must be 512 or 4096');
const UNIT = Number(opt.unit);
const CONFIGS = pickById('bench-volume', ['file', 'enc-js', 'enc-native'].map((id) => ({ id })), opt.configs, 'config').map((c) => c.id);
optionsChecked();

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'dist', 'volume');
if (!existsSync(path.join(dist, 'encrypted-backend.js'))) {
  console.error('bench-volume: build first (npm run build; the addon: npx node-gyp rebuild --directory=native)');
  process.exit(2);
}
const { FileBackend } = await import(pathToFileURL(path.join(dist, 'file-backend.js')).href);
const { EncryptedBackend } = await import(pathToFileURL(path.join(dist, 'encrypted-backend.js')).href);

function randomKey() {
  for (;;) {
    const k = randomBytes(64);
    if (!k.subarray(0, 32).equals(k.subarray(32))) return k;
  }
}

async function openConfig(name, fua) {
  const file = path.join(opt.dir, `nitride-bench-${process.pid}-${name}.img`);
  rmSync(file, { force: true });
  const fb = await FileBackend.create(file, SIZE, { fua });
  let backend = fb;
  if (name === 'enc-js') backend = new EncryptedBackend(fb, randomKey(), { io: 'js', dataUnitSize: UNIT });
  if (name === 'enc-native') backend = new EncryptedBackend(fb, randomKey(), { io: 'native', dataUnitSize: UNIT });
  return { backend, file };
}

async function fill(backend) {
  const chunk = randomBytes(1 << 20);
  const jobs = [];
  for (let off = 0; off < SIZE; off += chunk.length) {
    jobs.push(backend.write(off, chunk));
    if (jobs.length === 8) await Promise.all(jobs.splice(0));
  }
  await Promise.all(jobs);
  await backend.flush();
}

/** One round: QD loops issuing requests for SECONDS; returns { ops, bytes, secs, cpuUs }. */
async function round(backend, kind, bs, qd, fua) {
  const blocks = SIZE / bs;
  let cursor = 0;
  let ops = 0;
  const deadline = performance.now() + SECONDS * 1000;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const worker = async () => {
    const buf = kind === 'read' ? Buffer.alloc(bs) : randomBytes(bs);
    while (performance.now() < deadline) {
      const blk = bs === 4096 ? Math.floor(Math.random() * blocks) : cursor++ % blocks;
      if (kind === 'read') await backend.read(blk * bs, buf);
      else await backend.write(blk * bs, buf, { fua });
      ops++;
    }
  };
  await Promise.all(Array.from({ length: qd }, worker));
  const secs = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { ops, secs, cpuUs: (cpu.user + cpu.system) / ops };
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

async function measure(backend, kind, bs, qd, fua = false) {
  await round(backend, kind, bs, qd, fua); // warm-up
  const rates = [];
  const cpus = [];
  for (let r = 0; r < ROUNDS; r++) {
    const res = await round(backend, kind, bs, qd, fua);
    rates.push(res.ops / res.secs);
    cpus.push(res.cpuUs);
  }
  return { iops: median(rates), mbps: (median(rates) * bs) / 1e6, cpuUs: median(cpus) };
}

const configs = CONFIGS;
const workloads = opt.fua
  ? [
      ['randwrite 4k FUA', 'write', 4096, 1],
      ['randwrite 4k FUA', 'write', 4096, 32],
    ]
  : [
      ['randread 4k', 'read', 4096, 1],
      ['randread 4k', 'read', 4096, 32],
      ['randwrite 4k', 'write', 4096, 1],
      ['randwrite 4k', 'write', 4096, 32],
      ['seqread 1M', 'read', 1 << 20, 1],
      ['seqread 1M', 'read', 1 << 20, 32],
      ['seqwrite 1M', 'write', 1 << 20, 1],
      ['seqwrite 1M', 'write', 1 << 20, 32],
    ];

console.log(
  `# node ${process.version}, dir ${opt.dir}, file ${SIZE >> 20} MiB, data unit ${UNIT}, ` +
    `${ROUNDS} rounds x ${SECONDS}s, UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE ?? '4 (default)'}`,
);
const fuaModes = opt.fua ? ['dsync', 'fdatasync'] : ['dsync'];
const results = [];
for (const name of configs) {
  for (const fuaMode of fuaModes) {
    const { backend, file } = await openConfig(name, fuaMode);
    try {
      await fill(backend);
      for (const [label, kind, bs, qd] of workloads) {
        const r = await measure(backend, kind, bs, qd, opt.fua);
        const cfg = opt.fua ? `${name} (${fuaMode})` : name;
        results.push({ cfg, label, qd, ...r });
        console.log(
          `${cfg.padEnd(22)} ${label.padEnd(17)} QD${String(qd).padEnd(3)} ` +
            `${Math.round(r.iops).toString().padStart(8)} IOPS ${r.mbps.toFixed(0).padStart(6)} MB/s ` +
            `${r.cpuUs.toFixed(1).padStart(7)} cpu-µs/req`,
        );
      }
    } finally {
      await backend.close();
      rmSync(file, { force: true });
    }
  }
}
