// bench-block --limits: how exactly a volume's provisioned IOPS/throughput holds, against QEMU's
// block throttling in the same run, and what the limiter costs when it does not bind. Targets
// (set up by block.mjs, one daemon, one qemu-storage-daemon):
//   nitride-ebs          an ebs volume with no limits (today's default)
//   nitride-ebs-far      an ebs volume created with limits far above any rate here (10M IOPS,
//                        100 GiB/s): the limiter runs on every I/O but never delays one
//   nitride-ebs-limited  an ebs volume whose limits `volume modify` sets per cell (no burst)
//   qsd-throttle         qemu-storage-daemon: a `throttle` filter node in throttle group tg over a
//                        plain file, exported over NBD; qom-set tg.limits (iops-total/bps-total,
//                        no *-max: QEMU's bucket is 0.1 s of the rate, as nitride's) per cell
// Cells (accuracy): 1k, 3k, 16k IOPS (4k randread QD32) and 125, 250 MiB/s (1 MiB read QD8) on
// nitride-ebs-limited and qsd-throttle, path order rotated per repetition; fio's ramp time lets
// the 0.1 s bucket drain before the measured seconds. measured/set: fio's IOPS, or its bytes/s
// over the set MiB/s. Cost of a limit that never binds, nitride-ebs-far against nitride-ebs: each
// cost job (4k randread QD32, 1M read QD8, 4k randread QD1) runs COST_PAIRS short pairs (A B, then
// B A, ...; PAIR_RUNTIME s after PAIR_RAMP s each) spread over the repetitions, and reports the
// median of the per-pair ratios (or QD1 latency differences) with their spread: a few long runs
// could not decide 3 % or 2 µs here (same-run throughput ratios read 0.88-1.09 at load 2-6).
// Every other two pairs the two volumes swap roles (volume modify), so that what differs between
// the volumes themselves cancels. The cost is decided on CPU per I/O of the data-plane threads
// (the connection's lane thread `nitride-nbd` and its workers `nitride-nbd-io`, schedstat ns),
// counted inside each run over a window of steady state against the volume's request counter
// (/metrics), which another process's load does not move as it moves throughput; throughput
// per pair is reported beside it. The limiter's own ns per request, timed in isolation
// (limiter-ns.mjs), bounds the same ratio from below the noise.
import { ciGoal, ciGoalNote, controlRequest, median, medianCi, textTable, threadCpuNs, threadCpuNsDelta } from '../lib/bench-common.mjs';
import { limiterNs } from './limiter-ns.mjs';

const MiB = 1024 * 1024;
const FAR_PERF = ['--iops', '10000000', '--throughput', '100GiB/s'];
const NO_PERF = ['--iops', 'unlimited', '--throughput', 'unlimited'];
export const LIMIT_TARGETS = [
  { id: 'nitride-ebs', label: 'nitride ebs, no limits', encrypted: true, nitride: 'ebs', color: '#1f4e9c' },
  { id: 'nitride-ebs-far', label: 'nitride ebs, limits far above', encrypted: true, nitride: 'ebs', perf: FAR_PERF, color: '#6b9be0' },
  { id: 'nitride-ebs-limited', label: 'nitride ebs, limited', encrypted: true, nitride: 'ebs', limited: true, color: '#9c7a1f' },
  { id: 'qsd-throttle', label: 'QEMU throttle (qemu-storage-daemon, plain file)', encrypted: false, qsd: 'throttle', limited: true, color: '#e8892b' },
];
export const LIMIT_CELLS = [
  { id: 'iops1k', label: '1k IOPS', job: 'randread-4k-qd32', iops: 1000 },
  { id: 'iops3k', label: '3k IOPS', job: 'randread-4k-qd32', iops: 3000 },
  { id: 'iops16k', label: '16k IOPS', job: 'randread-4k-qd32', iops: 16000 },
  { id: 'mibps125', label: '125 MiB/s', job: 'read-1m-qd8', mibps: 125 },
  { id: 'mibps250', label: '250 MiB/s', job: 'read-1m-qd8', mibps: 250 },
];
const COST_JOBS = ['randread-4k-qd32', 'read-1m-qd8', 'randread-4k-qd1'];
const ACCURACY = 0.03;
const COST = 1.03;
const LATENCY_US = 2;
const COST_PAIRS = 12;
const PAIR_RUNTIME = 2;
const PAIR_RAMP = 1;
/** Thread names (prefixes) of a connection's data plane in the daemon (nbd_lane.cc). */
const DATA_PLANE_THREADS = ['nitride-nbd'];

/** Seconds of fio a --limits run over `targets` takes (for the start-up estimate). */
export function limitsSeconds(targets, reps, runtime, ramp) {
  const cells = reps * LIMIT_CELLS.length * targets.filter((t) => t.limited).length * (runtime + ramp + 0.8);
  const cost = ['nitride-ebs', 'nitride-ebs-far'].every((id) => targets.some((t) => t.id === id)) ? COST_JOBS.length * COST_PAIRS * 2 * (PAIR_RUNTIME + PAIR_RAMP + 1.5) : 0;
  return cells + cost;
}

/** CPU ns of the daemon's threads (data plane, all) and the volume's requests, at one moment. */
async function sample(t) {
  const pid = t.daemon.pid();
  const dp0 = threadCpuNs(pid, DATA_PLANE_THREADS);
  const all0 = threadCpuNs(pid);
  const text = await controlRequest(t.daemon.ctlSock, 'GET', '/metrics');
  const dp1 = threadCpuNs(pid, DATA_PLANE_THREADS);
  const all1 = threadCpuNs(pid);
  let ops = 0;
  for (const line of String(text).split('\n')) {
    if (line.startsWith('nitride_volume_requests_total{') && line.includes(`volume="${t.volume}"`)) ops += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return { dp0, dp1, all0, all1, ops, at: performance.now() };
}

/**
 * Inside a fio run (started with it): the data plane's and the whole daemon's CPU per request over
 * [ramp, ramp + runtime - 0.3 s] after fio's start (steady state; fio connects within ~0.1 s).
 * The counter is read between two thread readings, whose mean is taken.
 */
async function cpuWindow(t, ramp, runtime) {
  const sleepUntil = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms - performance.now())));
  const start = performance.now();
  await sleepUntil(start + ramp * 1000);
  const a = await sample(t);
  await sleepUntil(start + (ramp + runtime - 0.3) * 1000);
  const b = await sample(t);
  const ns = (k0, k1) => (threadCpuNsDelta(a[k0], b[k0]) + threadCpuNsDelta(a[k1], b[k1])) / 2;
  const ops = b.ops - a.ops;
  return { seconds: (b.at - a.at) / 1000, ops, dataPlaneNsPerIo: ops > 0 ? ns('dp0', 'dp1') / ops : null, daemonNsPerIo: ops > 0 ? ns('all0', 'all1') / ops : null };
}

/** The run over `targets` (LIMIT_TARGETS, set up; limited ones with setLimit(cell)); `fio(t, job)` as block.mjs's. */
export async function runLimits({ targets, jobs, reps, fio, sync, say, load1 }) {
  const byId = (id) => targets.find((t) => t.id === id);
  const limited = targets.filter((t) => t.limited);
  const none = byId('nitride-ebs');
  const far = byId('nitride-ebs-far');
  const costJobs = none && far ? jobs.filter((j) => COST_JOBS.includes(j.id)) : [];
  const runs = [];
  /** fio on `order`, one after the other; `extra(r)` adds to each run (a cell's set rate and ratio). */
  const measure = async (key, job, order, rep, extra = () => ({}), times = undefined) => {
    const line = [];
    for (const t of order) {
      await sync();
      const r = await fio(t, job, times);
      const x = { rep, key, job: job.id, target: t.id, ...r, ...extra(r), load1: load1() };
      runs.push(x);
      const w = r.window?.dataPlaneNsPerIo ? `, ${(r.window.dataPlaneNsPerIo / 1000).toFixed(2)} µs/IO` : '';
      line.push(`${t.id} ${x.ratio !== undefined ? `${x.ratio.toFixed(3)} of set` : job.metric === 'iops' ? r.iops.toFixed(0) : `${r.mbps.toFixed(0)} MB/s`}${job.qd === 1 ? ` (${r.clatMeanUs.toFixed(1)} µs)` : ''}${w}`);
    }
    say(`rep ${rep + 1}/${reps} ${key.padEnd(17)} ${line.join(', ')}`);
  };
  for (let rep = 0; rep < reps; rep++) {
    for (const [ci, cell] of limited.length ? LIMIT_CELLS.entries() : []) {
      for (const t of limited) await t.setLimit(cell);
      const k = (rep + ci) % limited.length;
      const set = cell.iops ?? cell.mibps * MiB;
      await measure(cell.id, jobs.find((j) => j.id === cell.job), [...limited.slice(k), ...limited.slice(0, k)], rep, (r) => ({ set, ratio: (cell.iops ? r.iops : r.mbps * 1e6) / set }));
    }
    for (const job of costJobs) {
      const n = Math.ceil(COST_PAIRS / reps);
      for (let i = 0; i < n; i++) {
        const pair = rep * n + i;
        // Roles by volume: swapped, far's volume runs as none and none's as far.
        const swapped = Math.floor(pair / 2) % 2 === 1;
        await none.setPerf(swapped ? FAR_PERF : NO_PERF);
        await far.setPerf(swapped ? NO_PERF : FAR_PERF);
        const [a, b] = swapped ? [{ ...far, id: none.id }, { ...none, id: far.id }] : [none, far];
        await measure(job.id, job, (pair + rep) % 2 ? [b, a] : [a, b], rep, () => ({ pair, swapped }), { runtime: PAIR_RUNTIME, ramp: PAIR_RAMP, during: cpuWindow });
      }
      await none.setPerf(NO_PERF);
      await far.setPerf(FAR_PERF);
    }
  }
  const mine = (key, target) => runs.filter((r) => r.key === key && r.target === target);
  const accuracy = LIMIT_CELLS.map((cell) => ({
    cell: cell.id,
    label: cell.label,
    ...Object.fromEntries(
      limited.map((t) => {
        const rs = mine(cell.id, t.id);
        return [t.id, { ratio: median(rs.map((r) => r.ratio)), ratios: rs.map((r) => +r.ratio.toFixed(4)), serverCpuUsPerIo: median(rs.map((r) => r.serverCpuUsPerIo)), serverCores: median(rs.map((r) => r.serverCores)) }];
      }),
    ),
  }));
  /** f(none's run, far's run) for each pair of `job`. */
  const perPair = (job, f) => {
    const pairs = [...new Set(runs.filter((r) => r.key === job).map((r) => r.pair))];
    return pairs.map((pair) => f(...[none, far].map((t) => runs.find((r) => r.key === job && r.target === t.id && r.pair === pair))));
  };
  const spread = (xs) => {
    const v = xs.filter((x) => Number.isFinite(x));
    return { min: Math.min(...v), max: Math.max(...v), values: xs.map((x) => (Number.isFinite(x) ? +x.toFixed(4) : null)) };
  };
  const cpu = (r, k) => r.window?.[k] ?? NaN;
  const cost = costJobs.map((job) => {
    const m = (t, k) => median(mine(job.id, t.id).map((r) => r[k]));
    const c = { job: job.id, label: job.label, metric: job.metric, pairs: perPair(job.id, () => 0).length, pairRuntimeS: PAIR_RUNTIME, pairRampS: PAIR_RAMP };
    for (const t of [none, far]) {
      c[t.id] = { iops: m(t, 'iops'), mbps: m(t, 'mbps'), clatMeanUs: m(t, 'clatMeanUs'), clatP50Us: m(t, 'clatP50Us'), serverCpuUsPerIo: m(t, 'serverCpuUsPerIo') };
      for (const k of ['dataPlaneNsPerIo', 'daemonNsPerIo']) c[t.id][k] = median(mine(job.id, t.id).map((r) => cpu(r, k)));
    }
    const ratios = (f) => {
      const xs = perPair(job.id, f);
      return { median: median(xs), ci: medianCi(xs), ...spread(xs) };
    };
    c.ratio = ratios((a, b) => b[job.metric] / a[job.metric]);
    c.dataPlaneCpuRatio = ratios((a, b) => cpu(b, 'dataPlaneNsPerIo') / cpu(a, 'dataPlaneNsPerIo'));
    c.daemonCpuRatio = ratios((a, b) => cpu(b, 'daemonNsPerIo') / cpu(a, 'daemonNsPerIo'));
    if (job.qd === 1) {
      c.meanRise = ratios((a, b) => b.clatMeanUs - a.clatMeanUs);
      c.p50Rise = ratios((a, b) => b.clatP50Us - a.clatP50Us);
    }
    return c;
  });
  // The limiter's own price per request, against the data plane's CPU per I/O without a limit.
  const ns = cost.length ? await limiterNs() : null;
  if (ns) {
    for (const c of cost) {
      const own = c.job.startsWith('read-1m') ? ns.volumeFar1mNs - ns.volumeUnlimitedNs : ns.volumeFar4kNs - ns.volumeUnlimitedNs;
      c.limiterNsPerIo = own;
      c.limiterShare = own / c[none.id].dataPlaneNsPerIo;
    }
  }

  const f = (v, d) => (v === null || v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(d));
  console.log(`\nLimits: measured / set (median of ${reps}), server CPU µs per I/O (median):`);
  console.log(textTable(['limit', ...limited.map((t) => `${t.id} measured/set`), ...limited.map((t) => `${t.id} µs/IO`)], accuracy.map((a) => [a.label, ...limited.map((t) => f(a[t.id].ratio, 3)), ...limited.map((t) => f(a[t.id].serverCpuUsPerIo, 1))])));
  if (cost.length) {
    const r = (x, d = 3) => `${f(x.median, d)} (${x.ci ? `${f(x.ci.lo, d)}..${f(x.ci.hi, d)}` : '-'}; ${f(x.min, d)}..${f(x.max, d)})`;
    const us = (v) => f(v / 1000, 2);
    console.log(
      `\nCost of a limit that never binds: ${far.id} against ${none.id}, ${cost[0].pairs} pairs per job of ${PAIR_RAMP}+${PAIR_RUNTIME} s runs (A B / B A, volumes swapping roles); ratios: median of the per-pair far/none (its 95 % confidence interval; min..max); µs/IO: data-plane threads (lane + workers) and the whole daemon, inside each run, medians:`,
    );
    console.log(
      textTable(
        ['job', 'data-plane µs/IO none / far', 'CPU ratio', 'daemon µs/IO none / far', 'daemon ratio', `${cost[0].metric === 'iops' ? 'IOPS' : 'rate'} none / far`, 'rate ratio', 'limiter ns/IO (share)'],
        cost.map((c) => [
          c.label,
          `${us(c[none.id].dataPlaneNsPerIo)} / ${us(c[far.id].dataPlaneNsPerIo)}`,
          r(c.dataPlaneCpuRatio),
          `${us(c[none.id].daemonNsPerIo)} / ${us(c[far.id].daemonNsPerIo)}`,
          r(c.daemonCpuRatio),
          c.metric === 'iops' ? `${f(c[none.id].iops, 0)} / ${f(c[far.id].iops, 0)}` : `${f(c[none.id].mbps, 0)} / ${f(c[far.id].mbps, 0)} MB/s`,
          r(c.ratio),
          c.limiterNsPerIo === undefined ? '-' : `${f(c.limiterNsPerIo, 1)} (${f(100 * c.limiterShare, 2)} %)`,
        ]),
      ),
    );
    for (const c of cost.filter((x) => x.meanRise)) {
      console.log(`${c.label} latency rise far - none, µs (median of pairs (95 % CI; min..max)): mean ${r(c.meanRise, 2)}, p50 ${r(c.p50Rise, 2)}; medians none / far: mean ${f(c[none.id].clatMeanUs, 1)} / ${f(c[far.id].clatMeanUs, 1)}, p50 ${f(c[none.id].clatP50Us, 1)} / ${f(c[far.id].clatP50Us, 1)}`);
    }
    if (ns) console.log(`limiter alone (limiter-ns.cc, one thread, median of 9 x ${ns.calls}): clock read ${ns.clockNs} ns; unlimited check ${ns.volumeUnlimitedNs} ns; far limit, clock read + Reserve: 4 KiB ${ns.volumeFar4kNs} ns, 1 MiB ${ns.volumeFar1mNs} ns`);
  }
  const goals = [];
  const nitrideLimited = limited.find((t) => t.nitride);
  const anchor = limited.find((t) => t.qsd);
  for (const a of nitrideLimited ? accuracy : []) {
    const me = a[nitrideLimited.id];
    goals.push({ goal: `${a.cell} ${nitrideLimited.id} within ±3 %`, value: me.ratio, met: Math.abs(me.ratio - 1) <= ACCURACY });
    if (!anchor) continue;
    // The issue's anchor goals (nitride decrypts XTS, the anchor serves a plain file).
    const q = a[anchor.id];
    goals.push({ goal: `${a.cell} ${nitrideLimited.id} at least as accurate as ${anchor.id}`, value: me.ratio, reference: q.ratio, met: Math.abs(me.ratio - 1) <= Math.abs(q.ratio - 1) });
    goals.push({ goal: `${a.cell} ${nitrideLimited.id} less server CPU per I/O than ${anchor.id}`, value: me.serverCpuUsPerIo, reference: q.serverCpuUsPerIo, met: me.serverCpuUsPerIo < q.serverCpuUsPerIo });
  }
  const costGoals = [];
  for (const c of cost) {
    // QD1's CPU per I/O is mostly the lane's wait for the next request (a short spin, then a
    // sleep and a wake-up), which follows latency: QD1 is held to the latency goal instead.
    const ci = c.dataPlaneCpuRatio.ci;
    if (c.job !== 'randread-4k-qd1') costGoals.push(ciGoal(`${c.job} limits far above: data-plane CPU per I/O <= ${COST}x no limits (median of pairs)`, c.dataPlaneCpuRatio.median, COST, ci));
    if (c.limiterShare !== undefined) costGoals.push({ goal: `${c.job} limiter's own ns per I/O <= ${Math.round((COST - 1) * 100)} % of the data plane's CPU per I/O`, value: c.limiterShare, met: c.limiterShare <= COST - 1 });
    if (c.meanRise) for (const [k, name] of [['meanRise', 'mean'], ['p50Rise', 'p50']]) costGoals.push({ goal: `${c.job} ${name} latency rise <= ${LATENCY_US} µs`, value: c[k].median, met: c[k].median <= LATENCY_US });
  }
  for (const g of costGoals) {
    console.log(`${g.met ? 'MET ' : 'MISS'} ${g.goal}: ${f(g.value, 4)}${ciGoalNote(g)}`);
  }
  goals.push(...costGoals);
  return { runs, accuracy, cost, goals };
}
