/**
 * In-memory stand-ins for the VPC runtime's unit tests. {@link FakeEngine} keeps the tables
 * the runtime sets (ports, routes, peers, sessions), records what it is asked to send, and
 * delivers the control events a test emits. Like the native engine it refuses a port or peer
 * id twice, a second peer on one endpoint, and any call once closed; it forwards no frames.
 * {@link FakeNetdevs} records the netdevs made and deleted.
 */
import type { RuntimeEngine } from '../../src/vpc/engine-runtime.js';
import type { EniKind, VpcPeerStats, VpcPortStats } from '../../src/api/vpc.js';
import type { Netdevs } from '../../src/vpc/netdevs.js';
import type {
  VpcControlEvent,
  VpcEndpoint,
  VpcEngineOptions,
  VpcPortOptions,
  VpcRekeyLimits,
  VpcConntrackSnapshot,
  VpcFlowLogTake,
  VpcRouteTarget,
  VpcSecurityOptions,
  VpcSessionKeys,
  VpcSetSessionOptions,
  VpcStats,
} from '../../src/native/addon.js';
import { formatMac } from '../../src/vpc/packets.js';

export interface FakePort {
  ifname: string;
  opts: VpcPortOptions;
  /** The kept socket it was adopted from, if any. */
  fd: number | undefined;
}

export interface FakeSession {
  localIndex: number;
  remoteIndex: number;
  sendKey: Buffer;
  recvKey: Buffer;
  pending: boolean;
  csumPartial: boolean;
}

export interface FakePeer {
  endpoint: VpcEndpoint;
  plaintext: boolean;
  /** Installed in order; clearSessions empties it. */
  sessions: FakeSession[];
  keepalives: number;
}

const zeroPort = (): VpcPortStats => ({
  rxFrames: 0,
  rxBytes: 0,
  txFrames: 0,
  txBytes: 0,
  drops: { spoofed: 0, noRoute: 0, oversize: 0, punted: 0, puntOverflow: 0, filtered: 0, invalid: 0, txError: 0, queueFull: 0, securityGroup: 0, conntrackFull: 0, networkAcl: 0, bwInAllowanceExceeded: 0, bwOutAllowanceExceeded: 0, ppsAllowanceExceeded: 0 },
  conntrack: { flows: 0, max: 0 },
});
const zeroPeer = (): VpcPeerStats => ({
  txPackets: 0,
  txBytes: 0,
  rxPackets: 0,
  rxBytes: 0,
  drops: { badTag: 0, replay: 0, noSession: 0, notPlaintext: 0, noRoute: 0, spoofed: 0 },
  lastRx: 0,
  sessions: 0,
});

export class FakeEngine implements RuntimeEngine {
  readonly port: number;
  readonly ports = new Map<number, FakePort>();
  /** Destination MAC (text) → target. */
  readonly routes = new Map<string, VpcRouteTarget>();
  readonly peers = new Map<number, FakePeer>();
  /** Datagrams sent from the underlay socket, in order. */
  readonly underlay: Array<{ host: string; port: number; datagram: Buffer }> = [];
  /** Frames sent into guests, in order. */
  readonly frames: Array<{ portId: number; frame: Buffer }> = [];
  /** Method calls in order (name and first argument), for ordering checks. */
  readonly calls: string[] = [];
  /** The counters stats() reports; tests may set them. */
  readonly counters: VpcStats = { ports: {}, peers: {}, underlay: { unknownPeer: 0, malformed: 0, punted: 0, puntOverflow: 0, txError: 0 }, worker: { pollsWon: 0, pollsLost: 0, cipher: 'openssl' } };
  rekeyLimits: VpcRekeyLimits | undefined;
  /** The security-group table and options last set per port. */
  readonly security = new Map<number, { table: Buffer; opts: VpcSecurityOptions }>();
  held = false;
  closed = false;
  /** How many snapshots were taken. */
  statsCalls = 0;
  private readonly onControl: (event: VpcControlEvent) => void;

  constructor(options: VpcEngineOptions) {
    this.port = options.bindPort || 40_000;
    this.onControl = options.onControl;
  }

  /** Deliver a control event, as the engine's worker does (never after close). */
  emit(event: VpcControlEvent): void {
    if (!this.closed) this.onControl(event);
  }

  /** The session the peer sends with (the newest non-pending one). */
  current(peerId: number): FakeSession | undefined {
    return this.peers.get(peerId)?.sessions.filter((s) => !s.pending).at(-1);
  }

  addPort(portId: number, ifname: string, opts: VpcPortOptions, fd?: number): void {
    this.call('addPort', portId);
    if (this.ports.has(portId)) throw new Error(`port ${portId} exists`);
    this.ports.set(portId, { ifname, opts: { ...opts }, fd });
    this.counters.ports[portId] = zeroPort();
  }

  portFd(portId: number): number {
    return this.ports.has(portId) ? 100 + portId : -1;
  }

  holdPorts(): void {
    this.call('holdPorts');
    this.held = true;
  }

  releasePorts(): void {
    this.call('releasePorts');
    this.held = false;
  }

  updatePort(portId: number, opts: Partial<VpcPortOptions>): void {
    this.call('updatePort', portId);
    const port = this.ports.get(portId);
    if (!port) throw new Error(`no port ${portId}`);
    Object.assign(port.opts, opts);
  }

  removePort(portId: number): boolean {
    this.call('removePort', portId);
    delete this.counters.ports[portId];
    return this.ports.delete(portId);
  }

  setRoute(mac: Uint8Array, target: VpcRouteTarget): void {
    this.call('setRoute', formatMac(mac));
    this.routes.set(formatMac(mac), target);
  }

  deleteRoute(mac: Uint8Array): boolean {
    this.call('deleteRoute', formatMac(mac));
    return this.routes.delete(formatMac(mac));
  }

  addPeer(peerId: number, endpoint: VpcEndpoint): void {
    this.call('addPeer', peerId);
    if (this.peers.has(peerId)) throw new Error(`peer ${peerId} exists`);
    for (const p of this.peers.values()) if (p.endpoint.host === endpoint.host && p.endpoint.port === endpoint.port) throw new Error('endpoint in use');
    this.peers.set(peerId, { endpoint: { ...endpoint }, plaintext: false, sessions: [], keepalives: 0 });
    this.counters.peers[peerId] = zeroPeer();
  }

  removePeer(peerId: number): boolean {
    this.call('removePeer', peerId);
    delete this.counters.peers[peerId];
    return this.peers.delete(peerId);
  }

  setPlaintext(peerId: number, enabled: boolean): void {
    this.call('setPlaintext', peerId);
    this.peer(peerId).plaintext = enabled;
  }

  setSession(peerId: number, session: VpcSessionKeys, opts?: VpcSetSessionOptions): void {
    this.call('setSession', peerId);
    // Copies, as the engine keeps its own: the runtime's buffers are wiped when sessions expire.
    this.peer(peerId).sessions.push({
      localIndex: session.localIndex,
      remoteIndex: session.remoteIndex,
      sendKey: Buffer.from(session.sendKey),
      recvKey: Buffer.from(session.recvKey),
      pending: opts?.pending ?? false,
      csumPartial: opts?.csumPartial ?? false,
    });
  }

  clearSessions(peerId: number): void {
    this.call('clearSessions', peerId);
    this.peer(peerId).sessions = [];
  }

  sendKeepalive(peerId: number): boolean {
    this.call('sendKeepalive', peerId);
    const peer = this.peer(peerId);
    if (!this.current(peerId)) return false;
    peer.keepalives++;
    return true;
  }

  setRekeyLimits(limits: VpcRekeyLimits): void {
    this.call('setRekeyLimits');
    this.rekeyLimits = { ...limits };
  }

  setSecurity(portId: number, table: Uint8Array | null, opts?: VpcSecurityOptions): void {
    this.call('setSecurity', portId);
    if (!this.ports.has(portId)) throw new Error(`no port ${portId}`);
    if (table === null) this.security.delete(portId);
    else this.security.set(portId, { table: Buffer.from(table), opts: { ...opts! } });
  }

  flushConntrack(portId: number): number {
    this.call('flushConntrack', portId);
    if (!this.ports.has(portId)) throw new Error(`no port ${portId}`);
    return 0;
  }

  conntrack(portId: number, _max: number): VpcConntrackSnapshot {
    if (!this.ports.has(portId)) throw new Error(`no port ${portId}`);
    return { count: 0, max: this.security.get(portId)?.opts.maxFlows ?? 0, flows: [] };
  }

  /** Ports with flow-log counters on, and their room; a test puts flows in `flowCounts` to be taken. */
  readonly flowLogs = new Map<number, number>();
  readonly flowCounts = new Map<number, VpcFlowLogTake>();

  setFlowLog(portId: number, maxKeys: number): void {
    this.call('setFlowLog', portId);
    if (!this.ports.has(portId)) throw new Error(`no port ${portId}`);
    if (maxKeys === 0) this.flowLogs.delete(portId);
    else this.flowLogs.set(portId, maxKeys);
  }

  takeFlowLog(portId: number): VpcFlowLogTake {
    if (!this.ports.has(portId)) throw new Error(`no port ${portId}`);
    const take = this.flowCounts.get(portId) ?? { dropped: 0, flows: [] };
    this.flowCounts.delete(portId);
    return take;
  }

  sendFrame(portId: number, frame: Uint8Array): void {
    this.call('sendFrame', portId);
    if (!this.ports.has(portId)) throw new Error(`no port ${portId}`);
    this.frames.push({ portId, frame: Buffer.from(frame) });
  }

  sendUnderlay(host: string, port: number, datagram: Uint8Array): void {
    this.call('sendUnderlay', `${host}:${port}`);
    this.underlay.push({ host, port, datagram: Buffer.from(datagram) });
  }

  stats(): VpcStats {
    this.statsCalls++;
    return structuredClone(this.counters);
  }

  close(): void {
    this.calls.push('close');
    this.closed = true;
  }

  private call(name: string, arg?: unknown): void {
    if (this.closed) throw Object.assign(new Error('engine closed'), { code: 'ERR_NITRIDE_VPC_CLOSED' });
    this.calls.push(arg === undefined ? name : `${name} ${String(arg)}`);
  }

  private peer(peerId: number): FakePeer {
    const peer = this.peers.get(peerId);
    if (!peer) throw new Error(`no peer ${peerId}`);
    return peer;
  }
}

export class FakeNetdevs implements Netdevs {
  /** Name → kind and MAC of the netdevs there are. */
  readonly devices = new Map<string, { kind: EniKind; mac: string }>();
  readonly removed: string[] = [];

  async ensure(name: string, kind: EniKind, mac: string): Promise<void> {
    if (!this.devices.has(name)) this.devices.set(name, { kind, mac });
  }

  async remove(name: string): Promise<void> {
    if (this.devices.delete(name)) this.removed.push(name);
  }
}
