/**
 * The daemon's Prometheus metrics (prom-client's registry and text format). Nothing is
 * pushed and nothing is counted here: every family reads the components' own plain counters
 * when scraped (volume I/O from the NBD connections, the native VPC engine's counters, the
 * handshake counts, KMS calls), so the hot paths never touch prom-client.
 */
import { Registry, collectDefaultMetrics } from 'prom-client';
import { VERSION } from '../common/package-info.js';
import { COUNTED_COMMANDS, LATENCY_BUCKETS_SECONDS, nbdErrnoName, type CommandStats } from '../nbd/io-stats.js';
import type { VolumeIoStats, VolumeManager } from '../volume/manager.js';
import type { VpcNamedStats } from '../api/vpc.js';
import type { VpcManager } from '../vpc/manager.js';
import type { VpcObservation } from '../vpc/stats.js';
import type { CountingKeyProvider } from './kms-calls.js';
import type { Fleet } from '../fleet/fleet.js';
import { registerFamily, type Family, type Sample } from './prom-family.js';

export const METRICS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;

export interface MetricSources {
  volumes: Pick<VolumeManager, 'ioStats' | 'badRbdRecords'>;
  vpc: Pick<VpcManager, 'observe'>;
  kms: CountingKeyProvider;
  nbdConnections: () => number;
  /** Fleet mode only. */
  fleet?: Pick<Fleet, 'status'>;
}

/** What one scrape reads of the volumes and the VPC: read once, so that every family agrees. */
interface Scrape {
  /** Each volume's command counters read once (each read folds in the native data planes' counters). */
  volumes: Array<VolumeIoStats & { commands: readonly CommandStats[] }>;
  /** One engine snapshot. */
  vpc: VpcObservation;
}

/** camelCase counter name → snake_case label value ("badTag" → "bad_tag"). */
const snake = (name: string): string => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

export class DaemonMetrics {
  readonly registry = new Registry();
  private scrape: Scrape | undefined;

  constructor(private readonly sources: MetricSources) {
    collectDefaultMetrics({ register: this.registry });
    this.daemonFamilies();
    this.volumeFamilies();
    this.vpcFamilies();
    this.family('nitride_kms_calls_total', 'Calls from the daemon to the KMS, by operation and outcome (ok or error code).', 'counter', () =>
      [...sources.kms.calls.values()].map((c) => ({ labels: { operation: c.operation, outcome: c.outcome }, value: c.count })),
    );
    if (sources.fleet) this.fleetFamilies(sources.fleet);
    this.family('nitride_rbd_bad_records_total', 'RBD images in the volumes pool whose nitride record was missing fields, malformed or for another image: ignored.', 'counter', () => [
      { labels: {}, value: sources.volumes.badRbdRecords },
    ]);
  }

  /** The Prometheus text exposition of everything. */
  text(): Promise<string> {
    this.scrape = {
      volumes: this.sources.volumes.ioStats().map((v) => ({ ...v, commands: v.stats.commands })),
      vpc: this.sources.vpc.observe(),
    };
    return this.registry.metrics();
  }

  /** A family whose samples are computed from the current scrape. */
  private family(name: string, help: string, type: Family['type'], collect: (scrape: Scrape) => Sample[]): void {
    registerFamily(this.registry, { name, help, type, collect: () => (this.scrape ? collect(this.scrape) : []) });
  }

  /** Fleet mode: etcd reachability, the watch's revisions, hosts, refused records (read when scraped). */
  private fleetFamilies(fleet: Pick<Fleet, 'status'>): void {
    const one = (help: string, name: string, type: Family['type'], value: (s: ReturnType<Fleet['status']>) => number) =>
      registerFamily(this.registry, { name, help, type, collect: () => [{ labels: {}, value: value(fleet.status()) }] });
    one('1 while no etcd member answers (the data plane runs on the last view; changes are refused).', 'nitride_fleet_degraded', 'gauge', (s) => (s.state === 'degraded' ? 1 : 0));
    one('Seconds since etcd stopped answering (0 while it answers).', 'nitride_fleet_degraded_seconds', 'gauge', (s) => (s.degradedSince ? (Date.now() - Date.parse(s.degradedSince)) / 1000 : 0));
    one('The etcd revision this host has seen.', 'nitride_fleet_revision', 'gauge', (s) => s.revision);
    one('Revisions seen but not yet programmed into the engine.', 'nitride_fleet_revision_lag', 'gauge', (s) => s.revision - s.appliedRevision);
    one('Hosts with a valid record, this one included.', 'nitride_fleet_hosts', 'gauge', (s) => s.hosts);
    one('Fleet records ignored as invalid or hostile (each key at each revision once).', 'nitride_fleet_bad_records_total', 'counter', (s) => s.counters.badRecords);
    one('Host records whose public key changed (treated as a new host).', 'nitride_fleet_host_key_changes_total', 'counter', (s) => s.counters.hostKeyChanges);
    one('Full lists of the fleet prefix (start, compaction, lost watch).', 'nitride_fleet_relists_total', 'counter', (s) => s.counters.relists);
  }

  private daemonFamilies(): void {
    this.family('nitride_info', 'Always 1; the version label says which nitride runs.', 'gauge', () => [{ labels: { version: VERSION }, value: 1 }]);
    this.family('nitride_nbd_connections', 'Open NBD connections, all listeners.', 'gauge', () => [{ labels: {}, value: this.sources.nbdConnections() }]);
  }

  private volumeFamilies(): void {
    this.family('nitride_volume_info', 'Always 1 per volume; labels carry its name and type.', 'gauge', ({ volumes }) =>
      volumes.map((v) => ({ labels: { volume: v.id, name: v.name, type: v.type }, value: 1 })),
    );
    this.family('nitride_volume_attached_consumers', 'Consumers (processes or hosts) attached to the volume.', 'gauge', ({ volumes }) =>
      volumes.map((v) => ({ labels: { volume: v.id }, value: v.consumers })),
    );
    this.family('nitride_volume_connections', 'NBD connections open on the volume.', 'gauge', ({ volumes }) => volumes.map((v) => ({ labels: { volume: v.id }, value: v.connections })));
    /** The commands a volume has served, with their label. */
    const served = (commands: readonly CommandStats[]) => COUNTED_COMMANDS.filter(([cmd]) => commands[cmd]!.ops > 0).map(([cmd, op]) => ({ op, c: commands[cmd]! }));
    const perCommand = (value: (c: CommandStats) => number) => ({ volumes }: Scrape): Sample[] =>
      volumes.flatMap((v) => served(v.commands).map(({ op, c }) => ({ labels: { volume: v.id, op }, value: value(c) })));
    this.family('nitride_volume_requests_total', 'NBD requests completed (replied), by command.', 'counter', perCommand((c) => c.ops));
    this.family('nitride_volume_bytes_total', 'Bytes of successful requests: moved (read, write) or covered (trim, write_zeroes, cache, block_status).', 'counter', perCommand((c) => c.bytes));
    this.family('nitride_volume_errors_total', 'Error replies, by NBD errno.', 'counter', ({ volumes }) =>
      volumes.flatMap((v) => [...v.stats.errors].map(([errno, count]) => ({ labels: { volume: v.id, errno: nbdErrnoName(errno) }, value: count }))),
    );
    this.family('nitride_volume_request_duration_seconds', 'Time from decoding an NBD request to queueing its reply.', 'histogram', ({ volumes }) =>
      volumes.flatMap((v) =>
        served(v.commands).flatMap(({ op, c }) => {
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
        }),
      ),
    );
    // Provisioned performance and the time it held requests back (EBS's NVMe statistics
    // ebs_volume_performance_exceeded_iops / _tp, here in seconds).
    this.family('nitride_volume_performance_exceeded_iops_seconds_total', 'Time requests waited because the volume reached its provisioned IOPS.', 'counter', ({ volumes }) =>
      volumes.map((v) => ({ labels: { volume: v.id }, value: v.throttled.iopsSeconds })),
    );
    this.family('nitride_volume_performance_exceeded_tp_seconds_total', 'Time requests waited because the volume reached its provisioned throughput.', 'counter', ({ volumes }) =>
      volumes.map((v) => ({ labels: { volume: v.id }, value: v.throttled.throughputSeconds })),
    );
    this.family('nitride_volume_provisioned_iops', 'Provisioned IOPS of volumes that have a limit.', 'gauge', ({ volumes }) =>
      volumes.flatMap((v) => (v.performance.iops === null ? [] : [{ labels: { volume: v.id }, value: v.performance.iops }])),
    );
    this.family('nitride_volume_provisioned_throughput_bytes', 'Provisioned throughput (bytes per second) of volumes that have a limit.', 'gauge', ({ volumes }) =>
      volumes.flatMap((v) => (v.performance.throughputMiBps === null ? [] : [{ labels: { volume: v.id }, value: v.performance.throughputMiBps * 1024 * 1024 }])),
    );
  }

  private vpcFamilies(): void {
    this.family('nitride_vpc_up', '1 while the VPC data plane runs (host key unwrapped, underlay bound).', 'gauge', ({ vpc }) => [{ labels: {}, value: vpc.up ? 1 : 0 }]);
    const perEni = (pick: (eni: string, s: VpcNamedStats['enis'][string]) => Sample[]) => ({ vpc }: Scrape) => Object.entries(vpc.stats?.enis ?? {}).flatMap(([eni, s]) => pick(eni, s));
    const perPeer = (pick: (peer: string, s: VpcNamedStats['peers'][string]) => Sample[]) => ({ vpc }: Scrape) => Object.entries(vpc.stats?.peers ?? {}).flatMap(([peer, s]) => pick(peer, s));
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
    this.family('nitride_nic_conntrack_flows', 'Flows the security groups of a local ENI track (0 without groups).', 'gauge', perEni((eni, s) => [{ labels: { eni }, value: s.conntrack.flows }]));
    this.family('nitride_nic_conntrack_max', 'Flows a local ENI may track; new flows beyond it are dropped (conntrack_full).', 'gauge', perEni((eni, s) => [{ labels: { eni }, value: s.conntrack.max }]));
    this.family('nitride_peer_packets_total', 'Underlay datagrams exchanged with a peer daemon.', 'counter', perPeer((peer, s) => peerDirections(peer, [s.txPackets, s.rxPackets])));
    this.family('nitride_peer_bytes_total', 'Underlay bytes exchanged with a peer daemon.', 'counter', perPeer((peer, s) => peerDirections(peer, [s.txBytes, s.rxBytes])));
    this.family('nitride_peer_drops_total', 'Datagrams from or frames towards a peer dropped, by reason (bad_tag, replay, no_session, not_plaintext, no_route, spoofed).', 'counter',
      perPeer((peer, s) => Object.entries(s.drops).map(([reason, value]) => ({ labels: { peer, reason: snake(reason) }, value }))),
    );
    this.family('nitride_peer_last_seen_timestamp_seconds', 'Unix time of the last authenticated message from the peer (0 = never).', 'gauge', perPeer((peer, s) => [{ labels: { peer }, value: s.lastRx / 1000 }]));
    this.family('nitride_vpc_underlay_drops_total', 'Underlay datagrams dropped before any peer session, by reason (unknown_peer, malformed, punt_overflow, tx_error).', 'counter', ({ vpc }) =>
      Object.entries(vpc.stats?.underlay ?? {}).filter(([reason]) => reason !== 'punted').map(([reason, value]) => ({ labels: { reason: snake(reason) }, value })),
    );
    this.family('nitride_peer_handshakes_total', 'Handshakes completed with the peer (sessions installed, rekeys included).', 'counter', ({ vpc }) =>
      vpc.peers.map((p) => ({ labels: { peer: p.name }, value: p.handshakes })),
    );
    this.family('nitride_peer_rekeys_total', 'Handshakes that replaced a current session.', 'counter', ({ vpc }) => vpc.peers.map((p) => ({ labels: { peer: p.name }, value: p.rekeys })));
    this.family('nitride_peer_session_established', '1 while the peer has a current session.', 'gauge', ({ vpc }) =>
      vpc.peers.map((p) => ({ labels: { peer: p.name }, value: p.session === 'established' ? 1 : 0 })),
    );
  }
}
