#!/usr/bin/env node
// What the guest jail costs (issue 16), measured in one run against QEMU as it ran before it:
//   boot   the test guest (scripts/build-guest.sh, TCG, nitride.test=e2e: DHCP on its ENI, 1 MiB
//          written and verified on its NVMe-over-NBD boot volume, NITRIDE-PASS, poweroff)
//          - nitride: `nitride vm run` (jailed as shipped: own uid, mount+pid namespace, chroot,
//            cgroup limits, -sandbox, per-VM NBD socket, TAP by fd)
//          - bare: the command line nitride recorded for that VM (`vm describe` args), with the
//            jail's paths mapped back to the host's (the allowlisted kernel/initrd, the shared
//            NBD socket, the TAP by name), minus -sandbox, run by root, no jail, no cgroup
//          - bare+cgroup: the same in a cgroup made by nitride's createVmCgroup with the VM's
//            limits: what the rest of the jail costs beside the per-VM cgroup's CPU share
//          Reported: `vm run` (or spawn) to NITRIDE-PASS on the console, QEMU's process start
//          to PASS (/proc/PID/stat: for nitride this includes the jail's unshare/mount/chroot/
//          setpriv, not the CLI and daemon work before it), and the guest's own uptime at PASS.
//   fio    fio ioengine=nbd on one 512 MiB multi-attach ebs volume attached to a running (idle)
//          guest, through its guest-facing socket (<vm dir>/root/run/nbd.sock, as root) and
//          through the shared socket: the per-VM socket's policy check is the only difference.
// Repetitions rotate the order of the modes; medians and the median of the per-repetition
// ratios (jailed / bare, guest socket / shared socket). Writes bench-results/vm-<stamp>.json.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import {
  ROOT,
  Scratch,
  benchArgs,
  canConnect,
  controlRequest,
  hostFacts,
  installSignalCleanup,
  median,
  optionsChecked,
  pickById,
  positiveOption,
  resultsBase,
  run,
  sleep,
  textTable,
  versionOf,
  waitFor,
} from '../lib/bench-common.mjs';

const NAME = 'bench-vm';
const USAGE = `usage: scripts/bench-vm.sh [--reps N] [--runtime S] [--ramp S] [--phases boot,fio] [--out FILE.json] [--keep]
  --reps N      repetitions of each pair, order alternating (default 5); medians are reported
  --runtime S   measured seconds per fio run (default 4)
  --ramp S      fio ramp_time seconds (default 1)
  --phases LIST comma list of: boot,fio (default both)
  --out FILE    JSON result path (default bench-results/vm-<timestamp>.json)
  --keep        keep the scratch directory (state, consoles, fio JSON)`;
const opt = benchArgs(NAME, USAGE, {
  reps: { type: 'string' },
  runtime: { type: 'string' },
  ramp: { type: 'string' },
  phases: { type: 'string' },
});
const REPS = Math.round(positiveOption(NAME, opt.reps, 5, 'reps'));
const RUNTIME = positiveOption(NAME, opt.runtime, 4, 'runtime');
const RAMP = positiveOption(NAME, opt.ramp, 1, 'ramp');
const PHASES = pickById(NAME, [{ id: 'boot' }, { id: 'fio' }], opt.phases, 'phase').map((p) => p.id);
const JOBS = [
  { id: 'randread-4k-qd1', rw: 'randread', bs: '4k', qd: 1, metric: 'iops' },
  { id: 'randread-4k-qd32', rw: 'randread', bs: '4k', qd: 32, metric: 'iops' },
  { id: 'read-1m-qd8', rw: 'read', bs: '1M', qd: 8, metric: 'mbps' },
];
optionsChecked();
// nitride's own per-VM cgroup code (built), for the bare+cgroup boots.
const cgroups = await import(path.join(ROOT, 'dist/vm/cgroup.js'));

const QEMU = '/usr/bin/qemu-system-x86_64';
const VPC = 'vpc-0b0e00000000000a1';
const SUBNET = 'subnet-0b0e00000000000a1';
const ENI = { id: 'eni-0b0e00000000000a1', mac: '02:00:5e:40:00:01', ip: '172.31.7.10' };
// A uid range of its own: other daemons on this host allocate from theirs.
const UID_BASE = 1_910_000_000 + (randomBytes(3).readUIntBE(0, 3) % 1_000_000) * 4;
const ns = 'ntbv' + randomBytes(2).toString('hex');

const scratch = opt.scratch ? new Scratch(path.resolve(opt.scratch), { keep: opt.keep }) : Scratch.create('/var/tmp', 'nitride-bench-vm.', { keep: opt.keep });
const ctl = scratch.path('run', 'control.sock');
const kmsSock = scratch.path('run-kms', 'kms.sock');
const sharedNbd = scratch.path('run', 'nbd.sock');
const env = { NITRIDE_SOCKET: ctl, NITRIDE_KMS_SOCKET: kmsSock };
const started = Date.now();
const say = (msg) => console.log(`[${String(Math.round((Date.now() - started) / 1000)).padStart(4)}s] ${msg}`);
const api = (method, url, body) => controlRequest(ctl, method, url, body);
const nitride = async (args) => JSON.parse((await run(process.execPath, [opt.cli, ...args, '--json'], { env })).stdout);
const inNs = (name, cmd, args) => scratch.start(name, 'nsenter', [`--net=/run/netns/${ns}`, '--', cmd, ...args]);

async function teardown() {
  // Jailed QEMUs run in their own session: not scratch's children.
  const vms = await api('GET', '/v1/vms').catch(() => []);
  for (const vm of Array.isArray(vms) ? vms : []) if (vm.state === 'running' && vm.pid) process.kill(vm.pid, 'SIGKILL');
  await sleep(500);
  await scratch.cleanup();
  await run('ip', ['netns', 'del', ns], { allowFail: true });
}
installSignalCleanup(scratch, () => void run('ip', ['netns', 'del', ns], { allowFail: true }));

/** Seconds since boot now (10 ms resolution, the clock /proc/PID/stat start times count in). */
const uptimeS = () => Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
const TICK = 100; // USER_HZ on Linux
const startedAtS = (pid) => Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[19]) / TICK;

/** Poll `file` until the guest's verdict; returns { at (ms, performance.now), uptimeS (host), guestS }. */
async function verdict(file, alive) {
  for (;;) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      /* not created yet */
    }
    const m = /NITRIDE-(PASS|FAIL)[^\n]*uptime=([\d.]+)/.exec(text);
    if (m) {
      const at = performance.now();
      if (m[1] !== 'PASS') throw new Error(`guest failed: ${m[0]}\n${text.slice(-1500)}`);
      return { at, hostUptimeS: uptimeS(), guestS: Number(m[2]) };
    }
    if (!alive()) throw new Error(`QEMU exited before the verdict; console:\n${text.slice(-1500)}`);
    await sleep(10);
  }
}

const volumeAvailable = (id) => waitFor(`volume ${id} detached`, async () => (await api('GET', `/v1/volumes/${id}`)).state === 'available', { timeoutMs: 60_000 });

async function setUp() {
  // A private copy: build-guest.sh drops other cache entries when a checkout with another guest builds.
  const guestDir = scratch.path('guest');
  mkdirSync(guestDir);
  await waitFor('the test guest (scripts/build-guest.sh)', async () => {
    const cache = (await run(path.join(ROOT, 'scripts/build-guest.sh'), ['--quiet'])).stdout.trim();
    for (const f of ['vmlinuz', 'initrd.img']) copyFileSync(path.join(cache, f), path.join(guestDir, f));
    return true;
  }, { timeoutMs: 900_000, intervalMs: 1000 });
  await run('ip', ['netns', 'add', ns]);
  await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  // nsenter --net, not `ip netns exec`: that mounts a fresh /sys without the cgroup hierarchies.
  const kms = inNs('kms', process.execPath, [opt.cli, 'kms', 'serve', '--state-dir', scratch.path('kms'), '--socket', kmsSock]);
  await waitFor('the KMS socket', () => canConnect(kmsSock), { alive: () => kms.child.exitCode === null });
  const daemon = inNs('daemon', process.execPath, [
    opt.cli, 'daemon', '--state-dir', scratch.path('state'), '--control-socket', ctl, '--kms-socket', kmsSock,
    '--nbd-socket', sharedNbd, '--vpc-listen', '127.0.0.1:4789', '--vm-uid-range', `${UID_BASE}-${UID_BASE + 3}`, '--log-level', 'warn',
  ]);
  await waitFor('the daemon', async () => (await api('GET', '/v1/status')).vpc?.state === 'up', { timeoutMs: 60_000, alive: () => daemon.child.exitCode === null }).catch((err) => {
    throw new Error(`${err.message}\n${scratch.tail('daemon')}`);
  });
  await nitride(['vpc', 'create', '--cidr', '172.31.0.0/16', '--id', VPC]);
  await nitride(['subnet', 'create', '--vpc', VPC, '--cidr', '172.31.7.0/24', '--id', SUBNET]);
  const eni = await nitride(['eni', 'create', '--subnet', SUBNET, '--id', ENI.id, '--mac', ENI.mac, '--ip', ENI.ip]);
  for (const f of ['vmlinuz', 'initrd.img']) await nitride(['image', 'allow', path.join(guestDir, f)]);
  const boot = await nitride(['volume', 'create', '--size', '16M', '--name', 'boot']);
  const data = await nitride(['volume', 'create', '--size', '512M', '--multi-attach', '--name', 'data']);
  return { guestDir, tap: eni.hostInterface, boot: boot.id, data: data.id };
}

function vmRunArgs(env0, name, after, volumes) {
  const append = `console=ttyS0 panic=-1 clocksource=hpet nitride.test=e2e nitride.ebs=${env0.boot} nitride.mib=1 nitride.after=${after}`;
  return ['vm', 'run', '--name', name, '--kernel', path.join(env0.guestDir, 'vmlinuz'), '--initrd', path.join(env0.guestDir, 'initrd.img'), '--memory', '256M', '--start-timeout', '120', '--append', append, ...volumes.flatMap((v) => ['--volume', v]), '--eni', ENI.id];
}

async function bootNitride(env0) {
  const t0 = performance.now();
  const vm = await nitride(vmRunArgs(env0, 'boot', 'poweroff', [`${env0.boot}:boot`]));
  const qemuStartS = startedAtS(vm.pid);
  const v = await verdict(vm.consoleLog, () => existsPid(vm.pid));
  const throttledMs = cpuThrottledMs(vm.pid);
  await waitFor('the VM to stop', async () => (await api('GET', `/v1/vms/${vm.id}`)).state === 'stopped', { timeoutMs: 120_000 });
  await volumeAvailable(env0.boot);
  return { vm, result: { runToPassMs: v.at - t0, qemuToPassMs: (v.hostUptimeS - qemuStartS) * 1000, guestUptimeS: v.guestS, cpuThrottledMs: throttledMs } };
}

/** Time the VM's cgroup CPU quota held QEMU back so far (cpu.stat; v2 or v1), or null once it is gone. */
function cpuThrottledMs(pid) {
  try {
    const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n');
    const v1 = lines.find((l) => /^\d+:([^:]*,)?cpu(,[^:]*)?:/.test(l))?.split(':')[2];
    if (v1 !== undefined) return Number(/^throttled_time (\d+)$/m.exec(readFileSync(path.join('/sys/fs/cgroup/cpu', v1, 'cpu.stat'), 'utf8'))[1]) / 1e6;
    const v2 = lines.find((l) => l.startsWith('0::')).slice(3);
    return Number(/^throttled_usec (\d+)$/m.exec(readFileSync(path.join('/sys/fs/cgroup', v2, 'cpu.stat'), 'utf8'))[1]) / 1000;
  } catch {
    return null;
  }
}

const existsPid = (pid) => {
  try {
    return !/^\S+ \S+ [ZX]/.test(readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/\(.*\)/s, 'x'));
  } catch {
    return false;
  }
};

/** The jailed VM's recorded command line with the jail's paths mapped back to the host's, minus -sandbox. */
function bareArgs(args, { kernel, initrd, console, qmp, nbd, tap }) {
  const out = [];
  const hits = { kernel: 0, initrd: 0, sandbox: 0, console: 0, qmp: 0, nbd: 0, tap: 0 };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const next = args[i + 1];
    if (a === '-sandbox') {
      i++;
      hits.sandbox++;
    } else if (a === '-kernel' && next === '/boot/kernel') (out.push(a, kernel), i++, hits.kernel++);
    else if (a === '-initrd' && next === '/boot/initrd') (out.push(a, initrd), i++, hits.initrd++);
    else if (a === '-chardev' && next === 'file,id=console,path=/run/console.log,append=on') (out.push(a, `file,id=console,path=${console.replaceAll(',', ',,')},append=on`), i++, hits.console++);
    else if (a === '-chardev' && next?.startsWith('socket,id=qmp,path=/run/qmp.sock,')) (out.push(a, `socket,id=qmp,path=${qmp.replaceAll(',', ',,')},${next.slice('socket,id=qmp,path=/run/qmp.sock,'.length)}`), i++, hits.qmp++);
    else if (a === '-blockdev' && next?.includes('"/run/nbd.sock"')) (out.push(a, next.replace('"/run/nbd.sock"', JSON.stringify(nbd))), i++, hits.nbd++);
    else if (a === '-netdev' && /^tap,id=net0,fd=3$/.test(next ?? '')) (out.push(a, `tap,id=net0,ifname=${tap},script=no,downscript=no`), i++, hits.tap++);
    else out.push(a);
  }
  const missed = Object.entries(hits).filter(([, n]) => n !== 1).map(([k]) => k);
  if (missed.length) throw new Error(`nitride's QEMU command line changed: cannot map ${missed.join(', ')} back to the host (${args.join(' ')})`);
  return out;
}

let bareSeq = 0;
async function bootBare(env0, recorded, withCgroup) {
  const n = ++bareSeq;
  const console = scratch.path(`bare-${n}`, 'console.log');
  const args = bareArgs(recorded, {
    kernel: path.join(env0.guestDir, 'vmlinuz'),
    initrd: path.join(env0.guestDir, 'initrd.img'),
    console,
    qmp: scratch.path(`bare-${n}`, 'qmp.sock'),
    nbd: sharedNbd,
    tap: env0.tap,
  });
  mkdirSync(path.dirname(console), { recursive: true });
  const cgroup = withCgroup ? await cgroups.createVmCgroup(`bare-${path.basename(scratch.dir)}-${n}`, cgroups.vmLimits(256, 1, 'tcg')) : { dirs: [], procs: [] };
  const t0 = performance.now();
  // nsenter --net execs QEMU itself (no fork): the child's pid is QEMU's. The shell joins the cgroups first.
  const q = cgroup.procs.length
    ? inNs(`qemu-bare-${n}`, 'sh', ['-c', 'while [ "$1" != -- ]; do echo $$ > "$1"; shift; done; shift; exec "$@"', 'sh', ...cgroup.procs, '--', QEMU, ...args])
    : inNs(`qemu-bare-${n}`, QEMU, args);
  const alive = () => q.child.exitCode === null && q.child.signalCode === null;
  await waitFor('the bare QEMU', () => !alive() || readFileSync(`/proc/${q.child.pid}/cmdline`, 'utf8').startsWith(QEMU), { intervalMs: 5 });
  const qemuStartS = startedAtS(q.child.pid);
  const v = await verdict(console, alive).catch((err) => {
    throw new Error(`${err.message}\n${scratch.tail(`qemu-bare-${n}`)}`);
  });
  await q.exited;
  await cgroups.removeVmCgroup(cgroup.dirs);
  await volumeAvailable(env0.boot);
  return { runToPassMs: v.at - t0, qemuToPassMs: (v.hostUptimeS - qemuStartS) * 1000, guestUptimeS: v.guestS };
}

async function bootPhase(env0) {
  const rows = { nitride: [], bare: [], 'bare+cgroup': [] };
  const modes = Object.keys(rows);
  let recorded;
  for (let rep = 0; rep < REPS; rep++) {
    // nitride first in the first repetition (its command line is the others'), then rotated.
    for (const mode of [...modes.slice(rep % 3), ...modes.slice(0, rep % 3)]) {
      if (mode === 'nitride') {
        const { vm, result } = await bootNitride(env0);
        recorded = vm.args;
        rows.nitride.push(result);
      } else rows[mode].push(await bootBare(env0, recorded, mode === 'bare+cgroup'));
      const r = rows[mode].at(-1);
      const throttled = r.cpuThrottledMs === undefined ? '' : `, cgroup CPU-throttled ${r.cpuThrottledMs ?? '?'} ms`;
      say(`boot rep ${rep + 1} ${mode.padEnd(11)}: run->PASS ${r.runToPassMs.toFixed(0)} ms, QEMU start->PASS ${r.qemuToPassMs.toFixed(0)} ms, guest uptime ${r.guestUptimeS.toFixed(2)} s${throttled}`);
    }
  }
  return rows;
}

let fioSeq = 0;
async function fio(uri, job) {
  const out = scratch.path('fio', `${String(++fioSeq).padStart(4, '0')}-${job.id}.json`);
  mkdirSync(path.dirname(out), { recursive: true });
  const args = [`--name=${job.id}`, '--ioengine=nbd', `--uri=${uri}`, '--numjobs=1', '--output-format=json', `--output=${out}`, `--rw=${job.rw}`, `--bs=${job.bs}`, `--iodepth=${job.qd}`];
  if (job.fill) args.push('--size=100%');
  else args.push('--time_based=1', `--runtime=${RUNTIME}`, `--ramp_time=${RAMP}`, '--norandommap=1');
  await run('fio', args);
  const j = JSON.parse(readFileSync(out, 'utf8')).jobs[0];
  const side = job.rw.includes('read') ? j.read : j.write;
  return job.metric === 'iops' ? side.iops : side.bw_bytes / 1e6;
}

async function fioPhase(env0) {
  const uri = (socket) => `nbd+unix:///${env0.data}?socket=${socket}`;
  say('fio: filling the data volume through the shared socket');
  await fio(uri(sharedNbd), { id: 'fill', rw: 'write', bs: '1M', qd: 8, fill: true });
  await volumeAvailable(env0.data);
  const vm = await nitride(vmRunArgs(env0, 'fio', 'idle', [`${env0.boot}:boot`, env0.data]));
  await verdict(vm.consoleLog, () => existsPid(vm.pid));
  const guestNbd = path.join(path.dirname(vm.consoleLog), 'nbd.sock');
  say(`fio: guest ${vm.id} up (uid ${vm.uid}); its socket ${guestNbd}`);
  const sockets = { 'guest socket': guestNbd, 'shared socket': sharedNbd };
  const rows = Object.fromEntries(JOBS.map((j) => [j.id, { 'guest socket': [], 'shared socket': [] }]));
  for (let rep = 0; rep < REPS; rep++) {
    for (const job of JOBS) {
      for (const mode of rep % 2 ? ['shared socket', 'guest socket'] : ['guest socket', 'shared socket']) {
        rows[job.id][mode].push(await fio(uri(sockets[mode]), job));
      }
      say(`fio rep ${rep + 1} ${job.id}: guest socket ${rows[job.id]['guest socket'].at(-1).toFixed(0)}, shared ${rows[job.id]['shared socket'].at(-1).toFixed(0)} ${job.metric === 'iops' ? 'IOPS' : 'MB/s'}`);
    }
  }
  await nitride(['vm', 'stop', vm.id]);
  return rows;
}

/** Per-repetition ratios a/b: their median and range (the range shows the run's noise). */
function ratios(a, b) {
  const r = a.map((x, i) => x / b[i]);
  return { median: median(r), min: Math.min(...r), max: Math.max(...r) };
}
const fmtRatio = (r) => `${r.median.toFixed(2)} (${r.min.toFixed(2)}-${r.max.toFixed(2)})`;

async function main() {
  const facts = await hostFacts();
  const versions = { qemu: await versionOf(QEMU), fio: await versionOf('fio') };
  const load = [os.loadavg()];
  say(`bench-vm: ${REPS} reps of ${PHASES.join(' and ')}; load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  const env0 = await setUp();
  const result = { host: facts, versions, reps: REPS, runtimeS: RUNTIME, rampS: RAMP, loadavg: load };
  if (PHASES.includes('boot')) {
    const b = await bootPhase(env0);
    load.push(os.loadavg());
    const keys = [['runToPassMs', '`vm run` / spawn -> NITRIDE-PASS, ms'], ['qemuToPassMs', 'QEMU process start -> PASS, ms'], ['guestUptimeS', 'guest uptime at PASS, s']];
    result.boot = {
      runs: b,
      medians: Object.fromEntries(keys.map(([k]) => {
        const of = (mode) => b[mode].map((r) => r[k]);
        return [k, { nitride: median(of('nitride')), bare: median(of('bare')), bareCgroup: median(of('bare+cgroup')), ratio: ratios(of('nitride'), of('bare')), ratioCgroup: ratios(of('nitride'), of('bare+cgroup')) }];
      })),
    };
    console.log(`\nBoot of the test guest (TCG, e2e: DHCP + 1 MiB write/verify), median of ${REPS}; ratio = median of per-rep jailed/bare`);
    console.log('bare+cgroup: the bare QEMU in a cgroup made by nitride\'s createVmCgroup with the VM\'s limits');
    const fmt = (k, v) => v.toFixed(k === 'guestUptimeS' ? 2 : 0);
    console.log(textTable(['measure', 'nitride (jailed)', 'bare (root)', 'bare+cgroup', 'jailed/bare (range)', 'jailed/bare+cgroup (range)'], keys.map(([k, label]) => {
      const m = result.boot.medians[k];
      return [label, fmt(k, m.nitride), fmt(k, m.bare), fmt(k, m.bareCgroup), fmtRatio(m.ratio), fmtRatio(m.ratioCgroup)];
    })));
  }
  if (PHASES.includes('fio')) {
    const f = await fioPhase(env0);
    load.push(os.loadavg());
    result.fio = {
      runs: f,
      medians: Object.fromEntries(JOBS.map((j) => [j.id, { unit: j.metric === 'iops' ? 'IOPS' : 'MB/s', guest: median(f[j.id]['guest socket']), shared: median(f[j.id]['shared socket']), ratio: ratios(f[j.id]['guest socket'], f[j.id]['shared socket']) }])),
    };
    console.log(`\nfio ioengine=nbd on one 512 MiB ebs volume of a running guest, ${RAMP}+${RUNTIME} s per run, median of ${REPS}; ratio = median of per-rep guest/shared`);
    console.log(textTable(['job', 'guest socket', 'shared socket', 'ratio (per-rep range)'], JOBS.map((j) => {
      const m = result.fio.medians[j.id];
      return [`${j.id} (${m.unit})`, m.guest.toFixed(0), m.shared.toFixed(0), fmtRatio(m.ratio)];
    })));
  }
  console.log(`\nload average (1/5/15 min) at start and after each phase: ${load.map((l) => l.map((x) => x.toFixed(2)).join(' ')).join(' | ')}`);
  const base = resultsBase(opt.out, 'vm', started);
  writeFileSync(`${base}.json`, JSON.stringify(result, null, 2) + '\n');
  console.log(`wrote ${base}.json`);
}

try {
  await main();
} catch (err) {
  console.error(`${NAME}: ${err.message}`);
  process.exitCode = 1;
} finally {
  await teardown();
}
