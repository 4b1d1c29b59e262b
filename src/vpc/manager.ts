/**
 * The VPC in the daemon, behind one object for the control routes, the metrics and the VMs:
 * the model (VPCs, subnets, ENIs) and the peers, persisted by {@link VpcStateStore}; the host
 * key ({@link loadHostKey}); and the runtime ({@link VpcRuntime}: the engine, ENI ports, peers,
 * handshake), with the ENIs' netdevs ({@link Netdevs}) and the counters (./stats.ts).
 *
 * The model and the peers are always available (load, change, persist). The runtime needs
 * the host key, hence the KMS, and the underlay socket: until both work it stays down, says
 * why in {@link VpcManager.status}, and retries every few seconds; the rest of the daemon is
 * not affected. Every change to the model is applied to the runtime when it is up, and all of
 * it is applied when it comes up.
 */
import path from 'node:path';
import { parseEndpoint, type Endpoint } from '../common/endpoint.js';
import { SerialQueue } from '../common/serial.js';
import { NotFoundError, RuntimeError, UsageError, oneLine } from '../common/errors.js';
import type { KeyProvider } from '../kms/provider.js';
import { loadSodium } from '../kms/sodium.js';
import type { Logger } from '../log/logger.js';
import type { FdStore } from '../common/fd-store.js';
import {
  LOCAL_HOST_ID,
  VPC_MAX_MTU,
  type EniInfo,
  type EniKind,
  type ModifyEniRequest,
  type PeerInfo,
  type SubnetRecord,
  type VpcNamedStats,
  type VpcRecord,
  type VpcStatsReply,
  type VpcStatus,
} from '../api/vpc.js';
import type { CreateFlowLogRequest, FlowLogRecord, FlowLogRecords, FlowLogRecordsQuery } from '../api/flow-logs.js';
import { FlowLogWriter } from './flow-log-writer.js';
import type { CreateNetworkAclRequest, NaclEntry, NetworkAclRecord } from '../api/network-acls.js';
import type { ConntrackReply, CreateSecurityGroupRequest, FlushConntrackReply, SecurityGroupRecord, SgDirection, SgRule } from '../api/security-groups.js';
import { UNDERLAY_DEFAULT_MTU, UNDERLAY_OVERHEAD_IPV4, UNDERLAY_OVERHEAD_IPV6 } from './constants.js';
import { VpcRuntime, nativeEngine, type EngineFactory } from './engine-runtime.js';
import { encodeKey, type KeyPair } from './handshake.js';
import { loadHostKey } from './host-key.js';
import type { CreateEniInput, CreateVpcInput, EniRecord, VpcModel } from './model.js';
import { checkVethName, hostNetdevs, vethGuestName, type Netdevs } from './netdevs.js';
import { newPeerRecord, sessionState, type NewPeer } from './peers.js';
import { VpcStateStore } from './state-store.js';
import { SessionCounters, type VpcObservation } from './stats.js';

const RETRY_MS = 3000;
/** Flows `sg conntrack list` shows at most (the count says how many there are). */
const CONNTRACK_LIST_MAX = 10000;

export interface PeerRecord {
  name: string;
  /** Numeric host and UDP port, `198.51.100.7:4789` or `[2001:db8::1]:4789`. */
  endpoint: string;
  publicKey: string;
  plaintext: boolean;
}

/** Sessions established with one peer since the daemon started (metrics). */
export interface PeerSessionCounters {
  /** Completed handshakes (sessions installed), rekeys included. */
  handshakes: number;
  /** Handshakes that replaced a current session. */
  rekeys: number;
}

/**
 * The VPC's mutations when a fleet store holds the model (src/fleet): each is one transaction
 * there, and resolves once this host's view has it. Peers come from the fleet's host records.
 */
export interface FleetMutations {
  createVpc(input: CreateVpcInput): Promise<VpcRecord>;
  deleteVpc(id: string): Promise<void>;
  createSubnet(input: { vpcId: string; cidr: string; id?: string; name?: string }): Promise<SubnetRecord>;
  deleteSubnet(id: string): Promise<void>;
  /** Resolves with the new ENI's id. */
  createEni(input: CreateEniInput & { kind?: EniKind }): Promise<string>;
  deleteEni(id: string): Promise<void>;
  /** Place the ENI on another host. */
  moveEni(id: string, hostId: string): Promise<void>;
  /** Everything else `eni modify` changes (groups, source/dest check, description, TCP timeout). */
  modifyEni(id: string, changes: Omit<ModifyEniRequest, 'hostId'>): Promise<void>;
  createSecurityGroup(input: CreateSecurityGroupRequest): Promise<SecurityGroupRecord>;
  deleteSecurityGroup(id: string): Promise<void>;
  changeRule(id: string, op: 'authorize' | 'revoke', direction: SgDirection, rule: SgRule): Promise<SecurityGroupRecord>;
  createNetworkAcl(input: CreateNetworkAclRequest): Promise<NetworkAclRecord>;
  deleteNetworkAcl(id: string): Promise<void>;
  changeNetworkAcl(id: string, change: { add: NaclEntry } | { remove: { direction: SgDirection; ruleNumber: number } }): Promise<void>;
  /** The subnet leaves the ACL it had for this one. */
  associateNetworkAcl(id: string, subnetId: string): Promise<void>;
}

/**
 * A change of the fleet's view made in place on the running model (src/fleet/view-state.ts):
 * `apply` makes it, and says which ENIs it took out (as they were) and put in (as they are).
 */
export interface FleetDelta {
  model: VpcModel;
  apply(): { before: EniRecord[]; after: EniRecord[]; kinds: Record<string, EniKind>; peers: PeerRecord[]; droppedFlowLogs: Array<{ flowLog: { id: string }; err: string }> };
}

/** What the fleet gives the VPC to run: the model as this host sees it, its ENIs' kinds, the peers. */
export interface FleetModel {
  model: VpcModel;
  kinds: Record<string, EniKind>;
  peers: PeerRecord[];
}

export interface VpcManagerOptions {
  stateFile: string;
  /** systemd's fd store: local ENIs' packet sockets survive a restart there, queueing frames. */
  fdStore?: FdStore;
  kms: KeyProvider;
  logger: Logger;
  /** Underlay UDP bind, HOST:PORT. */
  listen: string;
  /** DNS servers handed out by DHCP (none by default). */
  dnsServers?: string[];
  /** Session age (seconds) at which peers rekey; default 120 (the handshake's REKEY_AFTER_TIME). */
  rekeyAfterSeconds?: number;
  /** Flows each local ENI's security groups track at most. */
  conntrackMax?: number;
  /** How long a frame over an ENI's allowance may wait, µs (0: dropped). */
  allowanceQueueUs?: number;
  /** What the underlay carries between hosts (default UNDERLAY_DEFAULT_MTU): local ENIs' VPCs must fit. */
  underlayMtu?: number;
  /** The engine worker's longest busy-poll before it sleeps, µs (default VPC_POLL_US_DEFAULT). */
  pollUs?: number;
  /** The data plane; default the native engine (tests pass an in-memory one). */
  engine?: EngineFactory;
  /** Where local ENIs' netdevs are made; default the host's. */
  netdevs?: Netdevs;
}

export class VpcManager {
  private readonly log: Logger;
  private readonly store: VpcStateStore;
  private readonly netdevs: Netdevs;
  private readonly listen: Endpoint;
  private rt: VpcRuntime | undefined;
  /** Sessions established per peer (kept across VPC restarts within this process). */
  private readonly sessions = new SessionCounters();
  private downMessage: string | null = 'starting';
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private lastWarning: string | undefined;
  /** Serialises mutations and the runtime start. */
  private readonly queue = new SerialQueue();
  /** Flow-log records: files under the state directory, and the newest in memory for tail. */
  private readonly flowLogWriter: FlowLogWriter;
  /** Fleet mode: mutations go to the fleet store, the model and peers come from it. */
  private fleet: FleetMutations | undefined;
  /** What this host's underlay carries, and what a datagram adds to a guest frame on it. */
  private readonly underlayMtu: number;
  private readonly underlayOverhead: number;

  constructor(private readonly options: VpcManagerOptions) {
    this.log = options.logger.child({ component: 'vpc' });
    this.listen = parseEndpoint(options.listen, '--vpc-listen', { numeric: true });
    this.underlayMtu = options.underlayMtu ?? UNDERLAY_DEFAULT_MTU;
    this.underlayOverhead = this.listen.host.includes(':') ? UNDERLAY_OVERHEAD_IPV6 : UNDERLAY_OVERHEAD_IPV4;
    this.store = new VpcStateStore(options.stateFile);
    this.netdevs = options.netdevs ?? hostNetdevs;
    this.flowLogWriter = new FlowLogWriter(path.join(path.dirname(options.stateFile), 'flow-logs'), this.log);
  }

  /** Read the state file (the runtime starts with {@link start}). */
  load(): Promise<void> {
    return this.store.load();
  }

  /** Try to bring the runtime up now, and keep retrying in the background until it is. */
  start(): Promise<void> {
    return this.queue.run(() => this.tryStart());
  }

  /**
   * A copy of the host key pair for another user of the host identity (the network KMS
   * client), which wipes it; loaded (or made) under the same queue as the runtime's start.
   */
  hostKeyPair(): Promise<KeyPair> {
    return this.queue.run(async () => loadHostKey(await loadSodium(), this.options.kms, this.store, this.log));
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    // A start blocked on a slow KMS does not hold the daemon's stop: it tears itself down when it ends.
    let timeout: NodeJS.Timeout | undefined;
    await Promise.race([this.queue.idle(), new Promise((r) => (timeout = setTimeout(r, 5000)))]);
    clearTimeout(timeout);
    const rt = this.rt;
    this.rt = undefined;
    rt?.close();
  }

  // ---- model: VPCs, subnets -----------------------------------------------------------------

  /** Fleet mode from now on (before the first change). */
  useFleet(fleet: FleetMutations): void {
    this.fleet = fleet;
  }

  createVpc(input: CreateVpcInput): Promise<VpcRecord> {
    if (this.fleet) return this.fleet.createVpc(input);
    return this.mutate((model) => model.createVpc(input));
  }
  listVpcs(): VpcRecord[] {
    return this.store.model.listVpcs();
  }
  deleteVpc(id: string): Promise<void> {
    if (this.fleet) return this.fleet.deleteVpc(id);
    return this.mutate((model) => model.deleteVpc(id));
  }
  createSubnet(input: { vpcId: string; cidr: string; id?: string; name?: string }): Promise<SubnetRecord> {
    if (this.fleet) return this.fleet.createSubnet(input);
    return this.mutate((model) => model.createSubnet(input));
  }
  listSubnets(vpcId?: string): Array<SubnetRecord & { available: number }> {
    const model = this.store.model;
    return model.listSubnets(vpcId).map((s) => ({ ...s, available: model.subnetUsage(s.id).available }));
  }
  deleteSubnet(id: string): Promise<void> {
    if (this.fleet) return this.fleet.deleteSubnet(id);
    return this.mutate((model) => model.deleteSubnet(id));
  }

  // ---- ENIs ---------------------------------------------------------------------------------

  createEni(input: CreateEniInput & { kind?: EniKind }): Promise<EniInfo> {
    if (input.hostId === undefined || input.hostId === LOCAL_HOST_ID) {
      try {
        this.checkUnderlayCarries(input.subnetId);
      } catch (err) {
        return Promise.reject(err);
      }
    }
    if (this.fleet) {
      const fleet = this.fleet;
      return fleet.createEni(input).then((id) => this.getEni(id));
    }
    return this.queue.run(async () => {
      const remote = input.hostId !== undefined && input.hostId !== LOCAL_HOST_ID;
      if (remote && input.kind !== undefined) throw new UsageError('--kind is for local ENIs only (a remote ENI has its netdev on its own host)');
      const kind = remote ? undefined : (input.kind ?? 'tap');
      if (kind === 'veth' && input.hostInterface !== undefined) checkVethName(input.hostInterface);
      const { kind: _kind, ...modelInput } = input;
      const record = this.store.model.createEni({ ...modelInput, hostId: remote ? input.hostId : LOCAL_HOST_ID });
      this.store.setKind(record.id, kind);
      try {
        if (this.rt) await this.rt.addEni(record);
        await this.store.save();
      } catch (err) {
        if (this.rt) await this.rt.removeEni(record, true).catch(() => {});
        this.store.model.deleteEni(record.id);
        this.store.setKind(record.id, undefined);
        throw err;
      }
      this.log.info({ eni: record.id, mac: record.mac, ip: record.privateIp, host: record.hostId, kind }, 'ENI created');
      return this.eniInfo(record);
    });
  }

  listEnis(): EniInfo[] {
    return this.store.model.listEnis().map((e) => this.eniInfo(e));
  }

  getEni(id: string): EniInfo {
    return this.eniInfo(this.store.model.getEni(id));
  }

  deleteEni(id: string): Promise<void> {
    if (this.fleet) return this.fleet.deleteEni(id);
    return this.queue.run(async () => {
      const record = this.store.model.getEni(id);
      if (this.rt) await this.rt.removeEni(record, true);
      else if (record.hostId === LOCAL_HOST_ID) await this.netdevs.remove(record.hostInterface);
      this.store.model.deleteEni(id);
      this.store.setKind(id, undefined);
      await this.store.save();
      this.rt?.applySecurity(); // it was a member of its groups
      this.log.info({ eni: id }, 'ENI deleted');
    });
  }

  /** Refuses a local ENI in a VPC whose frames this host's underlay cannot carry. */
  private checkUnderlayCarries(subnetId: string): void {
    const model = this.store.model;
    if (!model.hasSubnet(subnetId)) return; // the model says so, in its words
    const vpcId = model.getSubnet(subnetId).vpcId;
    const mtu = model.vpcMtu(vpcId);
    if (mtu > this.maxVpcMtu) {
      throw new UsageError(`VPC ${vpcId} has MTU ${mtu}, which needs an underlay MTU of ${mtu + this.underlayOverhead}; this host's carries ${this.underlayMtu} (--vpc-underlay-mtu)`);
    }
  }

  /** The largest VPC MTU whose frames this host's underlay carries in one datagram. */
  get maxVpcMtu(): number {
    return Math.min(VPC_MAX_MTU, this.underlayMtu - this.underlayOverhead);
  }

  modifyEni(id: string, changes: ModifyEniRequest): Promise<EniInfo> {
    if (this.fleet) {
      const { hostId, ...rest } = changes;
      if (hostId !== undefined && Object.keys(rest).length) return Promise.reject(new UsageError('in fleet mode an ENI moves (eni move) in a change of its own'));
      if (hostId !== undefined) return this.fleet.moveEni(id, hostId).then(() => this.getEni(id));
      if (!Object.keys(rest).length) return Promise.reject(new UsageError('nothing to change'));
      return this.fleet.modifyEni(id, rest).then(() => this.getEni(id));
    }
    if (changes.hostId !== undefined) return Promise.reject(new UsageError('eni move needs fleet mode (a standalone daemon records remote ENIs by hand: delete and create it)'));
    return this.queue.run(async () => {
      const record = await this.store.change((model) => model.modifyEni(id, changes));
      this.rt?.updateEni(record);
      if (changes.securityGroups || changes.tcpEstablishedTimeout !== undefined) this.rt?.applySecurity();
      return this.eniInfo(record);
    });
  }

  // ---- security groups (the rules reach the engine at once; tracked flows continue) ------------

  createSecurityGroup(input: CreateSecurityGroupRequest): Promise<SecurityGroupRecord> {
    if (this.fleet) return this.fleet.createSecurityGroup(input);
    return this.mutateSecurity((model) => {
      model.getVpc(input.vpcId);
      return model.securityGroups.create(input);
    });
  }
  listSecurityGroups(vpcId?: string): SecurityGroupRecord[] {
    if (vpcId !== undefined) this.store.model.getVpc(vpcId);
    return this.store.model.securityGroups.list(vpcId);
  }
  getSecurityGroup(id: string): SecurityGroupRecord {
    return this.store.model.securityGroups.get(id);
  }
  deleteSecurityGroup(id: string): Promise<void> {
    if (this.fleet) return this.fleet.deleteSecurityGroup(id);
    return this.mutateSecurity((model) => model.deleteSecurityGroup(id));
  }
  authorize(id: string, direction: SgDirection, rule: SgRule): Promise<SecurityGroupRecord> {
    if (this.fleet) return this.fleet.changeRule(id, 'authorize', direction, rule);
    return this.mutateSecurity((model) => model.securityGroups.authorize(id, direction, rule));
  }
  revoke(id: string, direction: SgDirection, rule: SgRule): Promise<SecurityGroupRecord> {
    if (this.fleet) return this.fleet.changeRule(id, 'revoke', direction, rule);
    return this.mutateSecurity((model) => model.securityGroups.revoke(id, direction, rule));
  }
  conntrack(eniId: string): ConntrackReply {
    this.store.model.getEni(eniId);
    const { count, max, flows } = this.up().conntrack(eniId, CONNTRACK_LIST_MAX);
    return { eniId, count, max, flows };
  }
  flushConntrack(eniId?: string): FlushConntrackReply {
    if (eniId !== undefined) this.store.model.getEni(eniId);
    return { flushed: this.up().flushConntrack(eniId) };
  }

  // ---- network ACLs (entries and associations reach the engine at once) ----------------------

  createNetworkAcl(input: CreateNetworkAclRequest): Promise<NetworkAclRecord> {
    if (this.fleet) return this.fleet.createNetworkAcl(input).then((r) => this.getNetworkAcl(r.id));
    return this.mutateSecurity((model) => model.createNetworkAcl(input));
  }
  listNetworkAcls(vpcId?: string): NetworkAclRecord[] {
    const model = this.store.model;
    if (vpcId !== undefined) model.getVpc(vpcId);
    return model.networkAcls.list(vpcId).map((a) => model.describeNetworkAcl(a.id));
  }
  getNetworkAcl(id: string): NetworkAclRecord {
    return this.store.model.describeNetworkAcl(id);
  }
  deleteNetworkAcl(id: string): Promise<void> {
    if (this.fleet) return this.fleet.deleteNetworkAcl(id);
    return this.mutateSecurity((model) => model.networkAcls.delete(id));
  }
  addNaclEntry(id: string, entry: NaclEntry): Promise<NetworkAclRecord> {
    if (this.fleet) return this.fleet.changeNetworkAcl(id, { add: entry }).then(() => this.getNetworkAcl(id));
    return this.mutateSecurity((model) => {
      model.networkAcls.addEntry(id, entry);
      return model.describeNetworkAcl(id);
    });
  }
  deleteNaclEntry(id: string, direction: SgDirection, ruleNumber: number): Promise<NetworkAclRecord> {
    if (this.fleet) return this.fleet.changeNetworkAcl(id, { remove: { direction, ruleNumber } }).then(() => this.getNetworkAcl(id));
    return this.mutateSecurity((model) => {
      model.networkAcls.deleteEntry(id, direction, ruleNumber);
      return model.describeNetworkAcl(id);
    });
  }
  associateNetworkAcl(id: string, subnetId: string): Promise<NetworkAclRecord> {
    if (this.fleet) return this.fleet.associateNetworkAcl(id, subnetId).then(() => this.getNetworkAcl(id));
    return this.mutateSecurity((model) => {
      model.associateNetworkAcl(id, subnetId);
      return model.describeNetworkAcl(id);
    });
  }

  // ---- flow logs (this host writes its local ENIs' records; in fleet mode they stay this host's) --

  createFlowLog(input: CreateFlowLogRequest): Promise<FlowLogRecord> {
    return this.mutateSecurity((model) => model.createFlowLog(input));
  }
  listFlowLogs(): FlowLogRecord[] {
    return this.store.model.flowLogs.list();
  }
  deleteFlowLog(id: string): Promise<void> {
    return this.mutateSecurity((model) => model.flowLogs.delete(id));
  }
  flowLogRecords(query: FlowLogRecordsQuery): FlowLogRecords {
    if (query.eniId !== undefined) this.store.model.getEni(query.eniId);
    return this.flowLogWriter.records(query);
  }

  // ---- peers --------------------------------------------------------------------------------

  addPeer(input: NewPeer): Promise<PeerInfo> {
    if (this.fleet) return Promise.reject(new UsageError('in fleet mode peers come from the hosts registered in etcd: no peer add'));
    return this.queue.run(async () => {
      const record = newPeerRecord(input, this.store.peers());
      this.store.setPeer(record);
      try {
        if (this.rt) this.rt.addPeer(record);
        await this.store.save();
      } catch (err) {
        if (this.rt) this.rt.removePeer(record.name);
        this.store.deletePeer(record.name);
        throw err;
      }
      this.log.info({ peer: record.name, endpoint: record.endpoint, plaintext: record.plaintext }, 'peer added');
      return this.peerInfo(record, this.rt?.namedStats());
    });
  }

  listPeers(): PeerInfo[] {
    const stats = this.rt?.namedStats();
    return this.store.peers().map((p) => this.peerInfo(p, stats));
  }

  deletePeer(name: string): Promise<void> {
    if (this.fleet) return Promise.reject(new UsageError('in fleet mode peers come from the hosts registered in etcd: no peer delete'));
    return this.queue.run(async () => {
      if (!this.store.peer(name)) throw new NotFoundError(`peer ${name} does not exist`);
      if (this.rt) this.rt.removePeer(name);
      this.store.deletePeer(name);
      await this.store.save();
      this.log.info({ peer: name }, 'peer deleted');
    });
  }

  // ---- fleet --------------------------------------------------------------------------------

  /**
   * Run on the fleet's view from now on: ENIs and peers that went or changed leave the engine
   * (a local ENI that left this host loses its netdev), the new ones join it. Errors of one ENI
   * or peer are logged and do not stop the others.
   */
  applyFleetModel(next: FleetModel): Promise<void> {
    return this.queue.run(async () => {
      const after = new Map(next.model.listEnis().map((e) => [e.id, e]));
      await this.programFleet(this.store.model.listEnis(), after, next.kinds, next.peers, () => {
        // Flow logs are this host's (its files, not the fleet's): they stay while their resource does.
        for (const fl of this.store.model.flowLogs.list()) {
          try {
            next.model.createFlowLog(fl);
          } catch (err) {
            this.log.info({ flowLog: fl.id, err: oneLine(err) }, 'flow log dropped with its resource');
          }
        }
        this.store.replace(next.model, next.kinds, next.peers);
      });
    });
  }

  /**
   * Run on a change the fleet makes to the running model in place (a batch of ENI or host
   * records): only the ENIs it took out or put in, and the peers if the hosts changed, are
   * programmed. False (nothing done) when `delta.model` is not the running model any more.
   */
  applyFleetDelta(delta: FleetDelta): Promise<boolean> {
    return this.queue.run(async () => {
      if (delta.model !== this.store.model) return false;
      const { before, after, kinds, peers, droppedFlowLogs } = delta.apply();
      for (const { flowLog, err } of droppedFlowLogs) this.log.info({ flowLog: flowLog.id, err }, 'flow log dropped with its resource');
      const afterById = new Map(after.map((e) => [e.id, e]));
      // Tables of local ENIs name only groups of their own VPC: a change elsewhere changes none.
      const vpcs = new Set([...before, ...after].map((e) => e.vpcId));
      const security = this.rt?.hasPortIn(vpcs) ?? false;
      await this.programFleet(before, afterById, kinds, peers, () => this.store.replace(this.store.model, kinds, peers), security);
      return true;
    });
  }

  /**
   * Program the engine from `before` (running ENIs that may have gone or changed) to `after`
   * (the ENIs they became, and new ones); `commit` makes the next model the running one.
   */
  private async programFleet(before: EniRecord[], after: Map<string, EniRecord>, kinds: Record<string, EniKind>, nextPeersList: PeerRecord[], commit: () => void, security = true): Promise<void> {
    const beforeById = new Map(before.map((e) => [e.id, e]));
    const same = (a: EniRecord, b: EniRecord) =>
      a.hostId === b.hostId && a.mac === b.mac && a.privateIp === b.privateIp && a.hostInterface === b.hostInterface && a.sourceDestCheck === b.sourceDestCheck && this.store.kind(a.id) === kinds[b.id];
    const gone = before.filter((e) => !after.has(e.id) || !same(e, after.get(e.id)!));
    const added = [...after.values()].filter((e) => !beforeById.has(e.id) || !same(beforeById.get(e.id)!, e));
    const samePeer = (a: PeerRecord, b: PeerRecord) => a.endpoint === b.endpoint && a.publicKey === b.publicKey;
    const nextPeers = new Map(nextPeersList.map((p) => [p.name, p]));
    const peersGone = this.store.peers().filter((p) => !nextPeers.has(p.name) || !samePeer(p, nextPeers.get(p.name)!));
    const peersAdded = nextPeersList.filter((p) => !this.store.peer(p.name) || !samePeer(this.store.peer(p.name)!, p));
    const rt = this.rt;
    for (const e of gone) {
      const n = after.get(e.id);
      const leaves = e.hostId === LOCAL_HOST_ID && (!n || n.hostId !== LOCAL_HOST_ID || n.hostInterface !== e.hostInterface);
      try {
        if (rt) await rt.removeEni(e, leaves);
        else if (leaves) await this.netdevs.remove(e.hostInterface);
      } catch (err) {
        this.log.error({ eni: e.id, err: oneLine(err) }, 'cannot remove ENI');
      }
    }
    for (const p of peersGone) rt?.removePeer(p.name);
    commit();
    if (!rt) return;
    for (const p of peersAdded) {
      try {
        rt.addPeer(p);
      } catch (err) {
        this.log.error({ peer: p.name, err: oneLine(err) }, 'cannot set up peer');
      }
    }
    // Groups' member addresses may have changed with any ENI: addEnis compiles the tables again.
    await rt.addEnis(added, security || added.some((e) => e.hostId === LOCAL_HOST_ID) || gone.some((e) => e.hostId === LOCAL_HOST_ID));
  }

  // ---- observation --------------------------------------------------------------------------

  publicKey(): string {
    return encodeKey(this.up().publicKey);
  }

  /** The host key, null while the VPC is down (what status() reports, without its other work). */
  hostPublicKey(): string | null {
    return this.rt ? encodeKey(this.rt.publicKey) : null;
  }

  status(): VpcStatus {
    const model = this.store.model;
    return {
      enabled: true,
      state: this.rt ? 'up' : 'down',
      message: this.rt ? null : this.downMessage,
      listen: this.options.listen,
      port: this.rt ? this.rt.port : null,
      publicKey: this.hostPublicKey(),
      underlayMtu: this.underlayMtu,
      maxVpcMtu: this.maxVpcMtu,
      vpcs: model.listVpcs().length,
      subnets: model.listSubnets().length,
      enis: model.eniCount(),
      peers: this.store.peers().map((p) => ({ name: p.name, endpoint: p.endpoint, session: this.session(p.name) })),
    };
  }

  /** What a metrics scrape reads: one engine snapshot (none while down), the peers' sessions and handshake counts. */
  observe(): VpcObservation {
    const rt = this.rt;
    return {
      up: rt !== undefined,
      stats: rt ? rt.namedStats() : null,
      peers: this.store.peers().map((p) => ({ name: p.name, session: this.session(p.name), ...this.sessions.get(p.name) })),
    };
  }

  stats(): VpcStatsReply {
    const rt = this.up();
    return { ...rt.namedStats(), control: rt.controlStats() };
  }

  // ---- internals ----------------------------------------------------------------------------

  private up(): VpcRuntime {
    if (!this.rt) throw new RuntimeError(`the VPC is down: ${this.downMessage ?? 'not started'}`, 'VPC_DOWN');
    return this.rt;
  }

  private mutate<T>(fn: (model: VpcModel) => T): Promise<T> {
    return this.queue.run(() => this.store.change(fn));
  }

  /** A change that may alter compiled tables (groups, ACLs, flow logs): saved, then applied to the engine. */
  private mutateSecurity<T>(fn: (model: VpcModel) => T): Promise<T> {
    return this.queue.run(async () => {
      const result = await this.store.change(fn);
      this.rt?.applySecurity();
      return result;
    });
  }

  private eniInfo(e: EniRecord): EniInfo {
    const kind = this.store.kind(e.id) ?? null;
    return { ...e, kind, guestInterface: kind === 'veth' ? vethGuestName(e.hostInterface) : null };
  }

  private session(name: string): PeerInfo['session'] {
    return sessionState(this.rt?.handshakeStatus(name));
  }

  /** `stats`: the engine snapshot that gives lastRx (one for a whole listing). */
  private peerInfo(p: PeerRecord, stats: VpcNamedStats | undefined): PeerInfo {
    const hs = this.rt?.handshakeStatus(p.name);
    if (!hs) return { ...p, session: 'unknown', handshake: null, lastRx: null };
    const lastRx = stats?.peers[p.name]?.lastRx ?? 0;
    return { ...p, session: sessionState(hs), handshake: hs, lastRx: lastRx || null };
  }

  private async tryStart(): Promise<void> {
    if (this.closed || this.rt) return;
    try {
      const rt = await this.bringUp();
      if (this.closed) {
        rt.close();
        return;
      }
      this.rt = rt;
      this.downMessage = null;
      this.lastWarning = undefined;
      this.log.info({ listen: this.options.listen, port: rt.port, publicKey: encodeKey(rt.publicKey) }, 'VPC up');
    } catch (err) {
      this.downMessage = oneLine(err);
      const line = `VPC down, retrying every ${RETRY_MS / 1000} s: ${this.downMessage}`;
      if (line !== this.lastWarning) this.log.warn({ err: this.downMessage }, line);
      else this.log.debug(line);
      this.lastWarning = line;
      if (!this.closed) {
        this.retryTimer = setTimeout(() => void this.queue.run(() => this.tryStart()), RETRY_MS);
        this.retryTimer.unref();
      }
    }
  }

  private async bringUp(): Promise<VpcRuntime> {
    const sodium = await loadSodium();
    const keys = await loadHostKey(sodium, this.options.kms, this.store, this.log);
    const { fdStore, dnsServers, rekeyAfterSeconds, conntrackMax, allowanceQueueUs, pollUs } = this.options;
    return VpcRuntime.start(
      {
        engine: this.options.engine ?? nativeEngine,
        listen: this.listen,
        state: this.store,
        netdevs: this.netdevs,
        sessions: this.sessions,
        log: this.log,
        ...(fdStore ? { fdStore } : {}),
        ...(dnsServers ? { dnsServers } : {}),
        ...(rekeyAfterSeconds ? { rekeyAfterSeconds } : {}),
        ...(conntrackMax ? { conntrackMax } : {}),
        ...(allowanceQueueUs !== undefined ? { allowanceQueueUs } : {}),
        flowLogWriter: this.flowLogWriter,
        maxVpcMtu: this.maxVpcMtu,
        ...(pollUs !== undefined ? { pollUs } : {}),
      },
      sodium,
      keys,
    );
  }
}

