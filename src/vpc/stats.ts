/**
 * What the VPC counts, for `vpc stats` and the metrics: the engine's counters keyed by ENI id
 * and peer name (the engine only knows its numeric port and peer ids), and the sessions
 * established with each peer, which outlive a restart of the runtime.
 */
import type { VpcStats } from '../native/addon.js';
import type { PeerInfo, VpcNamedStats } from '../api/vpc.js';
import type { PeerSessionCounters } from './manager.js';

/** Engine counters by ENI id and peer name; ids the runtime does not know show as `port-N`, `peer-N`. */
export function nameStats(stats: VpcStats, eniOfPort: (portId: number) => string | undefined, nameOfPeer: (peerId: number) => string | undefined): VpcNamedStats {
  const enis: VpcNamedStats['enis'] = {};
  for (const [portId, value] of Object.entries(stats.ports)) enis[eniOfPort(Number(portId)) ?? `port-${portId}`] = value;
  const peers: VpcNamedStats['peers'] = {};
  for (const [peerId, value] of Object.entries(stats.peers)) peers[nameOfPeer(Number(peerId)) ?? `peer-${peerId}`] = value;
  return { enis, peers, underlay: stats.underlay, worker: stats.worker };
}

/** Sessions installed per peer name since the daemon started. */
export class SessionCounters {
  private readonly byPeer = new Map<string, PeerSessionCounters>();

  /** A session was installed with `peerName`; `rekey` if it replaces a current one. */
  installed(peerName: string, rekey: boolean): void {
    const counters = this.byPeer.get(peerName) ?? { handshakes: 0, rekeys: 0 };
    counters.handshakes++;
    if (rekey) counters.rekeys++;
    this.byPeer.set(peerName, counters);
  }

  get(peerName: string): PeerSessionCounters {
    return { ...(this.byPeer.get(peerName) ?? { handshakes: 0, rekeys: 0 }) };
  }
}

/** One look at the VPC for a metrics scrape: at most one engine snapshot. */
export interface VpcObservation {
  up: boolean;
  /** Engine counters; null while the VPC is down. */
  stats: VpcNamedStats | null;
  /** Every configured peer's session state and handshake counts. */
  peers: Array<{ name: string; session: PeerInfo['session'] } & PeerSessionCounters>;
}
