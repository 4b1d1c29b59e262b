/**
 * The VPC in the daemon: the model (VPCs, subnets, ENIs) and the peers, persisted in
 * `<state>/vpc.json`; the host identity (an X25519 key pair whose private key is a KMS data
 * key: only its wrapped blob is stored); and the runtime: the native {@link VpcEngine}, the
 * ENI netdevs, the ARP/DHCP responders and the handshake with the peers.
 *
 * The model and the peers are always available (load, change, persist). The runtime needs
 * the host key, hence the KMS, and the underlay socket: until both work it stays down, says
 * why in {@link VpcManager.status}, and retries every few seconds; the rest of the daemon is
 * not affected. Every change to the model is applied to the runtime when it is up, and all of
 * it is applied when it comes up.
 *
 * Local ENIs: `tap` (default: a persistent TAP that QEMU opens by name) or `veth` (a pair
 * `<ifname>` host side + `<ifname>p` guest side, for network-namespace guests; the guest side
 * gets the ENI's MAC). The host side is brought up without addresses, IPv6 disabled, and a tc
 * ingress drop keeps the host stack out of it. At stop the engine ports go away but netdevs
 * stay, so guests survive a daemon restart; deleting the ENI deletes the netdev.
 */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { z } from 'zod';
import { ConflictError, NotFoundError, RuntimeError, UsageError, errnoCode, oneLine } from '../common/errors.js';
import { readJsonFile, writeFileAtomic } from '../common/durable-fs.js';
import type { KeyProvider } from '../kms/provider.js';
import { loadSodium, type Sodium } from '../kms/sodium.js';
import type { Logger } from '../log/logger.js';
import type { FdStore } from '../common/fd-store.js';
import { VpcEngine, closeFd, tapOpen, type VpcControlEvent, type VpcStats } from '../native/addon.js';
import {
  LOCAL_HOST_ID,
  type EniInfo,
  type EniKind,
  type PeerInfo,
  type SubnetRecord,
  type VpcNamedStats,
  type VpcPeerStats,
  type VpcPortStats,
  type VpcRecord,
  type VpcStatsReply,
  type VpcStatus,
} from '../api/vpc.js';
import { ArpResponder } from './arp.js';
import { ENI_MTU, GATEWAY_MAC } from './constants.js';
import { DhcpServer } from './dhcp.js';
import { HandshakeManager, decodeKey, encodeKey, publicKeyOf, type HandshakeAction, type KeyPair } from './handshake.js';
import { VpcModel, type CreateEniInput, type EniDirectory, type EniEntry, type EniRecord, type VpcState } from './model.js';
import { macBytes } from './packets.js';

const RETRY_MS = 3000;
const HOST_KEY_CONTEXT = { purpose: 'host-key' };

export interface PeerRecord {
  name: string;
  /** Numeric host and UDP port, `198.51.100.7:4789` or `[2001:db8::1]:4789`. */
  endpoint: string;
  publicKey: string;
  plaintext: boolean;
}

interface StateFile {
  version: 1;
  /** The KMS blob of the host private key (base64). */
  hostKeyBlob?: string;
  model: VpcState;
  kinds: Record<string, EniKind>;
  peers: PeerRecord[];
}

const StateFileSchema = z
  .object({
    version: z.literal(1),
    hostKeyBlob: z.string().optional(),
    model: z.unknown(),
    kinds: z.record(z.string(), z.enum(['tap', 'veth'])),
    peers: z.array(z.object({ name: z.string(), endpoint: z.string(), publicKey: z.string(), plaintext: z.boolean() }).strict()),
  })
  .strict();

/** Sessions established with one peer since the daemon started (metrics). */
export interface PeerSessionCounters {
  /** Completed handshakes (sessions installed), rekeys included. */
  handshakes: number;
  /** Handshakes that replaced a current session. */
  rekeys: number;
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
}

interface Runtime {
  engine: VpcEngine;
  sodium: Sodium;
  keys: KeyPair;
  handshake: HandshakeManager;
  arp: ArpResponder;
  dhcp: DhcpServer;
  /** ENI id → port id, port id → ENI id. */
  ports: Map<string, number>;
  portEnis: Map<number, string>;
  /** Peer name → engine peer id, and back. */
  peerIds: Map<string, number>;
  peerNames: Map<number, string>;
  punts: Record<string, number>;
  timer?: NodeJS.Timeout;
  nextPort: number;
  nextPeer: number;
}

/** The fd store name of a local ENI's packet socket. */
const portFdName = (eniId: string) => `eni-${eniId}`;

/** HOST:PORT → {host, port} (brackets around IPv6 removed). */
export function parseEndpoint(text: string, what = 'endpoint'): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[0-9.]+):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new UsageError(`${what} must be NUMERIC-HOST:PORT, got '${text}'`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { encoding: 'utf8', timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0, out: `${stderr}${stdout}`.trim() });
    });
  });
}

async function must(cmd: string, ...args: string[]): Promise<void> {
  const r = await run(cmd, args);
  if (r.code !== 0) throw new RuntimeError('VPC_NETDEV', `${cmd} ${args.join(' ')} failed: ${r.out || `exit ${r.code}`}`);
}

export class VpcManager {
  private readonly log: Logger;
  private model: VpcModel = new VpcModel({ localHostId: LOCAL_HOST_ID });
  private kinds: Record<string, EniKind> = {};
  private peers = new Map<string, PeerRecord>();
  private hostKeyBlob: string | undefined;
  private rt: Runtime | undefined;
  /** Peer name → sessions established (kept across VPC restarts within this process). */
  private readonly sessionCounters = new Map<string, PeerSessionCounters>();
  private downMessage: string | null = 'starting';
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private lastWarning: string | undefined;
  /** The current model's tables (the model object is replaced when a failed save is rolled back). */
  private readonly directory: EniDirectory = {
    lookupByIp: (vpcId, ip) => this.model.tables.lookupByIp(vpcId, ip),
    lookupByMac: (mac) => this.model.tables.lookupByMac(mac),
    lookupById: (id) => this.model.tables.lookupById(id),
    list: () => this.model.tables.list(),
  };
  /** Serialises mutations and the runtime start. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: VpcManagerOptions) {
    this.log = options.logger.child({ component: 'vpc' });
    parseEndpoint(options.listen, '--vpc-listen');
  }

  /** Read the state file (the runtime starts with {@link start}). */
  async load(): Promise<void> {
    const raw = await readJsonFile<unknown>(this.options.stateFile);
    if (raw === undefined) return;
    const parsed = StateFileSchema.safeParse(raw);
    if (!parsed.success) throw new RuntimeError('VPC_STATE', `${this.options.stateFile}: invalid VPC state`);
    this.model = VpcModel.fromJSON(parsed.data.model, { localHostId: LOCAL_HOST_ID });
    this.kinds = parsed.data.kinds;
    this.hostKeyBlob = parsed.data.hostKeyBlob;
    for (const p of parsed.data.peers) this.peers.set(p.name, p);
  }

  /** Try to bring the runtime up now, and keep retrying in the background until it is. */
  start(): Promise<void> {
    return this.serial(() => this.tryStart());
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    // A start blocked on a slow KMS does not hold the daemon's stop: it tears itself down when it ends.
    let timeout: NodeJS.Timeout | undefined;
    await Promise.race([this.queue.catch(() => {}), new Promise((r) => (timeout = setTimeout(r, 5000)))]);
    clearTimeout(timeout);
    const rt = this.rt;
    this.rt = undefined;
    if (rt) this.teardown(rt);
  }

  private teardown(rt: Runtime): void {
    clearTimeout(rt.timer);
    for (const portId of rt.ports.values()) rt.engine.removePort(portId);
    rt.engine.close();
    rt.sodium.memzero(rt.keys.privateKey);
  }

  // ---- model: VPCs, subnets -----------------------------------------------------------------

  createVpc(input: { cidr: string; id?: string; name?: string }): Promise<VpcRecord> {
    return this.mutate(() => this.model.createVpc(input));
  }
  listVpcs(): VpcRecord[] {
    return this.model.listVpcs();
  }
  deleteVpc(id: string): Promise<void> {
    return this.mutate(() => this.model.deleteVpc(id));
  }
  createSubnet(input: { vpcId: string; cidr: string; id?: string; name?: string }): Promise<SubnetRecord> {
    return this.mutate(() => this.model.createSubnet(input));
  }
  listSubnets(vpcId?: string): Array<SubnetRecord & { available: number }> {
    return this.model.listSubnets(vpcId).map((s) => ({ ...s, available: this.model.subnetUsage(s.id).available }));
  }
  deleteSubnet(id: string): Promise<void> {
    return this.mutate(() => this.model.deleteSubnet(id));
  }

  // ---- ENIs ---------------------------------------------------------------------------------

  createEni(input: CreateEniInput & { kind?: EniKind }): Promise<EniInfo> {
    return this.serial(async () => {
      const remote = input.hostId !== undefined && input.hostId !== LOCAL_HOST_ID;
      if (remote && input.kind !== undefined) throw new UsageError('--kind is for local ENIs only (a remote ENI has its netdev on its own host)');
      const kind = remote ? undefined : (input.kind ?? 'tap');
      if (kind === 'veth' && input.hostInterface !== undefined && input.hostInterface.length > 14) {
        throw new UsageError(`veth interface name '${input.hostInterface}' is too long: at most 14 characters (the guest side adds 'p')`);
      }
      const { kind: _kind, ...modelInput } = input;
      const record = this.model.createEni({ ...modelInput, hostId: remote ? input.hostId : LOCAL_HOST_ID });
      if (kind) this.kinds[record.id] = kind;
      try {
        if (this.rt) await this.applyEni(this.rt, record.id);
        await this.save();
      } catch (err) {
        if (this.rt) await this.unapplyEni(this.rt, record, true).catch(() => {});
        this.model.deleteEni(record.id);
        delete this.kinds[record.id];
        throw err;
      }
      this.log.info({ eni: record.id, mac: record.mac, ip: record.privateIp, host: record.hostId, kind }, 'ENI created');
      return this.eniInfo(record);
    });
  }

  listEnis(): EniInfo[] {
    return this.model.listEnis().map((e) => this.eniInfo(e));
  }

  getEni(id: string): EniInfo {
    return this.eniInfo(this.model.getEni(id));
  }

  deleteEni(id: string): Promise<void> {
    return this.serial(async () => {
      const record = this.model.getEni(id);
      if (this.rt) await this.unapplyEni(this.rt, record, true);
      else if (record.hostId === LOCAL_HOST_ID) await deleteNetdev(record.hostInterface);
      this.model.deleteEni(id);
      delete this.kinds[id];
      await this.save();
      this.log.info({ eni: id }, 'ENI deleted');
    });
  }

  modifyEni(id: string, changes: { sourceDestCheck?: boolean; description?: string }): Promise<EniInfo> {
    return this.serial(async () => {
      const record = this.model.modifyEni(id, changes);
      await this.save();
      const portId = this.rt?.ports.get(id);
      if (this.rt && portId !== undefined) this.rt.engine.updatePort(portId, { sourceCheck: record.sourceDestCheck });
      return this.eniInfo(record);
    });
  }

  // ---- peers --------------------------------------------------------------------------------

  addPeer(input: { name: string; endpoint: string; publicKey: string; plaintext?: boolean }): Promise<PeerInfo> {
    return this.serial(async () => {
      if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(input.name)) throw new UsageError(`peer name '${input.name}' must be 1-63 letters, digits, . _ - (starting with a letter or digit)`);
      if (input.name === LOCAL_HOST_ID) throw new UsageError(`'${LOCAL_HOST_ID}' names this host; choose another peer name`);
      if (this.peers.has(input.name)) throw new ConflictError(`peer ${input.name} already exists`);
      parseEndpoint(input.endpoint);
      const key = decodeKey(input.publicKey);
      for (const p of this.peers.values()) {
        if (p.publicKey === encodeKey(key)) throw new ConflictError(`public key already belongs to peer ${p.name}`);
        if (p.endpoint === input.endpoint) throw new ConflictError(`endpoint ${input.endpoint} already belongs to peer ${p.name}`);
      }
      const record: PeerRecord = { name: input.name, endpoint: input.endpoint, publicKey: encodeKey(key), plaintext: input.plaintext ?? false };
      this.peers.set(record.name, record);
      try {
        if (this.rt) this.applyPeer(this.rt, record);
        await this.save();
      } catch (err) {
        if (this.rt) this.unapplyPeer(this.rt, record.name);
        this.peers.delete(record.name);
        throw err;
      }
      this.log.info({ peer: record.name, endpoint: record.endpoint, plaintext: record.plaintext }, 'peer added');
      return this.peerInfo(record);
    });
  }

  listPeers(): PeerInfo[] {
    return [...this.peers.values()].map((p) => this.peerInfo(p));
  }

  deletePeer(name: string): Promise<void> {
    return this.serial(async () => {
      if (!this.peers.has(name)) throw new NotFoundError(`peer ${name} does not exist`);
      if (this.rt) this.unapplyPeer(this.rt, name);
      this.peers.delete(name);
      await this.save();
      this.log.info({ peer: name }, 'peer deleted');
    });
  }

  // ---- observation --------------------------------------------------------------------------

  publicKey(): string {
    if (!this.rt) throw new RuntimeError('VPC_DOWN', `the VPC is down: ${this.downMessage ?? 'not started'}`);
    return encodeKey(this.rt.keys.publicKey);
  }

  status(): VpcStatus {
    const enis = this.model.listEnis();
    return {
      enabled: true,
      state: this.rt ? 'up' : 'down',
      message: this.rt ? null : this.downMessage,
      listen: this.options.listen,
      port: this.rt ? this.rt.engine.port : null,
      publicKey: this.rt ? encodeKey(this.rt.keys.publicKey) : null,
      mtu: ENI_MTU,
      vpcs: this.model.listVpcs().length,
      subnets: this.model.listSubnets().length,
      enis: { total: enis.length, local: enis.filter((e) => e.hostId === LOCAL_HOST_ID).length },
      peers: [...this.peers.values()].map((p) => ({ name: p.name, endpoint: p.endpoint, session: this.peerInfo(p).session })),
    };
  }

  /** Engine counters by ENI id and peer name; null while the VPC is down. */
  namedStats(): VpcNamedStats | null {
    const rt = this.rt;
    if (!rt) return null;
    const s: VpcStats = rt.engine.stats();
    const enis: Record<string, VpcPortStats> = {};
    for (const [portId, value] of Object.entries(s.ports)) enis[rt.portEnis.get(Number(portId)) ?? `port-${portId}`] = value;
    const peers: Record<string, VpcPeerStats> = {};
    for (const [peerId, value] of Object.entries(s.peers)) peers[rt.peerNames.get(Number(peerId)) ?? `peer-${peerId}`] = value;
    return { enis, peers, underlay: s.underlay };
  }

  /** Handshakes and rekeys per configured peer since the daemon started. */
  peerSessionCounters(): Array<{ name: string; session: PeerInfo['session'] } & PeerSessionCounters> {
    return [...this.peers.values()].map((p) => ({
      name: p.name,
      session: this.peerInfo(p).session,
      ...(this.sessionCounters.get(p.name) ?? { handshakes: 0, rekeys: 0 }),
    }));
  }

  stats(): VpcStatsReply {
    const rt = this.rt;
    const named = this.namedStats();
    if (!rt || !named) throw new RuntimeError('VPC_DOWN', `the VPC is down: ${this.downMessage ?? 'not started'}`);
    return {
      ...named,
      control: {
        punts: { ...rt.punts },
        arp: { replies: rt.arp.replies, drops: { ...rt.arp.drops } },
        dhcp: { replies: { ...rt.dhcp.replies }, drops: { ...rt.dhcp.drops } },
        handshake: { rejects: { ...rt.handshake.rejects } },
      },
    };
  }

  // ---- internals: state ---------------------------------------------------------------------

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => {});
    return next;
  }

  private mutate<T>(fn: () => T): Promise<T> {
    return this.serial(async () => {
      const before = this.model.toJSON();
      const result = fn();
      try {
        await this.save();
      } catch (err) {
        this.model = VpcModel.fromJSON(before, { localHostId: LOCAL_HOST_ID });
        throw err;
      }
      return result;
    });
  }

  private async save(): Promise<void> {
    const state: StateFile = {
      version: 1,
      ...(this.hostKeyBlob ? { hostKeyBlob: this.hostKeyBlob } : {}),
      model: this.model.toJSON(),
      kinds: this.kinds,
      peers: [...this.peers.values()],
    };
    await writeFileAtomic(this.options.stateFile, JSON.stringify(state, null, 2) + '\n');
  }

  private eniInfo(e: EniRecord): EniInfo {
    const kind = this.kinds[e.id] ?? null;
    return { ...e, kind, guestInterface: kind === 'veth' ? `${e.hostInterface}p` : null };
  }

  private peerInfo(p: PeerRecord): PeerInfo {
    const rt = this.rt;
    if (!rt) return { ...p, session: 'unknown', handshake: null, lastRx: null };
    if (!rt.handshake.listPeers().includes(p.name)) return { ...p, session: 'unknown', handshake: null, lastRx: null };
    const hs = rt.handshake.status(p.name);
    const id = rt.peerIds.get(p.name);
    const lastRx = id !== undefined ? (rt.engine.stats().peers[id]?.lastRx ?? 0) : 0;
    return { ...p, session: hs.current ? 'established' : hs.handshaking ? 'handshaking' : 'none', handshake: hs, lastRx: lastRx || null };
  }

  // ---- internals: runtime -------------------------------------------------------------------

  private async tryStart(): Promise<void> {
    if (this.closed || this.rt) return;
    try {
      const rt = await this.bringUp();
      if (this.closed) {
        this.teardown(rt);
        return;
      }
      this.rt = rt;
      this.armTimer(rt);
      this.downMessage = null;
      this.lastWarning = undefined;
      this.log.info({ listen: this.options.listen, port: this.rt.engine.port, publicKey: encodeKey(this.rt.keys.publicKey) }, 'VPC up');
    } catch (err) {
      this.downMessage = oneLine(err);
      const line = `VPC down, retrying every ${RETRY_MS / 1000} s: ${this.downMessage}`;
      if (line !== this.lastWarning) this.log.warn({ err: this.downMessage }, line);
      else this.log.debug(line);
      this.lastWarning = line;
      if (!this.closed) {
        this.retryTimer = setTimeout(() => void this.serial(() => this.tryStart()), RETRY_MS);
        this.retryTimer.unref();
      }
    }
  }

  private async hostKeys(sodium: Sodium): Promise<KeyPair> {
    let privateKey: Buffer;
    if (this.hostKeyBlob) {
      privateKey = (await this.options.kms.decrypt(Buffer.from(this.hostKeyBlob, 'base64'), HOST_KEY_CONTEXT)).plaintext;
    } else {
      const generated = await this.options.kms.generateDataKey(undefined, HOST_KEY_CONTEXT, { bytes: 32 });
      privateKey = generated.plaintext;
      this.hostKeyBlob = generated.ciphertextBlob.toString('base64');
      try {
        await this.save();
      } catch (err) {
        this.hostKeyBlob = undefined;
        sodium.memzero(privateKey);
        throw err;
      }
      this.log.info('host key generated (private key stored only wrapped by the KMS)');
    }
    if (privateKey.length !== 32) throw new RuntimeError('VPC_HOST_KEY', `host key from the KMS has ${privateKey.length} bytes, not 32`);
    // X25519 clamping (as `wg genkey`); deterministic, so the same key at every start.
    privateKey[0]! &= 248;
    privateKey[31]! &= 127;
    privateKey[31]! |= 64;
    return { privateKey, publicKey: publicKeyOf(sodium, privateKey) };
  }

  private async bringUp(): Promise<Runtime> {
    const sodium = await loadSodium();
    const keys = await this.hostKeys(sodium);
    const { host, port } = parseEndpoint(this.options.listen, '--vpc-listen');
    let engine: VpcEngine | undefined;
    try {
      const rtRef: { rt?: Runtime } = {};
      engine = new VpcEngine({ bindAddress: host, bindPort: port, onControl: (event) => rtRef.rt && this.onControl(rtRef.rt, event) });
      const rt: Runtime = {
        engine,
        sodium,
        keys,
        handshake: new HandshakeManager({ sodium, local: keys, now: Date.now, ...(this.options.rekeyAfterSeconds ? { timers: { rekeyAfterSeconds: this.options.rekeyAfterSeconds } } : {}) }),
        arp: new ArpResponder(this.directory),
        dhcp: new DhcpServer({ mtu: ENI_MTU, ...(this.options.dnsServers?.length ? { dnsServers: this.options.dnsServers } : {}) }),
        ports: new Map(),
        portEnis: new Map(),
        peerIds: new Map(),
        peerNames: new Map(),
        punts: { broadcast: 0, multicast: 0, route: 0, unknownPort: 0, sendErrors: 0 },
        nextPort: 1,
        nextPeer: 1,
      };
      // The engine's age limit (rekey-needed when sending) matches the handshake's timer.
      if (this.options.rekeyAfterSeconds) engine.setRekeyLimits({ seconds: this.options.rekeyAfterSeconds });
      engine.setRoute(macBytes(GATEWAY_MAC), { control: true });
      for (const p of this.peers.values()) {
        try {
          this.applyPeer(rt, p);
        } catch (err) {
          this.log.error({ peer: p.name, err: oneLine(err) }, 'cannot set up peer');
        }
      }
      // Netdevs first, then every port and route in one synchronous pass: a port whose packet
      // socket was kept in the fd store forwards the frames queued in it at once, and they must
      // find the other ENIs' ports and routes already there.
      const prepared: EniRecord[] = [];
      for (const e of this.model.listEnis()) {
        try {
          await this.prepareEni(e);
          prepared.push(e);
        } catch (err) {
          this.log.error({ eni: e.id, err: oneLine(err) }, 'cannot set up ENI');
        }
      }
      engine.holdPorts();
      for (const e of prepared) {
        try {
          this.attachEni(rt, e);
        } catch (err) {
          this.log.error({ eni: e.id, err: oneLine(err) }, 'cannot set up ENI');
        }
      }
      engine.releasePorts();
      rtRef.rt = rt;
      return rt;
    } catch (err) {
      engine?.close();
      sodium.memzero(keys.privateKey);
      throw err;
    }
  }

  private async applyEni(rt: Runtime, id: string): Promise<void> {
    const e = this.model.getEni(id);
    await this.prepareEni(e);
    this.attachEni(rt, e);
  }

  /** A local ENI's netdev, made if missing and kept away from the host stack. */
  private async prepareEni(e: EniRecord): Promise<void> {
    if (e.hostId === LOCAL_HOST_ID) await ensureNetdev(e.hostInterface, this.kinds[e.id] ?? 'tap', e.mac);
  }

  /** The ENI's port (local) and route in the engine. */
  private attachEni(rt: Runtime, e: EniRecord): void {
    const id = e.id;
    const mac = macBytes(e.mac);
    if (e.hostId !== LOCAL_HOST_ID) {
      const peerId = rt.peerIds.get(e.hostId);
      if (peerId !== undefined) rt.engine.setRoute(mac, { peer: peerId });
      return;
    }
    let portId = rt.ports.get(id);
    if (portId === undefined) {
      portId = rt.nextPort++;
      this.addPort(rt, portId, e, mac);
      rt.ports.set(id, portId);
      rt.portEnis.set(portId, id);
    }
    rt.engine.setRoute(mac, { port: portId });
  }

  /**
   * Attach a local ENI's netdev to the engine: through the packet socket the previous run
   * left in the fd store (frames the guest sent meanwhile are waiting in it), else a new one,
   * which is then stored.
   */
  private addPort(rt: Runtime, portId: number, e: EniRecord, mac: Uint8Array): void {
    const opts = { mac, ipv4: e.privateIp, sourceCheck: e.sourceDestCheck, mtu: ENI_MTU };
    const store = this.options.fdStore;
    const name = portFdName(e.id);
    const kept = store?.adopt(name, (a) => a.family === 'other');
    if (kept !== undefined) {
      try {
        rt.engine.addPort(portId, e.hostInterface, opts, kept);
        return;
      } catch (err) {
        closeFd(kept);
        store!.remove(name);
        this.log.warn({ eni: e.id, err: oneLine(err) }, 'kept packet socket unusable; opening a new one');
      }
    }
    rt.engine.addPort(portId, e.hostInterface, opts);
    store?.keep(name, rt.engine.portFd(portId));
  }

  private async unapplyEni(rt: Runtime, e: EniRecord, deleteDevice: boolean): Promise<void> {
    rt.engine.deleteRoute(macBytes(e.mac));
    const portId = rt.ports.get(e.id);
    if (portId !== undefined) {
      rt.engine.removePort(portId);
      rt.ports.delete(e.id);
      rt.portEnis.delete(portId);
    }
    if (deleteDevice) this.options.fdStore?.remove(portFdName(e.id));
    if (deleteDevice && e.hostId === LOCAL_HOST_ID) await deleteNetdev(e.hostInterface);
  }

  private applyPeer(rt: Runtime, p: PeerRecord): void {
    const peerId = rt.nextPeer++;
    const endpoint = parseEndpoint(p.endpoint);
    rt.handshake.addPeer(p.name, decodeKey(p.publicKey));
    try {
      rt.engine.addPeer(peerId, endpoint);
    } catch (err) {
      rt.handshake.removePeer(p.name);
      throw new ConflictError(`cannot add peer ${p.name}: ${oneLine(err)}`);
    }
    rt.peerIds.set(p.name, peerId);
    rt.peerNames.set(peerId, p.name);
    if (p.plaintext) rt.engine.setPlaintext(peerId, true);
    for (const e of this.model.listEnis({ hostId: p.name })) rt.engine.setRoute(macBytes(e.mac), { peer: peerId });
    this.execute(rt, rt.handshake.connect(p.name));
  }

  private unapplyPeer(rt: Runtime, name: string): void {
    const peerId = rt.peerIds.get(name);
    if (rt.handshake.listPeers().includes(name)) this.execute(rt, rt.handshake.removePeer(name));
    if (peerId === undefined) return;
    for (const e of this.model.listEnis({ hostId: name })) rt.engine.deleteRoute(macBytes(e.mac));
    rt.engine.removePeer(peerId);
    rt.peerIds.delete(name);
    rt.peerNames.delete(peerId);
    this.armTimer(rt);
  }

  private onControl(rt: Runtime, event: VpcControlEvent): void {
    if (this.rt !== rt) return;
    switch (event.type) {
      case 'frame': {
        const eniId = rt.portEnis.get(event.portId);
        const eni: EniEntry | undefined = eniId ? this.model.tables.lookupById(eniId) : undefined;
        if (!eni) {
          rt.punts.unknownPort!++;
          return;
        }
        let reply: Buffer | null = null;
        if (event.reason === 'arp') reply = rt.arp.handle(event.frame, eni);
        else if (event.reason === 'dhcp') reply = rt.dhcp.handle(event.frame, eni);
        else rt.punts[event.reason] = (rt.punts[event.reason] ?? 0) + 1;
        if (reply) {
          try {
            rt.engine.sendFrame(event.portId, reply);
          } catch (err) {
            rt.punts.sendErrors!++;
            this.log.debug({ eni: eniId, err: oneLine(err) }, 'cannot send a control reply');
          }
        }
        return;
      }
      case 'handshake': {
        const r = rt.handshake.handleMessage(event.data);
        if (r.reject) this.log.debug({ from: `${event.host}:${event.port}`, reason: r.reject }, 'handshake message rejected');
        this.execute(rt, r.actions);
        return;
      }
      case 'rekey-needed': {
        const name = rt.peerNames.get(event.peerId);
        if (name) this.execute(rt, rt.handshake.rekeyNeeded(name));
        return;
      }
      case 'session-active': {
        const name = rt.peerNames.get(event.peerId);
        if (name) this.execute(rt, rt.handshake.confirm(name, event.localIndex));
        return;
      }
      case 'port-error':
        this.log.warn({ eni: rt.portEnis.get(event.portId), code: event.code }, `ENI port error: ${event.message}`);
        return;
    }
  }

  /** Carry out the handshake manager's actions, in order, then re-arm its timer. */
  private execute(rt: Runtime, actions: HandshakeAction[]): void {
    for (const action of actions) {
      const peerId = rt.peerIds.get(action.peerId);
      const peer = this.peers.get(action.peerId);
      try {
        switch (action.type) {
          case 'send': {
            if (!peer) break;
            const { host, port } = parseEndpoint(peer.endpoint);
            rt.engine.sendUnderlay(host, port, action.message);
            break;
          }
          case 'install': {
            if (peerId === undefined) break;
            const s = action.session;
            // A responder with no session to send with yet makes the new one current at once:
            // waiting for the initiator's first data message would leave this side mute until
            // the initiator happens to send (a keepalive, or a frame). Nothing is lost: with
            // no current session, frames could not be sent anyway.
            const hadCurrent = rt.handshake.status(action.peerId).current !== null;
            const pending = !action.sendable && hadCurrent;
            const counters = this.sessionCounters.get(action.peerId) ?? { handshakes: 0, rekeys: 0 };
            counters.handshakes++;
            if (hadCurrent) counters.rekeys++;
            this.sessionCounters.set(action.peerId, counters);
            rt.engine.setSession(peerId, { localIndex: s.localIndex, remoteIndex: s.remoteIndex, sendKey: s.sendKey, recvKey: s.recvKey }, { pending });
            this.log.debug({ peer: action.peerId, localIndex: s.localIndex, initiator: s.isInitiator, pending }, 'session installed');
            if (!action.sendable && !pending) this.execute(rt, rt.handshake.confirm(action.peerId, s.localIndex));
            // The initiator confirms the session to the responder right away: otherwise an idle
            // responder keeps sending on an older session, which the initiator drops at its next rekey.
            if (action.keepalive) rt.engine.sendKeepalive(peerId);
            break;
          }
          case 'promote':
            // The engine promotes a pending session itself (the session-active event).
            this.log.debug({ peer: action.peerId, localIndex: action.localIndex }, 'session promoted');
            break;
          case 'expire': {
            if (peerId === undefined) break;
            // The engine drops replaced sessions itself; it cannot drop one session alone, so a
            // session expired with nothing to replace it clears them all.
            const st = rt.handshake.status(action.peerId);
            if (action.reason === 'disconnected' || (st.current === null && st.next === null)) rt.engine.clearSessions(peerId);
            break;
          }
          case 'give-up':
            this.log.warn({ peer: action.peerId, attempts: action.attempts }, 'peer does not answer the handshake; retrying later');
            break;
        }
      } catch (err) {
        this.log.error({ peer: action.peerId, action: action.type, err: oneLine(err) }, 'handshake action failed');
      }
    }
    this.armTimer(rt);
  }

  private armTimer(rt: Runtime): void {
    clearTimeout(rt.timer);
    const at = rt.handshake.nextTimerAt();
    if (at === undefined || this.rt !== rt) return;
    rt.timer = setTimeout(() => {
      if (this.rt === rt) this.execute(rt, rt.handshake.onTimer());
    }, Math.max(0, at - Date.now()) + 1);
    rt.timer.unref();
  }
}

// ---- netdevs ----------------------------------------------------------------------------------

async function netdevExists(name: string): Promise<boolean> {
  return (await run('ip', ['link', 'show', 'dev', name])).code === 0;
}

/** Create the ENI's netdev if missing, then keep the host stack out of its host side. */
async function ensureNetdev(name: string, kind: EniKind, mac: string): Promise<void> {
  if (!(await netdevExists(name))) {
    if (kind === 'tap') {
      const tap = tapOpen(name, { persist: true });
      closeFd(tap.fd);
    } else {
      await must('ip', 'link', 'add', 'name', name, 'type', 'veth', 'peer', 'name', `${name}p`);
      await must('ip', 'link', 'set', 'dev', `${name}p`, 'address', mac);
    }
  }
  try {
    await fs.writeFile(`/proc/sys/net/ipv6/conf/${name}/disable_ipv6`, '1');
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
  await must('ip', 'link', 'set', 'dev', name, 'up');
  await run('tc', ['qdisc', 'del', 'dev', name, 'clsact']);
  await must('tc', 'qdisc', 'add', 'dev', name, 'clsact');
  const matchall = await run('tc', ['filter', 'add', 'dev', name, 'ingress', 'matchall', 'action', 'drop']);
  if (matchall.code !== 0) await must('tc', 'filter', 'add', 'dev', name, 'ingress', 'bpf', 'da', 'bytecode', '1,6 0 0 2');
}

async function deleteNetdev(name: string): Promise<void> {
  if (!(await netdevExists(name))) return;
  await must('ip', 'link', 'del', 'dev', name);
}
