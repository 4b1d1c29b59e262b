#!/usr/bin/env node
// The limiters' own ns per admitted request (scripts/bench/limiter-ns.cc), built with g++ at the
// addon's optimisation level (node-gyp Release: -O3) into a temporary directory and run once.
// Used by bench-block --limits and bench-net --limits to bound a limit's cost against the CPU an
// I/O or packet takes on its data-plane thread; `node scripts/bench/limiter-ns.mjs` prints it alone.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT, run } from '../lib/bench-common.mjs';

/** { clockNs, volumeUnlimitedNs, volumeFar4kNs, volumeFar1mNs, eniUnlimitedNs, eniFarSmallNs, eniFarGsoNs } */
export async function limiterNs() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nitride-limiter-ns-'));
  try {
    const bin = path.join(dir, 'limiter-ns');
    await run('g++', ['-O3', '-std=c++17', '-I', path.join(ROOT, 'native/src'), '-o', bin, path.join(ROOT, 'scripts/bench/limiter-ns.cc')]);
    const { stdout } = await run(bin, []);
    return JSON.parse(stdout);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) console.log(JSON.stringify(await limiterNs(), null, 1));
