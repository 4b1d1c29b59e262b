/**
 * A private etcd cluster per test file (Debian's etcd-server 3.4): 1 or 3 members in a new temp
 * directory, client and peer traffic over TLS with client-certificate auth. The CA and the
 * certificates are made by scripts/fleet-pki.sh (as the demo's) when the cluster starts: a
 * server certificate for the members and a client certificate per user (the certificate's CN is
 * the etcd user once auth is enabled). Members listen on free loopback ports, or inside a network
 * namespace the test made (on an address of that namespace, for daemons in other namespaces).
 * destroy() kills every member and removes the directory, even after a failed start.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { run, runOk } from './run.js';

export interface EtcdClientCert {
  ca: string;
  cert: string;
  key: string;
}

export interface EtcdMember {
  name: string;
  clientUrl: string;
  peerUrl: string;
  process: ChildProcess | undefined;
  /** Everything the member printed. */
  output: string;
}

export interface EtcdCluster {
  dir: string;
  members: EtcdMember[];
  /** Every member's client URL. */
  endpoints: string[];
  /** The CA and a client certificate for `user` (made on first use; CN = user). */
  clientCert(user: string): Promise<EtcdClientCert>;
  /** The daemon's fleet options for host `hostId` (its client certificate made on first use). */
  daemonArgs(hostId: string): Promise<string[]>;
  /** `etcdctl ARGS…` as `user` (default root) against every member; never rejects for a non-zero exit. */
  etcdctl(args: string[], user?: string): Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** scripts/fleet-etcd-rbac.sh ARGS… as root (enable | host ID…); rejects on failure. */
  rbac(args: string[]): Promise<string>;
  /** The index of the member that is the raft leader now (by `etcdctl endpoint status`). */
  leader(): Promise<number>;
  /** Kill one member (SIGKILL by default) and wait for it to exit. */
  stopMember(index: number, signal?: NodeJS.Signals): Promise<void>;
  /** Start a stopped member again on its data directory; resolves once every member is healthy. */
  startMember(index: number): Promise<void>;
  stopAll(): Promise<void>;
  startAll(): Promise<void>;
  destroy(): Promise<void>;
}

export interface EtcdOptions {
  members?: 1 | 3;
  /** Run the members in this network namespace, listening on `host` (required with it). */
  netns?: string;
  host?: string;
  parent?: string;
}

/** A loopback TCP port nobody listens on now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

const RBAC_SCRIPT = path.resolve(import.meta.dirname, '../../scripts/fleet-etcd-rbac.sh');

const PKI_SCRIPT = path.resolve(import.meta.dirname, '../../scripts/fleet-pki.sh');

/** scripts/fleet-pki.sh DIR ARGS… (the demo's and the README's certificates), valid two days. */
const pkiScript = (dir: string, args: string[]) => runOk('bash', [PKI_SCRIPT, dir, ...args], { env: { NITRIDE_PKI_DAYS: '2' } });

export async function startEtcd(options: EtcdOptions = {}): Promise<EtcdCluster> {
  const count = options.members ?? 1;
  if (options.netns && !options.host) throw new Error('startEtcd: netns needs host');
  const host = options.host ?? '127.0.0.1';
  const dir = mkdtempSync(path.join(options.parent ?? tmpdir(), 'nitride-etcd-'));
  const pki = (name: string) => path.join(dir, name);
  const certs = new Map<string, EtcdClientCert>();

  const members: EtcdMember[] = [];
  for (let i = 0; i < count; i++) {
    // A fresh namespace has no listeners: fixed ports there, free loopback ports here.
    const [cp, pp] = options.netns ? [2379 + 2 * i, 2380 + 2 * i] : [await freePort(), await freePort()];
    members.push({ name: `m${i}`, clientUrl: `https://${host}:${cp}`, peerUrl: `https://${host}:${pp}`, process: undefined, output: '' });
  }
  const initialCluster = members.map((m) => `${m.name}=${m.peerUrl}`).join(',');

  function launch(m: EtcdMember): void {
    const args = [
      '--name', m.name,
      '--data-dir', path.join(dir, m.name),
      '--listen-client-urls', m.clientUrl,
      '--advertise-client-urls', m.clientUrl,
      '--listen-peer-urls', m.peerUrl,
      '--initial-advertise-peer-urls', m.peerUrl,
      '--initial-cluster', initialCluster,
      '--initial-cluster-state', 'new',
      '--initial-cluster-token', path.basename(dir),
      '--cert-file', pki('etcd-member.crt'), '--key-file', pki('etcd-member.key'), '--trusted-ca-file', pki('ca.crt'), '--client-cert-auth',
      '--peer-cert-file', pki('etcd-member.crt'), '--peer-key-file', pki('etcd-member.key'), '--peer-trusted-ca-file', pki('ca.crt'), '--peer-client-cert-auth',
      '--logger', 'zap', '--log-level', 'warn',
    ];
    const child = options.netns ? spawn('ip', ['netns', 'exec', options.netns, 'etcd', ...args], { stdio: ['ignore', 'pipe', 'pipe'] }) : spawn('etcd', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d: Buffer) => (m.output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (m.output += d.toString()));
    m.process = child;
  }

  const inNs = (cmd: string, args: string[]): [string, string[]] => (options.netns ? ['ip', ['netns', 'exec', options.netns, cmd, ...args]] : [cmd, args]);

  const cluster: EtcdCluster = {
    dir,
    members,
    endpoints: members.map((m) => m.clientUrl),
    async clientCert(user) {
      let c = certs.get(user);
      if (!c) {
        await pkiScript(dir, ['client', user]);
        c = { ca: pki('ca.crt'), cert: pki(`${user}.crt`), key: pki(`${user}.key`) };
        certs.set(user, c);
      }
      return c;
    },
    async daemonArgs(hostId) {
      const c = await cluster.clientCert(hostId);
      return ['--fleet-endpoints', cluster.endpoints.join(','), '--fleet-ca', c.ca, '--fleet-cert', c.cert, '--fleet-key', c.key];
    },
    async etcdctl(args, user = 'root') {
      const c = await cluster.clientCert(user);
      const [cmd, argv] = inNs('etcdctl', [`--endpoints=${cluster.endpoints.join(',')}`, `--cacert=${c.ca}`, `--cert=${c.cert}`, `--key=${c.key}`, '--command-timeout=10s', ...args]);
      return run(cmd, argv, { env: { ETCDCTL_API: '3' }, timeoutMs: 30_000 });
    },
    async rbac(args) {
      const c = await cluster.clientCert('root');
      const [cmd, argv] = inNs('bash', [RBAC_SCRIPT, ...args]);
      return runOk(cmd, argv, { env: { ETCDCTL_ENDPOINTS: cluster.endpoints.join(','), ETCDCTL_CACERT: c.ca, ETCDCTL_CERT: c.cert, ETCDCTL_KEY: c.key } });
    },
    async leader() {
      // Member ids are 64-bit: quoted before parsing, so that none loses precision.
      const r = await cluster.etcdctl(['endpoint', 'status', '-w', 'json']);
      const rows = JSON.parse(r.stdout.replace(/:\s*(\d{10,})/g, ':"$1"') || '[]') as Array<{ Endpoint: string; Status: { header: { member_id: string }; leader: string } }>;
      const row = rows.find((x) => x.Status.header.member_id === x.Status.leader);
      const index = members.findIndex((m) => m.clientUrl === row?.Endpoint);
      if (index < 0) throw new Error(`no etcd leader among ${r.stdout.trim() || r.stderr.trim()}`);
      return index;
    },
    async stopMember(index, signal = 'SIGKILL') {
      const p = members[index]!.process;
      if (!p || p.exitCode !== null || p.signalCode !== null) return;
      const exited = new Promise((r) => p.once('exit', r));
      p.kill(signal);
      await exited;
    },
    async startMember(index) {
      launch(members[index]!);
      await waitHealthy();
    },
    async stopAll() {
      await Promise.all(members.map((_, i) => cluster.stopMember(i)));
    },
    async startAll() {
      for (const m of members) launch(m);
      await waitHealthy();
    },
    async destroy() {
      await cluster.stopAll();
      rmSync(dir, { recursive: true, force: true });
    },
  };

  async function waitHealthy(): Promise<void> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const dead = members.find((m) => m.process && m.process.exitCode !== null);
      if (dead) throw new Error(`etcd member ${dead.name} exited with ${dead.process!.exitCode}: ${dead.output.slice(-2000)}`);
      const r = await cluster.etcdctl(['endpoint', 'health', '--cluster=false']);
      if (r.code === 0) return;
      if (Date.now() > deadline) throw new Error(`etcd did not become healthy: ${r.stderr.trim()} ${members.map((m) => m.output.slice(-1000)).join('\n')}`);
      await new Promise((res) => setTimeout(res, 300));
    }
  }

  try {
    await pkiScript(dir, ['ca']);
    await pkiScript(dir, ['server', 'etcd-member', host]);
    await cluster.startAll();
  } catch (err) {
    await cluster.destroy();
    throw err;
  }
  return cluster;
}
