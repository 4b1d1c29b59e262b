/**
 * `nitride status`: what the daemon is running and how it is — the daemon, then its volumes,
 * local NICs (with their traffic and drops) and peers. `--json` prints the daemon status with
 * the same details under `details`.
 */
import { Command } from 'commander';
import { DAEMON_API, type DaemonStatus, type EphemeralHandover } from '../../api/daemon.js';
import { VOLUMES_API, type VolumeInfo } from '../../api/volumes.js';
import { fleetLine } from './fleet.js';
import { LOCAL_HOST_ID, VPC_API, type EniInfo, type PeerInfo, type VpcNamedStats } from '../../api/vpc.js';
import type { ControlClient } from '../../control/client.js';
import { clientOf, clientVerb, type ClientOptions } from '../client-options.js';
import { emit, formatBytes, formatDuration, renderFields, renderTable } from '../output.js';

export interface StatusReport extends DaemonStatus {
  details: { volumes: VolumeInfo[]; enis: EniInfo[]; peers: PeerInfo[]; vpcStats: VpcNamedStats | null };
}

/** The daemon status and the lists behind it, fetched together. */
export async function fetchStatusReport(client: ControlClient): Promise<StatusReport> {
  const status = await client.get<DaemonStatus>(DAEMON_API.status);
  const [volumes, enis, peers, vpcStats] = await Promise.all([
    client.get<VolumeInfo[]>(VOLUMES_API.volumes),
    client.get<EniInfo[]>(VPC_API.enis),
    client.get<PeerInfo[]>(VPC_API.peers),
    status.vpc.state === 'up' ? client.get<VpcNamedStats>(VPC_API.stats).catch(() => null) : Promise.resolve(null),
  ]);
  return { ...status, details: { volumes, enis, peers, vpcStats } };
}

export function renderStatusReport(s: StatusReport, now = Date.now()): string {
  const { volumes, enis, peers, vpcStats } = s.details;
  // A full connection-tracking table drops every new flow of the ENI: worth a line of its own.
  const full = Object.entries(vpcStats?.enis ?? {}).filter(([, st]) => st.conntrack.max > 0 && st.conntrack.flows >= st.conntrack.max);
  const daemon = renderFields({
    health: s.health === 'ok' ? 'ok' : `degraded (${s.problems.join('; ')})`,
    version: s.version,
    pid: s.pid,
    uptime: formatDuration(s.uptimeSeconds),
    'state dir': s.stateDir,
    'control socket': s.controlSocket,
    config: s.configFile,
    'log level': s.logLevel,
    'nbd socket': s.nbd.socket,
    'nbd tcp': s.nbd.tcp,
    'nbd connections': s.nbd.connections,
    'nbd guest peers refused': s.nbd.guestPeersRefused || undefined,
    'kms socket': s.kmsSocket,
    'kms endpoint': s.kmsEndpoint ?? undefined,
    'metrics tcp': s.metrics.tcp,
    volumes: `${s.volumes.total} (${s.volumes.ebs} ebs, ${s.volumes.ephemeral} ephemeral; ${s.volumes.inUse} in use)`,
    'ephemeral handover': handoverLine(s.volumes.ephemeralHandover),
    ceph: s.ceph ? `pool ${s.ceph.pool} as host ${s.ceph.hostId}: ${s.ceph.reachable === null ? 'not checked yet' : s.ceph.reachable ? 'reachable' : `unreachable (${s.ceph.error})`}` : undefined,
    vpc: s.vpc.state === 'up' ? `up, underlay ${s.vpc.listen} (MTU ${s.vpc.underlayMtu}: VPCs up to ${s.vpc.maxVpcMtu})` : `down: ${s.vpc.message}`,
    'vpc public key': s.vpc.publicKey,
    'vpc model': `${s.vpc.vpcs} VPCs, ${s.vpc.subnets} subnets, ${s.vpc.enis.total} ENIs (${s.vpc.enis.local} local)`,
    ...(full.length ? { 'conntrack full': `${full.map(([eni, st]) => `${eni} (${st.conntrack.flows} flows)`).join(', ')}: new flows dropped` } : {}),
    fleet: s.fleet ? fleetLine(s.fleet) : undefined,
  });
  const sections = [daemon];
  if (volumes.length) {
    sections.push(
      renderTable(volumes, {
        volume: (v) => v.id,
        name: (v) => v.name,
        type: (v) => v.type,
        size: (v) => formatBytes(v.size),
        state: (v) => v.state,
        attached: (v) => v.attachments.map((a) => `${a.consumer} (${a.connections})`).join(', ') || null,
        iops: (v) => v.performance.iops,
        'MiB/s': (v) => v.performance.throughputMiBps,
        'throttled s (iops/tp)': (v) => (v.performance.iops ?? v.performance.throughputMiBps) === null ? null : `${v.throttled.iopsSeconds.toFixed(1)}/${v.throttled.throughputSeconds.toFixed(1)}`,
      }),
    );
  }
  const local = enis.filter((e) => e.hostId === LOCAL_HOST_ID);
  if (local.length) {
    sections.push(
      renderTable(local, {
        nic: (e) => e.id,
        ifname: (e) => e.hostInterface,
        ip: (e) => e.privateIp,
        mac: (e) => e.mac,
        'from guest': (e) => vpcStats?.enis[e.id] && `${vpcStats.enis[e.id]!.rxFrames} frames`,
        'to guest': (e) => vpcStats?.enis[e.id] && `${vpcStats.enis[e.id]!.txFrames} frames`,
        // Security groups' tracked flows and the limit: a full table drops new flows (conntrackFull).
        flows: (e) => {
          const ct = vpcStats?.enis[e.id]?.conntrack;
          return ct && ct.max > 0 ? `${ct.flows}/${ct.max}${ct.flows >= ct.max ? ' full' : ''}` : null;
        },
        drops: (e) => {
          const drops = vpcStats?.enis[e.id]?.drops;
          if (!drops) return null;
          const { punted: _notADrop, ...real } = drops;
          return Object.entries(real).filter(([, n]) => n > 0).map(([why, n]) => `${why} ${n}`).join(', ') || 0;
        },
      }),
    );
  }
  if (peers.length) {
    sections.push(
      renderTable(peers, {
        peer: (p) => p.name,
        endpoint: (p) => p.endpoint,
        session: (p) => p.session,
        'last seen': (p) => (p.lastRx ? `${formatDuration(Math.max(0, Math.round((now - p.lastRx) / 1000)))} ago` : 'never'),
        'rx/tx packets': (p) => vpcStats?.peers[p.name] && `${vpcStats.peers[p.name]!.rxPackets}/${vpcStats.peers[p.name]!.txPackets}`,
      }),
    );
  }
  return sections.join('\n\n');
}

export function statusCommand(): Command {
  return clientVerb(new Command('status').description('show the daemon status: health, volumes, NICs, peers')).action(async (options: ClientOptions) => {
    emit(options, await fetchStatusReport(clientOf(options)), (s) => renderStatusReport(s));
  });
}

/** How ephemeral volumes cross a daemon restart, as `status` says it. */
function handoverLine(h: EphemeralHandover): string {
  if (h.via === 'fd-store') return `systemd fd store (${h.kept} kept): attached ephemeral volumes survive a restart or crash`;
  if (h.via === 'metadata-file') return 'wrapped key written to metadata at a stop (--ephemeral-handover-file); lost on a crash';
  return 'none (no systemd fd store): ephemeral volumes are wiped when the daemon stops or crashes';
}
