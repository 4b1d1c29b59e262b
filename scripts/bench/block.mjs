#!/usr/bin/env node
// End-to-end block benchmark: fio (ioengine=nbd) against nitride's encrypted volumes and, in the
// same run, against other NBD servers on the same file system:
//   nitride-ebs        nitride daemon + KMS, an ebs volume (AES-256-XTS, 4 KiB data units)
//   nitride-ephemeral  the same daemon, an ephemeral volume
//   nitride-ebs-js     a second daemon with --nbd-data-plane js: an ebs volume served on the
//                      event loop instead of the native data plane (a same-run reference)
//   qemu-nbd-luks      qemu-nbd serving a LUKS1 image (aes-256-xts-plain64, 512-byte sectors),
//                      --cache=writeback (qemu-nbd's default: the page cache, like the others)
//                      --aio=threads
//   nbdkit-luks        nbdkit's luks filter over its file plugin (a copy of the same LUKS image)
//   nbdkit-file        nbdkit's file plugin on a plain image: the unencrypted baseline
// Every target is a 1 GiB volume/image, served on a Unix socket, pre-filled by a sequential
// write through its own server (so reads decrypt real data) and then `sync`ed.
//
// --ceph measures another group instead, in one run against a private one-node Ceph cluster
// (scripts/lib/ceph.mjs: mon, mgr, one BlueStore OSD on a sparse file in the scratch directory),
// 1 GiB RBD images in pool rbd, all created with the `layering` feature only (what nitride uses):
//   nitride-rbd        nitride daemon (--ceph-conf ...), an ebs volume on RBD: NBD -> daemon
//                      (XTS) -> librbd, native data plane
//   qsd-rbd-luks2      qemu-storage-daemon exporting NBD: QEMU's rbd driver with librbd's own
//                      LUKS2 client-side encryption (`rbd encryption format ... luks2`)
//   qsd-rbd            the same without encryption (the same NBD path: a fairer ceiling)
//   librbd             fio ioengine=rbd on a plain image: the ceiling, and the baseline of ratios
// --limits measures provisioned performance instead (scripts/bench/block-limits.mjs): how exactly
// a volume's IOPS/throughput limit holds against QEMU's throttle group on qemu-storage-daemon, and
// what a limit that never binds costs. The same setup, pre-fill and fio runs as here.
//
// Every client uses librbd's writeback cache (rbd_cache) from the start (`rbd cache writethrough
// until flush = false`: fio never flushes). Beside each figure: the OSD's
// CPU (from /proc/<osd pid>/stat before and after each fio run).
//
// Jobs: 4 KiB randread/randwrite at QD1 and QD32, 1 MiB sequential read/write at QD8; one fio
// process, numjobs=1, --time_based --runtime=R --ramp_time=T. Each repetition runs every job on
// every target back to back (target order rotated per repetition and job, so drift and
// background writeback hit all targets alike); `sync` runs before each fio run. Reported: medians
// over the repetitions, and the ratio to nbdkit-file (median of the per-repetition ratios: the
// baseline measured seconds apart in the same repetition), plus the servers' CPU (all threads,
// from /proc) per run.
//
// Output: tables on stdout, bench-results/block-<timestamp>.json (every run and the medians)
// and bench-results/block-<timestamp>.svg (one group per job, one bar per target, normalised to
// the baseline). With --profile (default in full runs; the daemon then starts with
// --inspect-port=0, which does nothing until asked), after the measurements SIGUSR1 opens the
// daemon's inspector and V8's sampling profiler records one 4k randread QD32 run on the ebs
// volume: the top self-time functions and the per-thread CPU split are printed (the .cpuprofile
// is kept beside the JSON). Needs a global WebSocket (Node >= 22, or --experimental-websocket,
// which scripts/bench-block.sh adds on Node 20).
//
// Run it through scripts/bench-block.sh (installs fio/qemu-utils/nbdkit, builds, runs as root).
// Usage: node scripts/bench/block.mjs [--quick] [--runtime S] [--ramp S] [--reps N]
//          [--dir /var/tmp] [--out FILE.json] [--targets a,b] [--jobs a,b] [--profile|--no-profile]
//          [--no-sync] [--keep] [--ceph | --limits] [--cli dist/cli/main.js]
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readFileSync, statfsSync, writeFileSync } from 'node:fs';
import { startCeph } from '../lib/ceph.mjs';
import { LIMIT_TARGETS, limitsSeconds, runLimits } from './block-limits.mjs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  ROOT,
  Scratch,
  benchArgs,
  canConnect,
  controlRequest,
  cpuSeconds,
  fileSystemOf,
  hostFacts,
  human,
  inspectorSession,
  installSignalCleanup,
  median,
  optionsChecked,
  usageExit,
  pickById,
  resultsBase,
  positiveOption,
  profileSelfTimes,
  run,
  sleep,
  stamp,
  svgBarChart,
  textTable,
  threadCpu,
  versionOf,
  waitFor,
} from '../lib/bench-common.mjs';

const USAGE = `usage: bench-block [--quick] [--runtime S] [--ramp S] [--reps N] [--dir DIR] [--out FILE.json]
                   [--targets LIST] [--jobs LIST] [--profile|--no-profile] [--no-sync] [--keep] [--ceph | --limits]
  --quick        smoke run (~2 min): 1 repetition, runtime 2 s, ramp 1 s, no profile
  --runtime S    measured seconds per fio run (default 3; 5 with --limits)
  --ramp S       fio ramp_time seconds, not measured (default 2)
  --reps N       repetitions of every job on every target (default 3); medians are reported
  --dir DIR      where the scratch directory goes (default /var/tmp; all targets share it)
  --out FILE     JSON result path (default bench-results/block-<timestamp>.json; .svg beside it)
  --targets LIST comma list of: ${'nitride-ebs,nitride-ephemeral,nitride-ebs-js,qemu-nbd-luks,nbdkit-luks,nbdkit-file'}
                 (with --ceph: nitride-rbd,qsd-rbd-luks2,qsd-rbd,librbd;
                 with --limits: ${LIMIT_TARGETS.map((t) => t.id).join(',')})
  --jobs LIST    comma list of: randread-4k-qd1,randread-4k-qd32,randwrite-4k-qd1,randwrite-4k-qd32,read-1m-qd8,write-1m-qd8
  --profile      CPU-profile the daemon during 4k randread QD32 (default on, off with --quick)
  --no-sync      do not run sync(1) before each fio run
  --keep         keep the scratch directory (images, logs, fio JSON)
  --ceph         the Ceph group instead: a one-node cluster in the scratch directory; nitride on
                 RBD vs QEMU rbd + librbd LUKS2 (qemu-storage-daemon NBD) vs unencrypted librbd
  --limits       provisioned IOPS/throughput instead: accuracy against QEMU's throttle group
                 (qemu-storage-daemon), and the cost of a limit that never binds (no --jobs)`;

const opt = benchArgs('bench-block', USAGE, {
  quick: { type: 'boolean', default: false },
  runtime: { type: 'string' },
  ramp: { type: 'string' },
  reps: { type: 'string' },
  dir: { type: 'string', default: '/var/tmp' },
  targets: { type: 'string' },
  jobs: { type: 'string' },
  profile: { type: 'boolean' },
  'no-profile': { type: 'boolean', default: false },
  'no-sync': { type: 'boolean', default: false },
  ceph: { type: 'boolean', default: false },
  limits: { type: 'boolean', default: false },
});
const CEPH = opt.ceph;
const LIMITS = opt.limits;
if (CEPH && LIMITS) usageExit('bench-block', '--ceph must be used without --limits');
if (LIMITS && opt.jobs !== undefined) usageExit('bench-block', '--jobs must be left out with --limits (each cell has its job)');
const num = (v, dflt, what) => positiveOption('bench-block', v, dflt, what);
const RUNTIME = num(opt.runtime, opt.quick ? 2 : LIMITS ? 5 : 3, 'runtime');
const RAMP = num(opt.ramp, opt.quick ? 1 : 2, 'ramp');
const REPS = Math.round(num(opt.reps, opt.quick ? 1 : 3, 'reps'));
// The profile is of the local ebs volume's daemon: not part of the Ceph group.
const PROFILE = CEPH || LIMITS || opt['no-profile'] ? false : (opt.profile ?? !opt.quick);
const SYNC = !opt['no-sync'];
const SIZE = '1G';
const PASSPHRASE = 'nitride-bench-passphrase';

const LOCAL_TARGETS = [
  { id: 'nitride-ebs', label: 'nitride ebs', encrypted: true, nitride: 'ebs', color: '#1f4e9c' },
  { id: 'nitride-ephemeral', label: 'nitride ephemeral', encrypted: true, nitride: 'ephemeral', color: '#6b9be0' },
  // The same ebs volume type served on the event loop (--nbd-data-plane js): what the native data
  // plane buys, measured in the same run. A reference, not held to the goals.
  { id: 'nitride-ebs-js', label: 'nitride ebs, event loop', encrypted: true, nitride: 'ebs', dataPlane: 'js', reference: true, color: '#9c7a1f' },
  { id: 'qemu-nbd-luks', label: 'qemu-nbd LUKS', encrypted: true, color: '#e8892b' },
  { id: 'nbdkit-luks', label: 'nbdkit luks filter', encrypted: true, color: '#c43c3c' },
  { id: 'nbdkit-file', label: 'nbdkit file (plain)', encrypted: false, baseline: true, color: '#8c8c8c' },
];
const CEPH_TARGETS = [
  { id: 'nitride-rbd', label: 'nitride ebs on RBD', encrypted: true, nitride: 'ebs', store: 'rbd', color: '#1f4e9c' },
  { id: 'qsd-rbd-luks2', label: 'QEMU rbd + librbd LUKS2', encrypted: true, qsd: 'luks2', color: '#e8892b' },
  // The unencrypted image through the same qemu-storage-daemon NBD path: what NBD costs.
  { id: 'qsd-rbd', label: 'QEMU rbd (plain)', encrypted: false, qsd: 'plain', reference: true, color: '#b0b0b0' },
  { id: 'librbd', label: 'fio rbd engine (plain)', encrypted: false, fioRbd: true, baseline: true, color: '#8c8c8c' },
];
const ALL_TARGETS = CEPH ? CEPH_TARGETS : LIMITS ? LIMIT_TARGETS : LOCAL_TARGETS;
const ALL_JOBS = [
  { id: 'randread-4k-qd1', label: '4k randread QD1', rw: 'randread', bs: '4k', qd: 1, metric: 'iops' },
  { id: 'randread-4k-qd32', label: '4k randread QD32', rw: 'randread', bs: '4k', qd: 32, metric: 'iops' },
  { id: 'randwrite-4k-qd1', label: '4k randwrite QD1', rw: 'randwrite', bs: '4k', qd: 1, metric: 'iops' },
  { id: 'randwrite-4k-qd32', label: '4k randwrite QD32', rw: 'randwrite', bs: '4k', qd: 32, metric: 'iops' },
  { id: 'read-1m-qd8', label: '1M read QD8', rw: 'read', bs: '1M', qd: 8, metric: 'mbps' },
  { id: 'write-1m-qd8', label: '1M write QD8', rw: 'write', bs: '1M', qd: 8, metric: 'mbps' },
];
const pick = (all, list, what) => pickById('bench-block', all, list, what);
const TARGETS = pick(ALL_TARGETS, opt.targets, 'target');
const JOBS = pick(ALL_JOBS, opt.jobs, 'job');
const BASELINE = TARGETS.find((t) => t.baseline);
const unit = (job) => (job.metric === 'iops' ? 'IOPS' : 'MB/s');
optionsChecked();

if (process.getuid?.() !== 0) console.error('bench-block: warning: not root (the daemon and the wrapper expect root)');
if (!existsSync(opt.cli)) {
  console.error(`bench-block: ${opt.cli} is missing: build first (npm ci / npm run build)`);
  process.exit(2);
}

// ----------------------------------------------------------------------------------- setup

const scratch = opt.scratch ? new Scratch(path.resolve(opt.scratch), { keep: opt.keep }) : Scratch.create(path.resolve(opt.dir), 'nitride-bench.', { keep: opt.keep });
const fioProcs = new Set();
let aborted = false;
installSignalCleanup(scratch, () => {
  aborted = true;
  for (const p of fioProcs) p.kill('SIGTERM');
});
const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(0)}s`;
const say = (msg) => console.log(`[${elapsed().padStart(4)}] ${msg}`);

const nitride = (args, env = {}) => run(process.execPath, [opt.cli, ...args], { env });

let kmsSock;
/**
 * A nitride daemon (and, the first time, the KMS all daemons share) with its NBD data plane;
 * with `cluster`, its ebs volumes can live on that Ceph cluster's pool.
 */
async function startNitride(dataPlane = 'native', cluster = undefined) {
  const sfx = `${dataPlane === 'native' ? '' : `-${dataPlane}`}${cluster ? '-rbd' : ''}`;
  const cephArgs = cluster ? ['--ceph-conf', cluster.conf, '--ceph-pool', cluster.pool, '--ceph-id', cluster.id] : [];
  if (!kmsSock) {
    kmsSock = scratch.path('run-kms', 'kms.sock');
    const kms = scratch.start('kms', process.execPath, [opt.cli, 'kms', 'serve', '--state-dir', scratch.path('kms'), '--socket', kmsSock, '--allow-immediate-deletion']);
    await waitFor('the KMS socket', () => canConnect(kmsSock), { alive: () => kms.child.exitCode === null });
  }
  const ctlSock = scratch.path(`run${sfx}`, 'control.sock');
  const nbdSock = scratch.path(`run${sfx}`, 'nbd.sock');
  const daemon = {
    kmsSock,
    ctlSock,
    nbdSock,
    entry: undefined,
    async start(nodeFlags = []) {
      this.entry = scratch.start(`daemon${sfx}`, process.execPath, [
        ...nodeFlags,
        opt.cli,
        'daemon',
        '--state-dir',
        scratch.path(`state${sfx}`),
        '--control-socket',
        ctlSock,
        '--kms-socket',
        kmsSock,
        '--nbd-socket',
        nbdSock,
        '--nbd-data-plane',
        dataPlane,
        ...cephArgs,
      ]);
      const e = this.entry;
      await waitFor('the daemon control API', () => controlRequest(ctlSock, 'GET', '/v1/status'), { alive: () => e.child.exitCode === null }).catch((err) => {
        throw new Error(`${err.message}\n${scratch.tail(`daemon${sfx}`)}`);
      });
      await waitFor('the daemon NBD socket', () => canConnect(nbdSock));
    },
    pid() {
      return this.entry.child.pid;
    },
  };
  await daemon.start(PROFILE && dataPlane === 'native' && !cluster ? ['--inspect-port=0'] : []);
  return daemon;
}

const volumeCli = (daemon, args) => nitride([...args, '--json'], { NITRIDE_SOCKET: daemon.ctlSock, NITRIDE_KMS_SOCKET: daemon.kmsSock });

async function createVolume(daemon, type, store, perf = []) {
  const r = await volumeCli(daemon, ['volume', 'create', '--type', type, '--size', SIZE, ...(store ? ['--store', store] : []), ...perf]);
  const info = JSON.parse(r.stdout);
  return { id: info.id, uri: info.uri };
}

/** Wait until the daemon has released the previous fio connection (volumes are single-attach). */
async function volumeIdle(daemon, id) {
  await waitFor(`volume ${id} to be detached`, async () => (await controlRequest(daemon.ctlSock, 'GET', `/v1/volumes/${id}`)).state === 'available', { timeoutMs: 15_000, intervalMs: 20 });
}

async function setUp() {
  const fs = await fileSystemOf(scratch.dir);
  const free = statfsSync(scratch.dir);
  const freeGiB = (free.bavail * free.bsize) / 2 ** 30;
  const needGiB = TARGETS.length * 1.05 + 0.5;
  if (freeGiB < needGiB) throw new Error(`${scratch.dir}: ${freeGiB.toFixed(1)} GiB free, the images need ${needGiB.toFixed(1)} GiB`);
  say(`scratch ${scratch.dir} on ${fs.fstype} (${fs.source}, mounted on ${fs.target}); ${freeGiB.toFixed(0)} GiB free`);

  const pw = scratch.path('passphrase');
  writeFileSync(pw, PASSPHRASE, { mode: 0o600 });
  let cluster;
  if (CEPH) {
    // The OSD's block file is sparse; room for every image plus BlueStore's own.
    const osdBytes = Math.ceil(TARGETS.length * 1.2 + 2) * 2 ** 30;
    const t0 = Date.now();
    cluster = await startCeph({ parent: scratch.dir, osdBytes });
    // librbd's cache starts in writethrough until the client's first flush; fio's NBD engine
    // never flushes, while its rbd engine ran in writeback (4k QD1 writes 3.1k IOPS against
    // 0.2-0.5k behind NBD in a first run here): every client starts in writeback instead, as a
    // guest that flushes would put it.
    appendFileSync(cluster.conf, '[client]\nrbd cache writethrough until flush = false\n');
    // Stopped after the servers that use it (scratch children), before the directory goes.
    scratch.onCleanup(() => cluster.destroy());
    cluster.osdPid = () => Number(readFileSync(path.join(cluster.dir, 'run', 'osd.0.pid'), 'utf8'));
    say(`one-node Ceph in ${cluster.dir} (mon ${cluster.monAddr}, OSD pid ${cluster.osdPid()}) in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  }
  const daemons = new Map();
  for (const t of TARGETS.filter((x) => x.nitride)) {
    const plane = `${t.dataPlane ?? 'native'}${t.store === 'rbd' ? '-rbd' : ''}`;
    if (!daemons.has(plane)) daemons.set(plane, await startNitride(t.dataPlane ?? 'native', t.store === 'rbd' ? cluster : undefined));
    t.daemonKey = plane;
  }
  const daemon = daemons.get('native');
  if (TARGETS.some((t) => t.id === 'qemu-nbd-luks' || t.id === 'nbdkit-luks')) {
    // LUKS1 (qemu's luks format), aes-256-xts-plain64; short PBKDF time so opens are cheap.
    // qemu-img times the PBKDF with the thread's CPU clock and sometimes gives up ("Unable to get
    // accurate CPU usage") on this shared box: a few attempts.
    const luksArgs = [
      'create',
      '-q',
      '-f',
      'luks',
      '--object',
      `secret,id=s0,file=${pw}`,
      '-o',
      'key-secret=s0,cipher-alg=aes-256,cipher-mode=xts,ivgen-alg=plain64,hash-alg=sha256,iter-time=10',
      scratch.path('luks-qemu.img'),
      SIZE,
    ];
    for (let attempt = 1; ; attempt++) {
      const r = await run('qemu-img', luksArgs, { allowFail: attempt < 5 });
      if (r.code === 0) break;
      await sleep(200);
    }
    await run('cp', ['--sparse=always', scratch.path('luks-qemu.img'), scratch.path('luks-nbdkit.img')]);
  }
  for (const t of TARGETS) {
    if (t.nitride) {
      const d = daemons.get(t.daemonKey);
      const v = await createVolume(d, t.nitride, t.store, t.perf);
      Object.assign(t, { volume: v.id, uri: v.uri, pids: () => [d.pid()], daemon: d });
      t.before = () => volumeIdle(d, v.id);
      const unlimited = (n) => (n ? String(n) : 'unlimited');
      if (t.limited) t.setLimit = (cell) => volumeCli(d, ['volume', 'modify', v.id, '--iops', unlimited(cell.iops), '--throughput', unlimited(cell.mibps)]);
      else t.setPerf = (perf) => volumeCli(d, ['volume', 'modify', v.id, ...perf]);
    } else if (t.fioRbd) {
      const image = `bench-${t.id}`;
      await cluster.rbd('create', `${cluster.pool}/${image}`, '--size', SIZE, '--image-feature', 'layering');
      Object.assign(t, {
        uri: `rbd:${cluster.pool}/${image}`,
        fioArgs: ['--ioengine=rbd', `--clientname=${cluster.id}`, `--pool=${cluster.pool}`, `--rbdname=${image}`],
        env: { CEPH_CONF: cluster.conf },
        pids: () => [],
      });
    } else if (t.qsd) {
      Object.assign(t, await startQsd(t, cluster, pw));
    } else if (t.id === 'qemu-nbd-luks') {
      const sock = scratch.path('run', 'qemu-nbd.sock');
      mkdirSync(path.dirname(sock), { recursive: true });
      const e = scratch.start('qemu-nbd', 'qemu-nbd', [
        '--object',
        `secret,id=s0,file=${pw}`,
        '--image-opts',
        `driver=luks,key-secret=s0,file.driver=file,file.filename=${scratch.path('luks-qemu.img')}`,
        '--socket',
        sock,
        '--export-name',
        'bench',
        '--persistent',
        '--shared',
        '1',
        '--cache',
        'writeback',
        '--aio',
        'threads',
      ]);
      await waitFor('qemu-nbd', () => canConnect(sock), { alive: () => e.child.exitCode === null }).catch((err) => {
        throw new Error(`${err.message}\n${scratch.tail('qemu-nbd')}`);
      });
      Object.assign(t, { uri: `nbd+unix:///bench?socket=${sock}`, pids: () => [e.child.pid] });
    } else {
      const sock = scratch.path('run', `${t.id}.sock`);
      mkdirSync(path.dirname(sock), { recursive: true });
      let args;
      if (t.id === 'nbdkit-file') {
        await run('truncate', ['-s', SIZE, scratch.path('plain.img')]);
        args = ['file', `file=${scratch.path('plain.img')}`];
      } else {
        args = ['--filter=luks', 'file', `file=${scratch.path('luks-nbdkit.img')}`, `passphrase=+${pw}`];
      }
      const e = scratch.start(t.id, 'nbdkit', ['--foreground', '--exit-with-parent', '--unix', sock, ...args]);
      await waitFor(t.id, () => canConnect(sock), { alive: () => e.child.exitCode === null }).catch((err) => {
        throw new Error(`${err.message}\n${scratch.tail(t.id)}`);
      });
      Object.assign(t, { uri: `nbd+unix:///?socket=${sock}`, pids: () => [e.child.pid] });
    }
  }
  return { fs, daemon, cluster };
}

/**
 * qemu-storage-daemon exporting node `r` over NBD on a Unix socket: an RBD image (rbdNode) or,
 * t.qsd 'throttle', a throttle filter over a plain file (throttleNodes).
 */
async function startQsd(t, cluster, pw) {
  const nodes = t.qsd === 'throttle' ? await throttleNodes(t) : { args: ['--blockdev', JSON.stringify(await rbdNode(t, cluster, pw))] };
  const sock = scratch.path('run', `${t.id}.sock`);
  mkdirSync(path.dirname(sock), { recursive: true });
  const e = scratch.start(t.id, 'qemu-storage-daemon', [
    '--object',
    `secret,id=s0,file=${pw}`,
    ...nodes.args,
    '--nbd-server',
    `addr.type=unix,addr.path=${sock}`,
    '--export',
    'type=nbd,id=e0,node-name=r,name=bench,writable=on',
  ]);
  await waitFor(t.id, () => canConnect(sock), { alive: () => e.child.exitCode === null, timeoutMs: 60_000 }).catch((err) => {
    throw new Error(`${err.message}\n${scratch.tail(t.id)}`);
  });
  return { uri: `nbd+unix:///bench?socket=${sock}`, pids: () => [e.child.pid], ...(await nodes.ready?.()) };
}

/**
 * A plain file under throttle group tg (no limits until setLimit: qom-set of tg.limits over QMP,
 * `*-total` only, so QEMU's bucket is its default 0.1 s of the rate). The file must hold data:
 * QEMU answers reads of holes without reading the node, and so without throttling them.
 */
async function throttleNodes(t) {
  const file = scratch.path(`${t.id}.img`);
  await run('truncate', ['-s', SIZE, file]);
  const qmpSock = scratch.path('run', `${t.id}-qmp.sock`);
  const args = [
    '--blockdev',
    JSON.stringify({ driver: 'file', 'node-name': 'f', filename: file }),
    '--object',
    'throttle-group,id=tg',
    '--blockdev',
    JSON.stringify({ driver: 'throttle', 'node-name': 'r', 'throttle-group': 'tg', file: 'f' }),
    '--chardev',
    `socket,id=m,path=${qmpSock},server=on,wait=off`,
    '--monitor',
    'chardev=m',
  ];
  const ready = async () => {
    const { QmpClient } = await import(pathToFileURL(path.join(path.dirname(path.resolve(opt.cli)), '../vm/qmp.js')).href);
    const qmp = await QmpClient.connect(qmpSock, 20_000);
    scratch.onCleanup(() => qmp.close());
    const limits = (cell) => ({ 'iops-total': cell.iops ?? 0, 'bps-total': (cell.mibps ?? 0) * 2 ** 20 });
    return { setLimit: (cell) => qmp.execute('qom-set', { path: '/objects/tg', property: 'limits', value: limits(cell) }) };
  };
  return { args, ready };
}

/** An RBD image's node; t.qsd 'luks2': formatted by librbd's client-side encryption, opened with the rbd driver's `encrypt`. */
async function rbdNode(t, cluster, pw) {
  const image = `bench-${t.id}`;
  await cluster.rbd('create', `${cluster.pool}/${image}`, '--size', SIZE, '--image-feature', 'layering');
  if (t.qsd === 'luks2') {
    // librbd 16.2 derives the key with Argon2 here (~15 s on this kind of machine).
    const t0 = Date.now();
    await cluster.rbd('encryption', 'format', `${cluster.pool}/${image}`, 'luks2', pw, '--cipher-alg', 'aes-256');
    say(`rbd encryption format ${image} luks2 (aes-256-xts) in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  }
  return {
    driver: 'rbd',
    'node-name': 'r',
    pool: cluster.pool,
    image,
    conf: cluster.conf,
    user: cluster.id,
    ...(t.qsd === 'luks2' ? { encrypt: { format: 'luks2', 'key-secret': 's0' } } : {}),
  };
}

// ------------------------------------------------------------------------------------- fio

let fioSeq = 0;
/** With --ceph: the OSD's pid (its CPU is measured beside every run). */
let osdPid;
/**
 * One fio run; returns the parsed numbers. `fill`: a whole-device sequential write instead.
 * `during(target, ramp, runtime)`, if given, starts with fio (a measurement inside the run); what
 * it resolves to is returned as `window`.
 */
async function fio(target, job, { fill = false, runtime = RUNTIME, ramp = RAMP, during } = {}) {
  mkdirSync(scratch.path('fio'), { recursive: true });
  const out = scratch.path('fio', `${String(++fioSeq).padStart(4, '0')}-${target.id}-${fill ? 'fill' : job.id}.json`);
  const engine = target.fioArgs ?? ['--ioengine=nbd', `--uri=${target.uri}`];
  const args = [`--name=${fill ? 'fill' : job.id}`, ...engine, '--numjobs=1', '--percentile_list=50:99', '--output-format=json', `--output=${out}`];
  if (fill) args.push('--rw=write', '--bs=1M', '--iodepth=8');
  else args.push(`--rw=${job.rw}`, `--bs=${job.bs}`, `--iodepth=${job.qd}`, '--time_based=1', `--runtime=${runtime}`, `--ramp_time=${ramp}`, '--norandommap=1');
  for (let attempt = 1; ; attempt++) {
    await target.before?.();
    const cpu0 = target.pids().map(cpuSeconds);
    const osd0 = osdPid ? cpuSeconds(osdPid) : 0;
    const t0 = process.hrtime.bigint();
    let inside;
    const r = await new Promise((resolve) => {
      const p = spawn('fio', args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...target.env } });
      fioProcs.add(p);
      inside = during?.(target, ramp, runtime).catch((e) => ({ error: e.message }));
      let err = '';
      p.stderr.on('data', (d) => (err += d));
      p.stdout.resume();
      p.on('error', (e) => (err += e.message));
      p.on('close', (code) => {
        fioProcs.delete(p);
        resolve({ code, err });
      });
    });
    const wall = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = target.pids().map(cpuSeconds).reduce((a, c, i) => a + c - cpu0[i], 0);
    const osd = osdPid ? cpuSeconds(osdPid) - osd0 : null;
    let j;
    try {
      j = JSON.parse(readFileSync(out, 'utf8')).jobs[0];
    } catch {
      j = undefined;
    }
    if (r.code === 0 && j && j.error === 0) {
      const side = job.rw.includes('read') ? j.read : j.write;
      const iops = side.iops;
      return {
        iops,
        mbps: side.bw_bytes / 1e6,
        clatMeanUs: side.clat_ns.mean / 1e3,
        clatP50Us: (side.clat_ns.percentile?.['50.000000'] ?? NaN) / 1e3,
        clatP99Us: (side.clat_ns.percentile?.['99.000000'] ?? NaN) / 1e3,
        // A target without a server (fio's rbd engine) has its client work in fio: fioCpuPct.
        serverCores: target.pids().length ? cpu / wall : null,
        serverCpuUsPerIo: target.pids().length && iops > 0 ? ((cpu / wall) * 1e6) / iops : null,
        ...(osd === null ? {} : { osdCores: osd / wall, osdCpuUsPerIo: iops > 0 ? ((osd / wall) * 1e6) / iops : null }),
        fioCpuPct: j.usr_cpu + j.sys_cpu,
        wallS: wall,
        ...(inside ? { window: await inside } : {}),
      };
    }
    const why = `fio ${fill ? 'fill' : job.id} on ${target.id} failed (exit ${r.code}${j ? `, error ${j.error}` : ''}): ${r.err.trim().split('\n').slice(-3).join(' | ')}`;
    if (aborted) await new Promise(() => {}); // the signal handler exits
    if (attempt >= 2) throw new Error(why);
    say(`${why}; retrying once`);
    await sleep(500);
  }
}

const sync = () => (SYNC ? run('sync', []) : Promise.resolve());

// ------------------------------------------------------------------------------- the run

async function main() {
  const facts = await hostFacts();
  const versions = {
    fio: await versionOf('fio'),
    qemuNbd: await versionOf('qemu-nbd'),
    nbdkit: await versionOf('nbdkit'),
    ...(CEPH ? { ceph: await versionOf('ceph') } : {}),
    ...(CEPH || LIMITS ? { qemuStorageDaemon: await versionOf('qemu-storage-daemon') } : {}),
    nitride: (await nitride(['--version'], {}).catch(() => ({ stdout: '' }))).stdout.trim() || null,
  };
  if (LIMITS) say(`bench-block: limits x ${REPS} reps (estimate ~${Math.ceil((limitsSeconds(TARGETS, REPS, RUNTIME, RAMP) + 60) / 60)} min)`);
  else {
    const nRuns = REPS * JOBS.length * TARGETS.length;
    say(`bench-block: ${TARGETS.length} targets x ${JOBS.length} jobs x ${REPS} reps = ${nRuns} fio runs of ${RAMP}+${RUNTIME} s (estimate ~${Math.ceil((nRuns * (RUNTIME + RAMP + 0.8) + 60) / 60)} min)`);
  }
  say(`host: ${facts.cpus} x ${facts.cpuModel}, ${facts.memoryGiB} GiB, Linux ${facts.kernel}, load ${facts.loadavg.join(' ')}; nitride ${facts.nitrideRev}`);
  const { fs, daemon, cluster } = await setUp();
  if (cluster) osdPid = cluster.osdPid();

  // Pre-fill: every target, sequentially written once through its own server (first writes into
  // sparse files; informative only), then the page cache is written back.
  const fillJob = { id: 'fill', rw: 'write' };
  const fill = {};
  for (const t of TARGETS) {
    const r = await fio(t, fillJob, { fill: true });
    fill[t.id] = +r.mbps.toFixed(1);
  }
  await run('sync', []);
  say(`pre-filled (1 GiB sequential write through each server, MB/s): ${TARGETS.map((t) => `${t.id} ${fill[t.id].toFixed(0)}`).join(', ')}`);
  if (LIMITS) {
    const limits = await runLimits({ targets: TARGETS, jobs: ALL_JOBS, reps: REPS, fio: async (t, job, times) => round(await fio(t, job, times)), sync, say, load1: () => os.loadavg()[0] });
    const loads = limits.runs.map((r) => r.load1);
    const load1 = { min: Math.min(...loads), median: median(loads), max: Math.max(...loads) };
    console.log(`\n1-min load average during the runs ${load1.min.toFixed(1)}-${load1.max.toFixed(1)} (median ${load1.median.toFixed(1)}) on ${facts.cpus} CPUs.`);
    const missed = limits.goals.filter((g) => !g.met);
    console.log(`\nGoals: ${limits.goals.length - missed.length}/${limits.goals.length} met.`);
    for (const g of missed) console.log(`  MISS ${g.goal} (${human(g.value)}${g.reference === undefined ? '' : ` vs ${human(g.reference)}`})`);
    const base = resultsBase(opt.out, 'block-limits', started);
    const settings = { runtimeS: RUNTIME, rampS: RAMP, reps: REPS, volumeSize: SIZE, syncBeforeEachRun: SYNC, qsd: 'file node (page cache, aio threads) under a throttle filter node, throttle group limits iops-total / bps-total only' };
    const targets = TARGETS.map((t) => ({ id: t.id, label: t.label, uri: t.uri, ...(t.volume ? { volume: t.volume } : {}) }));
    writeFileSync(`${base}.json`, JSON.stringify({ benchmark: 'block-limits', date: new Date(started).toISOString(), durationS: Math.round((Date.now() - started) / 1000), host: facts, versions, scratch: { dir: scratch.dir, ...fs }, settings, targets, fillMBps: fill, load1, ...limits }, null, 2) + '\n');
    console.log(`\nresults: ${base}.json`);
    return;
  }

  const runs = [];
  for (let rep = 0; rep < REPS; rep++) {
    for (const [ji, job] of JOBS.entries()) {
      const k = (rep + ji) % TARGETS.length;
      const order = [...TARGETS.slice(k), ...TARGETS.slice(0, k)];
      const line = [];
      for (const t of order) {
        await sync();
        const r = await fio(t, job);
        runs.push({ rep, job: job.id, target: t.id, ...round(r), load1: os.loadavg()[0] });
        line.push(`${t.id} ${human(r[job.metric])}`);
      }
      say(`rep ${rep + 1}/${REPS} ${job.label.padEnd(17)} ${unit(job)}: ${line.join(', ')}`);
    }
  }

  // Medians and ratios.
  const results = {};
  for (const job of JOBS) {
    results[job.id] = {};
    for (const t of TARGETS) {
      const mine = runs.filter((r) => r.job === job.id && r.target === t.id);
      const med = (k) => median(mine.map((r) => r[k]));
      const perRepRatio = BASELINE
        ? mine.map((r) => {
            const b = runs.find((x) => x.job === job.id && x.target === BASELINE.id && x.rep === r.rep);
            return b && b[job.metric] > 0 ? r[job.metric] / b[job.metric] : NaN;
          })
        : [];
      results[job.id][t.id] = round({
        iops: med('iops'),
        mbps: med('mbps'),
        clatMeanUs: med('clatMeanUs'),
        clatP50Us: med('clatP50Us'),
        clatP99Us: med('clatP99Us'),
        serverCores: med('serverCores'),
        serverCpuUsPerIo: med('serverCpuUsPerIo'),
        fioCpuPct: med('fioCpuPct'),
        ...(CEPH ? { osdCores: med('osdCores'), osdCpuUsPerIo: med('osdCpuUsPerIo') } : {}),
        ratio: BASELINE ? median(perRepRatio) : null,
        spread: mine.length > 1 ? Math.max(...mine.map((r) => r[job.metric])) / Math.min(...mine.map((r) => r[job.metric])) : null,
        ratioSpread: perRepRatio.length ? [Math.min(...perRepRatio), Math.max(...perRepRatio)] : null,
      });
    }
  }

  // Goals: nitride's encrypted volumes beat every encrypted peer and reach 0.8x of the plain
  // baseline on every job; locally, 1 MiB sequential jobs above 1 GB/s; on Ceph (where the OSD
  // bounds everything), QD1 completion latency at most 20 µs above librbd's own.
  const goals = [];
  const peers = TARGETS.filter((t) => t.encrypted && !t.nitride);
  for (const job of JOBS) {
    for (const t of TARGETS.filter((x) => x.nitride && !x.reference)) {
      const me = results[job.id][t.id];
      const v = me[job.metric];
      for (const p of peers) {
        const pv = results[job.id][p.id][job.metric];
        goals.push({ job: job.id, target: t.id, goal: `beats ${p.id}`, value: v, reference: pv, met: v > pv });
      }
      if (BASELINE) goals.push({ job: job.id, target: t.id, goal: `>= 0.8x ${BASELINE.id}`, value: me.ratio, reference: 0.8, met: me.ratio >= 0.8 });
      if (CEPH && BASELINE && job.qd === 1) {
        const base = results[job.id][BASELINE.id];
        const added = me.clatMeanUs - base.clatMeanUs;
        // Judged on the mean; the median's difference is kept beside it (tails swing under load).
        goals.push({ job: job.id, target: t.id, goal: `QD1 mean latency <= ${BASELINE.id} + 20 µs`, value: added, reference: 20, met: added <= 20, p50AddedUs: +(me.clatP50Us - base.clatP50Us).toPrecision(4) });
      }
      if (!CEPH && job.metric === 'mbps') goals.push({ job: job.id, target: t.id, goal: '> 1000 MB/s', value: v, reference: 1000, met: v > 1000 });
    }
  }

  // Tables.
  const header = ['job', ...TARGETS.map((t) => t.id)];
  console.log(`\nThroughput, median of ${REPS} (IOPS for 4k, MB/s for 1M) and ratio to ${BASELINE?.id ?? '-'} (median of per-rep ratios):`);
  console.log(
    textTable(
      header,
      JOBS.map((job) => [`${job.label} ${unit(job)}`, ...TARGETS.map((t) => `${human(results[job.id][t.id][job.metric])} ${fmtRatio(results[job.id][t.id].ratio)}`)]),
    ),
  );
  console.log('\nCompletion latency, median of runs: mean / p99 (µs):');
  console.log(textTable(header, JOBS.map((job) => [job.label, ...TARGETS.map((t) => `${human(results[job.id][t.id].clatMeanUs)} / ${human(results[job.id][t.id].clatP99Us)}`)])));
  console.log(`\nServer CPU (all threads, from /proc), median: cores busy / µs per I/O${CEPH ? ' (librbd: no server; its client work is in fio: fio CPU %)' : ''}:`);
  const cpuCell = (m) => (m.serverCores === null ? `fio ${m.fioCpuPct?.toFixed(0)}%` : `${m.serverCores?.toFixed(2)} / ${human(m.serverCpuUsPerIo)}`);
  console.log(textTable(header, JOBS.map((job) => [job.label, ...TARGETS.map((t) => cpuCell(results[job.id][t.id]))])));
  if (CEPH) {
    console.log('\nOSD CPU (the one ceph-osd, all threads, during each fio run incl. ramp), median: cores busy / µs per I/O:');
    console.log(
      textTable(header, JOBS.map((job) => [job.label, ...TARGETS.map((t) => `${results[job.id][t.id].osdCores?.toFixed(2)} / ${human(results[job.id][t.id].osdCpuUsPerIo)}`)])),
    );
    const plainNbd = TARGETS.find((t) => t.qsd === 'plain');
    if (plainNbd) {
      console.log(`\nRatio to ${plainNbd.id} (the unencrypted image through the same kind of NBD server; medians' ratio):`);
      console.log(
        textTable(header, JOBS.map((job) => [job.label, ...TARGETS.map((t) => fmtRatio(results[job.id][t.id][job.metric] / results[job.id][plainNbd.id][job.metric]))])),
      );
    }
  }
  // How noisy was it? Spread of one target's value over the repetitions, and the load average.
  const spreads = JOBS.flatMap((job) => TARGETS.map((t) => ({ job: job.id, target: t.id, spread: results[job.id][t.id].spread }))).filter((x) => x.spread);
  const worst = spreads.sort((a, b) => b.spread - a.spread)[0];
  const loads = runs.map((r) => r.load1);
  const noise = {
    medianSpread: median(spreads.map((x) => x.spread)),
    worst: worst ?? null,
    load1: loads.length ? { min: Math.min(...loads), median: median(loads), max: Math.max(...loads) } : null,
  };
  if (noise.medianSpread) {
    console.log(
      `\nNoise: a target's value varied ${noise.medianSpread.toFixed(2)}x (max/min over reps; median over job x target cells; worst ${worst.spread.toFixed(1)}x, ${worst.target} ${worst.job}); ` +
        `1-min load average during the runs ${noise.load1.min.toFixed(1)}-${noise.load1.max.toFixed(1)} (median ${noise.load1.median.toFixed(1)}) on ${facts.cpus} CPUs.`,
    );
  }
  const missed = goals.filter((g) => !g.met);
  console.log(`\nGoals: ${goals.length - missed.length}/${goals.length} met.`);
  for (const g of missed) console.log(`  MISS ${g.job} ${g.target}: ${g.goal} (${human(g.value)} vs ${human(g.reference)}${g.p50AddedUs === undefined ? '' : `; p50 added ${human(g.p50AddedUs)} µs`})`);

  const ebs = TARGETS.find((t) => t.nitride === 'ebs' && !t.dataPlane && !t.store);
  const resultsDir = opt.out ? path.dirname(path.resolve(opt.out)) : path.join(ROOT, 'bench-results');
  const base = opt.out ? path.resolve(opt.out).replace(/\.json$/, '') : path.join(resultsDir, `block${CEPH ? '-ceph' : ''}-${stamp(new Date(started))}`);
  mkdirSync(resultsDir, { recursive: true });
  const doc = {
    benchmark: 'block',
    date: new Date(started).toISOString(),
    durationS: Math.round((Date.now() - started) / 1000),
    host: facts,
    versions,
    scratch: { dir: scratch.dir, ...fs },
    settings: {
      runtimeS: RUNTIME,
      rampS: RAMP,
      reps: REPS,
      volumeSize: SIZE,
      syncBeforeEachRun: SYNC,
      fio: 'ioengine=nbd numjobs=1 time_based norandommap; 4k jobs: IOPS; 1M jobs: MB/s (1e6 bytes/s)',
      ...(CEPH
        ? {
            ceph: 'one-node cluster (mon, mgr, one BlueStore OSD on a sparse file in the scratch directory), pool rbd size 1; 1 GiB images, feature layering only; librbd rbd_cache writeback from the start in every client (rbd cache writethrough until flush = false: fio sends no flushes)',
            qsd: 'qemu-storage-daemon, rbd driver (cache writeback), NBD export on a Unix socket; luks2: rbd encryption format luks2 aes-256 (librbd client-side encryption)',
            librbd: 'fio ioengine=rbd, the same job options',
          }
        : {
            qemuNbd: 'LUKS1 aes-256-xts-plain64 (512-byte sectors), --cache=writeback --aio=threads',
            nbdkit: 'file plugin defaults (page cache, 16 threads); luks filter on a copy of the same LUKS1 image',
          }),
      nitride: 'AES-256-XTS, 4096-byte data units',
      baseline: BASELINE?.id ?? null,
      ratio: 'median over repetitions of value / baseline value in the same repetition',
    },
    group: CEPH ? 'ceph' : 'local',
    targets: TARGETS.map((t) => ({ id: t.id, label: t.label, encrypted: t.encrypted, uri: t.uri, ...(t.volume ? { volume: t.volume } : {}) })),
    jobs: JOBS.map(({ id, label, rw, bs, qd, metric }) => ({ id, label, rw, bs, iodepth: qd, metric })),
    fillMBps: fill,
    runs,
    medians: results,
    goals,
    noise,
    profile: null,
  };
  const writeJson = () => writeFileSync(`${base}.json`, JSON.stringify(doc, null, 2) + '\n');
  writeJson();
  writeFileSync(
    `${base}.svg`,
    svgBarChart({
      title: `nitride block benchmark${CEPH ? ' on Ceph RBD' : ''}: throughput relative to ${BASELINE?.label ?? '-'}`,
      subtitle: `fio${CEPH ? '' : ' ioengine=nbd'}, 1 GiB ${CEPH ? 'RBD images, one OSD on a file' : 'volumes'} on ${fs.fstype}, median of ${REPS} reps x ${RUNTIME} s; ${facts.cpus} CPUs; ${new Date(started).toISOString().slice(0, 16)}Z`,
      yLabel: `throughput / ${BASELINE?.id ?? '-'}`,
      groups: JOBS.map((job) => ({ label: job.label, sublabel: BASELINE ? `${CEPH ? 'librbd' : 'file'}: ${human(results[job.id][BASELINE.id][job.metric])} ${unit(job)}` : '' })),
      series: TARGETS.map((t) => ({ label: t.label, color: t.color })),
      values: JOBS.map((job) => TARGETS.map((t) => (BASELINE ? results[job.id][t.id].ratio : results[job.id][t.id][job.metric]))),
      refLines: BASELINE
        ? [
            { value: 1, label: 'baseline', color: '#333' },
            { value: 0.8, label: 'goal 0.8x', color: '#2a8a2a' },
          ]
        : [],
      valueFormat: (v) => (BASELINE ? v.toFixed(2) : human(v)),
    }),
  );
  console.log(`\nresults: ${base}.json\nchart:   ${base}.svg`);

  // Profile of the daemon under 4k randread QD32 on the ebs volume (after the results are safe).
  if (PROFILE && ebs) {
    try {
      doc.profile = await profileDaemon(daemon, ebs, `${base}.cpuprofile`);
      writeJson();
      console.log(`profile: ${base}.cpuprofile (open in Chrome DevTools > Performance)`);
    } catch (err) {
      console.log(`profile: failed: ${err.message}`);
    }
  }
  say('done');
}

/**
 * CPU-profile the running daemon (started with --inspect-port=0) during one 4k randread QD32 run
 * on the ebs volume: SIGUSR1 opens its inspector on a random loopback port, the V8 sampling
 * profiler runs for exactly the fio run (ramp included), and /proc gives the per-thread CPU split.
 */
async function profileDaemon(daemon, ebs, keepAs) {
  const job = ALL_JOBS.find((j) => j.id === 'randread-4k-qd32');
  const pid = daemon.pid();
  const logFile = daemon.entry.logFile;
  const logStart = readFileSync(logFile, 'utf8').length;
  process.kill(pid, 'SIGUSR1');
  const url = await waitFor('the daemon inspector', () => /Debugger listening on (ws:\/\/\S+)/.exec(readFileSync(logFile, 'utf8').slice(logStart))?.[1], { timeoutMs: 5000 });
  const session = await inspectorSession(url);
  let r;
  let profile;
  let threads0;
  let threads1;
  const seconds = Math.max(RUNTIME, 5);
  try {
    await session.call('Profiler.enable');
    await session.call('Profiler.setSamplingInterval', { interval: 250 });
    await sync();
    await ebs.before();
    threads0 = threadCpu(pid);
    await session.call('Profiler.start');
    r = await fio(ebs, job, { runtime: seconds, ramp: RAMP });
    ({ profile } = await session.call('Profiler.stop'));
    threads1 = threadCpu(pid);
  } finally {
    session.close();
  }
  writeFileSync(keepAs, JSON.stringify(profile));
  const self = profileSelfTimes(profile);
  // Per-thread CPU during the run (main thread vs libuv pool vs V8 helpers).
  const byName = new Map();
  for (const t1 of threads1) {
    const t0 = threads0.find((t) => t.tid === t1.tid);
    const name = t1.tid === pid ? 'main (event loop)' : t1.name;
    byName.set(name, (byName.get(name) ?? 0) + t1.cpu - (t0?.cpu ?? 0));
  }
  const threads = [...byName].map(([name, cpu]) => ({ name, cores: +(cpu / r.wallS).toFixed(2) })).sort((a, b) => b.cores - a.cores);
  console.log(`\nDaemon CPU profile, 4k randread QD32 on nitride-ebs (${RAMP}+${seconds} s, V8 sampling every 250 µs, ${human(r.iops)} IOPS):`);
  console.log(`threads, cores busy: ${threads.filter((t) => t.cores > 0).map((t) => `${t.name} ${t.cores.toFixed(2)}`).join(', ')}`);
  console.log(`main thread in the profile: ${self.busyMs} ms busy, ${self.idleMs} ms idle; top self time (native addon calls are charged to their JS caller):`);
  console.log(
    textTable(
      ['%busy', 'ms', 'function', 'where'],
      self.rows.slice(0, 10).map((x) => [x.pct.toFixed(1), x.ms.toFixed(0), x.name, x.where]),
      { align: ['r', 'r', 'l', 'l'] },
    ),
  );
  return { job: job.id, target: ebs.id, seconds, iops: r.iops, threads, busyMs: self.busyMs, idleMs: self.idleMs, top: self.rows.slice(0, 25) };
}

function round(o) {
  const out = {};
  for (const [k, v] of Object.entries(o)) out[k] = typeof v === 'number' ? +v.toPrecision(5) : Array.isArray(v) ? v.map((x) => +x.toPrecision(4)) : v;
  return out;
}

function fmtRatio(r) {
  return r === null || r === undefined || !Number.isFinite(r) ? '' : `(${r.toFixed(2)}x)`;
}

try {
  await main();
} catch (err) {
  if (aborted) await new Promise(() => {});
  console.error(`bench-block: ${err.message}`);
  process.exitCode = 1;
} finally {
  for (const p of fioProcs) p.kill('SIGTERM');
  await scratch.cleanup();
}
