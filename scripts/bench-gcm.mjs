#!/usr/bin/env node
// Micro benchmark: the VPC data plane's AES-256-GCM (native/src/gcm.h), the
// addon's VAES code against node's OpenSSL (NITRIDE_GCM_IMPL=openssl), in
// the same run: child processes alternate between the two (the choice is made
// once per process), each timing seal and open of a 1,386-byte frame (the
// frame size of the iperf3 profile) and of 64 KiB, with
// 16 bytes of AAD like a data message. Times are this thread's CPU time per
// operation in a native loop (AesGcm.cpuNsPerOp: no N-API call per
// operation), so load on the machine inflates them less than wall time.
// Prints medians over the rounds.
//
// Usage: node scripts/bench-gcm.mjs [--rounds N (15)]   (build the addon first:
//        npx node-gyp rebuild --directory=native)
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { benchOptions, optionsChecked, positiveOption } from './lib/bench-common.mjs';

const FRAME = 1386;
const BIG = 64 << 10;

if (process.env.NITRIDE_BENCH_GCM_CHILD === '1') {
  const require = createRequire(import.meta.url);
  const { AesGcm } = require('../native/build/Release/nitride_native.node');
  const g = new AesGcm(randomBytes(32));
  const r = { impl: g.implementation };
  for (const [name, len, iters] of [['frame', FRAME, 40000], ['big', BIG, 1000]]) {
    g.cpuNsPerOp('seal', len, iters >> 3); // warm-up
    r[`${name}Seal`] = g.cpuNsPerOp('seal', len, iters);
    r[`${name}Open`] = g.cpuNsPerOp('open', len, iters);
  }
  g.destroy();
  process.stdout.write(JSON.stringify(r));
  process.exit(0);
}

const opt = benchOptions('bench-gcm', 'usage: node scripts/bench-gcm.mjs [--rounds N (15)]', { rounds: { type: 'string' } });
const ROUNDS = Math.round(positiveOption('bench-gcm', opt.rounds, 15, 'rounds'));
optionsChecked();

const self = fileURLToPath(import.meta.url);
const samples = { vaes: [], openssl: [] };
const load0 = loadavg()[0];
for (let i = 0; i < ROUNDS; i++) {
  for (const impl of i % 2 ? ['openssl', 'vaes'] : ['vaes', 'openssl']) {
    const env = { ...process.env, NITRIDE_BENCH_GCM_CHILD: '1' };
    if (impl === 'openssl') env.NITRIDE_GCM_IMPL = 'openssl';
    else delete env.NITRIDE_GCM_IMPL;
    const r = JSON.parse(execFileSync(process.execPath, [self], { env }).toString());
    if ((impl === 'vaes') !== (r.impl === 'vaes-avx512')) {
      console.error(`bench-gcm: asked for ${impl}, the addon ran ${r.impl} (no VAES/AVX-512 on this CPU?)`);
      process.exit(1);
    }
    samples[impl].push(r);
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
console.log(`node ${process.version}, OpenSSL ${process.versions.openssl}, ${ROUNDS} rounds, load ${load0.toFixed(1)} -> ${loadavg()[0].toFixed(1)}`);
console.log('thread CPU per op, median'.padEnd(26) + 'seal 1386 B'.padStart(13) + 'open 1386 B'.padStart(13) + 'seal 64 KiB'.padStart(14) + 'open 64 KiB'.padStart(14));
for (const impl of ['vaes', 'openssl']) {
  const m = (k) => median(samples[impl].map((r) => r[k]));
  const gbps = (k) => `${(BIG / m(k)).toFixed(2)} GB/s`;
  console.log(
    (impl === 'vaes' ? 'vaes-avx512' : 'openssl').padEnd(26) +
      `${m('frameSeal').toFixed(0)} ns`.padStart(13) +
      `${m('frameOpen').toFixed(0)} ns`.padStart(13) +
      gbps('bigSeal').padStart(14) +
      gbps('bigOpen').padStart(14),
  );
}
