// Live-update benchmark (not a test): what a restart of the daemon under systemd costs its
// clients. In a real systemd 252 (systemd-nspawn, scripts/lib/nspawn.mjs) running the units
// that `nitride install-units` writes:
//   - I/O pause: qemu-io on the host reads a volume through QEMU's NBD driver with
//     `reconnect-delay` (4 KiB reads every 10 ms) while `systemctl restart nitride` runs; the
//     pause is the longest read (it spans the restart), errors are failed reads. With the fd
//     store (the shipped unit) and, as the baseline in the same run, without it
//     (FileDescriptorStoreMax=0: the listening socket goes away with the old process).
//   - Packet loss: two guests (network namespaces on veth ENIs of the daemon, local
//     forwarding by the native engine) run iperf3 UDP at a fixed rate across a restart, with
//     the fd store (the ENIs' packet sockets keep queueing frames) and without; the baseline
//     is the same run without a restart.
// Medians over --reps repetitions (modes alternate order). Writes bench-results/restart-*.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { ROOT, Scratch, benchOptions, hostFacts, installSignalCleanup, median, optionsChecked, positiveOption, run, sleep, stamp, textTable } from '../lib/bench-common.mjs';
import { UNIT_ROOT, bootSystemd } from '../lib/nspawn.mjs';

const opt = benchOptions('bench-restart', 'usage: scripts/bench-restart.sh [--reps N (5)] [--rate 100M] [--no-io] [--no-iperf] [--keep]', {
  reps: { type: 'string' },
  rate: { type: 'string', default: '100M' },
  'no-io': { type: 'boolean', default: false },
  'no-iperf': { type: 'boolean', default: false },
  keep: { type: 'boolean', default: false },
});
const REPS = Math.round(positiveOption('bench-restart', opt.reps, 5, 'reps'));
const RATE = opt.rate;
const IPERF = !opt['no-iperf'];
const IO = !opt['no-io'];
optionsChecked();
const CLI = path.join(ROOT, 'dist/cli/main.js');

const scratch = Scratch.create('/var/tmp', 'nitride-bench-restart.', { keep: opt.keep });
const prefix = 'ntbr' + randomBytes(2).toString('hex');
const namespaces = [];
let sd;
installSignalCleanup(scratch, () => void teardown());

async function teardown() {
  for (const ns of namespaces) await run('ip', ['netns', 'del', ns], { allowFail: true });
  await sd?.shutdown();
  await scratch.cleanup();
}

const cli = (a) => sd.execOk([process.execPath, CLI, ...a]);

async function setFdStore(enabled) {
  const dropIn = '/etc/systemd/system/nitride.service.d/bench.conf';
  await sd.execOk(['mkdir', '-p', path.dirname(dropIn)]);
  await sd.execOk(['sh', '-c', enabled ? `rm -f ${dropIn}` : `printf '[Service]\\nFileDescriptorStoreMax=0\\n' > ${dropIn}`]);
  await sd.execOk(['systemctl', 'daemon-reload']);
  // A stop flushes the store; the start fills it again (or not).
  await sd.execOk(['systemctl', 'stop', 'nitride.service']);
  await sd.execOk(['systemctl', 'start', 'nitride.service']);
}

/** One restart under qemu-io reads: { pauseMs, typicalMs, errors, reads, restartMs }. */
async function ioAcrossRestart(volumeId) {
  const opts = `driver=nbd,server.type=unix,server.path=${sd.hostPath('/run/nitride/nbd.sock')},export=${volumeId},reconnect-delay=30`;
  const commands = [];
  for (let i = 0; i < 400; i++) commands.push('-c', 'read -P 0x5d 0 4k', '-c', 'sleep 10');
  const client = run('qemu-io', ['--image-opts', opts, ...commands], { allowFail: true });
  await sleep(1500);
  const t0 = performance.now();
  await sd.execOk(['systemctl', 'restart', 'nitride.service']);
  const restartMs = performance.now() - t0;
  const r = await client;
  const durations = [...r.stdout.matchAll(/and ([\d.]+) ops\/sec\)/g)].map((m) => 1000 / Number(m[1]));
  const errors = (r.stdout + r.stderr).split('\n').filter((l) => /failed|error/i.test(l)).length + (r.code === 0 ? 0 : 1);
  return { pauseMs: Math.max(...durations), typicalMs: median(durations), errors, reads: durations.length, restartMs };
}

/** iperf3 UDP between the two guests; restart the daemon 2 s in when `restart`. */
async function udpRun(gA, gB, ipB, restart) {
  await run('ip', ['netns', 'exec', gB, 'iperf3', '-s', '-1', '-D', '-B', ipB]);
  await sleep(300);
  const client = run('ip', ['netns', 'exec', gA, 'iperf3', '-u', '-b', RATE, '-l', '1200', '-t', '6', '-c', ipB, '-J'], { allowFail: true });
  if (restart) {
    await sleep(2000);
    await sd.execOk(['systemctl', 'restart', 'nitride.service']);
  }
  const r = await client;
  const sum = JSON.parse(r.stdout).end?.sum ?? {};
  return { lost: sum.lost_packets ?? null, packets: sum.packets ?? null, lostPercent: sum.lost_percent ?? null };
}

async function setupGuests() {
  await cli(['vpc', 'create', '--cidr', '172.31.0.0/16', '--id', 'vpc-0123456789abcdef0']);
  await cli(['subnet', 'create', '--vpc', 'vpc-0123456789abcdef0', '--cidr', '172.31.1.0/24', '--id', 'subnet-0123456789abcdef0']);
  const guests = [];
  for (const g of ['ga', 'gb']) {
    const eni = JSON.parse(await cli(['eni', 'create', '--subnet', 'subnet-0123456789abcdef0', '--kind', 'veth', '--json']));
    const ns = prefix + g;
    await run('ip', ['netns', 'add', ns]);
    namespaces.push(ns);
    // nsenter into the container's network namespace only: `ip` still sees the host's /run/netns.
    await run('nsenter', ['-t', String(sd.pid), '-n', 'ip', 'link', 'set', 'dev', eni.guestInterface, 'netns', ns]);
    await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    await run('ip', ['-n', ns, 'link', 'set', eni.guestInterface, 'mtu', '1420', 'up']);
    await run('ip', ['-n', ns, 'addr', 'add', `${eni.privateIp}/24`, 'dev', eni.guestInterface]);
    guests.push({ ns, ip: eni.privateIp });
  }
  // ARP through the VPC's responder, then traffic.
  await run('ip', ['netns', 'exec', guests[0].ns, 'busybox', 'ping', '-c', '3', '-W', '2', guests[1].ip]);
  return guests;
}

async function main() {
  console.log('booting systemd (nspawn) ...');
  const unitDir = scratch.path('units');
  mkdirSync(unitDir);
  await run(process.execPath, [CLI, 'install-units', '--dir', unitDir, '--no-reload', '--root', UNIT_ROOT]);
  const units = ['nitride-kms.socket', 'nitride-kms.service', 'nitride.service'];
  sd = await bootSystemd(Object.fromEntries(units.map((u) => [path.join(unitDir, u), u])));
  await sd.execOk(['systemctl', 'start', 'nitride-kms.socket', 'nitride.service']);
  const volume = JSON.parse(await cli(['volume', 'create', '--size', '64M', '--json']));
  await run('qemu-io', ['-f', 'raw', `nbd+unix:///${volume.id}?socket=${sd.hostPath('/run/nitride/nbd.sock')}`, '-c', 'write -P 0x5d 0 4k']);

  const io = { 'fd store': [], 'no fd store (baseline)': [] };
  for (let rep = 0; IO && rep < REPS; rep++) {
    const order = rep % 2 ? ['no fd store (baseline)', 'fd store'] : ['fd store', 'no fd store (baseline)'];
    for (const mode of order) {
      await setFdStore(mode === 'fd store');
      const r = await ioAcrossRestart(volume.id);
      io[mode].push(r);
      console.log(`  rep ${rep + 1} ${mode}: pause ${r.pauseMs.toFixed(1)} ms, restart ${r.restartMs.toFixed(0)} ms, errors ${r.errors}, reads ${r.reads}`);
    }
  }
  await setFdStore(true);

  const udp = { 'restart, fd store': [], 'restart, no fd store': [], 'no restart (baseline)': [] };
  if (IPERF) {
    const [ga, gb] = await setupGuests();
    const modes = Object.keys(udp);
    for (let rep = 0; rep < Math.min(REPS, 3); rep++) {
      for (const mode of rep % 2 ? [...modes].reverse() : modes) {
        await setFdStore(mode !== 'restart, no fd store');
        // The guests' ARP entries survive; one ping makes sure the ports forward again.
        await run('ip', ['netns', 'exec', ga.ns, 'busybox', 'ping', '-c', '1', '-W', '2', gb.ip], { allowFail: true });
        const r = await udpRun(ga.ns, gb.ns, gb.ip, mode !== 'no restart (baseline)');
        udp[mode].push(r);
        console.log(`  rep ${rep + 1} ${mode}: lost ${r.lost}/${r.packets} (${r.lostPercent?.toFixed?.(2)} %)`);
      }
    }
  }

  const ioRows = Object.entries(io).map(([mode, rs]) => [
    mode,
    median(rs.map((r) => r.pauseMs))?.toFixed(1),
    median(rs.map((r) => r.typicalMs))?.toFixed(2),
    median(rs.map((r) => r.restartMs))?.toFixed(0),
    rs.reduce((n, r) => n + r.errors, 0),
  ]);
  const basePause = median(io['no fd store (baseline)'].map((r) => r.pauseMs));
  const storePause = median(io['fd store'].map((r) => r.pauseMs));
  console.log(`\nI/O pause across \`systemctl restart nitride\` (qemu-io, NBD reconnect-delay; medians of ${REPS})`);
  console.log(textTable(['mode', 'pause ms', 'normal read ms', 'restart ms', 'errors (all reps)'], ioRows));
  console.log(`pause ratio fd store / baseline: ${(storePause / basePause).toFixed(2)}`);
  if (IPERF) {
    console.log(`\nUDP loss between two guests on local ENIs, iperf3 -u -b ${RATE} for 6 s (medians)`);
    console.log(
      textTable(
        ['run', 'lost', 'packets', 'lost %'],
        Object.entries(udp).map(([mode, rs]) => [mode, median(rs.map((r) => r.lost)), median(rs.map((r) => r.packets)), median(rs.map((r) => r.lostPercent))?.toFixed(2)]),
      ),
    );
  }
  mkdirSync(path.join(ROOT, 'bench-results'), { recursive: true });
  const file = path.join(ROOT, 'bench-results', `restart-${stamp()}.json`);
  writeFileSync(file, JSON.stringify({ host: await hostFacts(), reps: REPS, rate: RATE, io, udp }, null, 2) + '\n');
  console.log(`\nwrote ${file}`);
}

try {
  await main();
} finally {
  await teardown();
}
