/**
 * Fleet mode (`nitride daemon --fleet-endpoints`): `GET /v1/fleet/status` → FleetStatus,
 * `GET /v1/fleet/hosts` → FleetHostInfo[]. A standalone daemon answers both with 409 FLEET_OFF.
 */
import type { PeerInfo } from './vpc.js';

export const FLEET_API = {
  status: '/v1/fleet/status',
  hosts: '/v1/fleet/hosts',
} as const;

export interface FleetStatus {
  /** This host's id (the CN of its etcd client certificate). */
  hostId: string;
  endpoints: string[];
  /** `degraded`: no etcd member answers; the data plane runs on the last view, changes are refused. */
  state: 'ok' | 'degraded';
  degradedSince: string | null;
  message: string | null;
  /** The etcd revision this host has seen, and the one its engine runs on (the lag is their difference). */
  revision: number;
  appliedRevision: number;
  /**
   * When the watch last brought a revision, and when the engine was programmed with the view at
   * `appliedRevision` (ms): scripts/bench-fleet.sh times propagation by them.
   */
  seenAt: string | null;
  appliedAt: string | null;
  /** When this host's record was last written under its lease (null: not registered now). */
  registeredAt: string | null;
  leaseTtlSeconds: number;
  /** Hosts with a valid record, this one included. */
  hosts: number;
  counters: {
    badRecords: number;
    hostKeyChanges: number;
    relists: number;
    watchEvents: number;
  };
  /** The daemon's memory now, bytes (process.memoryUsage): what holding the fleet's view costs. */
  memory: { rss: number; heapTotal: number; heapUsed: number; external: number; arrayBuffers: number };
}

export interface FleetHostInfo {
  hostId: string;
  endpoint: string;
  publicKey: string;
  version: string;
  /** This host's own record. */
  self: boolean;
  /** The VPC session with it (null for this host). */
  session: PeerInfo['session'] | null;
}
