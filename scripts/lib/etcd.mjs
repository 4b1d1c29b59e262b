// A private etcd cluster (Debian's etcd-server 3.4) for tests and benchmarks: 1 or 3 members in a
// new temp directory, client and peer traffic over TLS with client-certificate auth. The CA and
// the certificates are made by scripts/fleet-pki.sh (as the demo's and the README's) when the
// cluster starts: a server certificate for the members and a client certificate per user (the
// certificate's CN is the etcd user once auth is enabled). Members listen on free loopback ports, or inside a network
// namespace the caller made (on an address of that namespace, for daemons in other namespaces).
// destroy() kills every member and removes the directory, even after a failed start.
// Types: etcd.d.mts; the tests import it through test/helpers/etcd.ts.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort, run } from './bench-common.mjs';

const RBAC_SCRIPT = path.resolve(import.meta.dirname, '../fleet-etcd-rbac.sh');

const PKI_SCRIPT = path.resolve(import.meta.dirname, '../fleet-pki.sh');

/** scripts/fleet-pki.sh DIR ARGS… (the demo's and the README's certificates), valid two days. */
const pkiScript = (dir, args) => run('bash', [PKI_SCRIPT, dir, ...args], { env: { NITRIDE_PKI_DAYS: '2' } });

export async function startEtcd(options = {}) {
  const count = options.members ?? 1;
  if (options.netns && !options.host) throw new Error('startEtcd: netns needs host');
  const host = options.host ?? '127.0.0.1';
  const dir = mkdtempSync(path.join(options.parent ?? tmpdir(), 'nitride-etcd-'));
  const pki = (name) => path.join(dir, name);
  const certs = new Map();

  const members = [];
  for (let i = 0; i < count; i++) {
    // A fresh namespace has no listeners: fixed ports there, free loopback ports here.
    const [cp, pp] = options.netns ? [2379 + 2 * i, 2380 + 2 * i] : [await freePort(), await freePort()];
    members.push({ name: `m${i}`, clientUrl: `https://${host}:${cp}`, peerUrl: `https://${host}:${pp}`, process: undefined, output: '' });
  }
  const initialCluster = members.map((m) => `${m.name}=${m.peerUrl}`).join(',');

  function launch(m) {
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
    child.stdout.on('data', (d) => (m.output += d.toString()));
    child.stderr.on('data', (d) => (m.output += d.toString()));
    child.on('error', () => {});
    m.process = child;
  }

  const inNs = (cmd, args) => (options.netns ? ['ip', ['netns', 'exec', options.netns, cmd, ...args]] : [cmd, args]);

  const cluster = {
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
      const [cmd, argv] = inNs('timeout', ['30', 'etcdctl', `--endpoints=${cluster.endpoints.join(',')}`, `--cacert=${c.ca}`, `--cert=${c.cert}`, `--key=${c.key}`, '--command-timeout=10s', ...args]);
      return run(cmd, argv, { env: { ETCDCTL_API: '3' }, allowFail: true });
    },
    async rbac(args) {
      const c = await cluster.clientCert('root');
      const [cmd, argv] = inNs('bash', [RBAC_SCRIPT, ...args]);
      return (await run(cmd, argv, { env: { ETCDCTL_ENDPOINTS: cluster.endpoints.join(','), ETCDCTL_CACERT: c.ca, ETCDCTL_CERT: c.cert, ETCDCTL_KEY: c.key } })).stdout;
    },
    async leader() {
      // Member ids are 64-bit: quoted before parsing, so that none loses precision.
      const r = await cluster.etcdctl(['endpoint', 'status', '-w', 'json']);
      const rows = JSON.parse(r.stdout.replace(/:\s*(\d{10,})/g, ':"$1"') || '[]');
      const row = rows.find((x) => x.Status.header.member_id === x.Status.leader);
      const index = members.findIndex((m) => m.clientUrl === row?.Endpoint);
      if (index < 0) throw new Error(`no etcd leader among ${r.stdout.trim() || r.stderr.trim()}`);
      return index;
    },
    async stopMember(index, signal = 'SIGKILL') {
      const p = members[index].process;
      if (!p || p.exitCode !== null || p.signalCode !== null) return;
      const exited = new Promise((r) => p.once('exit', r));
      p.kill(signal);
      await exited;
    },
    async startMember(index) {
      launch(members[index]);
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

  async function waitHealthy() {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const dead = members.find((m) => m.process && m.process.exitCode !== null);
      if (dead) throw new Error(`etcd member ${dead.name} exited with ${dead.process.exitCode}: ${dead.output.slice(-2000)}`);
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
