#!/usr/bin/env node
// Fleet benchmark: real etcd (three members, TLS with client certificates, in a hub network
// namespace), four real daemons (each in its own namespace on one bridged underlay), and light
// watchers (scripts/bench/fleet-watcher.mjs: the daemon's fleet code registering under a lease and
// watching the prefix, no data plane) in the hub. Phases, all in one run:
//   net          bench-net's TCP 1 stream, UDP 64 B and ping through nitride standalone and in
//                fleet mode (scripts/bench/net.mjs --paths nitride,nitride-fleet), before the
//                fleet below starts
//   propagation  `eni create` (control API, rotating over the four daemons, one at a time) until
//                every other daemon's engine runs on a view that has it: each daemon records when
//                it programmed its engine with a revision (`fleet status` appliedAt), the
//                benchmark polls for it; the watchers print the time they had it. p50/p99.
//   scale        10,000 ENI records on the watchers' hosts written straight to etcd (40 per
//                transaction, as `eni create` writes them): each daemon's RSS against its idle
//                RSS measured at the start of this run, its CPU while applying them, then the
//                propagation of a few creates at that size. etcd's bytes written per mutation
//                (WAL bytes and db size from the members' /metrics) for the creates and the bulk.
// Output: tables on stdout, bench-results/fleet-<timestamp>.json (every sample, medians, goals).
// Run it through scripts/bench-fleet.sh (installs etcd/iperf3, builds, runs as root).
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  ROOT,
  Scratch,
  benchArgs,
  cpuSeconds,
  hostFacts,
  installSignalCleanup,
  median,
  optionsChecked,
  pickById,
  positiveOption,
  resultsBase,
  run,
  sleep,
  startNitrideHost,
  textTable,
  usageExit,
  versionOf,
  waitFor,
} from '../lib/bench-common.mjs';
import { startEtcd } from '../lib/etcd.mjs';

const ALL_PHASES = [{ id: 'net' }, { id: 'propagation' }, { id: 'scale' }];
const USAGE = `usage: bench-fleet [--quick] [--small] [--members N] [--daemons N] [--creates N] [--watchers N] [--enis N] [--phases LIST] [--net-reps N] [--net-time S] [--keep] [--out FILE.json]
  --quick        smoke run (~3 min): 40 creates, 10 watchers, 2,000 ENIs, one net repetition of 3 s
  --small        one daemon's memory at 10,000 ENIs, in ~3 min: --members 1 --daemons 2 --watchers 0
                 --creates 20 --phases propagation,scale (explicit options win)
  --members N    etcd members (1 or 3; default 3)
  --daemons N    real daemons (2-4; default 4)
  --creates N    eni create timed for propagation (default 200)
  --watchers N   light watchers besides the daemons (default 50: 54 hosts; 0: none)
  --enis N       ENI records written for the scale phase (default 10000)
  --phases LIST  comma list of: ${ALL_PHASES.map((p) => p.id).join(',')} (default all; scale needs propagation)
  --net-reps N   repetitions of the net phase (default 3), --net-time S seconds per iperf3 run (default 5)
  --tag PREFIX   namespace name prefix (default: random; the shell wrapper passes one to clean up)
  --out FILE     JSON result path (default bench-results/fleet-<timestamp>.json)
  --keep         keep the scratch directory (logs, etcd data, certificates)`;

const opt = benchArgs('bench-fleet', USAGE, {
  quick: { type: 'boolean', default: false },
  small: { type: 'boolean', default: false },
  members: { type: 'string' },
  daemons: { type: 'string' },
  creates: { type: 'string' },
  watchers: { type: 'string' },
  enis: { type: 'string' },
  phases: { type: 'string' },
  'net-reps': { type: 'string' },
  'net-time': { type: 'string' },
  tag: { type: 'string' },
});
const num = (v, dflt, what) => Math.round(positiveOption('bench-fleet', v, dflt, what));
const CREATES = num(opt.creates, opt.small ? 20 : opt.quick ? 40 : 200, 'creates');
const WATCHERS = opt.watchers === '0' || (opt.small && opt.watchers === undefined) ? 0 : num(opt.watchers, opt.quick ? 10 : 50, 'watchers');
const MEMBERS = num(opt.members, opt.small ? 1 : 3, 'members');
const DAEMONS = num(opt.daemons, opt.small ? 2 : 4, 'daemons');
const ENIS = num(opt.enis, opt.quick ? 2000 : 10_000, 'enis');
const NET_REPS = num(opt['net-reps'], opt.quick ? 1 : 3, 'net-reps');
const NET_TIME = num(opt['net-time'], opt.quick ? 3 : 5, 'net-time');
const PHASES = new Set(pickById('bench-fleet', ALL_PHASES, opt.phases ?? (opt.small ? 'propagation,scale' : undefined), 'phase').map((p) => p.id));
if (MEMBERS !== 1 && MEMBERS !== 3) usageExit('bench-fleet', '--members must be 1 or 3');
if (DAEMONS < 2 || DAEMONS > 4) usageExit('bench-fleet', '--daemons must be 2, 3 or 4');
if (PHASES.has('scale') && !PHASES.has('propagation')) usageExit('bench-fleet', 'the scale phase needs the propagation phase (its idle RSS and the ENI record it clones)');
if (WATCHERS > 200) usageExit('bench-fleet', '--watchers must be at most 200');
if (ENIS > 16_000) usageExit('bench-fleet', '--enis must be at most 16000 (one /18 subnet)');
const TAG = opt.tag ?? `fb${Math.random().toString(16).slice(2, 6)}`;
if (!/^[a-z0-9]{2,6}$/.test(TAG)) usageExit('bench-fleet', '--tag must be 2-6 lowercase letters or digits');
optionsChecked();

const HOSTS = ['h1', 'h2', 'h3', 'h4'].slice(0, DAEMONS);
/** Host ids w001, w002, …: the watchers', and the remote owners of the bulk ENIs. */
const hostIds = (n) => Array.from({ length: n }, (_, i) => `w${String(i + 1).padStart(3, '0')}`);
const WATCHER_IDS = hostIds(WATCHERS);
const SCALE_CREATES = Math.min(20, CREATES);
const VPC_ID = 'vpc-0f1ee7000000000b1';
const SUBNET_ID = 'subnet-0f1ee7000000000a1';
const BULK_SUBNET_ID = 'subnet-0f1ee7000000000a2';
const BULK_CIDR = '172.20.64.0/18';
const GOAL_P99_MS = 1000;
const GOAL_RSS_MB = 50;

const scratch = opt.scratch ? new Scratch(path.resolve(opt.scratch), { keep: opt.keep }) : Scratch.create('/tmp', 'nitride-bench-fleet.', { keep: opt.keep });
const namespaces = [];
installSignalCleanup(scratch, () => {
  for (const ns of namespaces) run('ip', ['netns', 'del', ns], { allowFail: true }).catch(() => {});
});
const started = Date.now();
const say = (msg) => console.log(`[${`${((Date.now() - started) / 1000).toFixed(0)}s`.padStart(5)}] ${msg}`);
const loads = [];
const load1 = () => {
  const l = +readFileSync('/proc/loadavg', 'utf8').split(' ')[0];
  loads.push(l);
  return l;
};

const ip = (...args) => run('ip', args);
const inHub = (hub, cmd, args) => run('ip', ['netns', 'exec', hub, cmd, ...args]);

/** Nearest-rank percentile. */
function pct(values, p) {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  return v.length ? v[Math.min(v.length - 1, Math.ceil((p / 100) * v.length) - 1)] : null;
}
const summary = (values) => ({ n: values.length, p50: pct(values, 50), p99: pct(values, 99), max: pct(values, 100) });

/** Resident set size of a process, MB. */
function rssMb(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : null;
}
/** Median RSS of each pid over `n` samples a second apart. */
async function rssOf(pids, n = 5) {
  const samples = pids.map(() => []);
  for (let i = 0; i < n; i++) {
    pids.forEach((pid, j) => samples[j].push(rssMb(pid)));
    if (i < n - 1) await sleep(1000);
  }
  return samples.map((s) => +median(s).toFixed(1));
}

// ------------------------------------------------------------------------------ the fleet

/** The hub (etcd, watchers, a bridge) and four host namespaces on it: 10.<octet>.0.<i+1>, hub .254. */
async function topology() {
  const octet = 16 + Math.floor(Math.random() * 200);
  const add = async (name) => {
    const ns = `${TAG}${name}`;
    await ip('netns', 'add', ns);
    namespaces.push(ns);
    await ip('-n', ns, 'link', 'set', 'lo', 'up');
    return ns;
  };
  const hub = await add('hub');
  const hubIp = `10.${octet}.0.254`;
  await ip('-n', hub, 'link', 'add', 'br0', 'type', 'bridge');
  await ip('-n', hub, 'addr', 'add', `${hubIp}/24`, 'dev', 'br0');
  await ip('-n', hub, 'link', 'set', 'br0', 'up');
  const hosts = [];
  for (const [i, name] of HOSTS.entries()) {
    const ns = await add(name);
    await ip('-n', ns, 'link', 'add', 'ul', 'type', 'veth', 'peer', 'name', `p${i}`, 'netns', hub);
    await ip('-n', hub, 'link', 'set', `p${i}`, 'master', 'br0');
    await ip('-n', hub, 'link', 'set', `p${i}`, 'up');
    await ip('-n', ns, 'addr', 'add', `10.${octet}.0.${i + 1}/24`, 'dev', 'ul');
    await ip('-n', ns, 'link', 'set', 'ul', 'up');
    hosts.push({ name, ns, underlay: `10.${octet}.0.${i + 1}` });
  }
  return { hub, hubIp, hosts };
}

const fleetStatus = (h) => h.api('GET', '/v1/fleet/status');
/** Where a daemon's RSS is (MB): V8 heap used/total, external (arrayBuffers among it); null from a daemon without it. */
const memoryOf = async (h) => {
  const m = (await fleetStatus(h)).memory;
  return m ? Object.fromEntries(Object.entries(m).map(([k, v]) => [k, +(v / 2 ** 20).toFixed(1)])) : null;
};

async function startFleet() {
  const topo = await topology();
  const etcd = await startEtcd({ members: MEMBERS, netns: topo.hub, host: topo.hubIp, parent: scratch.dir });
  scratch.onCleanup(() => etcd.destroy());
  const root = await etcd.clientCert('root');
  const etcdTool = async (...args) => {
    const r = await inHub(topo.hub, process.execPath, [path.join(ROOT, 'scripts/bench/fleet-etcd.mjs'), '--endpoints', etcd.endpoints.join(','), '--ca', root.ca, '--cert', root.cert, '--key', root.key, ...args]);
    return JSON.parse(r.stdout);
  };
  say(`etcd: ${MEMBERS} member(s) in ${topo.hub} (${etcd.endpoints.join(', ')})`);
  // As in production (scripts/fleet-etcd-rbac.sh): each host may write only its own records.
  const { seconds } = await etcdTool('rbac', '--hosts', [...HOSTS, ...WATCHER_IDS].join(','));
  say(`etcd RBAC on: a role and a user for each of ${HOSTS.length + WATCHERS} hosts in ${seconds.toFixed(1)} s`);
  const hosts = [];
  for (const h of topo.hosts) hosts.push(await startNitrideHost(scratch, { ...h, cli: opt.cli, args: await etcd.daemonArgs(h.name) }));
  await waitFor(`${HOSTS.length} daemons registered`, async () => (await Promise.all(hosts.map(fleetStatus))).every((s) => s.hosts === HOSTS.length), { timeoutMs: 60_000, intervalMs: 300 });
  say(`daemons: ${hosts.map((h) => `${h.name} pid ${h.daemon.child.pid}`).join(', ')}`);
  // Idle: registered, the other three daemons known, no watcher and no ENI yet.
  const rssStart = await rssOf(hosts.map((h) => h.daemon.child.pid));
  const memoryStart = await Promise.all(hosts.map(memoryOf));
  const watchers = [];
  for (let i = 0; i < WATCHERS; i++) {
    const id = WATCHER_IDS[i];
    const c = await etcd.clientCert(id);
    const args = ['--endpoints', etcd.endpoints.join(','), '--ca', c.ca, '--cert', c.cert, '--key', c.key, '--endpoint', `${topo.hubIp}:${5000 + i}`, '--snapshot', scratch.path(`${id}.snapshot.json`)];
    watchers.push({ id, entry: scratch.start(id, 'ip', ['netns', 'exec', topo.hub, process.execPath, path.join(ROOT, 'scripts/bench/fleet-watcher.mjs'), ...args]) });
    // A few at a time: each loads the etcd client and lists the prefix as it starts.
    if (i % 10 === 9) await waitFor(`${i + 1} watchers registered`, async () => (await fleetStatus(hosts[0])).hosts >= HOSTS.length + i + 1, { timeoutMs: 120_000, intervalMs: 300 });
  }
  await waitFor(`${HOSTS.length + WATCHERS} hosts on every daemon`, async () => (await Promise.all(hosts.map(fleetStatus))).every((s) => s.hosts === HOSTS.length + WATCHERS), { timeoutMs: 120_000, intervalMs: 300 }).catch((err) => {
    const dead = watchers.filter((w) => w.entry.child.exitCode !== null);
    throw new Error(`${err.message}${dead.length ? `; ${dead.length} watchers exited: ${scratch.tail(dead[0].id, 5)}` : ''}`);
  });
  say(`${WATCHERS} watchers registered: ${HOSTS.length + WATCHERS} hosts; 1-min load ${load1()}`);
  return { ...topo, etcd, etcdTool, hosts, watchers, rssStart, memoryStart };
}

// --------------------------------------------------------------------------- measurements

/**
 * `n` eni creates, one at a time, rotating over the daemons; for each, when every other daemon's
 * engine ran on a view with it (its appliedAt once its applied revision reaches the creator's).
 */
async function propagate(fleet, n, subnetId, label, refused = []) {
  const samples = [];
  for (let i = 0; i < n; i++) {
    const creator = fleet.hosts[i % fleet.hosts.length];
    const others = fleet.hosts.filter((h) => h !== creator);
    // A create etcd did not answer in time (the daemon's 503, one line) is counted and sent again:
    // under this machine's load a member sometimes misses the daemon's 3 s deadline.
    let t0;
    let eni;
    for (let attempt = 1; !eni; attempt++) {
      t0 = Date.now();
      eni = await creator.api('POST', '/v1/enis', { subnetId }).catch((err) => {
        if (attempt >= 5 || !/: 503 /.test(err.message)) throw err;
        refused.push({ creator: creator.name, error: err.message });
        return undefined;
      });
    }
    const createMs = Date.now() - t0;
    // The create resolves once the creator's view has it: its applied revision is the create's (or later).
    const revision = (await fleetStatus(creator)).appliedRevision;
    // Per daemon: when its watch brought the revision, and when its engine ran on it.
    const daemons = {};
    await waitFor(`${eni.id} on every daemon`, async () => {
      for (const h of others) {
        if (daemons[h.name] !== undefined) continue;
        const s = await fleetStatus(h);
        if (s.appliedRevision >= revision) daemons[h.name] = { seen: Date.parse(s.seenAt) - t0, applied: Date.parse(s.appliedAt) - t0 };
      }
      return others.every((h) => daemons[h.name] !== undefined);
    }, { timeoutMs: 60_000, intervalMs: 10 });
    const d = Object.values(daemons);
    samples.push({ eni: eni.id, creator: creator.name, revision, t0, createMs, daemons, daemonsMs: Math.max(...d.map((x) => x.applied)), watchMs: Math.max(...d.map((x) => x.seen)), applyMs: Math.max(...d.map((x) => x.applied - x.seen)) });
    if ((i + 1) % 50 === 0 || i + 1 === n) say(`${label}: ${i + 1}/${n} creates; last ${samples.at(-1).daemonsMs} ms; 1-min load ${load1()}`);
  }
  return samples;
}

/** Each watcher's `applied REVISION MS` lines: the first time it had each sample's revision. */
function watcherTimes(fleet, samples) {
  const applied = fleet.watchers.map((w) =>
    readFileSync(scratch.path('logs', `${w.id}.log`), 'utf8')
      .split('\n')
      .map((l) => /^applied (\d+) (\d+)$/.exec(l))
      .filter(Boolean)
      .map((m) => [Number(m[1]), Number(m[2])]),
  );
  for (const s of samples) {
    const times = applied.map((lines) => lines.find(([rev]) => rev >= s.revision)?.[1]);
    s.watchersMissing = times.filter((t) => t === undefined).length;
    s.watchersMs = s.watchersMissing || !times.length ? null : Math.max(...times) - s.t0;
    s.allMs = s.watchersMs === null ? null : Math.max(s.daemonsMs, s.watchersMs);
  }
}

function propagationSummary(samples) {
  return {
    create: summary(samples.map((s) => s.createMs)),
    watch: summary(samples.map((s) => s.watchMs)),
    apply: summary(samples.map((s) => s.applyMs)),
    daemons: summary(samples.map((s) => s.daemonsMs)),
    watchers: summary(samples.map((s) => s.watchersMs).filter((x) => x !== null)),
    all: summary(samples.map((s) => s.allMs).filter((x) => x !== null)),
    watchersMissing: samples.reduce((n, s) => n + s.watchersMissing, 0),
  };
}

/** Member metrics now, and the per-mutation difference from `before` (median member; db sizes too). */
async function etcdWrites(fleet, before, mutations) {
  const after = await fleet.etcdTool('metrics');
  const per = (name) => median(after.map((m, i) => (m[name] ?? NaN) - (before[i][name] ?? NaN))) / mutations;
  return {
    mutations,
    walBytesPerMutation: Math.round(per('etcd_disk_wal_write_bytes_total')),
    dbBytesPerMutation: Math.round(per('etcd_mvcc_db_total_size_in_bytes')),
    dbInUseBytesPerMutation: Math.round(per('etcd_mvcc_db_total_size_in_use_in_bytes')),
    keysPerMutation: +per('etcd_debugging_mvcc_keys_total').toFixed(2),
    before,
    after,
  };
}

async function scale(fleet, pids) {
  const rssBefore = await rssOf(pids);
  const cpu0 = pids.map(cpuSeconds);
  const t0 = Date.now();
  // Remote hosts' ids (the watchers', stopped by now; as many when there were none): never a daemon's.
  const watcherIds = WATCHERS ? WATCHER_IDS : hostIds(50);
  const metrics0 = await fleet.etcdTool('metrics');
  const { revision } = await fleet.etcdTool('bulk', '--count', String(ENIS), '--hosts', watcherIds.join(','), '--subnet', BULK_SUBNET_ID, '--cidr', BULK_CIDR);
  const writeS = (Date.now() - t0) / 1000;
  const writes = await etcdWrites(fleet, metrics0, ENIS);
  const applyS = {};
  let shown = Date.now();
  await waitFor(`${ENIS} ENIs on every daemon`, async () => {
    if (Date.now() - shown > 60_000) {
      shown = Date.now();
      say(`scale: applied on ${Object.keys(applyS).join(',') || 'no daemon'} yet; 1-min load ${load1()}`);
    }
    for (const h of fleet.hosts) if (applyS[h.name] === undefined && (await fleetStatus(h)).appliedRevision >= revision) applyS[h.name] = (Date.now() - t0) / 1000;
    return Object.keys(applyS).length === fleet.hosts.length;
  }, { timeoutMs: 1_800_000, intervalMs: 500 });
  const cpuS = pids.map((pid, i) => +(cpuSeconds(pid) - cpu0[i]).toFixed(2));
  say(`scale: ${ENIS} ENIs written in ${writeS.toFixed(1)} s, on every daemon after ${Math.max(...Object.values(applyS)).toFixed(1)} s; 1-min load ${load1()}`);
  const enis = (await fleet.hosts[1].api('GET', '/v1/vpc/stats').catch(() => null))?.enis;
  // Steady state with the records held: RSS, and CPU at rest over the same seconds.
  await sleep(5000);
  const rest0 = pids.map(cpuSeconds);
  const restT0 = Date.now();
  const rssLoaded = await rssOf(pids, 10);
  const restCores = pids.map((pid, i) => +((cpuSeconds(pid) - rest0[i]) / ((Date.now() - restT0) / 1000)).toFixed(3));
  const memoryLoaded = await Promise.all(fleet.hosts.map(memoryOf));
  return { memoryLoaded, enis: ENIS, writeS: +writeS.toFixed(1), applyS, cpuS, rssBefore, rssLoaded, restCores, enisSeen: enis ?? null, writes };
}

// ------------------------------------------------------------------------------------ main

async function netPhase() {
  const out = scratch.path('net.json');
  const args = [path.join(ROOT, 'scripts/bench/net.mjs'), '--cli', opt.cli, '--scratch', scratch.path('net'), '--tag', TAG, '--out', out, '--paths', 'nitride,nitride-fleet', '--tests', 'tcp1,udp,ping', '--reps', String(NET_REPS), '--time', String(NET_TIME)];
  say(`net: ${['node', ...args.map((a) => path.relative(ROOT, a) || a)].join(' ')}`);
  const entry = scratch.start('bench-net', process.execPath, args);
  const status = await entry.exited;
  if (status !== 0) throw new Error(`bench-net exited with ${status}:\n${scratch.tail('bench-net', 20)}`);
  const net = JSON.parse(readFileSync(out, 'utf8'));
  const result = {};
  for (const [test, byPath] of Object.entries(net.medians)) {
    const reps = (p) => net.runs.filter((r) => r.test === test && r.path === p).map((r) => r.value);
    const standalone = reps('nitride');
    // Noise: the spread of the standalone path's own repetitions, relative to its median.
    const noise = standalone.length > 1 ? (Math.max(...standalone) - Math.min(...standalone)) / median(standalone) : null;
    result[test] = { standalone: byPath.nitride.value, fleet: byPath['nitride-fleet'].value, fleetVsStandalone: 1 / byPath['nitride-fleet'].nitrideVs, standaloneSpread: noise, standaloneReps: standalone, fleetReps: reps('nitride-fleet') };
  }
  return { result, load1: net.runs.map((r) => r.load1) };
}

let doc;
async function main(facts) {
  doc = {
    benchmark: 'fleet',
    date: new Date(started).toISOString(),
    host: facts,
    versions: { etcd: await versionOf('etcd', ['--version']) },
    settings: { creates: CREATES, scaleCreates: SCALE_CREATES, watchers: WATCHERS, hosts: HOSTS.length + WATCHERS, enis: ENIS, netReps: NET_REPS, netTime: NET_TIME, phases: [...PHASES] },
    goals: [],
  };
  say(`tag ${TAG}, scratch ${scratch.dir}; ${facts.cpus} CPUs, load ${facts.loadavg.join(' ')}; phases ${[...PHASES].join(',')}`);
  if (PHASES.has('net')) {
    doc.net = await netPhase();
    loads.push(...doc.net.load1);
  }
  if (PHASES.has('propagation')) {
    const fleet = await startFleet();
    const pids = fleet.hosts.map((h) => h.daemon.child.pid);
    doc.rssStartMb = fleet.rssStart;
    doc.memoryStartMb = fleet.memoryStart;
    await fleet.hosts[0].api('POST', '/v1/vpcs', { cidr: '172.20.0.0/16', id: VPC_ID });
    await fleet.hosts[1].api('POST', '/v1/subnets', { vpcId: VPC_ID, cidr: '172.20.0.0/20', id: SUBNET_ID });
    await fleet.hosts[2 % fleet.hosts.length].api('POST', '/v1/subnets', { vpcId: VPC_ID, cidr: BULK_CIDR, id: BULK_SUBNET_ID });
    const metrics0 = await fleet.etcdTool('metrics');
    const cpu0 = pids.map(cpuSeconds);
    const refused = [];
    doc.refusedCreates = refused;
    const samples = await propagate(fleet, CREATES, SUBNET_ID, 'propagation', refused);
    doc.propagationCpuS = pids.map((pid, i) => +(cpuSeconds(pid) - cpu0[i]).toFixed(2));
    doc.createWrites = await etcdWrites(fleet, metrics0, CREATES);
    watcherTimes(fleet, samples);
    doc.propagation = { samples, ...propagationSummary(samples) };
    if (PHASES.has('scale')) {
      // The watchers have served the 54-host propagation: stopped, so that the daemons taking
      // 10,000 ENIs do not share two cores with 50 processes rebuilding the same view.
      for (const w of fleet.watchers) await scratch.stop(w.id);
      fleet.watchers = [];
      say(`scale: watchers stopped; 1-min load ${load1()}`);
      doc.scale = await scale(fleet, pids);
      const big = await propagate(fleet, SCALE_CREATES, SUBNET_ID, `propagation at ${ENIS} ENIs`, doc.refusedCreates);
      doc.scale.propagation = { samples: big, ...propagationSummary(big) };
    }
  }
}

function report(doc, facts) {
  const ms = (x) => (x === null || x === undefined ? '-' : `${Math.round(x)}`);
  const p = doc.propagation;
  if (p) {
    const rows = [
      ['eni create (control API call)', p.create],
      [`${HOSTS.length} daemons: watch brought it (slowest)`, p.watch],
      [`${HOSTS.length} daemons: view rebuilt + engine programmed`, p.apply],
      [`${HOSTS.length} daemons: every other engine has it`, p.daemons],
      [`${WATCHERS} watchers: every one has it`, p.watchers],
      [`all ${HOSTS.length + WATCHERS} hosts`, p.all],
    ];
    const big = doc.scale?.propagation;
    if (big) rows.push([`${HOSTS.length} daemons at ${ENIS} ENIs (watchers stopped): watch`, big.watch], ['  view rebuilt + engine programmed', big.apply], ['  every other engine has it', big.daemons]);
    console.log(`\nPropagation: eni create on one host until every other host has it (ms; ${HOSTS.length} daemons + ${WATCHERS} watchers):`);
    console.log(textTable(['', 'n', 'p50', 'p99', 'max'], rows.map(([label, s]) => [label, s.n, ms(s.p50), ms(s.p99), ms(s.max)])));
    if (p.watchersMissing) console.log(`(${p.watchersMissing} watcher/create pairs never seen: left out)`);
    if (doc.refusedCreates?.length) console.log(`(${doc.refusedCreates.length} creates refused with 503 (etcd did not answer within the daemon's deadline) and sent again)`);
    const target = p.all.n ? p.all : p.daemons;
    doc.goals.push({ goal: `propagation p99 <= ${GOAL_P99_MS} ms at ${HOSTS.length + WATCHERS} hosts`, value: target.p99, met: target.p99 !== null && target.p99 <= GOAL_P99_MS });
  }
  const s = doc.scale;
  if (s?.rssLoaded) {
    console.log(`\nScale: each daemon holding ${s.enis} more ENIs (all on other hosts), RSS against its idle RSS at the start of this run:`);
    const rows = HOSTS.map((h, i) => [h, doc.rssStartMb[i], s.rssBefore[i], s.rssLoaded[i], (s.rssLoaded[i] - doc.rssStartMb[i]).toFixed(1), s.cpuS[i], s.applyS[h].toFixed(1), s.restCores[i]]);
    console.log(textTable(['daemon', 'idle MB', `+${CREATES} ENIs MB`, `+${s.enis} ENIs MB`, 'over idle MB', 'CPU s applying', 'applied after s', 'CPU at rest (cores)'], rows));
    if (s.memoryLoaded.every(Boolean)) {
      console.log('\nWhere it is (MB, process.memoryUsage; native = RSS - heap total - external):');
      const mrow = (label, m, rss) => [label, m.heapUsed, m.heapTotal, m.external, m.arrayBuffers, (rss - m.heapTotal - m.external).toFixed(1)];
      console.log(textTable(['daemon', 'heap used', 'heap total', 'external', 'arrayBuffers', 'native'], HOSTS.flatMap((h, i) => [mrow(`${h} idle`, doc.memoryStartMb[i], doc.rssStartMb[i]), mrow(`${h} +${s.enis}`, s.memoryLoaded[i], s.rssLoaded[i])])));
    }
    const worst = Math.max(...HOSTS.map((_, i) => s.rssLoaded[i] - doc.rssStartMb[i]));
    doc.goals.push({ goal: `RSS with ${s.enis} ENIs <= ${GOAL_RSS_MB} MB over idle (worst daemon)`, value: +worst.toFixed(1), met: worst <= GOAL_RSS_MB });
  }
  if (doc.createWrites || s?.writes) {
    console.log('\netcd bytes written per mutation (median member, from its /metrics):');
    const w = [['eni create (record, IP and MAC claims; one txn)', doc.createWrites], ['ENI record + claims written in bulk (40 per txn)', s?.writes]].filter(([, x]) => x);
    console.log(textTable(['mutation', 'n', 'WAL bytes', 'db size bytes', 'db in use bytes', 'keys'], w.map(([label, x]) => [label, x.mutations, x.walBytesPerMutation, x.dbBytesPerMutation, x.dbInUseBytesPerMutation, x.keysPerMutation])));
  }
  if (doc.net) {
    console.log(`\nData plane: nitride in fleet mode against standalone, same run (medians of ${NET_REPS}; spread = standalone's max-min over its median):`);
    const unit = { tcp1: 'Gbit/s', udp: 'pkt/s', ping: 'ms' };
    const rows = Object.entries(doc.net.result).map(([t, r]) => [`${t} (${unit[t]})`, r.standalone?.toPrecision(3), r.fleet?.toPrecision(3), r.fleetVsStandalone?.toFixed(2), r.standaloneSpread === null ? '-' : `${(100 * r.standaloneSpread).toFixed(0)}%`]);
    console.log(textTable(['test', 'standalone', 'fleet', 'fleet/standalone', 'spread'], rows));
    for (const [t, r] of Object.entries(doc.net.result)) {
      const within = r.standaloneSpread !== null && Math.abs(r.fleetVsStandalone - 1) <= Math.max(r.standaloneSpread, 0.05);
      doc.goals.push({ goal: `net ${t}: fleet within noise of standalone (|ratio-1| <= max(spread, 5%))`, value: +r.fleetVsStandalone.toFixed(3), met: within });
    }
  }
  if (!loads.length) load1();
  doc.load1 = { min: Math.min(...loads), max: Math.max(...loads), median: median(loads) };
  console.log(`\n1-min load average during the run ${doc.load1.min.toFixed(1)}-${doc.load1.max.toFixed(1)} (median ${doc.load1.median?.toFixed(1)}) on ${facts.cpus} CPUs.`);
  const missed = doc.goals.filter((g) => !g.met);
  console.log(`Goals: ${doc.goals.length - missed.length}/${doc.goals.length} met.`);
  for (const g of doc.goals) console.log(`  ${g.met ? 'met ' : 'MISS'} ${g.goal}: ${g.value}`);
  doc.durationS = Math.round((Date.now() - started) / 1000);
  const base = resultsBase(opt.out, 'fleet', started);
  writeFileSync(`${base}.json`, JSON.stringify(doc, null, 2) + '\n');
  console.log(`\nresults: ${base}.json`);
  say('done');
}

try {
  const facts = await hostFacts();
  try {
    await main(facts);
  } catch (err) {
    // What was measured before the failure is still written (with the error).
    if (doc) doc.error = err.message;
    throw err;
  } finally {
    if (doc) report(doc, facts);
  }
} catch (err) {
  console.error(`bench-fleet: ${err.message}`);
  process.exitCode = 1;
} finally {
  await scratch.cleanup();
  for (const ns of namespaces) await run('ip', ['netns', 'del', ns], { allowFail: true });
}
