// A private one-node Ceph cluster (mon, mgr, one BlueStore OSD on a sparse file) for tests,
// benchmarks and the demo: scripts/lib/ceph-one-node.sh in a fresh directory, on a free loopback
// port, so that two suites (or a suite and a benchmark) on one machine never meet.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './bench-common.mjs';

const exec = promisify(execFile);
const SCRIPT = path.join(import.meta.dirname, 'ceph-one-node.sh');

/**
 * Starts a cluster in a new directory under `parent` (default: the OS temp dir). Stop it with
 * destroy() (daemons ended by their pid files, directory removed) in a finally/afterAll.
 */
export async function startCeph({ parent = tmpdir(), osdBytes = 4 * 2 ** 30, monAddr } = {}) {
  const dir = mkdtempSync(path.join(parent, 'nitride-ceph-'));
  const addr = monAddr ?? `127.0.0.1:${await freePort()}`;
  const script = (...args) => exec('bash', [SCRIPT, ...args], { env: { ...process.env, MON_ADDR: addr }, timeout: 180_000, maxBuffer: 16 << 20 });
  const cluster = {
    dir,
    conf: path.join(dir, 'ceph.conf'),
    monAddr: addr,
    pool: 'rbd',
    id: 'admin',
    /** `rbd ARGS…` against this cluster; resolves with stdout. */
    rbd: async (...args) => (await exec('rbd', ['-c', cluster.conf, ...args], { maxBuffer: 64 << 20 })).stdout,
    /** `ceph ARGS…` against this cluster; resolves with stdout. */
    ceph: async (...args) => (await exec('ceph', ['-c', cluster.conf, ...args], { maxBuffer: 64 << 20 })).stdout,
    /** Stops the daemons; the data stays (resume() starts them again). */
    stop: () => script('stop', dir),
    /** Stops only the daemons of one kind ('osd': the data path goes, the mon stays). */
    stopDaemons: (kind) => script('stop', dir, kind),
    /** Starts what is stopped again. */
    resume: () => script('resume', dir),
    /** Stops the daemons and removes the directory. */
    async destroy() {
      await script('stop', dir).catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await script('start', dir, String(osdBytes));
  } catch (err) {
    await cluster.destroy();
    throw err;
  }
  return cluster;
}
