#!/usr/bin/env node
// Micro benchmark: AES-256-XTS over a 1 MiB buffer, per-4KiB cost of
//   - the addon's XtsCipher (key scheduled once, one call for all units),
//   - the addon's one-shot xtsEncrypt (keys a ctx per call),
//   - node:crypto, one createCipheriv per data unit (the best plain-JS loop:
//     reused IV buffer, no concat),
// for 512- and 4096-byte data units. Prints the median over the rounds (wall
// time) and the CPU time per 4 KiB averaged over all rounds.
//
// Usage: node scripts/bench-xts.mjs [--rounds N (60)]   (build the addon first:
//        npx node-gyp rebuild --directory=native)
import { createCipheriv, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { benchOptions, optionsChecked, positiveOption } from './lib/bench-common.mjs';

const opt = benchOptions('bench-xts', 'usage: node scripts/bench-xts.mjs [--rounds N (60)]', { rounds: { type: 'string' } });
const ROUNDS = Math.round(positiveOption('bench-xts', opt.rounds, 60, 'rounds'));
optionsChecked();

const require = createRequire(import.meta.url);
const addon = require('../native/build/Release/nitride_native.node');
const SIZE = 1 << 20;
const PER_4K = SIZE / 4096;

function randomKey() {
  for (;;) {
    const k = randomBytes(64);
    if (!k.subarray(0, 32).equals(k.subarray(32))) return k;
  }
}

function measure(fn) {
  for (let i = 0; i < 5; i++) fn(); // warm-up
  const samples = [];
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < ROUNDS; i++) {
    const t0 = process.hrtime.bigint();
    fn();
    samples.push(Number(process.hrtime.bigint() - t0) / 1000); // µs
  }
  const cpu = process.cpuUsage(cpu0);
  samples.sort((a, b) => a - b);
  const median = samples[samples.length >> 1];
  const cpuPerRound = (cpu.user + cpu.system) / ROUNDS;
  return { wall4k: median / PER_4K, cpu4k: cpuPerRound / PER_4K, gbps: SIZE / (median * 1000) };
}

function row(label, r) {
  console.log(
    `${label.padEnd(38)} ${r.wall4k.toFixed(3).padStart(8)} µs ${r.cpu4k.toFixed(3).padStart(8)} µs ${r.gbps.toFixed(2).padStart(7)} GB/s`,
  );
}

const key = randomKey();
const buf = randomBytes(SIZE);
console.log(`node ${process.version}, OpenSSL ${process.versions.openssl}, 1 MiB buffer, ${ROUNDS} rounds`);
console.log(`${'per 4 KiB'.padEnd(38)} ${'median'.padStart(11)} ${'cpu'.padStart(11)} ${'wall rate'.padStart(12)}`);

for (const unit of [512, 4096]) {
  const cipher = new addon.XtsCipher(key, unit);
  let first = 0n;
  row(`addon XtsCipher.encrypt, unit ${unit}`, measure(() => cipher.encrypt(first++, buf)));
  row(`addon xtsEncrypt (one-shot), unit ${unit}`, measure(() => addon.xtsEncrypt(key, unit, first++, buf)));
  cipher.destroy();

  const iv = Buffer.alloc(16);
  let n = 0n;
  row(
    `node:crypto per data unit, unit ${unit}`,
    measure(() => {
      for (let off = 0; off < SIZE; off += unit) {
        iv.writeBigUInt64LE(n++, 0);
        const c = createCipheriv('aes-256-xts', key, iv);
        c.update(buf.subarray(off, off + unit)).copy(buf, off);
        c.final();
      }
    }),
  );
}
