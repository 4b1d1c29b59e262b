/**
 * The daemon's Prometheus metrics (prom-client's registry and text format). Nothing is
 * pushed and nothing is counted here: every family reads the components' own plain counters
 * when scraped (volume I/O from the NBD connections, the native VPC engine's counters, the
 * handshake counts, KMS calls), so the hot paths never touch prom-client.
 */
import { Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import { VERSION } from '../common/package-info.js';
import { COUNTED_COMMANDS, LATENCY_BUCKETS_SECONDS, nbdErrnoName } from '../nbd/io-stats.js';
import type { VolumeManager } from '../volume/manager.js';
import type { VpcNamedStats } from '../api/vpc.js';
import type { VpcManager } from '../vpc/manager.js';
import type { CountingKeyProvider } from './kms-calls.js';

export const METRICS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;

export interface MetricSources {
  volumes: VolumeManager;
  vpc: VpcManager;
  kms: CountingKeyProvider;
  nbdConnections: () => number;
}

type Labels = Record<string, string | number>;
interface Sample {
  labels: Labels;
  value: number;
  /** For histogram series: `<name>_bucket`, `_sum`, `_count`. */
  metricName?: string;
}
type MetricType = 'counter' | 'gauge' | 'histogram';

/** camelCase counter name → snake_case label value ("badTag" → "bad_tag"). */
const snake = (name: string): string => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

export class DaemonMetrics {
  readonly registry = new Registry();
  private vpcSnapshot: VpcNamedStats | null = null;

  constructor(private readonly sources: MetricSources) {
    collectDefaultMetrics({ register: this.registry });
    this.daemonFamilies();
    this.volumeFamilies();
    this.vpcFamilies();
    this.family('nitride_kms_calls_total', 'Calls from the daemon to the KMS, by operation and outcome (ok or error code).', 'counter', () =>
      [...sources.kms.calls.values()].map((c) => ({ labels: { operation: c.operation, outcome: c.outcome }, value: c.count })),
    );
  }

  /** The Prometheus text exposition of everything. */
  text(): Promise<string> {
    // One engine snapshot per scrape, shared by the VPC families.
    this.vpcSnapshot = this.sources.vpc.namedStats();
    return this.registry.metrics();
  }

  /** A family whose samples are read from the sources at each scrape. */
  private family(name: string, help: string, type: MetricType, collect: () => Sample[]): void {
    // prom-client formats any object with name/help/type and a get() returning samples.
    const metric = { name, help, type, get: async () => ({ name, help, type, aggregator: 'sum', values: collect() }) };
    this.registry.registerMetric(metric as unknown as Metric);
  }

  private daemonFamilies(): void {
    this.family('nitride_info', 'Always 1; the version label says which nitride runs.', 'gauge', () => [{ labels: { version: VERSION }, value: 1 }]);
    this.family('nitride_nbd_connections', 'Open NBD connections, all listeners.', 'gauge', () => [{ labels: {}, value: this.sources.nbdConnections() }]);
  }

  private volumeFamilies(): void {
    const volumes = () => this.sources.volumes.ioStats();
    this.family('nitride_volume_info', 'Always 1 per volume; labels carry its name and type.', 'gauge', () =>
      volumes().map((v) => ({ labels: { volume: v.id, name: v.name, type: v.type }, value: 1 })),
    );
    this.family('nitride_volume_attached_consumers', 'Consumers (processes or hosts) attached to the volume.', 'gauge', () =>
      volumes().map((v) => ({ labels: { volume: v.id }, value: v.consumers })),
    );
    this.family('nitride_volume_connections', 'NBD connections open on the volume.', 'gauge', () => volumes().map((v) => ({ labels: { volume: v.id }, value: v.connections })));
    const perCommand = (value: (ops: number, bytes: number) => number) => (): Sample[] =>
      volumes().flatMap((v) => {
        const commands = v.stats.commands; // one read: it folds in the native data planes' counters
        return COUNTED_COMMANDS.filter(([cmd]) => commands[cmd]!.ops > 0).map(([cmd, op]) => {
          const c = commands[cmd]!;
          return { labels: { volume: v.id, op }, value: value(c.ops, c.bytes) };
        });
      });
    this.family('nitride_volume_requests_total', 'NBD requests completed (replied), by command.', 'counter', perCommand((ops) => ops));
    this.family('nitride_volume_bytes_total', 'Bytes of successful requests: moved (read, write) or covered (trim, write_zeroes, cache, block_status).', 'counter', perCommand((_ops, bytes) => bytes));
    this.family('nitride_volume_errors_total', 'Error replies, by NBD errno.', 'counter', () =>
      volumes().flatMap((v) => [...v.stats.errors].map(([errno, count]) => ({ labels: { volume: v.id, errno: nbdErrnoName(errno) }, value: count }))),
    );
    this.family('nitride_volume_request_duration_seconds', 'Time from decoding an NBD request to queueing its reply.', 'histogram', () =>
      volumes().flatMap((v) => {
        const commands = v.stats.commands;
        return COUNTED_COMMANDS.filter(([cmd]) => commands[cmd]!.ops > 0).flatMap(([cmd, op]) => {
          const c = commands[cmd]!;
          const samples: Sample[] = [];
          let cumulative = 0;
          LATENCY_BUCKETS_SECONDS.forEach((le, i) => {
            cumulative += c.buckets[i]!;
            samples.push({ metricName: 'nitride_volume_request_duration_seconds_bucket', labels: { volume: v.id, op, le }, value: cumulative });
          });
          samples.push({ metricName: 'nitride_volume_request_duration_seconds_bucket', labels: { volume: v.id, op, le: '+Inf' }, value: c.ops });
          samples.push({ metricName: 'nitride_volume_request_duration_seconds_sum', labels: { volume: v.id, op }, value: c.latencySumSeconds });
          samples.push({ metricName: 'nitride_volume_request_duration_seconds_count', labels: { volume: v.id, op }, value: c.ops });
          return samples;
        });
      }),
    );
  }

  private vpcFamilies(): void {
    const { vpc } = this.sources;
    this.family('nitride_vpc_up', '1 while the VPC data plane runs (host key unwrapped, underlay bound).', 'gauge', () => [{ labels: {}, value: vpc.status().state === 'up' ? 1 : 0 }]);
    const stats = () => this.vpcSnapshot;
    const perEni = <T>(pick: (eni: string, s: VpcNamedStats['enis'][string]) => T[]) => () => Object.entries(stats()?.enis ?? {}).flatMap(([eni, s]) => pick(eni, s));
    const perPeer = <T>(pick: (peer: string, s: VpcNamedStats['peers'][string]) => T[]) => () => Object.entries(stats()?.peers ?? {}).flatMap(([peer, s]) => pick(peer, s));
    const inOut = (label: 'eni' | 'peer', names: [string, string]) => (id: string, values: [number, number]): Sample[] =>
      names.map((direction, i) => ({ labels: { [label]: id, direction }, value: values[i]! }));
    const eniDirections = inOut('eni', ['from_guest', 'to_guest']);
    const peerDirections = inOut('peer', ['tx', 'rx']);
    this.family('nitride_nic_frames_total', 'Frames of a local ENI: from_guest (read from it; a GSO super-frame counts once) and to_guest (written into it).', 'counter',
      perEni((eni, s) => eniDirections(eni, [s.rxFrames, s.txFrames])));
    this.family('nitride_nic_bytes_total', 'Bytes of a local ENI, as nitride_nic_frames_total.', 'counter', perEni((eni, s) => eniDirections(eni, [s.rxBytes, s.txBytes])));
    this.family('nitride_nic_drops_total', 'Frames of a local ENI not forwarded, by reason (spoofed = source check failed; punted frames went to the control plane and are not drops).', 'counter',
      perEni((eni, s) => Object.entries(s.drops).filter(([reason]) => reason !== 'punted').map(([reason, value]) => ({ labels: { eni, reason: snake(reason) }, value }))),
    );
    this.family('nitride_peer_packets_total', 'Underlay datagrams exchanged with a peer daemon.', 'counter', perPeer((peer, s) => peerDirections(peer, [s.txPackets, s.rxPackets])));
    this.family('nitride_peer_bytes_total', 'Underlay bytes exchanged with a peer daemon.', 'counter', perPeer((peer, s) => peerDirections(peer, [s.txBytes, s.rxBytes])));
    this.family('nitride_peer_drops_total', 'Datagrams from or frames towards a peer dropped, by reason (bad_tag, replay, no_session, not_plaintext, no_route, spoofed).', 'counter',
      perPeer((peer, s) => Object.entries(s.drops).map(([reason, value]) => ({ labels: { peer, reason: snake(reason) }, value }))),
    );
    this.family('nitride_peer_last_seen_timestamp_seconds', 'Unix time of the last authenticated message from the peer (0 = never).', 'gauge', perPeer((peer, s) => [{ labels: { peer }, value: s.lastRx / 1000 }]));
    this.family('nitride_vpc_underlay_drops_total', 'Underlay datagrams dropped before any peer session, by reason (unknown_peer, malformed, punt_overflow, tx_error).', 'counter', () => {
      const underlay = stats()?.underlay;
      if (!underlay) return [];
      return Object.entries(underlay).filter(([reason]) => reason !== 'punted').map(([reason, value]) => ({ labels: { reason: snake(reason) }, value }));
    });
    this.family('nitride_peer_handshakes_total', 'Handshakes completed with the peer (sessions installed, rekeys included).', 'counter', () =>
      vpc.peerSessionCounters().map((p) => ({ labels: { peer: p.name }, value: p.handshakes })),
    );
    this.family('nitride_peer_rekeys_total', 'Handshakes that replaced a current session.', 'counter', () => vpc.peerSessionCounters().map((p) => ({ labels: { peer: p.name }, value: p.rekeys })));
    this.family('nitride_peer_session_established', '1 while the peer has a current session.', 'gauge', () =>
      vpc.peerSessionCounters().map((p) => ({ labels: { peer: p.name }, value: p.session === 'established' ? 1 : 0 })),
    );
  }
}
