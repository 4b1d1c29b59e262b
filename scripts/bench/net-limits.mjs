// bench-net --limits: how exactly an ENI's allowance holds a set rate, against Linux tc on the
// plain path, in the same run. Paths (each its own namespaces, set up by net.mjs):
//   nitride        an allowance on guest A's ENI, the daemon's default over-limit handling
//                  (frames wait up to --vpc-allowance-queue-us, then drop)
//   nitride-drop   the same with --vpc-allowance-queue-us 0: every over-limit frame dropped (ENA)
//   plain-tbf      the plain routed path with a tc tbf qdisc (shaper: queues up to 5 ms, a
//                  bucket of 10 ms of the rate)
//   plain-tbf-drop the same with the allowance's bucket (0.3 s of the rate) and a queue of one
//                  super-frame: a policer (this kernel has no act_police, hence no tc police and
//                  no packet-rate anchor)
// tc sits on host A's egress toward the receiver (out of guest A: the underlay veth; into it:
// the guest's veth), where it counts the Ethernet header, as the allowance does.
// Cells: 100 Mbit/s, 200 Mbit/s, 1 Gbit/s (iperf3 TCP, one stream) and 50 kpps (iperf3 UDP,
// 64-byte payloads, unlimited send rate); each out of guest A and into it (iperf3 -R).
// Per run: WARM s of warm-up (the bucket's initial depth drains), then TIME s measured:
//   measured/set  the rate the receiving guest's IP layer saw (/proc/net/netstat IpExtInNoECTPkts,
//                 which counts GRO super-frames as their segments) x the wire size of a
//                 segment (full-sized: MTU + 14 bytes; 64-byte UDP: 106), over the set rate
//   goodput, retransmits  iperf3's (the sender's retransmitted segments over the measured TIME)
//   ping          busybox ping guest A -> B at 5/s during the measured seconds: median RTT, and
//                 the same path's idle median (so the added latency is loaded - idle)
//   µs/pkt        CPU (user+system) of every process in the path's four namespaces (iperf3,
//                 daemons; the kernel's forwarding and tc run in their contexts) per packet
// Cost (cell `cost`): the limiter's own price, apart from the path's. On the nitride path, no
// allowance against one far above any rate here (FAR: every frame is charged, none held; the same
// ENI, so nothing but the allowance differs); on the plain path, no qdisc against tbf at FAR's
// rate. Jobs: iperf3 TCP (one stream) and 64-byte UDP, out of guest A, unlimited; COST_PAIRS short
// pairs per job and path (COST_WARM s of warm-up, then --time s; none far, then far none, ...),
// spread over the repetitions. Reported: the median of the per-pair ratios far / none with their
// spread, of CPU per packet of host A's engine thread (`nitride-vpc`, schedstat ns: where the
// allowance runs; nitride only), of µs/pkt (the path's processes) and of packets/s; and the
// allowance's own ns per frame timed in isolation (limiter-ns.mjs) against the engine thread's
// ns per packet. Decided on the engine thread's CPU per packet: packets/s here moved up to 2x
// between single runs at load 5-7, CPU per packet far less.
import { readFileSync } from 'node:fs';
import { ciGoal, ciGoalNote, cpuSeconds, median, medianCi, run, sleep, textTable, threadCpuNs, threadCpuNsDelta } from '../lib/bench-common.mjs';
import { limiterNs } from './limiter-ns.mjs';

export const LIMIT_PATHS = [
  { id: 'nitride', label: 'nitride ENI allowance (default: 20 ms queue)', setup: 'nitride', short: 'n' },
  { id: 'nitride-drop', label: 'nitride ENI allowance, drop', setup: 'nitride', short: 'd', daemonArgs: ['--vpc-allowance-queue-us', '0'] },
  { id: 'nitride-q5', label: 'nitride ENI allowance, 5 ms queue', setup: 'nitride', short: 'l', daemonArgs: ['--vpc-allowance-queue-us', '5000'] },
  { id: 'plain-tbf', label: 'plain + tc tbf', setup: 'plain', short: 'b', tc: 'tbf', baseline: true },
  { id: 'plain-tbf-drop', label: 'plain + tc tbf, no queue', setup: 'plain', short: 'q', tc: 'tbf-drop' },
];
export const LIMIT_CELLS = [
  { id: 'bw100m', label: '100 Mbit/s', bandwidth: 100e6 },
  { id: 'bw200m', label: '200 Mbit/s', bandwidth: 200e6 },
  { id: 'bw1g', label: '1 Gbit/s', bandwidth: 1e9 },
  { id: 'pps50k', label: '50 kpps', pps: 50_000 },
];
/** Not a limit: the limiter's own cost (runCost), selectable with --cells as the limits are. */
export const COST_CELL = { id: 'cost', label: 'cost of an allowance far above the rate' };
const FAR = { bandwidth: 100e9, pps: 100e6 };
const COST_JOBS = [
  { id: 'tcp', label: 'TCP, 1 stream', cell: { id: 'tcp', bandwidth: 1 } },
  { id: 'udp64', label: '64-byte UDP', cell: { id: 'udp64', pps: 1 } },
];
const COST_MAX = 0.03;
const COST_PAIRS = 12;
const COST_WARM = 1;
/** The VPC engine's thread in the daemon (vpc_engine.cc). */
const ENGINE_THREADS = ['nitride-vpc'];
const DIRECTIONS = ['out', 'in'];
const WARM = 2;
const UDP_WIRE = 14 + 20 + 8 + 64;
/** tbf's queue bound and buckets (see above). */
const TBF_LATENCY = '5ms';
const TBF_DEPTH_S = 0.01;
const DROP_DEPTH_S = 0.3;
/** A number for the tables ('-' when missing). */
const f = (v, d) => (v === null || v === undefined ? '-' : v.toFixed(d));

/**
 * The IP packets the namespace of process `pid` has received so far (GRO super-frames counted as
 * their segments), read at once (no process to spawn: the window's ends are exact).
 */
function ipPackets(pid) {
  const text = readFileSync(`/proc/${pid}/net/netstat`, 'utf8');
  const lines = text.split('\n').filter((l) => l.startsWith('IpExt:'));
  const names = lines[0].split(/\s+/);
  const values = lines[1].split(/\s+/).map(Number);
  return ['InNoECTPkts', 'InECT1Pkts', 'InECT0Pkts', 'InCEPkts'].reduce((s, n) => s + values[names.indexOf(n)], 0);
}

/** CPU seconds so far of every process in `namespaces`, by pid. */
async function nsCpu(namespaces) {
  const cpu = new Map();
  for (const ns of namespaces) {
    for (const pid of (await run('ip', ['netns', 'pids', ns], { allowFail: true })).stdout.split('\n').filter(Boolean).map(Number)) cpu.set(pid, cpuSeconds(pid));
  }
  return cpu;
}

/** CPU used between two {@link nsCpu} snapshots by the processes in both (a process gone reads 0). */
const cpuBetween = (a, b) => [...a].reduce((s, [pid, c]) => s + Math.max(0, (b.get(pid) ?? c) - c), 0);

/** Sets path `p`'s limit to `cell` in direction `dir` (nitride: the ENI, both ways; tc: that direction only). */
async function applyLimit(p, cell, dir, inNs, mtu) {
  if (p.setup === 'nitride') {
    await p.api('a', 'PATCH', `/v1/enis/${p.eniA}`, { bandwidth: cell.bandwidth ?? null, pps: cell.pps ?? null });
    return;
  }
  const host = p.ns.ha;
  for (const dev of ['ul', 'gh']) await inNs(host, 'tc', ['qdisc', 'del', 'dev', dev, 'root'], { allowFail: true });
  const dev = dir === 'out' ? 'ul' : 'gh';
  const bucket = (seconds) => String(Math.max(2 * 65536, Math.round((cell.bandwidth * seconds) / 8)));
  const queue = p.tc === 'tbf' ? ['burst', bucket(TBF_DEPTH_S), 'latency', TBF_LATENCY] : ['burst', bucket(DROP_DEPTH_S), 'limit', String(65536 + mtu + 14)];
  await inNs(host, 'tc', ['qdisc', 'add', 'dev', dev, 'root', 'tbf', 'rate', `${cell.bandwidth}bit`, ...queue]);
}

/** Path `p` with no limit, or (`far`) with FAR: the ENI's allowance, or tbf on host A's egress. */
async function setFar(p, far, inNs, mtu) {
  if (p.setup === 'nitride') {
    await p.api('a', 'PATCH', `/v1/enis/${p.eniA}`, far ? FAR : { bandwidth: null, pps: null });
    return;
  }
  for (const dev of ['ul', 'gh']) await inNs(p.ns.ha, 'tc', ['qdisc', 'del', 'dev', dev, 'root'], { allowFail: true });
  if (far) await applyLimit(p, { bandwidth: FAR.bandwidth }, 'out', inNs, mtu);
}

/** One measured run: iperf3 for `warm` + time s, counters over the last `time` s. */
async function measure(p, cell, dir, { inNs, time, guestB, mtu, warm = WARM }) {
  const receiver = dir === 'out' ? p.ns.gb : p.ns.ga;
  // One second beyond the measured window, so every process is still there when it closes.
  const args = ['-c', guestB, '-p', '5201', '-t', String(warm + time + 1), '-O', String(warm), '-J', '--connect-timeout', '3000'];
  if (dir === 'in') args.push('-R');
  if (cell.pps) args.push('-u', '-b', '0', '-l', '64');
  const client = run('timeout', [String(warm + time + 30), 'ip', 'netns', 'exec', p.ns.ga, 'iperf3', ...args], { allowFail: true });
  await sleep(warm * 1000);
  const all = Object.values(p.ns);
  const c0 = await nsCpu(all);
  // Host A's engine thread (the allowance of guest A's ENI runs there).
  const engine = p.setup === 'nitride' ? p.pids()[0] : null;
  const e0 = engine ? threadCpuNs(engine, ENGINE_THREADS) : null;
  // Frames guest A's ENI sent into the engine (each passes the allowance once; a TCP one is a
  // GSO super-frame of many packets).
  const framesOut = async () => (engine ? (await p.api('a', 'GET', '/v1/vpc/stats')).enis[p.eniA].rxFrames : 0);
  const f0 = await framesOut();
  const [inReceiver] = (await run('ip', ['netns', 'pids', receiver])).stdout.split('\n').filter(Boolean);
  const k0 = ipPackets(inReceiver);
  const t0 = process.hrtime.bigint();
  const pinger = run('timeout', [String(time + 5), 'ip', 'netns', 'exec', p.ns.ga, 'busybox', 'ping', '-c', String(Math.max(3, Math.floor(time * 5) - 2)), '-i', '0.2', '-W', '2', guestB], { allowFail: true });
  await sleep(time * 1000);
  const k1 = ipPackets(inReceiver);
  const e1 = engine ? threadCpuNs(engine, ENGINE_THREADS) : null;
  const frames = (await framesOut()) - f0;
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = cpuBetween(c0, await nsCpu(all));
  const r = await client;
  const pings = [...(await pinger).stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
  let j;
  try {
    j = JSON.parse(r.stdout);
  } catch {
    j = { error: r.stderr.trim() || `exit ${r.code}` };
  }
  if (j.error) throw new Error(`${p.id} ${cell.id} ${dir}: iperf3: ${j.error}`);
  const packets = k1 - k0;
  const wire = cell.pps ? UDP_WIRE : mtu + 14;
  const rate = cell.pps ? packets / seconds : (packets * wire * 8) / seconds;
  const set = cell.pps ?? cell.bandwidth;
  return {
    ratio: rate / set,
    rate,
    goodput: cell.pps ? null : j.end.sum_received.bits_per_second,
    retransmits: cell.pps ? null : (j.end.sum_sent?.retransmits ?? null),
    rttMs: pings.length ? median(pings) : null,
    usPerPacket: packets > 0 ? (cpu * 1e6) / packets : null,
    engineNsPerPacket: engine && packets > 0 ? threadCpuNsDelta(e0, e1) / packets : null,
    engineNsPerFrame: engine && frames > 0 ? threadCpuNsDelta(e0, e1) / frames : null,
  };
}

async function idleRtt(p, inNs, guestB) {
  const r = await inNs(p.ns.ga, 'busybox', ['ping', '-c', '11', '-i', '0.1', '-W', '2', guestB], { allowFail: true });
  const t = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1])).slice(1);
  return t.length ? median(t) : null;
}

/**
 * The --limits run over `paths` (set up, with p.ns; nitride ones with p.api and p.eniA):
 * every cell x direction x path, `reps` times, path order rotated per repetition.
 */
export async function runLimits({ paths, cells: picked, reps, time, inNs, say, guestB, mtu }) {
  const cells = picked.filter((c) => c.id !== COST_CELL.id);
  const runs = [];
  const idle = {};
  for (const p of paths) idle[p.id] = await idleRtt(p, inNs, guestB);
  for (let rep = 0; rep < reps; rep++) {
    for (const [ci, cell] of cells.entries()) {
      for (const dir of DIRECTIONS) {
        const k = (rep + ci) % paths.length;
        for (const p of [...paths.slice(k), ...paths.slice(0, k)]) {
          if (p.tc && cell.pps) continue; // tbf has no packet rate
          await applyLimit(p, cell, dir, inNs, mtu);
          const load1 = +readFileSync('/proc/loadavg', 'utf8').split(' ')[0];
          const r = await measure(p, cell, dir, { inNs, time, guestB, mtu });
          runs.push({ rep, cell: cell.id, dir, path: p.id, load1, ...r });
          say(`rep ${rep + 1}/${reps} ${cell.id} ${dir.padEnd(3)} ${p.id.padEnd(12)} ${r.ratio.toFixed(3)} of set${r.retransmits !== null ? `, ${r.retransmits} retransmits` : ''}${r.rttMs !== null ? `, ping ${r.rttMs.toFixed(2)} ms` : ''}`);
        }
      }
    }
  }
  const med = (xs) => (xs.length && xs.every((x) => x !== null) ? median(xs) : null);
  const medians = [];
  for (const cell of cells) {
    for (const dir of DIRECTIONS) {
      for (const p of paths) {
        const mine = runs.filter((r) => r.cell === cell.id && r.dir === dir && r.path === p.id);
        if (!mine.length) continue;
        medians.push({
          cell: cell.id,
          dir,
          path: p.id,
          ratio: med(mine.map((r) => r.ratio)),
          goodput: med(mine.map((r) => r.goodput)),
          retransmits: med(mine.map((r) => r.retransmits)),
          rttMs: med(mine.map((r) => r.rttMs)),
          addedRttMs: mine.every((r) => r.rttMs !== null) && idle[p.id] !== null ? med(mine.map((r) => r.rttMs - idle[p.id])) : null,
          usPerPacket: med(mine.map((r) => r.usPerPacket)),
        });
      }
    }
  }
  if (cells.length) {
    console.log(`\nLimits: measured / set (median of ${reps}; ${time} s after ${WARM} s of warm-up), iperf3 goodput and retransmits, ping RTT under load (idle: ${paths.map((p) => `${p.id} ${f(idle[p.id], 3)}`).join(', ')} ms), CPU per packet of the path's processes:`);
    console.log(
      textTable(
        ['limit', 'dir', 'path', 'measured/set', 'goodput Mbit/s', 'retransmits', 'ping ms', 'added ms', 'µs/pkt'],
        medians.map((m) => [cells.find((c) => c.id === m.cell).label, m.dir, m.path, f(m.ratio, 3), m.goodput === null ? '-' : f(m.goodput / 1e6, 1), m.retransmits === null ? '-' : String(Math.round(m.retransmits)), f(m.rttMs, 2), f(m.addedRttMs, 2), f(m.usPerPacket, 2)]),
      ),
    );
  }
  const goals = medians.map((m) => ({ goal: `${m.cell} ${m.dir} ${m.path} within ±3 %`, value: m.ratio, met: m.ratio !== null && Math.abs(m.ratio - 1) <= 0.03 }));
  const cost = picked.some((c) => c.id === COST_CELL.id) ? await runCost({ paths, reps, time, inNs, say, guestB, mtu }) : null;
  if (cost) goals.push(...cost.goals);
  return { runs, medians, idleRttMs: idle, cost, goals, settings: settings(time) };
}

const settings = (time) => ({ warmSeconds: WARM, seconds: time, tbfLatency: TBF_LATENCY, tbfDepthSeconds: TBF_DEPTH_S, dropDepthSeconds: DROP_DEPTH_S, far: FAR });

/**
 * The limiter's own cost (see the top): on the `nitride` path and on `plain-tbf` (whichever of
 * them run), each job A B B A per repetition; prints its table and returns runs, rows, goals.
 */
async function runCost({ paths, reps, time, inNs, say, guestB, mtu }) {
  const sides = [paths.find((p) => p.id === 'nitride'), paths.find((p) => p.tc === 'tbf')].filter(Boolean);
  const runs = [];
  const perRep = Math.ceil(COST_PAIRS / reps);
  for (let rep = 0; rep < reps; rep++) {
    for (const job of COST_JOBS) {
      for (const p of sides) {
        for (let i = 0; i < perRep; i++) {
          const pair = rep * perRep + i;
          for (const far of pair % 2 ? [true, false] : [false, true]) {
            await setFar(p, far, inNs, mtu);
            const load1 = +readFileSync('/proc/loadavg', 'utf8').split(' ')[0];
            const r = await measure(p, job.cell, 'out', { inNs, time, guestB, mtu, warm: COST_WARM });
            runs.push({ rep, pair, job: job.id, path: p.id, far, load1, pps: r.rate / (job.cell.pps ? 1 : (mtu + 14) * 8), usPerPacket: r.usPerPacket, engineNsPerPacket: r.engineNsPerPacket, engineNsPerFrame: r.engineNsPerFrame, rttMs: r.rttMs });
            const e = r.engineNsPerPacket === null ? '' : `, engine ${(r.engineNsPerPacket / 1e3).toFixed(3)} µs/pkt`;
            say(`rep ${rep + 1}/${reps} cost ${job.id.padEnd(5)} ${p.id.padEnd(9)} pair ${pair} ${far ? 'far ' : 'none'} ${(runs.at(-1).pps / 1e3).toFixed(1)} kpps, ${r.usPerPacket?.toFixed(2)} µs/pkt${e}, ping ${r.rttMs?.toFixed(2)} ms`);
          }
        }
        await setFar(p, false, inNs, mtu);
      }
    }
  }
  const own = await limiterNs();
  const rows = [];
  for (const job of COST_JOBS) {
    for (const p of sides) {
      const mine = runs.filter((r) => r.job === job.id && r.path === p.id);
      /** f(none's run, far's run) for each pair, the unusable ones left out. */
      const perPair = (f) =>
        [...new Set(mine.map((r) => r.pair))]
          .map((pair) => f(mine.find((r) => r.pair === pair && !r.far), mine.find((r) => r.pair === pair && r.far)))
          .filter((x) => x !== null && Number.isFinite(x));
      const ratio = (k) => perPair((a, b) => (a[k] === null || b[k] === null ? null : b[k] / a[k]));
      const all = (far, k) => median(mine.filter((r) => r.far === far).map((r) => r[k]).filter((x) => x !== null));
      const us = perPair((a, b) => (a.usPerPacket === null || b.usPerPacket === null ? null : b.usPerPacket - a.usPerPacket));
      const engine = ratio('engineNsPerPacket');
      const ratios = ratio('pps');
      const nitride = p.setup === 'nitride';
      const limiterNsPerFrame = nitride ? (job.cell.pps ? own.eniFarSmallNs : own.eniFarGsoNs) - own.eniUnlimitedNs : null;
      rows.push({
        job: job.id,
        label: job.label,
        path: p.id,
        limiter: nitride ? 'ENI allowance' : 'tc tbf',
        pairs: ratios.length,
        none: { pps: all(false, 'pps'), usPerPacket: all(false, 'usPerPacket'), engineNsPerPacket: all(false, 'engineNsPerPacket'), rttMs: all(false, 'rttMs') },
        far: { pps: all(true, 'pps'), usPerPacket: all(true, 'usPerPacket'), engineNsPerPacket: all(true, 'engineNsPerPacket'), rttMs: all(true, 'rttMs') },
        engineCpuRatio: engine.length ? median(engine) : null,
        engineCpuRatioCi: medianCi(engine),
        engineCpuRatios: engine.map((x) => +x.toFixed(4)),
        usPerPacketRise: us.length ? median(us) : null,
        usPerPacketRises: us.map((x) => +x.toFixed(3)),
        ratio: ratios.length ? median(ratios) : null,
        ratios: ratios.map((x) => +x.toFixed(4)),
        pingRiseMs: median(perPair((a, b) => (a.rttMs === null || b.rttMs === null ? null : b.rttMs - a.rttMs))),
        limiterNsPerFrame,
        // The allowance runs once per frame from the guest: against the engine's ns per such frame.
        engineNsPerFrame: { none: all(false, 'engineNsPerFrame'), far: all(true, 'engineNsPerFrame') },
        limiterShare: nitride && all(false, 'engineNsPerFrame') ? limiterNsPerFrame / all(false, 'engineNsPerFrame') : null,
      });
    }
  }
  const spread = (xs, d) => (xs.length ? `${f(Math.min(...xs), d)}..${f(Math.max(...xs), d)}` : '-');
  console.log(
    `\nCost of a limit far above the rate (${FAR.bandwidth / 1e9} Gbit/s, ${FAR.pps / 1e6} Mpps; tbf at the same bit rate) against none, out of guest A, ${rows[0]?.pairs} pairs per job and path (none far / far none, ${COST_WARM}+${time} s each); ratios and rises: median of the per-pair values (min..max; engine CPU ratio: its 95 % confidence interval; min..max); engine: host A's nitride-vpc thread:`,
  );
  console.log(
    textTable(
      ['job', 'limiter', 'engine ns/pkt none / far', 'engine CPU ratio', 'µs/pkt none / far', 'rise µs/pkt', 'kpps none', 'packets/s far/none', 'ping rise ms', 'allowance ns / engine ns per frame (share)'],
      rows.map((r) => [
        r.label,
        r.limiter,
        r.none.engineNsPerPacket === null ? '-' : `${f(r.none.engineNsPerPacket, 0)} / ${f(r.far.engineNsPerPacket, 0)}`,
        r.engineCpuRatio === null ? '-' : `${f(r.engineCpuRatio, 3)} (${r.engineCpuRatioCi ? `${f(r.engineCpuRatioCi.lo, 3)}..${f(r.engineCpuRatioCi.hi, 3)}` : '-'}; ${spread(r.engineCpuRatios, 3)})`,
        `${f(r.none.usPerPacket, 2)} / ${f(r.far.usPerPacket, 2)}`,
        `${f(r.usPerPacketRise, 2)} (${spread(r.usPerPacketRises, 2)})`,
        f(r.none.pps / 1e3, 1),
        `${f(r.ratio, 3)} (${spread(r.ratios, 3)})`,
        f(r.pingRiseMs, 3),
        r.limiterNsPerFrame === null ? '-' : `${f(r.limiterNsPerFrame, 1)} / ${f(r.engineNsPerFrame.none, 0)} (${f(100 * r.limiterShare, 2)} %)`,
      ]),
    ),
  );
  console.log(
    `allowance alone (limiter-ns.cc, one thread): clock read ${own.clockNs} ns; Schedule + the engine's clock read per batch, 64-byte frames: ${own.eniFarSmallNs} ns (batches of one frame: the share above, an upper bound), ${own.eniFarSmallBatch8Ns} ns (of 8), ${own.eniFarSmallBatch64Ns} ns (of 64); a 64 KiB GSO frame alone ${own.eniFarGsoNs} ns; unlimited check ${own.eniUnlimitedNs} ns`,
  );
  const goals = [];
  for (const job of COST_JOBS) {
    const n = rows.find((r) => r.job === job.id && r.limiter === 'ENI allowance');
    const t = rows.find((r) => r.job === job.id && r.limiter === 'tc tbf');
    if (!n) continue;
    const ci = n.engineCpuRatioCi;
    goals.push(ciGoal(`cost ${job.id}: ENI allowance far above, engine CPU per packet <= ${1 + COST_MAX}x none (median of pairs)`, n.engineCpuRatio, 1 + COST_MAX, ci));
    goals.push({ goal: `cost ${job.id}: the allowance's own ns per frame <= ${COST_MAX * 100} % of the engine's ns per frame`, value: n.limiterShare, met: n.limiterShare !== null && n.limiterShare <= COST_MAX });
    if (t) goals.push({ goal: `cost ${job.id}: the limiter's own CPU per packet <= tc's (rise µs/pkt, path's processes)`, value: n.usPerPacketRise, reference: t.usPerPacketRise, met: n.usPerPacketRise !== null && t.usPerPacketRise !== null && n.usPerPacketRise <= t.usPerPacketRise });
  }
  for (const g of goals) {
    console.log(`${g.met ? 'MET ' : 'MISS'} ${g.goal}: ${f(g.value, 4)}${g.reference !== undefined ? ` vs ${f(g.reference, 3)}` : ''}${ciGoalNote(g)}`);
  }
  return { runs, rows, goals, settings: { far: FAR, jobs: COST_JOBS.map(({ id, label }) => ({ id, label })) } };
}
