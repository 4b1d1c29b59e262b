#!/usr/bin/env node
// End-to-end network benchmark: two "hosts" (network namespaces joined by a veth underlay,
// 1500-byte MTU, or --underlay-mtu's) with one guest each (a network namespace on a veth), guest-to-guest traffic
// across the underlay through each of these paths, all set up side by side in the same run:
//   nitride        a KMS and a daemon per host, one VPC/subnet, a veth ENI per host; the guests'
//                  frames go through the native VpcEngine, AES-256-GCM in UDP between daemons (L2)
//   nitride-sg     the same with a security group of 1,000 ingress rules on both ENIs (the
//                  issue's abusive set): the cost of classification and connection tracking
//   nitride-nopoll the same with the engine worker's busy-poll before sleeping off
//                  (--vpc-poll-us 0; only when named): its A/B in the same run
//   nitride-spin   the same with the worker polling up to 1 s before sleeping (--vpc-poll-us
//                  1000000: a core kept busy; only when named): the latency of a worker that
//                  never sleeps
//   nitride-openssl the same with the data plane's AES-256-GCM from node's OpenSSL instead of the
//                  addon's VAES code (NITRIDE_GCM_IMPL=openssl; only when named): its A/B
//   nitride-plaintext the same with the peers in plaintext mode (frames cross unencrypted, as for an
//                  underlay that is already encrypted; only when named): what the path costs
//                  without its cipher
//   nitride-fleet  the same in fleet mode: three etcd members on host A's underlay address, hosts
//                  and ENIs found through them (only when named: scripts/bench-fleet.sh does)
//   plain          the ceiling: the hosts' kernels route the guests' packets over the underlay
//                  with no encapsulation and no encryption (L3, ip_forward + proxy ARP)
//   plain-ct       the same with the kernel's stateful firewall on both hosts: nftables
//                  `ct state` rules in the forward chain (established/related accepted, new flows
//                  to the benchmark's ports accepted, the rest dropped): the anchor for
//                  security groups' connection tracking
//   openvpn        OpenVPN 2.6 in TAP mode (L2, bridged with the guest's veth), TLS with
//                  generated EC certificates, data channel AES-256-GCM, no DCO (TAP has none)
//   tinc           tinc 1.0 in switch mode (L2, bridged), aes-256-cbc + HMAC-SHA256
//   wireguard-go   the userspace WireGuard (L3: a TUN per host, routed, proxy ARP), ChaCha20-Poly1305
// Every path has its own four namespaces (host A, host B, guest A, guest B), so nothing is
// shared but the CPUs. Guests use 172.31.1.10/24 and .20/24 with MTU 1420 on every path (what
// nitride's DHCP hands out; the size that fits the other tunnels' overhead in 1500 bytes too).
// With --underlay-mtu (jumbo frames on the underlay, as AWS's VPCs have: MTU 9001 inside a VPC),
// the guests' MTU is the underlay's less 80 bytes (at most 9001) on every path: nitride's VPC is
// created with it and its daemons told the underlay's (--vpc-underlay-mtu); tinc 1.0 carries at
// most 1518-byte frames and is left out.
//
// Tests (iperf3 3.x, guest A client, guest B server; --omit 1 s of warm-up):
//   tcp1   one TCP stream, Gbit/s received
//   tcp4   four TCP streams (-P 4), Gbit/s received
//   udp    64-byte UDP payloads, unlimited send rate (-b 0): packets received per second
//   ping   busybox ping at 5/s, median RTT (ms) of the replies: every hop starts from idle
//   ping-warm  the same at 500/s: the path stays warm, as under traffic
//   cps    new TCP connections per second: two Python clients in guest A connect to guest B,
//          wait for the server's close and close, back to back (every connection a new flow
//          through the firewall / security group and its tracking)
// Each repetition runs every test on every path back to back, the path order rotated per
// repetition and test so drift hits all paths alike. Reported: medians over repetitions, and
// ratios (median of per-repetition ratios: each pair measured seconds apart) against plain and
// between nitride and each peer; the data-plane processes' CPU (from /proc) per TCP run.
//
// Output: tables on stdout, bench-results/net-<timestamp>.json (every run, medians, ratios,
// goals) and .svg (throughput relative to the plain path).
// Run it through scripts/bench-net.sh (installs iperf3/busybox/openvpn/tinc/wireguard-go, builds,
// runs as root). Usage: node scripts/bench/net.mjs [--quick] [--time S] [--reps N] [--paths a,b]
//   [--tests a,b] [--underlay-mtu BYTES] [--tag PREFIX] [--keep] [--out FILE.json]
import { mkdirSync, readFileSync, writeFileSync, chmodSync, existsSync } from 'node:fs';
import path from 'node:path';
import {
  ROOT,
  Scratch,
  benchArgs,
  cpuSeconds,
  hostFacts,
  human,
  installSignalCleanup,
  startNitrideHost,
  median,
  optionsChecked,
  resultsBase,
  pickById,
  positiveOption,
  run,
  sleep,
  stamp,
  svgBarChart,
  textTable,
  threadCpu,
  usageExit,
  versionOf,
  waitFor,
} from '../lib/bench-common.mjs';
import { startEtcd } from '../lib/etcd.mjs';
import { COST_CELL, LIMIT_CELLS, LIMIT_PATHS, runLimits } from './net-limits.mjs';

const ALL_PATHS = [
  { id: 'nitride', label: 'nitride (AES-256-GCM, L2)', color: '#1f4e9c' },
  { id: 'nitride-sg', label: 'nitride, 1,000 SG rules per ENI', color: '#6f8fd0', sgRules: 1000 },
  // Only when named: the A/B of the worker's busy-poll (native/src/vpc_poll.h).
  { id: 'nitride-nopoll', label: 'nitride, worker never polls', color: '#9c7a1f', setup: 'nitride', short: 'q', daemonArgs: ['--vpc-poll-us', '0'], optIn: true },
  // Only when named: the worker polls through gaps up to 1 s, a core kept busy (a dedicated core).
  { id: 'nitride-spin', label: 'nitride, worker polls up to 1 s', color: '#3d9c8c', setup: 'nitride', short: 'z', daemonArgs: ['--vpc-poll-us', '1000000'], optIn: true },
  // Only when named: the A/B of the data plane's AES-256-GCM (native/src/gcm.h).
  { id: 'nitride-openssl', label: 'nitride, GCM from OpenSSL', color: '#5c3d9c', setup: 'nitride', short: 'e', env: { NITRIDE_GCM_IMPL: 'openssl' }, optIn: true },
  // Only when named: the path without its AEAD (peers in plaintext mode), the cipher's share.
  { id: 'nitride-plaintext', label: 'nitride, peers in plaintext mode', color: '#7fa6e0', setup: 'nitride', short: 'x', plaintext: true, optIn: true },
  // Only when named (scripts/bench-fleet.sh does): three etcd members more to start.
  { id: 'nitride-fleet', label: 'nitride in fleet mode (etcd)', color: '#0a2a5c', optIn: true },
  { id: 'plain', label: 'plain routed (no encryption)', color: '#8c8c8c', baseline: true },
  { id: 'plain-ct', label: 'plain routed + nftables ct state', color: '#b8b8b8' },
  { id: 'openvpn', label: 'OpenVPN 2.6 TAP AES-256-GCM', color: '#e8892b' },
  { id: 'tinc', label: 'tinc 1.0 switch', color: '#2a8a2a' },
  { id: 'wireguard-go', label: 'wireguard-go (L3)', color: '#c43c3c' },
];
const ALL_TESTS = [
  { id: 'tcp1', label: 'TCP 1 stream', unit: 'Gbit/s', higherBetter: true },
  { id: 'tcp4', label: 'TCP 4 streams', unit: 'Gbit/s', higherBetter: true },
  { id: 'udp', label: 'UDP 64-byte pps', unit: 'pkt/s', higherBetter: true },
  { id: 'ping', label: 'ping RTT', unit: 'ms', higherBetter: false, count: 20, interval: '0.2' },
  { id: 'ping-warm', label: 'ping RTT at 500/s', unit: 'ms', higherBetter: false, count: 1000, interval: '0.002' },
  { id: 'cps', label: 'TCP connections/s', unit: 'conn/s', higherBetter: true },
];
const CPS_PORT = 5301;
const CPS_CLIENTS = 2;
/** `serve ADDR PORT`: accept and close at once; `connect ADDR PORT SECONDS`: connections completed, and failures. */
const CPS_PY = `
import socket, sys, time
cmd, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if cmd == 'serve':
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((addr, port)); s.listen(4096)
    while True:
        c, _ = s.accept(); c.close()
n = fail = 0
end = time.monotonic() + float(sys.argv[4])
while time.monotonic() < end:
    try:
        c = socket.create_connection((addr, port), timeout=2); c.recv(1); c.close(); n += 1
    except OSError:
        fail += 1
print(n, fail)
`;

const USAGE = `usage: bench-net [--quick] [--time S] [--reps N] [--paths LIST] [--tests LIST] [--underlay-mtu BYTES] [--limits [--cells LIST]] [--keep] [--out FILE.json]
  --quick       smoke run (~2 min): 1 repetition, 3 s per iperf3 run
  --time S      measured seconds per iperf3 run, after 1 s omitted (default 5)
  --reps N      repetitions of every test on every path (default 3); medians are reported
  --paths LIST  comma list of: ${ALL_PATHS.map((p) => p.id).join(',')} (default: all but nitride-fleet)
  --tests LIST  comma list of: ${ALL_TESTS.map((t) => t.id).join(',')}
  --limits      accuracy of ENI allowances against tc (scripts/bench/net-limits.mjs); --paths then
                from: ${LIMIT_PATHS.map((p) => p.id).join(',')}
  --cells LIST  with --limits, comma list of: ${[...LIMIT_CELLS, COST_CELL].map((c) => c.id).join(',')}
                (cost: the limiter's own cost, an allowance far above the rate against none,
                beside tbf against no qdisc; needs the nitride and plain-tbf paths)
  --underlay-mtu BYTES  the underlay's MTU (default 1500); guests get it less 80, at most 9001
                (jumbo frames: 9100 gives the guests AWS's 9001); tinc is left out above 1500
  --tag PREFIX  namespace name prefix (default: random; the shell wrapper passes one to clean up)
  --out FILE    JSON result path (default bench-results/net-<timestamp>.json; .svg beside it)
  --keep        keep the scratch directory (logs, configs, iperf3 JSON)`;

const opt = benchArgs('bench-net', USAGE, {
  quick: { type: 'boolean', default: false },
  time: { type: 'string' },
  reps: { type: 'string' },
  paths: { type: 'string' },
  tests: { type: 'string' },
  limits: { type: 'boolean', default: false },
  cells: { type: 'string' },
  'underlay-mtu': { type: 'string' },
  tag: { type: 'string' },
  dir: { type: 'string', default: '/tmp' },
});
const usageError = (msg) => usageExit('bench-net', msg);
const num = (v, dflt, what) => positiveOption('bench-net', v, dflt, what);
const TIME = Math.round(num(opt.time, opt.quick ? 3 : 5, 'time'));
const REPS = Math.round(num(opt.reps, opt.quick ? 1 : 3, 'reps'));
const pick = (all, list, what) => pickById('bench-net', all, list, what);
const UNDERLAY_MTU = opt['underlay-mtu'] === undefined ? 1500 : Number(opt['underlay-mtu']);
if (!Number.isInteger(UNDERLAY_MTU) || UNDERLAY_MTU < 1500 || UNDERLAY_MTU > 65535) usageError('--underlay-mtu must be whole bytes from 1500 to 65535');
/** Every path's guest MTU: what fits the underlay with 80 bytes of encapsulation (WireGuard's, the most here). */
const GUEST_MTU = Math.min(9001, UNDERLAY_MTU - 80);
/** The host-side links a guest's frames cross (veths, bridges, TAPs): Ethernet's 1500, or the guests' MTU. */
const LINK_MTU = Math.max(1500, GUEST_MTU);
/** tinc 1.0 forwards frames of at most 1518 bytes (its compiled-in MTU). */
const TINC_MAX_MTU = 1500;
if (GUEST_MTU > TINC_MAX_MTU && opt.paths?.split(',').includes('tinc')) usageError(`tinc 1.0 carries at most ${TINC_MAX_MTU}-byte packets: leave it out with --underlay-mtu above 1580`);
const defaultPaths = ALL_PATHS.filter((p) => !p.optIn && !(p.id === 'tinc' && GUEST_MTU > TINC_MAX_MTU));
const PATHS = pick(opt.limits ? LIMIT_PATHS : opt.paths ? ALL_PATHS : defaultPaths, opt.paths, 'path').map((p) => ({ ...p }));
const TESTS = opt.limits ? [] : pick(ALL_TESTS, opt.tests, 'test');
if (opt.cells !== undefined && !opt.limits) usageError('--cells must be used with --limits');
const CELLS = opt.limits ? pick([...LIMIT_CELLS, COST_CELL], opt.cells, 'cell') : [];
const BASELINE = opt.limits ? undefined : PATHS.find((p) => p.baseline);
const NITRIDE = opt.limits ? undefined : PATHS.find((p) => p.id === 'nitride');
const TAG = opt.tag ?? `nb${Math.random().toString(16).slice(2, 6)}`;
if (!/^[a-z0-9]{2,6}$/.test(TAG)) usageError('--tag must be 2-6 lowercase letters or digits');
optionsChecked();
if (!existsSync(opt.cli)) usageError(`${opt.cli} is missing: build first (npm ci / npm run build)`);

const GUEST_A = '172.31.1.10';
const GUEST_B = '172.31.1.20';
const UNDERLAY_A = '10.200.0.1';
const UNDERLAY_B = '10.200.0.2';
const UDP_PAYLOAD = 64;

// ----------------------------------------------------------------------------------- setup

const scratch = opt.scratch ? new Scratch(path.resolve(opt.scratch), { keep: opt.keep }) : Scratch.create(path.resolve(opt.dir), 'nitride-bench-net.', { keep: opt.keep });
const namespaces = [];
installSignalCleanup(scratch, () => {
  for (const ns of namespaces) run('ip', ['netns', 'del', ns], { allowFail: true }).catch(() => {});
});
const started = Date.now();
const say = (msg) => console.log(`[${`${((Date.now() - started) / 1000).toFixed(0)}s`.padStart(5)}] ${msg}`);

const ip = (...args) => run('ip', args);
const inNs = (ns, cmd, args, opts) => run('ip', ['netns', 'exec', ns, cmd, ...args], opts);
const sysctl = (ns, kv) => inNs(ns, 'sysctl', ['-qw', kv]);

async function addNs(name) {
  await ip('netns', 'add', name);
  namespaces.push(name);
  await ip('-n', name, 'link', 'set', 'lo', 'up');
  // No IPv6 chatter (router solicitations, MLD) in the measurements.
  await sysctl(name, 'net.ipv6.conf.all.disable_ipv6=1');
  await sysctl(name, 'net.ipv6.conf.default.disable_ipv6=1');
  return name;
}

/** Two host namespaces joined by a veth underlay, and two empty guest namespaces. */
async function topology(p) {
  const short = p.short ?? { nitride: 'n', 'nitride-sg': 's', 'nitride-fleet': 'f', plain: 'p', 'plain-ct': 'c', openvpn: 'o', tinc: 't', 'wireguard-go': 'w' }[p.id];
  const t = { ha: `${TAG}${short}ha`, hb: `${TAG}${short}hb`, ga: `${TAG}${short}ga`, gb: `${TAG}${short}gb` };
  for (const ns of Object.values(t)) await addNs(ns);
  await ip('-n', t.ha, 'link', 'add', 'ul', 'type', 'veth', 'peer', 'name', 'ul', 'netns', t.hb);
  for (const ns of [t.ha, t.hb]) await ip('-n', ns, 'link', 'set', 'ul', 'mtu', String(UNDERLAY_MTU));
  await ip('-n', t.ha, 'addr', 'add', `${UNDERLAY_A}/24`, 'dev', 'ul');
  await ip('-n', t.hb, 'addr', 'add', `${UNDERLAY_B}/24`, 'dev', 'ul');
  await ip('-n', t.ha, 'link', 'set', 'ul', 'up');
  await ip('-n', t.hb, 'link', 'set', 'ul', 'up');
  return t;
}

/** Address a guest's interface (static: the same addressing on every path). */
async function addressGuest(ns, ifname, addr) {
  await ip('-n', ns, 'addr', 'add', `${addr}/24`, 'dev', ifname);
  await ip('-n', ns, 'link', 'set', ifname, 'mtu', String(GUEST_MTU), 'up');
}

/** A veth from host namespace `hostNs` ("gh") to guest namespace `guestNs` ("eth0"), addressed. */
async function vethGuest(hostNs, guestNs, addr) {
  await ip('-n', hostNs, 'link', 'add', 'gh', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', guestNs);
  await ip('-n', hostNs, 'link', 'set', 'gh', 'mtu', String(LINK_MTU), 'up');
  await addressGuest(guestNs, 'eth0', addr);
}

/** L3 paths: the host routes its guest (a /32 on gh) and answers ARP for the rest of the /24. */
async function routedGuest(hostNs, guestNs, addr) {
  await vethGuest(hostNs, guestNs, addr);
  await sysctl(hostNs, 'net.ipv4.ip_forward=1');
  await sysctl(hostNs, 'net.ipv4.conf.gh.proxy_arp=1');
  await ip('-n', hostNs, 'route', 'add', `${addr}/32`, 'dev', 'gh');
}

/** L2 paths: a bridge in the host joining the guest's veth and the tunnel's TAP. */
async function bridgedGuest(hostNs, guestNs, addr) {
  await vethGuest(hostNs, guestNs, addr);
  await ip('-n', hostNs, 'link', 'add', 'br0', 'type', 'bridge');
  await ip('-n', hostNs, 'link', 'set', 'gh', 'master', 'br0');
  await ip('-n', hostNs, 'link', 'set', 'br0', 'up');
}

function startIn(name, ns, cmd, args, env) {
  return scratch.start(name, 'ip', ['netns', 'exec', ns, cmd, ...args], { env });
}

async function pingable(ns, addr) {
  const r = await inNs(ns, 'busybox', ['ping', '-c', '1', '-W', '1', addr], { allowFail: true });
  return r.code === 0;
}

/**
 * Security groups for the nitride-sg path: one group per host with `n` ingress rules on both
 * ENIs, an abusive set (AWS's maximum): n - 1 tcp rules for other ports from distinct /24s
 * and /32s that never match, then the rule that lets the benchmark in (all from the group's own
 * members). The first packet of each flow goes through the classifier; the rest hit conntrack.
 */
async function securityGroups(api, n, vpcId, eniIds) {
  const sg = 'sg-0be4c000000000bee'; // not sg-<the VPC's hex>: that is its default group
  for (const h of ['a', 'b']) {
    await api(h, 'POST', '/v1/security-groups', { vpcId, name: 'bench', id: sg });
    for (let i = 0; i < n - 1; i++) {
      const cidr = i % 2 ? `10.${(i >> 8) & 255}.${i & 255}.0/24` : `192.168.${(i >> 8) & 255}.${i & 255}/32`;
      await api(h, 'POST', `/v1/security-groups/${sg}/authorize-ingress`, { protocol: 'tcp', fromPort: 10000 + i, toPort: 10000 + i, cidr });
    }
    await api(h, 'POST', `/v1/security-groups/${sg}/authorize-ingress`, { protocol: 'all', sourceGroup: sg });
    for (const id of eniIds) await api(h, 'PATCH', `/v1/enis/${id}`, { securityGroups: [sg] });
  }
}

const VPC_ID = 'vpc-0be4c0000000000a1';
const SUBNET_ID = 'subnet-0be4c0000000000a1';

/** A KMS and a daemon per host (`args(h)`: more daemon options); the path's pids and VPC stats. */
async function nitrideHosts(p, t, args = async () => []) {
  const hosts = {};
  for (const [h, ns, underlay] of [
    ['a', t.ha, UNDERLAY_A],
    ['b', t.hb, UNDERLAY_B],
  ]) {
    const daemonArgs = [...(p.daemonArgs ?? []), '--vpc-underlay-mtu', String(UNDERLAY_MTU), ...(await args(h))];
    hosts[h] = await startNitrideHost(scratch, { name: `${p.id}-${h}`, ns, cli: opt.cli, underlay, args: daemonArgs, env: p.env });
    hosts[h].key = (await hosts[h].api('GET', '/v1/vpc/key')).publicKey;
  }
  const api = (h, method, url, body) => hosts[h].api(method, url, body);
  p.pids = () => [hosts.a.daemon.child.pid, hosts.b.daemon.child.pid];
  p.stats = async () => ({ a: await api('a', 'GET', '/v1/vpc/stats'), b: await api('b', 'GET', '/v1/vpc/stats') });
  return { hosts, api };
}

/** The guests' ENIs: fixed ids, MACs and addresses (the same on every nitride path). */
const guestEnis = (t) => [
  { h: 'a', other: 'b', id: 'eni-0be4c00000000000a', mac: '02:00:5e:be:00:0a', ip: GUEST_A, guestNs: t.ga },
  { h: 'b', other: 'a', id: 'eni-0be4c00000000000b', mac: '02:00:5e:be:00:0b', ip: GUEST_B, guestNs: t.gb },
];

/** Move a local ENI's veth end into its guest namespace and address it. */
async function attachGuest(t, e, local) {
  await ip('-n', e.h === 'a' ? t.ha : t.hb, 'link', 'set', local.guestInterface, 'netns', e.guestNs);
  await addressGuest(e.guestNs, local.guestInterface, e.ip);
}

const setUps = {
  async 'nitride-sg'(p, t) {
    await setUps.nitride(p, t);
  },
  async nitride(p, t) {
    const { hosts, api } = await nitrideHosts(p, t);
    const plaintext = p.plaintext === true;
    await api('a', 'POST', '/v1/peers', { name: 'hb', endpoint: `${UNDERLAY_B}:4789`, publicKey: hosts.b.key, plaintext });
    await api('b', 'POST', '/v1/peers', { name: 'ha', endpoint: `${UNDERLAY_A}:4789`, publicKey: hosts.a.key, plaintext });
    for (const h of ['a', 'b']) {
      await api(h, 'POST', '/v1/vpcs', { cidr: '172.31.0.0/16', id: VPC_ID, mtu: GUEST_MTU });
      await api(h, 'POST', '/v1/subnets', { vpcId: VPC_ID, cidr: '172.31.1.0/24', id: SUBNET_ID });
    }
    const enis = guestEnis(t);
    for (const e of enis) {
      await attachGuest(t, e, await api(e.h, 'POST', '/v1/enis', { subnetId: SUBNET_ID, id: e.id, mac: e.mac, privateIp: e.ip, kind: 'veth' }));
      await api(e.other, 'POST', '/v1/enis', { subnetId: SUBNET_ID, id: e.id, mac: e.mac, privateIp: e.ip, hostId: `h${e.h}` });
    }
    if (p.sgRules) await securityGroups(api, p.sgRules, VPC_ID, enis.map((e) => e.id));
    await waitFor('nitride session', async () => (await api('a', 'GET', '/v1/peers'))[0]?.session === 'established');
    p.api = api;
    p.eniA = enis[0].id;
  },

  /** Fleet mode: three etcd members on host A's underlay address; no peer add, no remote ENI records. */
  async 'nitride-fleet'(p, t) {
    const etcd = await startEtcd({ members: 3, netns: t.ha, host: UNDERLAY_A, parent: scratch.dir });
    scratch.onCleanup(() => etcd.destroy());
    const { api } = await nitrideHosts(p, t, async (h) => etcd.daemonArgs(`h${h}`));
    await api('a', 'POST', '/v1/vpcs', { cidr: '172.31.0.0/16', id: VPC_ID, mtu: GUEST_MTU });
    await api('b', 'POST', '/v1/subnets', { vpcId: VPC_ID, cidr: '172.31.1.0/24', id: SUBNET_ID });
    for (const e of guestEnis(t)) await attachGuest(t, e, await api(e.h, 'POST', '/v1/enis', { subnetId: SUBNET_ID, id: e.id, mac: e.mac, privateIp: e.ip, kind: 'veth' }));
    await waitFor('nitride-fleet session', async () => (await api('a', 'GET', '/v1/fleet/hosts')).some((x) => !x.self && x.session === 'established'), { timeoutMs: 30_000 });
  },

  async 'plain-ct'(p, t) {
    await setUps.plain(p, t);
    const rules = `table inet nitride_bench {
  chain forward {
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    ct state new ip protocol icmp accept
    ct state new tcp dport { 5201, ${CPS_PORT} } accept
    ct state new udp dport 5201 accept
  }
}
`;
    const file = scratch.path('plain-ct.nft');
    writeFileSync(file, rules);
    for (const ns of [t.ha, t.hb]) await inNs(ns, 'nft', ['-f', file]);
  },

  async plain(p, t) {
    await routedGuest(t.ha, t.ga, GUEST_A);
    await routedGuest(t.hb, t.gb, GUEST_B);
    await ip('-n', t.ha, 'route', 'add', `${GUEST_B}/32`, 'via', UNDERLAY_B);
    await ip('-n', t.hb, 'route', 'add', `${GUEST_A}/32`, 'via', UNDERLAY_A);
    p.pids = () => [];
  },

  async openvpn(p, t) {
    const dir = scratch.path('openvpn');
    mkdirSync(dir, { recursive: true });
    const f = (n) => path.join(dir, n);
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    await run('openssl', ['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.crt'), '-subj', '/CN=nitride-bench-ca', '-days', '2']);
    for (const h of ['a', 'b']) {
      await run('openssl', ['req', ...ec, '-keyout', f(`${h}.key`), '-out', f(`${h}.csr`), '-subj', `/CN=host-${h}`]);
      await run('openssl', ['x509', '-req', '-in', f(`${h}.csr`), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f(`${h}.crt`), '-days', '2']);
    }
    const procs = [];
    for (const [h, hostNs, guestNs, addr, local, remote, role] of [
      ['a', t.ha, t.ga, GUEST_A, UNDERLAY_A, UNDERLAY_B, '--tls-server'],
      ['b', t.hb, t.gb, GUEST_B, UNDERLAY_B, UNDERLAY_A, '--tls-client'],
    ]) {
      await bridgedGuest(hostNs, guestNs, addr);
      await ip('-n', hostNs, 'tuntap', 'add', 'dev', 'ovtap', 'mode', 'tap');
      await ip('-n', hostNs, 'link', 'set', 'ovtap', 'master', 'br0');
      await ip('-n', hostNs, 'link', 'set', 'ovtap', 'mtu', String(LINK_MTU), 'up');
      const e = startIn(`openvpn-${h}`, hostNs, 'openvpn', [
        '--dev', 'ovtap', '--dev-type', 'tap', '--disable-dco',
        '--proto', 'udp', '--local', local, '--lport', '1194', '--remote', remote, '--rport', '1194',
        role, ...(role === '--tls-server' ? ['--dh', 'none'] : []),
        '--ca', f('ca.crt'), '--cert', f(`${h}.crt`), '--key', f(`${h}.key`),
        '--data-ciphers', 'AES-256-GCM', '--cipher', 'AES-256-GCM',
        '--tun-mtu', String(LINK_MTU), '--mssfix', '0', '--ping', '5', '--verb', '3',
      ]);
      procs.push(e);
    }
    await waitFor('OpenVPN tunnel', () => procs.every((e) => /Initialization Sequence Completed/.test(readFileSync(e.logFile, 'utf8'))), {
      timeoutMs: 30_000,
      alive: () => procs.every((e) => e.child.exitCode === null),
    }).catch((err) => {
      throw new Error(`${err.message}\n${scratch.tail('openvpn-a')}\n${scratch.tail('openvpn-b')}`);
    });
    const cipher = /Data Channel: cipher '([^']+)'/.exec(readFileSync(procs[0].logFile, 'utf8'))?.[1] ?? 'unknown';
    if (cipher !== 'AES-256-GCM') throw new Error(`OpenVPN negotiated ${cipher}, not AES-256-GCM`);
    p.pids = () => procs.map((e) => e.child.pid);
  },

  async tinc(p, t) {
    const procs = [];
    const dirs = { a: scratch.path('tinc-a'), b: scratch.path('tinc-b') };
    for (const h of ['a', 'b']) {
      const d = dirs[h];
      mkdirSync(path.join(d, 'hosts'), { recursive: true });
      writeFileSync(
        path.join(d, 'tinc.conf'),
        [`Name = host${h}`, 'Mode = switch', 'DeviceType = tap', 'Interface = tinctap', 'AddressFamily = ipv4', `BindToAddress = ${h === 'a' ? UNDERLAY_A : UNDERLAY_B}`, ...(h === 'b' ? ['ConnectTo = hosta'] : []), ''].join('\n'),
      );
      writeFileSync(path.join(d, 'tinc-up'), '#!/bin/sh\nip link set "$INTERFACE" master br0\nip link set "$INTERFACE" up\n');
      chmodSync(path.join(d, 'tinc-up'), 0o755);
      writeFileSync(
        path.join(d, 'hosts', `host${h}`),
        [`Address = ${h === 'a' ? UNDERLAY_A : UNDERLAY_B}`, 'Port = 655', 'Cipher = aes-256-cbc', 'Digest = sha256', 'Compression = 0', ''].join('\n'),
      );
      await run('tincd', ['-c', d, '-K', '2048'], { input: '\n\n' });
    }
    // Each host knows the other's host file (address and RSA public key).
    writeFileSync(path.join(dirs.a, 'hosts', 'hostb'), readFileSync(path.join(dirs.b, 'hosts', 'hostb')));
    writeFileSync(path.join(dirs.b, 'hosts', 'hosta'), readFileSync(path.join(dirs.a, 'hosts', 'hosta')));
    for (const [h, hostNs, guestNs, addr] of [
      ['a', t.ha, t.ga, GUEST_A],
      ['b', t.hb, t.gb, GUEST_B],
    ]) {
      await bridgedGuest(hostNs, guestNs, addr);
      procs.push(startIn(`tinc-${h}`, hostNs, 'tincd', ['-c', dirs[h], '-D', '--pidfile', path.join(dirs[h], 'pid'), '-d1']));
    }
    p.pids = () => procs.map((e) => e.child.pid);
  },

  async 'wireguard-go'(p, t) {
    const procs = [];
    const keys = {};
    for (const h of ['a', 'b']) {
      const priv = (await run('wg', ['genkey'])).stdout.trim();
      const pub = (await run('wg', ['pubkey'], { input: `${priv}\n` })).stdout.trim();
      const file = scratch.path(`wg-${h}.key`);
      writeFileSync(file, `${priv}\n`, { mode: 0o600 });
      keys[h] = { file, pub };
    }
    for (const [h, other, hostNs, guestNs, addr, otherAddr, otherUnderlay] of [
      ['a', 'b', t.ha, t.ga, GUEST_A, GUEST_B, UNDERLAY_B],
      ['b', 'a', t.hb, t.gb, GUEST_B, GUEST_A, UNDERLAY_A],
    ]) {
      await routedGuest(hostNs, guestNs, addr);
      // The UAPI socket (/var/run/wireguard/NAME.sock) is not per namespace: unique names.
      const dev = `${TAG}wg${h}`;
      const e = startIn(`wireguard-go-${h}`, hostNs, 'wireguard-go', [dev], { WG_PROCESS_FOREGROUND: '1', WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1', LOG_LEVEL: 'error' });
      procs.push(e);
      await waitFor(`wireguard-go ${h}`, () => existsSync(`/var/run/wireguard/${dev}.sock`), { alive: () => e.child.exitCode === null });
      await inNs(hostNs, 'wg', ['set', dev, 'listen-port', '51820', 'private-key', keys[h].file, 'peer', keys[other].pub, 'endpoint', `${otherUnderlay}:51820`, 'allowed-ips', `${otherAddr}/32`]);
      await ip('-n', hostNs, 'link', 'set', dev, 'mtu', String(GUEST_MTU), 'up');
      await ip('-n', hostNs, 'route', 'add', `${otherAddr}/32`, 'dev', dev);
    }
    p.pids = () => procs.map((e) => e.child.pid);
  },
};

async function setUp() {
  for (const p of PATHS) {
    const t0 = Date.now();
    p.ns = await topology(p);
    await setUps[p.setup ?? p.id](p, p.ns);
    await waitFor(`${p.id}: guest A reaches guest B`, () => pingable(p.ns.ga, GUEST_B), { timeoutMs: 30_000, intervalMs: 300 }).catch((err) => {
      throw new Error(`${err.message}\n${[...scratch.children.keys()].filter((n) => n.startsWith(p.id)).map((n) => `${n}:\n${scratch.tail(n)}`).join('\n')}`);
    });
    p.server = startIperfServer(p);
    if (TESTS.some((x) => x.id === 'cps')) startIn(`cps-${p.id}`, p.ns.gb, 'python3', ['-c', CPS_PY, 'serve', GUEST_B, String(CPS_PORT)]);
    say(`${p.id}: up (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  }
}

function startIperfServer(p) {
  return startIn(`iperf3-${p.id}`, p.ns.gb, 'iperf3', ['-s', '-B', GUEST_B, '-p', '5201']);
}

// ------------------------------------------------------------------------------- measuring

let seq = 0;
async function iperf(p, test) {
  const args = ['-c', GUEST_B, '-p', '5201', '-t', String(TIME), '-O', '1', '-J', '--connect-timeout', '3000'];
  if (test.id === 'tcp4') args.push('-P', '4');
  if (test.id === 'udp') args.push('-u', '-b', '0', '-l', String(UDP_PAYLOAD));
  for (let attempt = 1; ; attempt++) {
    const cpu0 = p.pids().map(cpuSeconds);
    const threads0 = p.id === 'nitride' ? p.pids().map(threadCpu) : null;
    const t0 = process.hrtime.bigint();
    const r = await run('timeout', [String(TIME + 30), 'ip', 'netns', 'exec', p.ns.ga, 'iperf3', ...args], { allowFail: true });
    const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = p.pids().map(cpuSeconds).reduce((s, c, i) => s + c - cpu0[i], 0);
    let j;
    try {
      j = JSON.parse(r.stdout);
    } catch {
      j = { error: r.stderr.trim() || `exit ${r.code}` };
    }
    const file = scratch.path('iperf', `${String(++seq).padStart(4, '0')}-${p.id}-${test.id}.json`);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, r.stdout || r.stderr);
    if (j.error || r.code !== 0) {
      if (attempt >= 2) throw new Error(`${p.id} ${test.id}: iperf3 failed twice: ${j.error}`);
      say(`${p.id} ${test.id}: iperf3 failed (${j.error}); restarting its server and retrying`);
      await scratch.stop(`iperf3-${p.id}`, 'SIGKILL');
      p.server = startIperfServer(p);
      await sleep(500);
      continue;
    }
    const out = { cores: +(cpu / wallS).toFixed(2) };
    if (threads0) out.threads = nitrideThreads(p, threads0, wallS);
    if (test.id === 'udp') {
      // Bytes the server received over the measured seconds: iperf3's lost_packets also counts
      // the omitted warm-up second's sequence numbers (received - lost can go negative).
      const sent = j.end.sum;
      const recv = j.end.sum_received;
      const pps = recv.bytes / UDP_PAYLOAD / recv.seconds;
      return { ...out, value: pps, sentPps: Math.round(sent.bytes / UDP_PAYLOAD / sent.seconds) };
    }
    const recv = j.end.sum_received;
    const retransmits = j.end.sum_sent?.retransmits ?? null;
    return { ...out, value: recv.bits_per_second / 1e9, retransmits };
  }
}

/** Per-thread CPU of both daemons during a run, by thread name (cores). */
function nitrideThreads(p, threads0, wallS) {
  const byName = {};
  p.pids().forEach((pid, i) => {
    for (const t1 of threadCpu(pid)) {
      const t0 = threads0[i].find((t) => t.tid === t1.tid);
      const d = t1.cpu - (t0?.cpu ?? 0);
      if (d <= 0) continue;
      const name = `${i === 0 ? 'A' : 'B'}:${t1.tid === pid ? 'main' : t1.name}`;
      byName[name] = +((byName[name] ?? 0) + d / wallS).toFixed(2);
    }
  });
  return byName;
}

/** New TCP connections per second from guest A to guest B over TIME seconds ({@link CPS_PY}). */
async function cps(p) {
  const cpu0 = p.pids().map(cpuSeconds);
  const t0 = process.hrtime.bigint();
  const outs = await Promise.all(
    Array.from({ length: CPS_CLIENTS }, () => inNs(p.ns.ga, 'python3', ['-c', CPS_PY, 'connect', GUEST_B, String(CPS_PORT), String(TIME)], { allowFail: true })),
  );
  const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = p.pids().map(cpuSeconds).reduce((s, c, i) => s + c - cpu0[i], 0);
  const counts = outs.map((r) => r.stdout.trim().split(' ').map(Number));
  if (counts.some((c) => c.length !== 2 || !Number.isFinite(c[0]))) throw new Error(`${p.id} cps: ${outs.map((r) => r.stderr.trim()).join('; ')}`);
  const done = counts.reduce((s, c) => s + c[0], 0);
  const failed = counts.reduce((s, c) => s + c[1], 0);
  return { value: done / TIME, failed, cores: +(cpu / wallS).toFixed(2) };
}

/** Both daemons' engine workers' busy-polls so far (caught the next packet, ran out) and their AES-256-GCM. */
async function workerPolls(p) {
  const { a, b } = await p.stats();
  const cipher = a.worker.cipher === b.worker.cipher ? a.worker.cipher : `${a.worker.cipher}/${b.worker.cipher}`;
  return { won: a.worker.pollsWon + b.worker.pollsWon, lost: a.worker.pollsLost + b.worker.pollsLost, cipher };
}

async function ping(p, test) {
  const r = await run('timeout', ['30', 'ip', 'netns', 'exec', p.ns.ga, 'busybox', 'ping', '-c', String(test.count), '-i', test.interval, '-W', '2', GUEST_B], { allowFail: true });
  const times = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
  if (times.length < test.count / 2) throw new Error(`${p.id} ${test.id}: ${times.length}/${test.count} replies: ${r.stdout.trim().split('\n').slice(-2).join(' ')}`);
  // The first echo may include ARP resolution on some paths: not part of the RTT.
  const steady = times.slice(1);
  return { value: median(steady), min: Math.min(...steady), max: Math.max(...steady), replies: times.length };
}

// ------------------------------------------------------------------------------------ main

async function main() {
  const facts = await hostFacts();
  const versions = {
    iperf3: await versionOf('iperf3', ['--version']),
    openvpn: await versionOf('openvpn', ['--version']),
    tinc: await versionOf('tincd', ['--version']),
    wireguardGo: (await run('wireguard-go', ['--version'], { allowFail: true })).stdout.trim().split('\n')[0] || null,
    busybox: await versionOf('busybox', ['--help']),
  };
  say(`tag ${TAG}, scratch ${scratch.dir}; ${facts.cpus} CPUs, load ${facts.loadavg.join(' ')}; ${REPS} reps x ${opt.limits ? `${CELLS.length} limits x 2 directions` : `${TESTS.length} tests`} x ${PATHS.length} paths, ${TIME} s per iperf3 run`);
  await setUp();
  if (opt.limits) {
    const limits = await runLimits({ paths: PATHS, cells: CELLS, reps: REPS, time: TIME, inNs, say, guestB: GUEST_B, mtu: GUEST_MTU });
    const loads = [...limits.runs, ...(limits.cost?.runs ?? [])].map((r) => r.load1);
    console.log(`1-min load average during the runs ${Math.min(...loads).toFixed(1)}-${Math.max(...loads).toFixed(1)} on ${facts.cpus} CPUs.`);
    const missed = limits.goals.filter((g) => !g.met);
    console.log(`\nGoals: ${limits.goals.length - missed.length}/${limits.goals.length} met.`);
    for (const g of missed) console.log(`  MISS ${g.goal}: ${g.value?.toFixed(3)}`);
    const base = resultsBase(opt.out, 'net-limits', started);
    writeFileSync(`${base}.json`, JSON.stringify({ benchmark: 'net-limits', date: new Date(started).toISOString(), durationS: Math.round((Date.now() - started) / 1000), host: facts, versions, paths: PATHS.map(({ id, label }) => ({ id, label })), cells: CELLS, ...limits }, null, 2) + '\n');
    console.log(`\nresults: ${base}.json`);
    return;
  }

  const runs = [];
  const statsBefore = NITRIDE ? await NITRIDE.stats() : null;
  for (let rep = 0; rep < REPS; rep++) {
    for (const [ti, test] of TESTS.entries()) {
      const k = (rep + ti) % PATHS.length;
      const order = [...PATHS.slice(k), ...PATHS.slice(0, k)];
      for (const p of order) {
        const load1 = +(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
        const polls0 = p.stats ? await workerPolls(p) : null;
        const r = test.id.startsWith('ping') ? await ping(p, test) : test.id === 'cps' ? await cps(p) : await iperf(p, test);
        if (polls0) {
          const polls1 = await workerPolls(p);
          r.polls = { won: polls1.won - polls0.won, lost: polls1.lost - polls0.lost };
          r.cipher = polls1.cipher;
        }
        runs.push({ rep, test: test.id, path: p.id, load1, ...r });
        say(`rep ${rep + 1}/${REPS} ${test.id.padEnd(4)} ${p.id.padEnd(14)} ${fmt(test, r.value)} ${test.unit}${r.cores !== undefined ? `, tunnel CPU ${r.cores} cores` : ''}${r.retransmits ? `, ${r.retransmits} retransmits` : ''}${r.polls ? `, worker polls won/lost ${r.polls.won}/${r.polls.lost}, gcm ${r.cipher}` : ''}, load ${load1}`);
      }
    }
  }
  const statsAfter = NITRIDE ? await NITRIDE.stats() : null;

  // Medians and same-run ratios.
  const value = (test, pathId, rep) => runs.find((r) => r.test === test && r.path === pathId && r.rep === rep)?.value;
  const ratio = (test, a, b) => median([...Array(REPS).keys()].map((rep) => value(test, a, rep) / value(test, b, rep)));
  const results = {};
  for (const test of TESTS) {
    results[test.id] = {};
    for (const p of PATHS) {
      const mine = runs.filter((r) => r.test === test.id && r.path === p.id);
      results[test.id][p.id] = {
        value: median(mine.map((r) => r.value)),
        values: mine.map((r) => +r.value.toPrecision(4)),
        cores: median(mine.map((r) => r.cores)),
        vsPlain: BASELINE && p !== BASELINE ? ratio(test.id, p.id, BASELINE.id) : null,
        nitrideVs: NITRIDE && p !== NITRIDE ? ratio(test.id, NITRIDE.id, p.id) : null,
      };
    }
  }
  // Ping RTT each nitride path adds over the baseline: median of per-repetition differences.
  const added = (test, id) => median([...Array(REPS).keys()].map((rep) => value(test, id, rep) - value(test, BASELINE.id, rep)));
  const addedBy = (test) => (BASELINE && results[test] ? Object.fromEntries(PATHS.filter((p) => p.id.startsWith('nitride')).map((p) => [p.id, added(test, p.id)])) : {});
  const addedRtts = addedBy('ping');
  const addedRttsWarm = addedBy('ping-warm');
  const addedRtt = addedRtts.nitride ?? null;

  // Goals: one TCP flow >= 3x OpenVPN and >= 3x wireguard-go (issue 4); one TCP flow >= 0.5x
  // plain and added RTT <= 0.15 ms, with and without security groups (issue 14).
  const goals = [];
  for (const id of ['nitride', 'nitride-sg']) {
    const r = results.tcp1?.[id]?.vsPlain;
    if (r != null) goals.push({ goal: `tcp1 ${id} >= 0.5x plain${UNDERLAY_MTU === 1500 ? '' : ` (underlay MTU ${UNDERLAY_MTU})`}`, value: r, met: r >= 0.5 });
  }
  if (NITRIDE && results.tcp1) {
    for (const peer of ['openvpn', 'wireguard-go']) {
      if (!results.tcp1[peer]) continue;
      const r = results.tcp1[peer].nitrideVs;
      goals.push({ goal: `tcp1 nitride >= 3x ${peer}`, value: r, met: r >= 3 });
    }
  }
  for (const id of ['nitride', 'nitride-sg', 'nitride-spin']) {
    if (addedRtts[id] !== undefined) goals.push({ goal: `ping RTT ${id} adds over plain <= 0.15 ms`, value: addedRtts[id], met: addedRtts[id] <= 0.15 });
    if (addedRttsWarm[id] !== undefined) goals.push({ goal: `ping RTT at 500/s ${id} adds over plain <= 0.15 ms`, value: addedRttsWarm[id], met: addedRttsWarm[id] <= 0.15 });
  }
  // Issue 14: new connections per second through a security group >= 0.5x the kernel's nftables conntrack.
  for (const id of ['nitride-sg', 'nitride']) {
    if (!results.cps?.[id] || !results.cps['plain-ct']) continue;
    const r = ratio('cps', id, 'plain-ct');
    goals.push({ goal: `cps ${id} >= 0.5x plain-ct`, value: r, met: r >= 0.5 });
  }

  const cell = (test, p) => {
    const r = results[test.id][p.id];
    const parts = [fmt(test, r.value)];
    if (r.vsPlain !== null) parts.push(`(${r.vsPlain.toFixed(2)}x)`);
    return parts.join(' ');
  };
  console.log(`\nMedians of ${REPS} (ratio to ${BASELINE?.id ?? 'n/a'}, median of per-repetition ratios):`);
  console.log(textTable(['test', ...PATHS.map((p) => p.id)], TESTS.map((test) => [`${test.label} (${test.unit})`, ...PATHS.map((p) => cell(test, p))])));
  if (NITRIDE) {
    console.log('\nnitride relative to each path (median of per-repetition ratios; for ping RTT <1 is better):');
    console.log(textTable(['test', ...PATHS.filter((p) => p !== NITRIDE).map((p) => `vs ${p.id}`)], TESTS.map((test) => [test.label, ...PATHS.filter((p) => p !== NITRIDE).map((p) => `${results[test.id][p.id].nitrideVs?.toFixed(2)}x`)])));
    for (const [id, v] of Object.entries(addedRtts)) console.log(`${id} adds ${(v * 1000).toFixed(0)} µs of ping RTT over the plain path (median of per-repetition differences).`);
    for (const [id, v] of Object.entries(addedRttsWarm)) console.log(`${id} adds ${(v * 1000).toFixed(0)} µs of ping RTT at 500/s over the plain path (median of per-repetition differences).`);
  }
  const cpuTests = TESTS.filter((t) => !t.id.startsWith('ping'));
  if (cpuTests.length) {
    console.log('\nTunnel processes CPU during the runs (cores busy, all threads, both hosts; plain: kernel only, not counted):');
    console.log(textTable(['test', ...PATHS.map((p) => p.id)], cpuTests.map((test) => [test.label, ...PATHS.map((p) => (p.id.startsWith('plain') ? '-' : String(results[test.id][p.id].cores)))])));
  }
  const tcpNitride = runs.filter((r) => r.path === 'nitride' && r.test === 'tcp1' && r.threads);
  if (tcpNitride.length) console.log(`nitride threads during TCP 1 stream (cores): ${JSON.stringify(tcpNitride[tcpNitride.length - 1].threads)}`);
  const loads = runs.map((r) => r.load1);
  console.log(`1-min load average during the runs ${Math.min(...loads).toFixed(1)}-${Math.max(...loads).toFixed(1)} on ${facts.cpus} CPUs.`);
  const missed = goals.filter((g) => !g.met);
  console.log(`\nGoals: ${goals.length - missed.length}/${goals.length} met.`);
  for (const g of goals) console.log(`  ${g.met ? 'met ' : 'MISS'} ${g.goal}: ${g.value?.toFixed(2)}`);

  const resultsDir = opt.out ? path.dirname(path.resolve(opt.out)) : path.join(ROOT, 'bench-results');
  const base = opt.out ? path.resolve(opt.out).replace(/\.json$/, '') : path.join(resultsDir, `net-${stamp(new Date(started))}`);
  mkdirSync(resultsDir, { recursive: true });
  const doc = {
    benchmark: 'net',
    date: new Date(started).toISOString(),
    durationS: Math.round((Date.now() - started) / 1000),
    host: facts,
    versions,
    settings: {
      iperfSeconds: TIME,
      omitSeconds: 1,
      reps: REPS,
      guestMtu: GUEST_MTU,
      underlayMtu: UNDERLAY_MTU,
      udp: 'iperf3 -u -b 0 -l 64; value = payload bytes the server received / 64 / measured seconds',
      ping: 'busybox ping -c 20 -i 0.2; value = median RTT of replies 2..20',
      'ping-warm': 'busybox ping -c 1000 -i 0.002; value = median RTT of replies 2..1000',
      baseline: BASELINE?.id ?? null,
      ratio: 'median over repetitions of value / other value in the same repetition',
    },
    paths: PATHS.map(({ id, label }) => ({ id, label })),
    runs,
    medians: results,
    addedRttMs: addedRtt,
    addedRttMsByPath: addedRtts,
    addedRttMsWarmByPath: addedRttsWarm,
    goals,
    nitrideStats: statsAfter ? { before: statsBefore, after: statsAfter } : null,
  };
  writeFileSync(`${base}.json`, JSON.stringify(doc, null, 2) + '\n');
  const chartTests = TESTS.filter((t) => t.higherBetter);
  writeFileSync(
    `${base}.svg`,
    svgBarChart({
      title: 'nitride network benchmark: guest-to-guest across two hosts',
      subtitle: `iperf3, median of ${REPS} reps x ${TIME} s; relative to the plain routed path; ${facts.cpus} CPUs; ${new Date(started).toISOString().slice(0, 16)}Z${addedRtt !== null ? `; nitride adds ${(addedRtt * 1000).toFixed(0)} µs ping RTT` : ''}`,
      yLabel: BASELINE ? 'relative to the plain path' : 'value',
      groups: chartTests.map((test) => ({ label: test.label, sublabel: BASELINE ? `plain: ${fmt(test, results[test.id][BASELINE.id].value)} ${test.unit}` : '' })),
      series: PATHS.map((p) => ({ label: p.label, color: p.color })),
      values: chartTests.map((test) => PATHS.map((p) => (BASELINE ? (p === BASELINE ? 1 : results[test.id][p.id].vsPlain) : results[test.id][p.id].value))),
      refLines: BASELINE ? [{ value: 1, label: 'plain', color: '#333' }] : [],
      valueFormat: (v) => v.toFixed(2),
    }),
  );
  console.log(`\nresults: ${base}.json\nchart:   ${base}.svg`);
  say('done');
}

function fmt(test, v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '-';
  if (test.unit === 'Gbit/s') return v.toFixed(2);
  if (test.unit === 'ms') return v.toFixed(3);
  return human(v);
}

try {
  await main();
} catch (err) {
  console.error(`bench-net: ${err.message}`);
  process.exitCode = 1;
} finally {
  await scratch.cleanup();
  for (const ns of namespaces) await run('ip', ['netns', 'del', ns], { allowFail: true });
}
