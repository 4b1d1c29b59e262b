/**
 * The daemon itself: `GET /v1/status` → DaemonStatus, `PUT /v1/log-level` SetLogLevelRequest
 * → LogLevelChange, `GET /metrics` → Prometheus text (exposition.ts parses it).
 */
import type { FleetStatus } from './fleet.js';
import type { VpcStatus } from './vpc.js';

export const DAEMON_API = {
  status: '/v1/status',
  logLevel: '/v1/log-level',
  metrics: '/metrics',
} as const;

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface SetLogLevelRequest {
  level: LogLevel;
}

export interface LogLevelChange {
  level: LogLevel;
  previous: string;
}

/** What `GET /v1/status` returns. */
export interface DaemonStatus {
  version: string;
  pid: number;
  startedAt: string;
  uptimeSeconds: number;
  stateDir: string;
  controlSocket: string;
  configFile: string | null;
  logLevel: string;
  node: string;
  /** `degraded` when something the daemon should serve is not served; `problems` says what. */
  health: 'ok' | 'degraded';
  problems: string[];
  /** `guestPeersRefused`: connections to a guest's own NBD socket from a uid that is not its QEMU's (dropped). */
  nbd: { socket: string; tcp: string | null; connections: number; guestPeersRefused: number };
  /** The host's own KMS (the host key; volume keys too unless `kmsEndpoint`). */
  kmsSocket: string;
  /** The network KMS that serves volume data keys, if configured. */
  kmsEndpoint: string | null;
  /** Metrics: always `GET /metrics` on the control socket; `tcp` is the loopback listener, if any. */
  metrics: { tcp: string | null };
  /** `ephemeralHandover`: how ephemeral volumes cross a daemon restart (`none`: they are wiped). */
  volumes: { total: number; inUse: number; ebs: number; ephemeral: number; ephemeralHandover: EphemeralHandover };
  /** The Ceph store of rbd volumes (null: none configured). */
  ceph: CephStatus | null;
  vpc: VpcStatus;
  /** Fleet mode only. */
  fleet: FleetStatus | null;
  vms: { total: number; running: number };
}

/** How ephemeral volumes cross a daemon restart: systemd's fd store, metadata files (opt-in), or not at all. */
export interface EphemeralHandover {
  via: 'fd-store' | 'metadata-file' | 'none';
  /** Volumes whose wrapped key is in the fd store now. */
  kept: number;
}

/** The Ceph store as the daemon last saw it (its pool is re-read every few seconds). */
export interface CephStatus {
  pool: string;
  /** This host's name in the locks of the volumes it attaches. */
  hostId: string;
  /** Whether the last pool read worked (null: not tried yet). */
  reachable: boolean | null;
  /** Why it failed. */
  error: string | null;
  checkedAt: string | null;
}
