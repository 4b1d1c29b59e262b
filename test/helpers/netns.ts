/**
 * nitride "hosts" as network namespaces: a KMS and a daemon started inside each, joined by a
 * veth underlay (10.x addresses that exist only inside the namespaces). Every name starts with
 * the caller's unique prefix; `teardown()` kills what was started and deletes the namespaces
 * (and with them every link in them) even after a failure.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { CLI, nitride, type CliResult } from './nitride.js';
import { run } from './run.js';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function must(cmd: string, ...args: string[]): Promise<string> {
  const r = await run(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** Poll `check` every 200 ms; errors marked `fatal` end the wait at once. */
export async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  const attempt = async () => {
    try {
      return await check();
    } catch (err) {
      if ((err as { fatal?: boolean }).fatal) throw err;
      return false;
    }
  };
  while (!(await attempt())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

export interface NsHost {
  name: string;
  ns: string;
  underlayIp: string;
  dir: string;
  controlSocket: string;
  kmsSocket: string;
  nbdSocket: string;
  daemon: ChildProcess;
  output: string;
  cli(args: string[]): Promise<CliResult>;
  /** `nitride ARGS… --json` that must succeed. */
  json<T>(args: string[]): Promise<T>;
  /** Stop the daemon with SIGTERM, run `meanwhile`, start a new one on the same state (KMS untouched). */
  restartDaemon(meanwhile?: () => Promise<void> | void): Promise<void>;
}

export class NsLab {
  readonly namespaces: string[] = [];
  readonly links: string[] = [];
  readonly hosts: NsHost[] = [];
  private readonly procs: ChildProcess[] = [];

  constructor(
    readonly prefix: string,
    private readonly scratch: string,
  ) {}

  async addNamespace(name: string): Promise<string> {
    const ns = this.prefix + name;
    await must('ip', 'netns', 'add', ns);
    this.namespaces.push(ns);
    await must('ip', '-n', ns, 'link', 'set', 'lo', 'up');
    return ns;
  }

  /** Two host namespaces joined by a veth underlay 10.<octet>.0.1 <-> .2. */
  async underlay(a: string, b: string, octet: number): Promise<[string, string]> {
    const [la, lb] = [`${this.prefix}ua`, `${this.prefix}ub`];
    await must('ip', 'link', 'add', la, 'type', 'veth', 'peer', 'name', lb);
    this.links.push(la);
    const ips: [string, string] = [`10.${octet}.0.1`, `10.${octet}.0.2`];
    for (const [link, ns, ip] of [
      [la, a, ips[0]],
      [lb, b, ips[1]],
    ] as const) {
      await must('ip', 'link', 'set', link, 'netns', ns);
      await must('ip', '-n', ns, 'addr', 'add', `${ip}/24`, 'dev', link);
      await must('ip', '-n', ns, 'link', 'set', link, 'up');
    }
    return ips;
  }

  /** A KMS and a daemon (VPC underlay on `underlayIp`) inside namespace `ns`; resolves once the VPC is up. */
  async startHost(name: string, ns: string, underlayIp: string, daemonArgs: string[] = []): Promise<NsHost> {
    const dir = path.join(this.scratch, name);
    const lab = this;
    const host: NsHost = {
      name,
      ns,
      underlayIp,
      dir,
      controlSocket: path.join(dir, 'run', 'control.sock'),
      kmsSocket: path.join(dir, 'run-kms', 'kms.sock'),
      nbdSocket: path.join(dir, 'run', 'nbd.sock'),
      daemon: undefined as unknown as ChildProcess,
      output: '',
      cli: (args) => nitride(args, { NITRIDE_SOCKET: host.controlSocket, NITRIDE_KMS_SOCKET: host.kmsSocket }),
      async json<T>(args: string[]): Promise<T> {
        const r = await host.cli([...args, '--json']);
        if (r.code !== 0) throw new Error(`nitride ${args.join(' ')} on ${name}: ${r.stderr}`);
        return JSON.parse(r.stdout) as T;
      },
      async restartDaemon(meanwhile) {
        const old = host.daemon;
        const exited = new Promise((r) => old.once('exit', r));
        old.kill('SIGTERM');
        await exited;
        await meanwhile?.();
        await start();
      },
    };
    this.hosts.push(host);
    const kms = this.spawnIn(host, ['kms', 'serve', '--state-dir', path.join(dir, 'kms'), '--socket', host.kmsSocket]);
    await waitFor(`KMS of ${name}`, () => {
      if (kms.exitCode !== null) throw Object.assign(new Error(`KMS exited with ${kms.exitCode}: ${host.output}`), { fatal: true });
      return existsSync(host.kmsSocket);
    });
    async function start(): Promise<void> {
      host.daemon = lab.spawnIn(host, [
        'daemon',
        '--state-dir', path.join(dir, 'state'),
        '--control-socket', host.controlSocket,
        '--kms-socket', host.kmsSocket,
        '--vpc-listen', `${underlayIp}:4789`,
        ...daemonArgs,
      ]);
      await waitFor(`VPC of ${name}`, async () => (await host.json<{ vpc: { state: string } }>(['status'])).vpc.state === 'up').catch((err: Error) => {
        throw new Error(`${err.message}: ${host.output.slice(-3000)}`);
      });
    }
    await start();
    return host;
  }

  /** Every host peers with every other one (pinned public keys). */
  async peerAll(): Promise<void> {
    const keys = new Map<NsHost, string>();
    for (const h of this.hosts) keys.set(h, (await h.json<{ publicKey: string }>(['key', 'show'])).publicKey);
    for (const h of this.hosts) {
      for (const other of this.hosts) {
        if (other !== h) await h.json(['peer', 'add', '--name', other.name, '--endpoint', `${other.underlayIp}:4789`, '--public-key', keys.get(other)!]);
      }
    }
  }

  spawnIn(host: NsHost, args: string[]): ChildProcess {
    // nsenter --net, not `ip netns exec`: that also mounts a fresh /sys, without the cgroup
    // hierarchies the daemon puts guests' QEMUs in.
    const child = spawn('nsenter', [`--net=/run/netns/${host.ns}`, '--', process.execPath, CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d: Buffer) => (host.output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (host.output += d.toString()));
    this.procs.push(child);
    return child;
  }

  async teardown(): Promise<void> {
    const live = () => this.procs.filter((p) => p.exitCode === null && p.signalCode === null);
    for (const p of live()) p.kill('SIGTERM');
    await sleep(500);
    for (const p of live()) p.kill('SIGKILL');
    for (const ns of this.namespaces) await run('ip', ['netns', 'del', ns]);
    for (const link of this.links) await run('ip', ['link', 'del', link]);
  }
}
