/**
 * The VPC while it runs: the engine (the native {@link VpcEngine} in the daemon), the ARP and
 * DHCP responders and the handshake with the peers. The runtime attaches ENIs (ports and
 * routes) and peers to the engine, answers the engine's control events, carries out the
 * handshake's actions and runs its timer. It reads the model from the state store and never
 * changes it. It uses only {@link RuntimeEngine} of the engine, so tests drive it with an
 * in-memory one.
 *
 * At close the engine's ports go away but the netdevs stay, so guests survive a daemon
 * restart; only removing an ENI for good deletes its netdev.
 */
import { ConflictError, UsageError, oneLine } from '../common/errors.js';
import type { FdStore } from '../common/fd-store.js';
import type { Sodium } from '../kms/sodium.js';
import type { Logger } from '../log/logger.js';
import { VpcEngine, closeFd, type VpcConntrackSnapshot, type VpcControlEvent, type VpcEndpoint, type VpcEngineOptions } from '../native/addon.js';
import { CT_DEFAULT_MAX_FLOWS, CT_TCP_ESTABLISHED_S, compileSg, encodeSg, type SgSource } from './sg-table.js';
import { compileNacl, encodeNacl } from './nacl-table.js';
import { FlowLogCollector } from './flow-log-collector.js';
import type { FlowLogWriter } from './flow-log-writer.js';
import { ArpResponder } from './arp.js';
import { GATEWAY_MAC, UNDERLAY_CAP_CSUM_PARTIAL } from './constants.js';
import { DhcpServer } from './dhcp.js';
import { HandshakeManager, decodeKey, type HandshakeAction, type KeyPair, type PeerHandshakeStatus } from './handshake.js';
import { ENI_ALLOWANCE_QUEUE_US, LOCAL_HOST_ID, type VpcControlStats, type VpcNamedStats } from '../api/vpc.js';
import { parseEndpoint } from '../common/endpoint.js';
import type { PeerRecord } from './manager.js';
import type { EniEntry, EniRecord } from './model.js';
import type { Netdevs } from './netdevs.js';
import { macBytes } from './packets.js';
import type { VpcStateStore } from './state-store.js';
import { nameStats, type SessionCounters } from './stats.js';

/** What the runtime uses of the native engine. */
export type RuntimeEngine = Pick<
  VpcEngine,
  | 'port'
  | 'addPort'
  | 'portFd'
  | 'holdPorts'
  | 'releasePorts'
  | 'updatePort'
  | 'removePort'
  | 'setRoute'
  | 'deleteRoute'
  | 'addPeer'
  | 'removePeer'
  | 'setPlaintext'
  | 'setSession'
  | 'clearSessions'
  | 'sendKeepalive'
  | 'setRekeyLimits'
  | 'sendFrame'
  | 'sendUnderlay'
  | 'stats'
  | 'setSecurity'
  | 'flushConntrack'
  | 'conntrack'
  | 'setFlowLog'
  | 'takeFlowLog'
  | 'close'
>;

/** Opens the engine: binds the underlay socket; events go to `onControl`. */
export type EngineFactory = (options: VpcEngineOptions) => RuntimeEngine;

export const nativeEngine: EngineFactory = (options) => new VpcEngine(options);

/** What the runtime reads of the state: the model's ENIs, their kinds, the peers. */
export type RuntimeState = Pick<VpcStateStore, 'model' | 'directory' | 'kind' | 'peers'>;

export interface RuntimeOptions {
  engine: EngineFactory;
  /** Underlay UDP bind. */
  listen: VpcEndpoint;
  state: RuntimeState;
  netdevs: Netdevs;
  /** systemd's fd store: local ENIs' packet sockets survive a restart there, queueing frames. */
  fdStore?: FdStore;
  /** Where installed sessions are counted (it outlives the runtime). */
  sessions: SessionCounters;
  log: Logger;
  /** DNS servers handed out by DHCP. */
  dnsServers?: string[];
  /** Session age (seconds) at which peers rekey; default the handshake's. */
  rekeyAfterSeconds?: number;
  /** Flows each local ENI's security groups track at most; default {@link CT_DEFAULT_MAX_FLOWS}. */
  conntrackMax?: number;
  /** How long a frame over an ENI's allowance may wait (µs; 0: dropped); default {@link ENI_ALLOWANCE_QUEUE_US}. */
  allowanceQueueUs?: number;
  /** Where flow-log records go (it outlives the runtime, as the records `tail` shows do). */
  flowLogWriter?: FlowLogWriter;
  /** The largest VPC MTU the underlay carries (a local ENI of a larger one is not attached); default any. */
  maxVpcMtu?: number;
  /** The engine worker's longest busy-poll before it sleeps, µs; default VPC_POLL_US_DEFAULT. */
  pollUs?: number;
}

/** The fd store name of a local ENI's packet socket. */
const portFdName = (eniId: string) => `eni-${eniId}`;

/** An ENI's allowances as the engine takes them (0: unlimited, so a removed limit goes). */
const allowance = (e: EniRecord, queueUs = ENI_ALLOWANCE_QUEUE_US) => ({ bandwidth: e.bandwidth ?? 0, pps: e.pps ?? 0, allowanceQueueUs: queueUs });

export class VpcRuntime {
  private readonly engine: RuntimeEngine;
  private readonly handshake: HandshakeManager;
  private readonly arp: ArpResponder;
  private readonly dhcp: DhcpServer;
  private readonly log: Logger;
  /** ENI id → engine port id, and back. */
  private readonly ports = new Map<string, number>();
  private readonly portEnis = new Map<number, string>();
  /** Peer name → engine peer id and underlay endpoint; engine peer id → name. */
  private readonly peers = new Map<string, { peerId: number; endpoint: VpcEndpoint }>();
  private readonly peerNames = new Map<number, string>();
  private readonly punts: Record<string, number> = { broadcast: 0, multicast: 0, route: 0, unknownPort: 0, sendErrors: 0 };
  private timer: NodeJS.Timeout | undefined;
  /** The tables last given to the engine, by ENI id: unchanged ones are not pushed again. */
  private readonly securityPushed = new Map<string, { table: Buffer; nacl: Buffer; tcpEstablishedTimeout: number }>();
  private readonly flowLogs: FlowLogCollector | undefined;
  private nextPort = 1;
  private nextPeer = 1;
  /** Events and timers are handled from the end of {@link start} until {@link close}. */
  private live = false;

  /**
   * Open the engine and attach every peer and ENI of the state. The runtime owns `keys` from
   * here: it wipes the private key at {@link close}, or at once if the start fails.
   */
  static async start(options: RuntimeOptions, sodium: Sodium, keys: KeyPair): Promise<VpcRuntime> {
    let rt: VpcRuntime | undefined;
    try {
      rt = new VpcRuntime(options, sodium, keys);
      await rt.attachAll();
    } catch (err) {
      rt?.engine.close();
      sodium.memzero(keys.privateKey);
      throw err;
    }
    rt.live = true;
    rt.armTimer();
    return rt;
  }

  private constructor(
    private readonly options: RuntimeOptions,
    private readonly sodium: Sodium,
    private readonly keys: KeyPair,
  ) {
    this.log = options.log;
    const { rekeyAfterSeconds, dnsServers } = options;
    this.handshake = new HandshakeManager({ sodium, local: keys, now: Date.now, ...(rekeyAfterSeconds ? { timers: { rekeyAfterSeconds } } : {}) });
    this.arp = new ArpResponder(options.state.directory);
    this.dhcp = new DhcpServer(dnsServers?.length ? { dnsServers } : {});
    this.engine = options.engine({ bindAddress: options.listen.host, bindPort: options.listen.port, ...(options.pollUs !== undefined ? { pollUs: options.pollUs } : {}), onControl: (event) => this.live && this.onControl(event) });
    if (options.flowLogWriter) this.flowLogs = new FlowLogCollector(this.engine, options.flowLogWriter);
  }

  /** The bound underlay UDP port. */
  get port(): number {
    return this.engine.port;
  }

  get publicKey(): Buffer {
    return this.keys.publicKey;
  }

  /** Stop: the timer, the engine's ports (not the netdevs), the engine; wipe the private key. */
  close(): void {
    this.live = false;
    clearTimeout(this.timer);
    this.flowLogs?.drainAll();
    this.flowLogs?.stop();
    for (const portId of this.ports.values()) this.engine.removePort(portId);
    this.engine.close();
    this.sodium.memzero(this.keys.privateKey);
  }

  private async attachAll(): Promise<void> {
    const { engine, log } = this;
    // The engine's age limit (rekey-needed when sending) matches the handshake's timer.
    if (this.options.rekeyAfterSeconds) engine.setRekeyLimits({ seconds: this.options.rekeyAfterSeconds });
    engine.setRoute(macBytes(GATEWAY_MAC), { control: true });
    for (const p of this.options.state.peers()) {
      try {
        this.addPeer(p);
      } catch (err) {
        log.error({ peer: p.name, err: oneLine(err) }, 'cannot set up peer');
      }
    }
    // Netdevs first, then every port and route in one synchronous pass: a port whose packet
    // socket was kept in the fd store forwards the frames queued in it at once, and they must
    // find the other ENIs' ports and routes already there.
    const prepared: EniRecord[] = [];
    for (const e of this.options.state.model.listEnis()) {
      try {
        await this.prepareEni(e);
        prepared.push(e);
      } catch (err) {
        log.error({ eni: e.id, err: oneLine(err) }, 'cannot set up ENI');
      }
    }
    engine.holdPorts();
    for (const e of prepared) {
      try {
        this.attachEni(e);
      } catch (err) {
        log.error({ eni: e.id, err: oneLine(err) }, 'cannot set up ENI');
      }
    }
    // Before any port forwards (frames may be queued in kept sockets): no frame passes unfiltered.
    this.applySecurity();
    engine.releasePorts();
  }

  // ---- ENIs ---------------------------------------------------------------------------------

  /** A new ENI: its netdev (local), port and route. */
  async addEni(e: EniRecord): Promise<void> {
    await this.prepareEni(e);
    this.attachEni(e);
    this.applySecurity();
  }

  /**
   * Several new ENIs at once (the fleet's changes): netdevs, then ports and routes, then security
   * once (unless `security` is false: the caller knows no local ENI's tables changed).
   */
  async addEnis(list: EniRecord[], security = true): Promise<void> {
    const prepared: EniRecord[] = [];
    for (const e of list) {
      try {
        await this.prepareEni(e);
        prepared.push(e);
      } catch (err) {
        this.log.error({ eni: e.id, err: oneLine(err) }, 'cannot set up ENI');
      }
    }
    for (const e of prepared) {
      try {
        this.attachEni(e);
      } catch (err) {
        this.log.error({ eni: e.id, err: oneLine(err) }, 'cannot set up ENI');
      }
    }
    if (security) this.applySecurity();
  }

  /** Whether a local ENI (one with a port) is in one of `vpcs`. */
  hasPortIn(vpcs: Set<string>): boolean {
    const model = this.options.state.model;
    for (const eniId of this.ports.keys()) if (vpcs.has(model.tables.lookupById(eniId)?.vpcId ?? '')) return true;
    return false;
  }

  /** Detach an ENI; `deleteDevice` (the ENI is gone for good) also drops its kept socket and deletes its netdev. */
  async removeEni(e: EniRecord, deleteDevice: boolean): Promise<void> {
    this.engine.deleteRoute(macBytes(e.mac));
    const portId = this.ports.get(e.id);
    if (portId !== undefined) {
      this.engine.removePort(portId);
      this.ports.delete(e.id);
      this.portEnis.delete(portId);
      this.securityPushed.delete(e.id);
      this.flowLogs?.forget(e.id);
    }
    if (deleteDevice) this.options.fdStore?.remove(portFdName(e.id));
    if (deleteDevice && e.hostId === LOCAL_HOST_ID) await this.options.netdevs.remove(e.hostInterface);
  }

  /** The ENI's source check and allowances, to the engine (the next frame sees them). */
  updateEni(e: EniRecord): void {
    const portId = this.ports.get(e.id);
    if (portId !== undefined) this.engine.updatePort(portId, { sourceCheck: e.sourceDestCheck, ...allowance(e, this.options.allowanceQueueUs) });
  }

  /**
   * Compile every local ENI's security groups and its subnet's network ACL and give the engine
   * the tables that changed (a rule, an entry, a membership, an ENI's groups, an association):
   * the engine swaps both whole, so the next packet sees them, and tracked flows continue. Call
   * after any change to groups, ACLs or ENIs.
   */
  applySecurity(): void {
    const model = this.options.state.model;
    // Per call, each group's members, each distinct group list's table and each subnet's ACL are
    // compiled once: in a fleet every local ENI of a VPC may share its default group, whose
    // members are all the VPC's ENIs on every host (10,000 of them: once, not once per port).
    const members = new Map<string, number[]>();
    const source: SgSource = {
      group: (id) => (model.securityGroups.has(id) ? model.securityGroups.get(id) : undefined),
      members: (id) => members.get(id) ?? members.set(id, model.groupMembers(id)).get(id)!,
    };
    const tables = new Map<string, Buffer>();
    const nacls = new Map<string, Buffer>();
    for (const [eniId, portId] of this.ports) {
      const eni = model.getEni(eniId);
      const groups = eni.securityGroups.join(',');
      const table = tables.get(groups) ?? tables.set(groups, encodeSg(compileSg(eni.securityGroups, source))).get(groups)!;
      const nacl = nacls.get(eni.subnetId) ?? nacls.set(eni.subnetId, encodeNacl(compileNacl(model.subnetAcl(eni.subnetId).entries))).get(eni.subnetId)!;
      const tcpEstablishedTimeout = eni.tcpEstablishedTimeout ?? CT_TCP_ESTABLISHED_S;
      const pushed = this.securityPushed.get(eniId);
      if (pushed && pushed.tcpEstablishedTimeout === tcpEstablishedTimeout && pushed.table.equals(table) && pushed.nacl.equals(nacl)) continue;
      this.engine.setSecurity(portId, table, { maxFlows: this.options.conntrackMax ?? CT_DEFAULT_MAX_FLOWS, tcpEstablishedTimeout, nacl });
      this.securityPushed.set(eniId, { table, nacl, tcpEstablishedTimeout });
    }
    this.flowLogs?.apply([...this.ports].map(([eniId, portId]) => {
      const eni = model.getEni(eniId);
      return { eni, portId, logs: model.flowLogs.covering(eni) };
    }));
  }

  /** Up to `max` flows a local ENI tracks. */
  conntrack(eniId: string, max: number): VpcConntrackSnapshot {
    return this.engine.conntrack(this.localPort(eniId), max);
  }

  /** Forget the tracked flows of one local ENI, or of all; how many there were. */
  flushConntrack(eniId?: string): number {
    if (eniId !== undefined) return this.engine.flushConntrack(this.localPort(eniId));
    let n = 0;
    for (const portId of this.ports.values()) n += this.engine.flushConntrack(portId);
    return n;
  }

  private localPort(eniId: string): number {
    const portId = this.ports.get(eniId);
    if (portId === undefined) throw new ConflictError(`ENI ${eniId} is not attached on this host (a remote ENI's flows are tracked by its own host)`);
    return portId;
  }

  /** A local ENI's netdev, made if missing and kept away from the host stack. */
  private async prepareEni(e: EniRecord): Promise<void> {
    if (e.hostId !== LOCAL_HOST_ID) return;
    const mtu = this.options.state.model.vpcMtu(e.vpcId);
    // Moved here in a fleet, or the underlay setting lowered since: its frames would not cross.
    if (mtu > (this.options.maxVpcMtu ?? Infinity)) throw new UsageError(`its VPC's MTU ${mtu} is more than this host's underlay carries (${this.options.maxVpcMtu}: --vpc-underlay-mtu)`);
    await this.options.netdevs.ensure(e.hostInterface, this.options.state.kind(e.id) ?? 'tap', e.mac);
  }

  /** The ENI's port (local) and route in the engine. */
  private attachEni(e: EniRecord): void {
    const mac = macBytes(e.mac);
    if (e.hostId !== LOCAL_HOST_ID) {
      const peer = this.peers.get(e.hostId);
      if (peer) this.engine.setRoute(mac, { peer: peer.peerId });
      return;
    }
    let portId = this.ports.get(e.id);
    if (portId === undefined) {
      portId = this.nextPort++;
      this.addPort(portId, e, mac);
      this.ports.set(e.id, portId);
      this.portEnis.set(portId, e.id);
    }
    this.engine.setRoute(mac, { port: portId });
  }

  /**
   * Attach a local ENI's netdev to the engine: through the packet socket the previous run
   * left in the fd store (frames the guest sent meanwhile are waiting in it), else a new one,
   * which is then stored.
   */
  private addPort(portId: number, e: EniRecord, mac: Uint8Array): void {
    const opts = { mac, ipv4: e.privateIp, sourceCheck: e.sourceDestCheck, mtu: this.options.state.model.vpcMtu(e.vpcId), ...allowance(e, this.options.allowanceQueueUs) };
    const store = this.options.fdStore;
    const name = portFdName(e.id);
    const kept = store?.adopt(name, (a) => a.family === 'other');
    if (kept !== undefined) {
      try {
        this.engine.addPort(portId, e.hostInterface, opts, kept);
        return;
      } catch (err) {
        closeFd(kept);
        store!.remove(name);
        this.log.warn({ eni: e.id, err: oneLine(err) }, 'kept packet socket unusable; opening a new one');
      }
    }
    this.engine.addPort(portId, e.hostInterface, opts);
    store?.keep(name, this.engine.portFd(portId));
  }

  // ---- peers --------------------------------------------------------------------------------

  /** A peer in the engine and the handshake, its ENIs routed to it; the handshake starts. */
  addPeer(p: PeerRecord): void {
    const peerId = this.nextPeer++;
    const endpoint = parseEndpoint(p.endpoint, 'endpoint', { numeric: true });
    this.handshake.addPeer(p.name, decodeKey(p.publicKey));
    try {
      this.engine.addPeer(peerId, endpoint);
    } catch (err) {
      this.handshake.removePeer(p.name);
      throw new ConflictError(`cannot add peer ${p.name}: ${oneLine(err)}`);
    }
    this.peers.set(p.name, { peerId, endpoint });
    this.peerNames.set(peerId, p.name);
    if (p.plaintext) this.engine.setPlaintext(peerId, true);
    for (const e of this.options.state.model.listEnis({ hostId: p.name })) this.engine.setRoute(macBytes(e.mac), { peer: peerId });
    this.execute(this.handshake.connect(p.name));
  }

  removePeer(name: string): void {
    const peer = this.peers.get(name);
    if (this.handshake.listPeers().includes(name)) this.execute(this.handshake.removePeer(name));
    if (!peer) return;
    for (const e of this.options.state.model.listEnis({ hostId: name })) this.engine.deleteRoute(macBytes(e.mac));
    this.engine.removePeer(peer.peerId);
    this.peers.delete(name);
    this.peerNames.delete(peer.peerId);
    this.armTimer();
  }

  /** The handshake's view of a peer; undefined if the runtime does not know it (its setup failed). */
  handshakeStatus(name: string): PeerHandshakeStatus | undefined {
    return this.handshake.listPeers().includes(name) ? this.handshake.status(name) : undefined;
  }

  // ---- counters -----------------------------------------------------------------------------

  /** One snapshot of the engine's counters, by ENI id and peer name. */
  namedStats(): VpcNamedStats {
    return nameStats(this.engine.stats(), (portId) => this.portEnis.get(portId), (peerId) => this.peerNames.get(peerId));
  }

  controlStats(): VpcControlStats {
    return {
      punts: { ...this.punts },
      arp: { replies: this.arp.replies, drops: { ...this.arp.drops } },
      dhcp: { replies: { ...this.dhcp.replies }, drops: { ...this.dhcp.drops } },
      handshake: { rejects: { ...this.handshake.rejects } },
    };
  }

  // ---- events and the handshake's actions ---------------------------------------------------

  private onControl(event: VpcControlEvent): void {
    switch (event.type) {
      case 'frame': {
        const eniId = this.portEnis.get(event.portId);
        const eni: EniEntry | undefined = eniId ? this.options.state.model.tables.lookupById(eniId) : undefined;
        if (!eni) {
          this.punts.unknownPort!++;
          return;
        }
        let reply: Buffer | null = null;
        if (event.reason === 'arp') reply = this.arp.handle(event.frame, eni);
        else if (event.reason === 'dhcp') reply = this.dhcp.handle(event.frame, eni, this.options.state.model.vpcMtu(eni.vpcId));
        else this.punts[event.reason] = (this.punts[event.reason] ?? 0) + 1;
        if (reply) {
          try {
            this.engine.sendFrame(event.portId, reply);
          } catch (err) {
            this.punts.sendErrors!++;
            this.log.debug({ eni: eniId, err: oneLine(err) }, 'cannot send a control reply');
          }
        }
        return;
      }
      case 'handshake': {
        const r = this.handshake.handleMessage(event.data);
        if (r.reject) this.log.debug({ from: `${event.host}:${event.port}`, reason: r.reject }, 'handshake message rejected');
        this.execute(r.actions);
        return;
      }
      case 'rekey-needed': {
        const name = this.peerNames.get(event.peerId);
        if (name) this.execute(this.handshake.rekeyNeeded(name));
        return;
      }
      case 'session-active': {
        const name = this.peerNames.get(event.peerId);
        if (name) this.execute(this.handshake.confirm(name, event.localIndex));
        return;
      }
      case 'port-error':
        this.log.warn({ eni: this.portEnis.get(event.portId), code: event.code }, `ENI port error: ${event.message}`);
        return;
    }
  }

  /** Carry out the handshake manager's actions, in order, then re-arm its timer. */
  private execute(actions: HandshakeAction[]): void {
    const { engine } = this;
    for (const action of actions) {
      const peer = this.peers.get(action.peerName);
      try {
        switch (action.type) {
          case 'send': {
            if (peer) engine.sendUnderlay(peer.endpoint.host, peer.endpoint.port, action.message);
            break;
          }
          case 'install': {
            if (!peer) break;
            const s = action.session;
            // A responder with no session to send with yet makes the new one current at once:
            // waiting for the initiator's first data message would leave this side mute until
            // the initiator happens to send (a keepalive, or a frame). Nothing is lost: with
            // no current session, frames could not be sent anyway.
            const pending = !action.sendable && action.replacesCurrent;
            this.options.sessions.installed(action.peerName, action.replacesCurrent);
            const csumPartial = (s.peerCapabilities & UNDERLAY_CAP_CSUM_PARTIAL) !== 0;
            engine.setSession(peer.peerId, { localIndex: s.localIndex, remoteIndex: s.remoteIndex, sendKey: s.sendKey, recvKey: s.recvKey }, { pending, csumPartial });
            this.log.debug({ peer: action.peerName, localIndex: s.localIndex, initiator: s.isInitiator, pending, csumPartial }, 'session installed');
            if (!action.sendable && !pending) this.execute(this.handshake.confirm(action.peerName, s.localIndex));
            // The initiator confirms the session to the responder right away: otherwise an idle
            // responder keeps sending on an older session, which the initiator drops at its next rekey.
            if (action.keepalive) engine.sendKeepalive(peer.peerId);
            break;
          }
          case 'promote':
            // The engine promotes a pending session itself (the session-active event).
            this.log.debug({ peer: action.peerName, localIndex: action.localIndex }, 'session promoted');
            break;
          case 'expire': {
            if (!peer) break;
            // The engine drops replaced sessions itself; it cannot drop one session alone, so a
            // session expired with nothing to replace it clears them all.
            const st = this.handshake.status(action.peerName);
            if (action.reason === 'disconnected' || (st.current === null && st.next === null)) engine.clearSessions(peer.peerId);
            break;
          }
          case 'give-up':
            this.log.warn({ peer: action.peerName, attempts: action.attempts }, 'peer does not answer the handshake; retrying later');
            break;
        }
      } catch (err) {
        this.log.error({ peer: action.peerName, action: action.type, err: oneLine(err) }, 'handshake action failed');
      }
    }
    this.armTimer();
  }

  private armTimer(): void {
    clearTimeout(this.timer);
    const at = this.handshake.nextTimerAt();
    if (at === undefined || !this.live) return;
    this.timer = setTimeout(() => {
      if (this.live) this.execute(this.handshake.onTimer());
    }, Math.max(0, at - Date.now()) + 1);
    this.timer.unref();
  }
}
