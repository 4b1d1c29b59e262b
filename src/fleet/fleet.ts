/**
 * Fleet mode in the daemon, one object: the store (./store.ts), this host's copy of the fleet
 * (./mirror.ts), its registration (./registration.ts) and the VPC mutations as transactions
 * (./mutations.ts). The VPC runs on the mirror's view; it never waits for etcd.
 */
import { UsageError } from '../common/errors.js';
import { parseEndpoint } from '../common/endpoint.js';
import type { FleetHostInfo, FleetStatus } from '../api/fleet.js';
import type { Logger } from '../log/logger.js';
import type { VpcManager } from '../vpc/manager.js';
import { FleetMirror } from './mirror.js';
import { FleetVpcMutations } from './mutations.js';
import { HOST_LEASE_TTL_S, HostRegistration } from './registration.js';
import { FleetStore, type FleetTls } from './store.js';

export class Fleet {
  private constructor(
    private readonly tls: FleetTls,
    private readonly store: FleetStore,
    private readonly mirror: FleetMirror,
    private readonly registration: HostRegistration,
    private readonly vpc: VpcManager,
  ) {}

  /**
   * Connect (lazily: etcd may be down), hand the VPC its mutations, load the snapshot and list
   * the fleet if etcd answers. Call before the VPC starts; {@link register} after.
   */
  static async start(options: { tls: FleetTls; vpc: VpcManager; vpcListen: string; snapshotFile: string; logger: Logger }): Promise<Fleet> {
    const { host } = parseEndpoint(options.vpcListen, '--vpc-listen', { numeric: true });
    if (host === '0.0.0.0' || host === '::') throw new UsageError('fleet mode needs --vpc-listen on this host\'s underlay address (the other hosts dial it), not a wildcard');
    const store = await FleetStore.open(options.tls);
    const mirror = new FleetMirror(store, options.vpc, options.snapshotFile, options.logger);
    const registration = new HostRegistration(store, options.vpc, host, options.logger, () => mirror.refresh());
    options.vpc.useFleet(new FleetVpcMutations(store, mirror));
    try {
      await mirror.start();
    } catch (err) {
      store.close();
      throw err;
    }
    return new Fleet(options.tls, store, mirror, registration, options.vpc);
  }

  /** Write this host's record once the VPC is up (and again whenever its lease is lost). */
  register(): void {
    this.registration.start();
  }

  async close(): Promise<void> {
    await this.registration.close();
    await this.mirror.close();
    this.store.close();
  }

  status(): FleetStatus {
    const s = this.mirror.state();
    return {
      hostId: this.store.hostId,
      endpoints: this.tls.endpoints,
      state: s.degradedSince ? 'degraded' : 'ok',
      degradedSince: s.degradedSince?.toISOString() ?? null,
      message: s.lastError,
      revision: s.revision,
      seenAt: s.seenAt?.toISOString() ?? null,
      appliedRevision: s.appliedRevision,
      appliedAt: s.appliedAt?.toISOString() ?? null,
      registeredAt: this.registration.registeredAt?.toISOString() ?? null,
      leaseTtlSeconds: HOST_LEASE_TTL_S,
      hosts: this.mirror.hostRecords().length,
      counters: { ...this.mirror.counters },
      memory: process.memoryUsage(),
    };
  }

  /** One line for the daemon's problems, or null when etcd answers. */
  problem(): string | null {
    const s = this.mirror.state();
    return s.degradedSince ? `fleet: degraded (etcd unreachable since ${s.degradedSince.toISOString()})` : null;
  }

  hosts(): FleetHostInfo[] {
    const peers = new Map(this.vpc.status().peers.map((p) => [p.name, p.session]));
    return this.mirror
      .hostRecords()
      .map((h) => ({ ...h, self: h.hostId === this.store.hostId, session: h.hostId === this.store.hostId ? null : (peers.get(h.hostId) ?? 'unknown') }))
      .sort((a, b) => (a.hostId < b.hostId ? -1 : 1));
  }
}
