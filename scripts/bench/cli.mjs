// CLI start-up benchmark (not a test). A KMS and a daemon run in a scratch state directory with a
// few resources (a key, a volume, a VPC, a subnet, a peer, a remote ENI); each client verb of the
// CLI is run --runs times against them, interleaved with `node -e 0` (round by round, the order
// rotating), and timed from spawn to exit. Reported: the median per verb and its ratio to the
// median of `node -e 0` in the same run; the goal is every verb <= 2x. With --compare-cli, a
// second build of the CLI (e.g. main's) is measured in the same rounds against the same daemon.
// The KMS also listens on loopback (--listen): after the verbs, GenerateDataKey and Decrypt are
// timed in-process, interleaved, on the Unix socket and over the network KMS's channel (kept-alive
// connection, and a fresh connection with its handshake per call), --runs x 10 calls each.
// Writes bench-results/cli-<timestamp>.json.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  Scratch,
  benchArgs,
  canConnect,
  hostFacts,
  installSignalCleanup,
  median,
  optionsChecked,
  positiveOption,
  resultsBase,
  run,
  textTable,
  waitFor,
} from '../lib/bench-common.mjs';

const USAGE = `usage: bench-cli [--runs N] [--compare-cli FILE] [--out FILE.json] [--keep]
  --runs N             runs per verb (default 20)
  --compare-cli FILE   also time this build of the CLI (e.g. another checkout's dist/cli/main.js)
  --out FILE           JSON result path (default bench-results/cli-<timestamp>.json)
  --keep               keep the scratch directory (state, logs)`;

const opt = benchArgs('bench-cli', USAGE, { runs: { type: 'string' }, 'compare-cli': { type: 'string' } });
const RUNS = Math.round(positiveOption('bench-cli', opt.runs, 20, 'runs'));
optionsChecked();
const GOAL = 2;

const scratch = opt.scratch ? new Scratch(opt.scratch, { keep: opt.keep }) : Scratch.create('/var/tmp', 'nitride-bench-cli.', { keep: opt.keep });
installSignalCleanup(scratch);
const kmsSocket = scratch.path('kms.sock');
const controlSocket = scratch.path('control.sock');

const cli = (args) => run(process.execPath, [opt.cli, ...args], { env: { NITRIDE_SOCKET: controlSocket, NITRIDE_KMS_SOCKET: kmsSocket } });
const json = async (args) => JSON.parse((await cli([...args, '--json'])).stdout);

async function startServers() {
  // Loopback only, as everything here.
  const kms = scratch.start('kms', process.execPath, [opt.cli, 'kms', 'serve', '--state-dir', scratch.path('kms'), '--socket', kmsSocket, '--listen', '127.0.0.1:0']);
  await waitFor('the KMS', () => canConnect(kmsSocket), { alive: () => kms.child.exitCode === null });
  const daemon = scratch.start('daemon', process.execPath, [
    opt.cli,
    'daemon',
    '--state-dir',
    scratch.path('state'),
    '--control-socket',
    controlSocket,
    '--kms-socket',
    kmsSocket,
    '--nbd-socket',
    scratch.path('nbd.sock'),
    // Loopback only: the bench never sends anywhere else.
    '--vpc-listen',
    '127.0.0.1:0',
  ]);
  await waitFor('the daemon', async () => (await cli(['status'])).code === 0, { alive: () => daemon.child.exitCode === null, timeoutMs: 30_000 });
}

/** Something to list: a key, a volume, a VPC with a subnet, a peer (on loopback) and its ENI. */
async function populate() {
  await cli(['kms', 'create-key', '--alias', 'alias/bench']);
  const volume = await json(['volume', 'create', '--size', '16M', '--name', 'bench']);
  await cli(['vpc', 'create', '--cidr', '10.77.0.0/16', '--id', 'vpc-0000000000000bec0']);
  await cli(['subnet', 'create', '--vpc', 'vpc-0000000000000bec0', '--cidr', '10.77.1.0/24', '--id', 'subnet-0000000000000bec0']);
  await cli(['peer', 'add', '--name', 'other', '--endpoint', '127.0.0.1:9', '--public-key', Buffer.alloc(32, 7).toString('base64')]);
  await cli(['eni', 'create', '--subnet', 'subnet-0000000000000bec0', '--host', 'other']);
  return volume.id;
}

function verbs(volumeId) {
  return [
    ['--help'],
    ['status'],
    ['volume', 'list'],
    ['volume', 'describe', volumeId],
    ['vpc', 'list'],
    ['subnet', 'list'],
    ['eni', 'list'],
    ['peer', 'list'],
    ['key', 'show'],
    ['vm', 'list'],
    ['image', 'list'],
    ['metrics'],
    ['kms', 'list-keys'],
    ['kms', 'describe-key', 'alias/bench'],
  ];
}

/**
 * Latency of GenerateDataKey + Decrypt (one call each, µs) on the Unix socket against the
 * network KMS on loopback, in the same rounds: warm (kept-alive channel) and cold (a new
 * connection and handshake per call pair).
 */
async function kmsLatency(calls) {
  const dist = path.resolve(path.dirname(opt.cli), '..');
  const load = (p) => import(pathToFileURL(path.join(dist, p)).href);
  const [{ KmsClient }, { NetworkKms }, { loadSodium }, { generateHostKeys, encodeKey }] = await Promise.all([
    load('kms/client.js'),
    load('kms/network-client.js'),
    load('kms/sodium.js'),
    load('vpc/handshake.js'),
  ]);
  const sodium = await loadSodium();
  const host = generateHostKeys(sodium);
  const status = await json(['kms', 'status']);
  await cli(['kms', 'grant', 'create', '--host', 'bench', '--public-key', encodeKey(host.publicKey), '--key', 'alias/bench', '--operations', 'GenerateDataKey,Decrypt']);
  const network = () =>
    new NetworkKms({ endpoint: status.network.listen, kmsPublicKey: Buffer.from(status.network.publicKey, 'base64'), sodium, hostKey: async () => ({ publicKey: host.publicKey, privateKey: Buffer.from(host.privateKey) }) });
  const warm = network();
  const unix = new KmsClient({ socketPath: kmsSocket });
  const pair = async (client) => {
    const t0 = performance.now();
    const g = await client.generateDataKey('alias/bench', { volume: 'vol-0000000000000bec0' });
    g.plaintext.fill(0);
    const d = await client.decrypt(g.ciphertextBlob, { volume: 'vol-0000000000000bec0' });
    d.plaintext.fill(0);
    return (performance.now() - t0) * 1000;
  };
  const cases = [
    { id: 'unix socket', run: () => pair(unix) },
    { id: 'network, kept-alive channel', run: () => pair(warm.client) },
    {
      id: 'network, new channel per pair',
      run: async () => {
        const cold = network();
        try {
          return await pair(cold.client);
        } finally {
          await cold.close();
        }
      },
    },
  ];
  const times = cases.map(() => []);
  for (const c of cases) await c.run(); // warm-up
  for (let round = 0; round < calls; round++) for (let k = 0; k < cases.length; k++) times[(k + round) % cases.length].push(await cases[(k + round) % cases.length].run());
  await warm.close();
  host.privateKey.fill(0);
  const base = median(times[0]);
  return cases.map((c, i) => ({ case: c.id, medianUs: Math.round(median(times[i])), ratio: +(median(times[i]) / base).toFixed(2) }));
}

/** Wall time (ms) of one run, spawn to exit; throws if it fails. */
function timeRun(argv, env) {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`node ${argv.join(' ')} exited ${r.status}: ${r.stderr.toString().trim()}`);
  return ms;
}

async function main() {
  const started = Date.now();
  const facts = await hostFacts();
  await startServers();
  const volumeId = await populate();
  const env = { NITRIDE_SOCKET: controlSocket, NITRIDE_KMS_SOCKET: kmsSocket };
  const clis = [{ id: 'this', path: opt.cli }, ...(opt['compare-cli'] ? [{ id: 'compare', path: path.resolve(opt['compare-cli']) }] : [])];
  const cases = [{ id: 'node -e 0', cli: null, argv: ['-e', '0'] }];
  for (const c of clis) for (const args of verbs(volumeId)) cases.push({ id: args.join(' ').replace(volumeId, '<vol>'), cli: c.id, argv: [c.path, ...args] });
  const times = cases.map(() => []);
  for (let round = 0; round < RUNS; round++) {
    // Rotate the order so that no case always runs right after the same one.
    for (let k = 0; k < cases.length; k++) {
      const i = (k + round) % cases.length;
      times[i].push(timeRun(cases[i].argv, env));
    }
  }
  const nodeMs = median(times[0]);
  const results = cases.map((c, i) => ({ case: c.id, cli: c.cli, medianMs: +median(times[i]).toFixed(1), ratio: +(median(times[i]) / nodeMs).toFixed(2) }));
  const mine = results.filter((r) => r.cli === 'this');
  const other = new Map(results.filter((r) => r.cli === 'compare').map((r) => [r.case, r]));
  console.log(`\nnitride CLI start-up, median of ${RUNS} runs (spawn to exit), against a daemon and a KMS in ${scratch.dir}`);
  console.log(`node -e 0: ${nodeMs.toFixed(1)} ms; load average ${facts.loadavg.join(' ')}\n`);
  const header = ['verb', 'ms', 'x node', ...(other.size ? ['compare ms', 'compare x node'] : [])];
  const rows = mine.map((r) => [r.case, r.medianMs.toFixed(1), r.ratio.toFixed(2), ...(other.size ? [other.get(r.case).medianMs.toFixed(1), other.get(r.case).ratio.toFixed(2)] : [])]);
  console.log(textTable(header, rows));
  const missed = mine.filter((r) => r.ratio > GOAL);
  console.log(`\nGoal (every verb <= ${GOAL}x node -e 0): ${mine.length - missed.length}/${mine.length} met.`);
  for (const r of missed) console.log(`  MISS ${r.case}: ${r.ratio.toFixed(2)}x`);

  const kmsCalls = RUNS * 10;
  const kms = await kmsLatency(kmsCalls);
  console.log(`\nKMS GenerateDataKey + Decrypt (one pair, median of ${kmsCalls}, in-process client), Unix socket vs network KMS on loopback:\n`);
  console.log(textTable(['path', 'µs per pair', 'x unix'], kms.map((r) => [r.case, String(r.medianUs), r.ratio.toFixed(2)])));

  const file = `${resultsBase(opt.out, 'cli', started)}.json`;
  const doc = {
    benchmark: 'cli',
    date: new Date(started).toISOString(),
    durationS: Math.round((Date.now() - started) / 1000),
    host: facts,
    settings: { runs: RUNS, goalRatio: GOAL, timing: 'spawn to exit of each process (spawnSync), rounds interleaving every case', clis },
    nodeMedianMs: +nodeMs.toFixed(1),
    medians: results,
    kmsLatency: { calls: kmsCalls, unit: 'µs per GenerateDataKey + Decrypt pair', results: kms },
    runs: Object.fromEntries(cases.map((c, i) => [`${c.cli ?? 'node'}: ${c.id}`, times[i].map((t) => +t.toFixed(1))])),
  };
  writeFileSync(file, JSON.stringify(doc, null, 2) + '\n');
  console.log(`\nwrote ${path.relative(process.cwd(), file)}`);
}

try {
  await main();
} catch (err) {
  console.error(`bench-cli: ${err.message}`);
  for (const name of ['daemon', 'kms']) if (scratch.tail(name)) console.error(`--- ${name} log:\n${scratch.tail(name)}`);
  process.exitCode = 1;
} finally {
  await scratch.cleanup();
}
