/**
 * Two-host Ceph tests: a private one-node cluster, one KMS, and daemons as "hosts" (a state
 * directory each) configured with the cluster, plus the CLI against any of them.
 */
import path from 'node:path';
import { startCeph, type CephCluster } from './ceph.js';
import { nitride, startDaemon, startKms, tempDir, type CliResult, type RunningDaemon, type RunningKms } from './nitride.js';

export interface CephHosts {
  dir: string;
  ceph: CephCluster;
  kms: RunningKms;
  /** A daemon named `name` (state dir and sockets of its own) on the cluster, with `args` added. */
  host(name: string, args?: string[]): Promise<RunningDaemon>;
  cli(d: RunningDaemon, ...args: string[]): Promise<CliResult>;
  /** `cli … --json`, parsed; throws with stderr on failure. */
  json<T>(d: RunningDaemon, ...args: string[]): Promise<T>;
  /** Kills every host and the KMS, destroys the cluster, removes the directory. */
  destroy(): Promise<void>;
}

export async function startCephHosts(prefix: string): Promise<CephHosts> {
  const { dir, cleanup } = tempDir(prefix);
  const daemons: RunningDaemon[] = [];
  let ceph: CephCluster | undefined;
  let kms: RunningKms | undefined;
  const destroy = async () => {
    for (const d of daemons) await d.stop('SIGKILL');
    await kms?.stop('SIGKILL');
    await ceph?.destroy();
    cleanup();
  };
  try {
    ceph = await startCeph();
    kms = await startKms({ stateDir: path.join(dir, 'kms'), socket: path.join(dir, 'run-kms', 'kms.sock') });
  } catch (err) {
    await destroy();
    throw err;
  }
  const c = ceph;
  const k = kms;
  const cli = (d: RunningDaemon, ...args: string[]) => nitride(args, { NITRIDE_SOCKET: d.socket, NITRIDE_KMS_SOCKET: k.socket });
  return {
    dir,
    ceph: c,
    kms: k,
    async host(name, args = []) {
      const d = await startDaemon({
        stateDir: path.join(dir, name),
        socket: path.join(dir, `run-${name}`, 'control.sock'),
        args: ['--kms-socket', k.socket, '--ceph-conf', c.conf, '--ceph-pool', c.pool, '--ceph-id', c.id, ...args],
      });
      daemons.push(d);
      return d;
    },
    cli,
    async json<T>(d: RunningDaemon, ...args: string[]): Promise<T> {
      const r = await cli(d, ...args, '--json');
      if (r.code !== 0) throw new Error(`nitride ${args.join(' ')}: ${r.stderr}`);
      return JSON.parse(r.stdout) as T;
    },
    destroy,
  };
}
