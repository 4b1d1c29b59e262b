/**
 * The VPC families of the daemon's metrics, from a real VpcManager on an in-memory engine:
 * one engine snapshot per scrape whatever the number of peers, and the exact exposition
 * (names, labels, help, types) that `nitride top` and dashboards read.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalKeyProvider } from '../../src/kms/local.js';
import { loadSodium } from '../../src/kms/sodium.js';
import { createLogger } from '../../src/log/logger.js';
import { DaemonMetrics } from '../../src/metrics/daemon-metrics.js';
import { CountingKeyProvider } from '../../src/metrics/kms-calls.js';
import { HandshakeManager, decodeKey, encodeKey, generateHostKeys } from '../../src/vpc/handshake.js';
import { VpcManager } from '../../src/vpc/manager.js';
import { FakeEngine, FakeNetdevs } from '../vpc/fakes.js';
import { tempDir } from '../helpers/nitride.js';

const ENI = 'eni-00000000000000001';
const PEERS = ['b', 'c', 'd'];

/** The VPC families, as the daemon exposed them before one snapshot served the scrape (but for the rekey count of b: its first session was counted as a rekey). */
const EXPECTED = `# HELP nitride_vpc_up 1 while the VPC data plane runs (host key unwrapped, underlay bound).
# TYPE nitride_vpc_up gauge
nitride_vpc_up 1

# HELP nitride_vpc_underlay_drops_total Underlay datagrams dropped before any peer session, by reason (unknown_peer, malformed, punt_overflow, tx_error).
# TYPE nitride_vpc_underlay_drops_total counter
nitride_vpc_underlay_drops_total{reason="unknown_peer"} 8
nitride_vpc_underlay_drops_total{reason="malformed"} 0
nitride_vpc_underlay_drops_total{reason="punt_overflow"} 0
nitride_vpc_underlay_drops_total{reason="tx_error"} 0

# HELP nitride_nic_frames_total Frames of a local ENI: from_guest (read from it; a GSO super-frame counts once) and to_guest (written into it).
# TYPE nitride_nic_frames_total counter
nitride_nic_frames_total{eni="eni-00000000000000001",direction="from_guest"} 7
nitride_nic_frames_total{eni="eni-00000000000000001",direction="to_guest"} 5

# HELP nitride_nic_bytes_total Bytes of a local ENI, as nitride_nic_frames_total.
# TYPE nitride_nic_bytes_total counter
nitride_nic_bytes_total{eni="eni-00000000000000001",direction="from_guest"} 700
nitride_nic_bytes_total{eni="eni-00000000000000001",direction="to_guest"} 500

# HELP nitride_nic_drops_total Frames of a local ENI not forwarded, by reason (spoofed = source check failed; punted frames went to the control plane and are not drops).
# TYPE nitride_nic_drops_total counter
nitride_nic_drops_total{eni="eni-00000000000000001",reason="spoofed"} 2
nitride_nic_drops_total{eni="eni-00000000000000001",reason="no_route"} 0
nitride_nic_drops_total{eni="eni-00000000000000001",reason="oversize"} 0
nitride_nic_drops_total{eni="eni-00000000000000001",reason="punt_overflow"} 0
nitride_nic_drops_total{eni="eni-00000000000000001",reason="filtered"} 0
nitride_nic_drops_total{eni="eni-00000000000000001",reason="invalid"} 0
nitride_nic_drops_total{eni="eni-00000000000000001",reason="tx_error"} 0
nitride_nic_drops_total{eni="eni-00000000000000001",reason="queue_full"} 1
nitride_nic_drops_total{eni="eni-00000000000000001",reason="security_group"} 0
nitride_nic_drops_total{eni="eni-00000000000000001",reason="conntrack_full"} 0
nitride_nic_drops_total{eni="eni-00000000000000001",reason="network_acl"} 0
nitride_nic_drops_total{eni="eni-00000000000000001",reason="bw_in_allowance_exceeded"} 0
nitride_nic_drops_total{eni="eni-00000000000000001",reason="bw_out_allowance_exceeded"} 0
nitride_nic_drops_total{eni="eni-00000000000000001",reason="pps_allowance_exceeded"} 0

# HELP nitride_nic_conntrack_flows Flows the security groups of a local ENI track (0 without groups).
# TYPE nitride_nic_conntrack_flows gauge
nitride_nic_conntrack_flows{eni="eni-00000000000000001"} 0

# HELP nitride_nic_conntrack_max Flows a local ENI may track; new flows beyond it are dropped (conntrack_full).
# TYPE nitride_nic_conntrack_max gauge
nitride_nic_conntrack_max{eni="eni-00000000000000001"} 0

# HELP nitride_peer_packets_total Underlay datagrams exchanged with a peer daemon.
# TYPE nitride_peer_packets_total counter
nitride_peer_packets_total{peer="b",direction="tx"} 3
nitride_peer_packets_total{peer="b",direction="rx"} 4
nitride_peer_packets_total{peer="c",direction="tx"} 0
nitride_peer_packets_total{peer="c",direction="rx"} 0
nitride_peer_packets_total{peer="d",direction="tx"} 0
nitride_peer_packets_total{peer="d",direction="rx"} 0

# HELP nitride_peer_bytes_total Underlay bytes exchanged with a peer daemon.
# TYPE nitride_peer_bytes_total counter
nitride_peer_bytes_total{peer="b",direction="tx"} 300
nitride_peer_bytes_total{peer="b",direction="rx"} 400
nitride_peer_bytes_total{peer="c",direction="tx"} 0
nitride_peer_bytes_total{peer="c",direction="rx"} 0
nitride_peer_bytes_total{peer="d",direction="tx"} 0
nitride_peer_bytes_total{peer="d",direction="rx"} 0

# HELP nitride_peer_drops_total Datagrams from or frames towards a peer dropped, by reason (bad_tag, replay, no_session, not_plaintext, no_route, spoofed).
# TYPE nitride_peer_drops_total counter
nitride_peer_drops_total{peer="b",reason="bad_tag"} 6
nitride_peer_drops_total{peer="b",reason="replay"} 0
nitride_peer_drops_total{peer="b",reason="no_session"} 0
nitride_peer_drops_total{peer="b",reason="not_plaintext"} 0
nitride_peer_drops_total{peer="b",reason="no_route"} 0
nitride_peer_drops_total{peer="b",reason="spoofed"} 0
nitride_peer_drops_total{peer="c",reason="bad_tag"} 0
nitride_peer_drops_total{peer="c",reason="replay"} 0
nitride_peer_drops_total{peer="c",reason="no_session"} 0
nitride_peer_drops_total{peer="c",reason="not_plaintext"} 0
nitride_peer_drops_total{peer="c",reason="no_route"} 0
nitride_peer_drops_total{peer="c",reason="spoofed"} 0
nitride_peer_drops_total{peer="d",reason="bad_tag"} 0
nitride_peer_drops_total{peer="d",reason="replay"} 0
nitride_peer_drops_total{peer="d",reason="no_session"} 0
nitride_peer_drops_total{peer="d",reason="not_plaintext"} 0
nitride_peer_drops_total{peer="d",reason="no_route"} 0
nitride_peer_drops_total{peer="d",reason="spoofed"} 0

# HELP nitride_peer_last_seen_timestamp_seconds Unix time of the last authenticated message from the peer (0 = never).
# TYPE nitride_peer_last_seen_timestamp_seconds gauge
nitride_peer_last_seen_timestamp_seconds{peer="b"} 1700000000.5
nitride_peer_last_seen_timestamp_seconds{peer="c"} 0
nitride_peer_last_seen_timestamp_seconds{peer="d"} 0

# HELP nitride_peer_handshakes_total Handshakes completed with the peer (sessions installed, rekeys included).
# TYPE nitride_peer_handshakes_total counter
nitride_peer_handshakes_total{peer="b"} 1
nitride_peer_handshakes_total{peer="c"} 0
nitride_peer_handshakes_total{peer="d"} 0

# HELP nitride_peer_rekeys_total Handshakes that replaced a current session.
# TYPE nitride_peer_rekeys_total counter
nitride_peer_rekeys_total{peer="b"} 0
nitride_peer_rekeys_total{peer="c"} 0
nitride_peer_rekeys_total{peer="d"} 0

# HELP nitride_peer_session_established 1 while the peer has a current session.
# TYPE nitride_peer_session_established gauge
nitride_peer_session_established{peer="b"} 1
nitride_peer_session_established{peer="c"} 0
nitride_peer_session_established{peer="d"} 0`;

let kms: LocalKeyProvider;
let vpc: VpcManager;
let engine: FakeEngine | undefined;
let metrics: DaemonMetrics;
let cleanup: () => void;

beforeAll(async () => {
  const sodium = await loadSodium();
  const dir = tempDir();
  cleanup = dir.cleanup;
  kms = await LocalKeyProvider.open({ sweepIntervalMs: 0 });
  vpc = new VpcManager({
    stateFile: path.join(dir.dir, 'vpc.json'),
    kms,
    logger: createLogger({ level: 'silent' }),
    listen: '127.0.0.1:4789',
    engine: (opts) => (engine = new FakeEngine(opts)),
    netdevs: new FakeNetdevs(),
  });
  await vpc.load();
  await vpc.start();
  const { id: vpcId } = await vpc.createVpc({ cidr: '10.0.0.0/16' });
  const { id: subnetId } = await vpc.createSubnet({ vpcId, cidr: '10.0.1.0/24' });
  await vpc.createEni({ subnetId, id: ENI, privateIp: '10.0.1.10' });
  const keys = PEERS.map(() => generateHostKeys(sodium));
  for (const [i, name] of PEERS.entries()) await vpc.addPeer({ name, endpoint: `127.0.0.1:${4790 + i}`, publicKey: encodeKey(keys[i]!.publicKey) });
  // Peer b answers this host's initiation, so it has a session (and a handshake counted).
  const b = new HandshakeManager({ sodium, local: keys[0]!, now: Date.now });
  b.addPeer('a', decodeKey(vpc.publicKey()));
  const initiation = engine!.underlay.find((d) => d.port === 4790)!;
  const response = b.handleMessage(initiation.datagram).actions.find((action) => action.type === 'send')!;
  engine!.emit({ type: 'handshake', host: '127.0.0.1', port: 4790, data: response.message });
  metrics = new DaemonMetrics({ volumes: { ioStats: () => [], badRbdRecords: 0 }, vpc, kms: new CountingKeyProvider(kms), nbdConnections: () => 0 });
});

afterAll(async () => {
  await vpc?.close();
  await kms?.close();
  cleanup?.();
});

/** The exposition of the families whose names start with `prefix`, in order. */
function families(text: string, prefix: string): string {
  return text
    .split('\n\n')
    .filter((block) => block.startsWith(`# HELP ${prefix}`))
    .join('\n\n');
}

describe('VPC metrics', () => {
  it('take one engine snapshot per scrape, whatever the number of peers', async () => {
    const e = engine!;
    expect(e.peers.size).toBe(PEERS.length);
    for (let scrape = 0; scrape < 3; scrape++) {
      const before = e.statsCalls;
      await metrics.text();
      expect(e.statsCalls - before).toBe(1);
    }
  });

  it('expose the engine counters by ENI and peer with the same names, labels, help and types', async () => {
    const e = engine!;
    const [portId] = [...e.ports.keys()];
    const port = e.counters.ports[portId!]!;
    Object.assign(port, { rxFrames: 7, rxBytes: 700, txFrames: 5, txBytes: 500 });
    Object.assign(port.drops, { spoofed: 2, punted: 9, queueFull: 1 });
    const [bId] = [...e.peers].find(([, p]) => p.endpoint.port === 4790)!;
    const b = e.counters.peers[bId]!;
    Object.assign(b, { txPackets: 3, txBytes: 300, rxPackets: 4, rxBytes: 400, lastRx: 1_700_000_000_500 });
    b.drops.badTag = 6;
    Object.assign(e.counters.underlay, { unknownPeer: 8, punted: 11 });
    const text = await metrics.text();
    expect(['nitride_vpc', 'nitride_nic', 'nitride_peer'].map((prefix) => families(text, prefix)).join('\n\n')).toBe(EXPECTED);
  });
});
