/**
 * This host's record in the fleet: host id, underlay endpoint, X25519 public key and version,
 * under a lease the client keeps alive (TTL {@link HOST_LEASE_TTL_S}): a host that dies drops
 * out of every peer list once its lease expires. The record is written once the VPC is up (the
 * public key comes from the host key, through the KMS) and again whenever the lease is lost.
 */
import type { Lease } from 'etcd3';
import { VERSION } from '../common/package-info.js';
import { oneLine } from '../common/errors.js';
import { formatEndpoint } from '../common/endpoint.js';
import type { Logger } from '../log/logger.js';
import type { VpcManager } from '../vpc/manager.js';
import { fleetKeys, type HostRecord } from './records.js';
import type { FleetStore } from './store.js';

export const HOST_LEASE_TTL_S = 10;
const RETRY_MS = 1000;

export class HostRegistration {
  private lease: Lease | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** When the current record was written (lease age in `fleet status`). */
  registeredAt: Date | null = null;
  private readonly log: Logger;

  constructor(
    private readonly store: FleetStore,
    private readonly vpc: VpcManager,
    /** The numeric underlay host peers dial (the --vpc-listen host). */
    private readonly underlayHost: string,
    logger: Logger,
    /** Called once the record is written (the view can now refuse others claiming this key). */
    private readonly onRegistered: () => void,
  ) {
    this.log = logger.child({ component: 'fleet' });
  }

  start(): void {
    void this.attempt();
  }

  /**
   * Stop keeping the lease alive, without revoking it: a daemon restarting (a live update, or
   * while etcd is down) stays in its peers' views and keeps its sessions; a host that does not
   * come back drops out when the lease expires.
   */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.lease?.release();
  }

  private retry(): void {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.attempt(), RETRY_MS);
    this.timer.unref();
  }

  private async attempt(): Promise<void> {
    if (this.closed) return;
    const status = this.vpc.status();
    if (status.publicKey === null || status.port === null) return this.retry();
    const record: HostRecord = { hostId: this.store.hostId, endpoint: formatEndpoint({ host: this.underlayHost, port: status.port }), publicKey: status.publicKey, version: VERSION };
    const lease = this.store.lease(HOST_LEASE_TTL_S);
    try {
      await lease.grant();
      await lease.put(fleetKeys.host(record.hostId)).value(JSON.stringify(record)).exec();
    } catch (err) {
      lease.release();
      this.log.debug({ err: oneLine(err) }, 'fleet: cannot register this host yet');
      return this.retry();
    }
    if (this.closed) {
      await lease.revoke().catch(() => {});
      return;
    }
    this.lease = lease;
    this.registeredAt = new Date();
    this.log.info({ host: record.hostId, endpoint: record.endpoint }, 'fleet: host registered');
    this.onRegistered();
    lease.on('lost', (err) => {
      if (this.lease !== lease || this.closed) return;
      this.lease = undefined;
      this.registeredAt = null;
      this.log.warn({ err: oneLine(err) }, 'fleet: host lease lost; registering again');
      this.retry();
    });
  }
}
