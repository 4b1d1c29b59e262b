/**
 * The nitride daemon: one per host, playing the Nitro cards. It owns the state
 * directory, serves the control API, and (in later layers) volumes and NICs.
 *
 * Start order: state dir lock → audit log → volumes → VPC model → control socket → NBD
 * listeners → metrics → VPC runtime (its first attempt; it needs the KMS for the host key and
 * retries on its own) → ready. Under systemd the listeners come from and go to its fd store.
 * Stop order is the reverse; every step runs even if an earlier one failed.
 */
import { VERSION } from '../common/package-info.js';
import { RuntimeError, oneLine } from '../common/errors.js';
import { formatEndpoint, parseEndpoint } from '../common/endpoint.js';
import { AuditLog } from '../control/audit.js';
import { ControlServer } from '../control/server.js';
import { DAEMON_API, type DaemonStatus, type LogLevelChange } from '../api/daemon.js';
import { SetLogLevelBody } from '../api/daemon.schema.js';
import type { Logger } from '../log/logger.js';
import { RbdCluster, sdNotify } from '../native/addon.js';
import type { DaemonConfig } from './config.js';
import type { StateDir } from '../common/state-dir.js';
import { startService, stopService } from '../common/service.js';
import { KmsClient } from '../kms/client.js';
import { NetworkKms } from '../kms/network-client.js';
import { loadSodium } from '../kms/sodium.js';
import { decodeKey } from '../vpc/handshake.js';
import { NbdServer } from '../nbd/server.js';
import { VolumeManager, type RbdStore } from '../volume/manager.js';
import { EphemeralKeyStore } from '../volume/ephemeral-keys.js';
import { registerVolumeRoutes } from './routes/volumes.js';
import { registerSnapshotRoutes } from './routes/snapshots.js';
import { VpcManager } from '../vpc/manager.js';
import { registerSecurityGroupRoutes } from './routes/security-groups.js';
import { registerNetworkAclRoutes } from './routes/network-acls.js';
import { registerFlowLogRoutes } from './routes/flow-logs.js';
import { registerVpcRoutes } from './routes/vpc.js';
import { ImageAllowlist } from '../vm/images.js';
import { VmManager } from '../vm/manager.js';
import { parseUidRange } from '../vm/jail.js';
import { registerVmRoutes } from './routes/vms.js';
import { CountingKeyProvider } from '../metrics/kms-calls.js';
import { DaemonMetrics } from '../metrics/daemon-metrics.js';
import { serveMetrics, type MetricsEndpoints } from '../metrics/serve.js';
import { FdStore } from '../common/fd-store.js';
import { Fleet } from '../fleet/fleet.js';
import { registerFleetRoutes } from './routes/fleet.js';

export class Daemon {
  private readonly startedAt = new Date();
  private stopping: Promise<void> | undefined;
  private metrics: MetricsEndpoints = { tcp: null, close: async () => {} };

  private constructor(
    readonly config: DaemonConfig,
    private readonly logger: Logger,
    private readonly state: StateDir,
    private readonly audit: AuditLog,
    private readonly control: ControlServer,
    private readonly volumes: VolumeManager,
    private readonly nbd: NbdServer,
    private readonly vpc: VpcManager,
    private readonly images: ImageAllowlist,
    private readonly vms: VmManager,
    private readonly network: NetworkKms | undefined,
    private readonly fleet: Fleet | undefined,
  ) {}

  /** Take the state dir, open the audit log, register routes, listen, and tell systemd we are ready. */
  static start(config: DaemonConfig, logger: Logger): Promise<Daemon> {
    return startService('daemon', config.stateDir, async (state, undo) => {
      // Under systemd the listening sockets survive restarts in its fd store (live update).
      const fdStore = FdStore.open();
      const kept = (name: string) => (fdStore ? { store: fdStore, name } : undefined);
      const audit = await AuditLog.open(state.file('audit.log'), logger);
      undo(() => audit.close());
      // Every KMS call of the daemon is counted for metrics. The host's own KMS keeps the host
      // key; volume keys come from the network KMS when one is configured (it authenticates
      // this host by that key, so it cannot be the one wrapping it).
      const hostKms = new CountingKeyProvider(new KmsClient({ socketPath: config.kmsSocket }));
      let vpcForKey: VpcManager | undefined;
      const network = config.kmsEndpoint
        ? new NetworkKms({
            endpoint: config.kmsEndpoint,
            kmsPublicKey: decodeKey(config.kmsPublicKey ?? '', '--kms-public-key'),
            sodium: await loadSodium(),
            hostKey: () => vpcForKey!.hostKeyPair(),
          })
        : undefined;
      if (network) undo(() => network.close());
      const kms = network ? new CountingKeyProvider(network.client) : hostKms;
      // RBD-backed ebs volumes: a cluster connection for the daemon, and one per attachment (what fencing blocklists).
      let ceph: RbdStore | undefined;
      if (config.ceph) {
        const { conf, id, pool, timeoutSeconds, hostId } = config.ceph;
        const connect = () => RbdCluster.connect({ conf, id, pool, timeoutSeconds });
        try {
          ceph = { cluster: await connect(), pool, connect, hostId };
        } catch (err) {
          throw new RuntimeError(`cannot reach the Ceph cluster (${conf}, client.${id}, pool ${pool}): ${oneLine(err)}`, 'CEPH_UNAVAILABLE');
        }
        const cluster = ceph.cluster;
        undo(() => cluster.close());
      }
      const volumes = new VolumeManager({
        ...(ceph ? { rbd: ceph } : {}),
        ebsStore: config.ebsStore,
        volumeDir: state.file('volumes'),
        ephemeralDir: config.ephemeralDir,
        // Ephemeral keys cross a restart in the fd store (RAM), or, opted in, in metadata files.
        ...(fdStore ? { keyStore: new EphemeralKeyStore(fdStore) } : { handoverFile: config.ephemeralHandoverFile }),
        kms,
        logger,
        nbdSocket: config.nbdSocket,
      });
      await volumes.load();
      let vms: VmManager | undefined;
      undo(() => volumes.close(vms?.volumesInUse()));
      const vpc = new VpcManager({ stateFile: state.file('vpc.json'), kms: hostKms, logger, listen: config.vpcListen, dnsServers: config.vpcDns, rekeyAfterSeconds: config.vpcRekeyAfter, conntrackMax: config.vpcConntrackMax, allowanceQueueUs: config.vpcAllowanceQueueUs, underlayMtu: config.vpcUnderlayMtu, pollUs: config.vpcPollUs, ...(fdStore ? { fdStore } : {}) });
      await vpc.load();
      vpcForKey = vpc;
      undo(() => vpc.close());
      // Fleet mode: the model and the peers come from etcd (or the snapshot while it is down).
      const fleet = config.fleet ? await Fleet.start({ tls: config.fleet, vpc, vpcListen: config.vpcListen, snapshotFile: state.file('fleet.json'), logger }) : undefined;
      if (fleet) undo(() => fleet.close());
      const images = new ImageAllowlist(state.file('images.json'), state.file('images'));
      await images.load();
      // Re-adopts the QEMU processes a previous daemon started (they outlive it).
      const nbd = new NbdServer({ catalog: volumes, logger, dataPlane: config.nbdDataPlane });
      vms = new VmManager({ vmDir: state.file('vms'), logger, volumes, vpc, images, nbdSocket: config.nbdSocket, nbd, uidRange: parseUidRange(config.vmUidRange), consoleRotation: config.vmConsole });
      await vms.load();
      undo(() => vms.close());
      const control = new ControlServer({ socketPath: config.controlSocket, logger, audit, kept: kept('control') });
      const daemon = new Daemon(config, logger, state, audit, control, volumes, nbd, vpc, images, vms, network, fleet);
      daemon.registerRoutes();
      // The control socket first: a second daemon pointed at it is refused before it touches anything else.
      await control.listen();
      undo(() => control.close());
      undo(() => nbd.close());
      await nbd.listenUnix(config.nbdSocket, kept('nbd'));
      await vms.serveGuests();
      if (config.nbdListen) {
        const { host, port } = parseEndpoint(config.nbdListen, '--nbd-listen');
        volumes.tcpEndpoint = formatEndpoint({ host, port: await nbd.listenTcp(host, port, kept('nbd-tcp')) });
      }
      daemon.metrics = await serveMetrics(control, new DaemonMetrics({ volumes, vpc, kms, nbdConnections: () => nbd.connectionCount, ...(fleet ? { fleet } : {}) }), config.metricsListen, kept('metrics'));
      undo(() => daemon.metrics.close());
      // Ready once every volume is served (the NBD sockets listen) and the VPC's first start
      // attempt is over: every local ENI has its port in the engine. A VPC that cannot start
      // (KMS unreachable) does not hold readiness: it retries on its own and STATUS= says so.
      await vpc.start();
      fleet?.register();
      // What the previous run stored and this one did not take over is no longer configured.
      // (While the VPC is down its ENIs' sockets go too: it makes new ones when it comes up.)
      const dropped = fdStore?.dropUnadopted() ?? [];
      if (dropped.length) logger.info({ dropped }, 'fd store entries nothing here uses dropped');
      const vpcStatus = vpc.status();
      sdNotify(`READY=1\nSTATUS=${vpcStatus.state === 'up' ? 'serving' : `serving volumes; VPC down: ${vpcStatus.message ?? ''}`}`);
      logger.info({ version: VERSION, stateDir: state.root, controlSocket: config.controlSocket, ...(fdStore ? { adoptedSockets: fdStore.adopted } : {}) }, 'daemon started');
      return daemon;
    });
  }

  status(): DaemonStatus {
    const all = this.volumes.describeAll();
    const vpc = this.vpc.status();
    const ceph = this.volumes.cephHealth();
    const problems = vpc.state === 'up' ? [] : [`VPC down: ${vpc.message ?? 'not started'}`];
    if (ceph?.reachable === false) problems.push(`Ceph unreachable (pool ${ceph.pool}): ${ceph.error}`);
    const fleetProblem = this.fleet?.problem();
    if (fleetProblem) problems.push(fleetProblem);
    return {
      version: VERSION,
      pid: process.pid,
      startedAt: this.startedAt.toISOString(),
      uptimeSeconds: Math.round((Date.now() - this.startedAt.getTime()) / 1000),
      stateDir: this.state.root,
      controlSocket: this.config.controlSocket,
      configFile: this.config.configFile ?? null,
      logLevel: this.logger.level,
      node: process.version,
      health: problems.length ? 'degraded' : 'ok',
      problems,
      nbd: { socket: this.config.nbdSocket, tcp: this.volumes.tcpEndpoint ?? null, connections: this.nbd.connectionCount, guestPeersRefused: this.nbd.refusedPeers },
      kmsSocket: this.config.kmsSocket,
      kmsEndpoint: this.config.kmsEndpoint ?? null,
      metrics: { tcp: this.metrics.tcp },
      volumes: {
        total: all.length,
        inUse: all.filter((v) => v.state === 'in-use').length,
        ebs: all.filter((v) => v.type === 'ebs').length,
        ephemeral: all.filter((v) => v.type === 'ephemeral').length,
        ephemeralHandover: this.volumes.ephemeralHandover(),
      },
      ceph,
      vpc,
      fleet: this.fleet?.status() ?? null,
      vms: this.vms.status(),
    };
  }

  /** Graceful stop; idempotent. */
  stop(reason: string): Promise<void> {
    this.stopping ??= stopService('daemon', reason, this.logger, [
      ['control', () => this.control.close()],
      // Guests keep running (live update); only the watching stops.
      ['vms', () => this.vms.close()],
      ['metrics', () => this.metrics.close()],
      // In-flight NBD requests finish and are flushed before keys are destroyed.
      ['nbd', () => this.nbd.close()],
      // Ephemeral volumes of running VMs, and under systemd every attached one, are kept (live update); the others wiped.
      ['volumes', () => this.volumes.close(this.vms.volumesInUse())],
      // The host record stays until its lease expires (a restart keeps its peers).
      ['fleet', async () => this.fleet?.close()],
      // Ports go away, netdevs stay (guests survive a restart).
      ['vpc', () => this.vpc.close()],
      ['kms', async () => this.network?.close()],
      ['audit', () => this.audit.close()],
      ['state', () => this.state.release()],
    ]);
    return this.stopping;
  }

  private registerRoutes(): void {
    registerVolumeRoutes(this.control, this.volumes);
    registerSnapshotRoutes(this.control, this.volumes);
    registerVpcRoutes(this.control, this.vpc);
    registerSecurityGroupRoutes(this.control, this.vpc);
    registerNetworkAclRoutes(this.control, this.vpc);
    registerFlowLogRoutes(this.control, this.vpc);
    registerVmRoutes(this.control, this.vms, this.images);
    registerFleetRoutes(this.control, this.fleet);
    this.control.register({ method: 'GET', path: DAEMON_API.status, handle: () => this.status() });
    this.control.register({
      method: 'PUT',
      path: DAEMON_API.logLevel,
      audit: 'daemon.set-log-level',
      body: SetLogLevelBody,
      handle: ({ body }): LogLevelChange => {
        const previous = this.logger.level;
        this.logger.level = body.level;
        this.logger.info({ previous, level: body.level }, 'log level changed');
        return { level: body.level, previous };
      },
    });
  }
}
