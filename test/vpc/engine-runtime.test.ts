/**
 * The VPC runtime against in-memory engines: what it sets up in the engine for ENIs and peers,
 * how it answers control events, a handshake carried between two runtimes, its timer, and
 * what close releases. The real handshake, ARP responder and model run; only the engine and
 * the netdevs are fakes (the native engine has its own tests in test/native/).
 */
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadSodium, type Sodium } from '../../src/kms/sodium.js';
import { createLogger } from '../../src/log/logger.js';
import { GATEWAY_MAC } from '../../src/vpc/constants.js';
import { VpcRuntime, type RuntimeOptions } from '../../src/vpc/engine-runtime.js';
import { encodeKey, generateHostKeys, type KeyPair } from '../../src/vpc/handshake.js';
import type { PeerRecord } from '../../src/vpc/manager.js';
import type { EniRecord } from '../../src/vpc/model.js';
import { compileSg, encodeSg } from '../../src/vpc/sg-table.js';
import { buildArp, buildEthernet, ipv4ToInt, macBytes, parseArp, parseDhcp, parseEthernet, parseUdpFrame } from '../../src/vpc/packets.js';
import { UDHCPC_DISCOVER, hex } from './fixtures.js';
import { ENI_ALLOWANCE_QUEUE_US, LOCAL_HOST_ID, VPC_DEFAULT_MTU } from '../../src/api/vpc.js';
import { VpcStateStore } from '../../src/vpc/state-store.js';
import { SessionCounters } from '../../src/vpc/stats.js';
import { FakeEngine, FakeNetdevs } from './fakes.js';

let sodium: Sodium;
beforeAll(async () => {
  sodium = await loadSodium();
});

const log = createLogger({ level: 'silent' });
const INITIATION = 1;
const INITIATION_BYTES = 148;

/** A host: its state (never saved: the runtime only reads it), key pair, netdevs and, once started, engine and runtime. */
interface Host {
  name: string;
  endpoint: { host: string; port: number };
  state: VpcStateStore;
  keys: KeyPair;
  netdevs: FakeNetdevs;
  sessions: SessionCounters;
  engine?: FakeEngine;
  rt?: VpcRuntime;
}

const started: VpcRuntime[] = [];
afterEach(() => {
  for (const rt of started.splice(0)) rt.close();
  vi.useRealTimers();
});

function host(name: string, port: number): Host {
  const h: Host = { name, endpoint: { host: '127.0.0.1', port }, state: new VpcStateStore('/nonexistent/vpc.json'), keys: generateHostKeys(sodium), netdevs: new FakeNetdevs(), sessions: new SessionCounters() };
  const vpcId = h.state.model.createVpc({ cidr: '10.0.0.0/16', id: 'vpc-00000000000000001' }).id;
  h.state.model.createSubnet({ vpcId, cidr: '10.0.1.0/24', id: 'subnet-00000000000000001' });
  return h;
}

function localEni(h: Host, ip: string, kind: 'tap' | 'veth' = 'tap'): EniRecord {
  const e = h.state.model.createEni({ subnetId: 'subnet-00000000000000001', privateIp: ip, hostId: LOCAL_HOST_ID });
  h.state.setKind(e.id, kind);
  return e;
}

/** Each host knows the other as a peer. */
function pair(a: Host, b: Host): void {
  const record = (h: Host): PeerRecord => ({ name: h.name, endpoint: `${h.endpoint.host}:${h.endpoint.port}`, publicKey: encodeKey(h.keys.publicKey), plaintext: false });
  a.state.setPeer(record(b));
  b.state.setPeer(record(a));
}

async function start(h: Host, extra: Partial<RuntimeOptions> = {}): Promise<VpcRuntime> {
  const options: RuntimeOptions = {
    engine: (opts) => (h.engine = new FakeEngine(opts)),
    listen: h.endpoint,
    state: h.state,
    netdevs: h.netdevs,
    sessions: h.sessions,
    log,
    ...extra,
  };
  h.rt = await VpcRuntime.start(options, sodium, h.keys);
  started.push(h.rt);
  return h.rt;
}

/** Carry each host's underlay datagrams to the host at that endpoint, as separate events (as the engine's worker delivers them). */
function wire(...hosts: Host[]): () => void {
  const sent = new Map<Host, number>();
  const timer = setInterval(() => {
    for (const from of hosts) {
      const out = from.engine?.underlay ?? [];
      for (let i = sent.get(from) ?? 0; i < out.length; i++) {
        const d = out[i]!;
        const to = hosts.find((h) => h.endpoint.host === d.host && h.endpoint.port === d.port);
        to?.engine?.emit({ type: 'handshake', host: from.endpoint.host, port: from.endpoint.port, data: d.datagram });
      }
      sent.set(from, out.length);
    }
  }, 1);
  return () => clearInterval(timer);
}

async function until(what: string, done: () => boolean): Promise<void> {
  const deadline = performance.now() + 10_000;
  while (!done() && performance.now() < deadline) await new Promise((r) => setTimeout(r, 2));
  if (!done()) throw new Error(`timed out waiting until ${what}`);
}

/** Hosts a and b, started, peers of each other, with a session. */
async function established(): Promise<{ a: Host; b: Host }> {
  const a = host('a', 4789);
  const b = host('b', 4790);
  pair(a, b);
  await start(b);
  await start(a);
  await handshake(a, b);
  return { a, b };
}

/** Wire the hosts together until each has the other's half of one current session and no handshake under way. */
async function handshake(a: Host, b: Host): Promise<void> {
  const unwire = wire(a, b);
  try {
    await until(`${a.name} and ${b.name} share a session`, () => {
      const sa = a.rt!.handshakeStatus(b.name);
      const sb = b.rt!.handshakeStatus(a.name);
      return !!sa?.current && !!sb?.current && sa.current.localIndex === sb.current.remoteIndex && !sa.handshaking && !sb.handshaking;
    });
  } finally {
    unwire();
  }
}

/** The port the engine routes the ENI's MAC to. */
function portOf(engine: FakeEngine, e: EniRecord): number {
  const route = engine.routes.get(e.mac);
  if (!route || !('port' in route)) throw new Error(`${e.id} is not routed to a port`);
  return route.port;
}

/** Host a with a local ENI and peer b, started. */
async function hostWithEniAndPeer(): Promise<{ a: Host; b: Host; e: EniRecord; rt: VpcRuntime; engine: FakeEngine }> {
  const a = host('a', 4789);
  const b = host('b', 4790);
  const e = localEni(a, '10.0.1.10');
  pair(a, b);
  const rt = await start(a);
  return { a, b, e, rt, engine: a.engine! };
}

/** The engine peer id a host's engine has for the other host. */
function peerIdOf(h: Host, other: Host): number {
  const entry = [...h.engine!.peers].find(([, p]) => p.endpoint.port === other.endpoint.port);
  if (!entry) throw new Error(`${h.name} has no engine peer for ${other.name}`);
  return entry[0];
}

describe('VPC runtime: ENIs', () => {
  it('attaches every ENI at start: netdev, then the ports added held, each routed; the gateway MAC goes to the control plane', async () => {
    const h = host('a', 4789);
    const tap = localEni(h, '10.0.1.10');
    const veth = localEni(h, '10.0.1.11', 'veth');
    await start(h);
    const engine = h.engine!;
    expect([...h.netdevs.devices]).toEqual([
      [tap.hostInterface, { kind: 'tap', mac: tap.mac }],
      [veth.hostInterface, { kind: 'veth', mac: veth.mac }],
    ]);
    expect(engine.routes.get(GATEWAY_MAC)).toEqual({ control: true });
    const ports = [...engine.ports];
    expect(ports.map(([, p]) => p.ifname)).toEqual([tap.hostInterface, veth.hostInterface]);
    expect(ports[0]![1].opts).toEqual({ mac: macBytes(tap.mac), ipv4: '10.0.1.10', sourceCheck: true, mtu: VPC_DEFAULT_MTU, bandwidth: 0, pps: 0, allowanceQueueUs: ENI_ALLOWANCE_QUEUE_US });
    expect(engine.routes.get(tap.mac)).toEqual({ port: ports[0]![0] });
    expect(engine.routes.get(veth.mac)).toEqual({ port: ports[1]![0] });
    // Both ports are added between hold and release, so queued frames find every route.
    const calls = engine.calls.filter((c) => /^(holdPorts|releasePorts|addPort)/.test(c));
    expect(calls).toEqual(['holdPorts', `addPort ${ports[0]![0]}`, `addPort ${ports[1]![0]}`, 'releasePorts']);
    expect(engine.held).toBe(false);
  });

  it('an ENI added later gets a new port and route; its source check follows the model; removed for good, it loses port, route and netdev', async () => {
    const h = host('a', 4789);
    const first = localEni(h, '10.0.1.10');
    const rt = await start(h);
    const engine = h.engine!;
    const e = localEni(h, '10.0.1.20');
    await rt.addEni(e);
    const portId = portOf(engine, e);
    expect(portId).not.toBe(portOf(engine, first));
    expect(engine.ports.get(portId)!.ifname).toBe(e.hostInterface);
    expect(h.netdevs.devices.has(e.hostInterface)).toBe(true);

    rt.updateEni({ ...e, sourceDestCheck: false, bandwidth: 200_000_000 });
    expect(engine.ports.get(portId)!.opts).toMatchObject({ sourceCheck: false, bandwidth: 200_000_000, pps: 0 });

    await rt.removeEni(e, true);
    expect(engine.ports.has(portId)).toBe(false);
    expect(engine.routes.has(e.mac)).toBe(false);
    expect(h.netdevs.removed).toEqual([e.hostInterface]);
    // The other ENI is untouched.
    expect(engine.routes.get(first.mac)).toEqual({ port: expect.any(Number) });
  });

  it('security: ENIs with the same groups get the same table, others their own; only changed tables are pushed again', async () => {
    const h = host('a', 4789);
    const model = h.state.model;
    const other = model.securityGroups.create({ vpcId: 'vpc-00000000000000001', name: 'web' }).id;
    model.securityGroups.authorize(other, 'ingress', { protocol: 'tcp', fromPort: 443, toPort: 443, cidr: '0.0.0.0/0' });
    const [d1, d2] = [localEni(h, '10.0.1.10'), localEni(h, '10.0.1.11')];
    const web = model.createEni({ subnetId: 'subnet-00000000000000001', privateIp: '10.0.1.12', hostId: LOCAL_HOST_ID, securityGroups: [other] });
    h.state.setKind(web.id, 'tap');
    const rt = await start(h);
    const engine = h.engine!;
    const table = (e: EniRecord) => engine.security.get(portOf(engine, e))!.table;
    const source = { group: (id: string) => model.securityGroups.get(id), members: (id: string) => model.groupMembers(id) };
    expect(table(d1)).toEqual(encodeSg(compileSg(d1.securityGroups, source)));
    expect(table(d2)).toEqual(table(d1));
    expect(table(web)).toEqual(encodeSg(compileSg([other], source)));
    expect(table(web)).not.toEqual(table(d1));

    const pushes = () => engine.calls.filter((c) => c.startsWith('setSecurity ')).length;
    const before = pushes();
    rt.applySecurity();
    expect(pushes()).toBe(before);
    // A new member of the default group: its members' tables change (three), the other group's does not.
    await rt.addEni(localEni(h, '10.0.1.13'));
    expect(pushes()).toBe(before + 3);
    expect(table(d1)).toEqual(encodeSg(compileSg(d1.securityGroups, source)));
  });

  it('an ENI whose netdev cannot be made is left out; the others come up', async () => {
    const h = host('a', 4789);
    const bad = localEni(h, '10.0.1.10');
    const good = localEni(h, '10.0.1.11');
    h.netdevs.ensure = async (name) => {
      if (name === bad.hostInterface) throw new Error('no such device');
    };
    await start(h);
    expect(h.engine!.routes.has(bad.mac)).toBe(false);
    expect(h.engine!.routes.get(good.mac)).toEqual({ port: expect.any(Number) });
  });
});

describe('VPC runtime: peers and the handshake', () => {
  it('a peer added: the engine knows its endpoint, its ENIs are routed to it, and an initiation goes to its endpoint', async () => {
    const a = host('a', 4789);
    const b = host('b', 4790);
    const remote = a.state.model.createEni({ subnetId: 'subnet-00000000000000001', privateIp: '10.0.1.30', hostId: 'b' });
    const rt = await start(a);
    const engine = a.engine!;
    expect(engine.peers.size).toBe(0);
    expect(engine.routes.has(remote.mac)).toBe(false);

    pair(a, b);
    rt.addPeer(a.state.peer('b')!);
    const peerId = peerIdOf(a, b);
    expect(engine.peers.get(peerId)).toMatchObject({ endpoint: b.endpoint, plaintext: false });
    expect(engine.routes.get(remote.mac)).toEqual({ peer: peerId });
    expect(engine.underlay).toHaveLength(1);
    const sent = engine.underlay[0]!;
    expect({ host: sent.host, port: sent.port }).toEqual(b.endpoint);
    expect(sent.datagram[0]).toBe(INITIATION);
    expect(sent.datagram.length).toBe(INITIATION_BYTES);
    expect(rt.handshakeStatus('b')).toMatchObject({ wanted: true, handshaking: true, current: null });

    rt.removePeer('b');
    expect(engine.peers.size).toBe(0);
    expect(engine.routes.has(remote.mac)).toBe(false);
    expect(rt.handshakeStatus('b')).toBeUndefined();
  });

  it('a plaintext peer is put in plaintext mode; a peer the engine refuses is a conflict and unknown to the handshake', async () => {
    const a = host('a', 4789);
    const b = host('b', 4790);
    const rt = await start(a);
    rt.addPeer({ name: 'b', endpoint: '127.0.0.1:4790', publicKey: encodeKey(b.keys.publicKey), plaintext: true });
    expect(a.engine!.peers.get(peerIdOf(a, b))!.plaintext).toBe(true);
    // Same endpoint again: the engine throws, the runtime reports a conflict and forgets the peer.
    const c = generateHostKeys(sodium);
    expect(() => rt.addPeer({ name: 'c', endpoint: '127.0.0.1:4790', publicKey: encodeKey(c.publicKey), plaintext: false })).toThrow(/cannot add peer c/);
    expect(rt.handshakeStatus('c')).toBeUndefined();
  });

  it('two runtimes complete the handshake through their engines: mirrored session keys, a keepalive, counted', async () => {
    const { a, b } = await established();
    const sa = a.engine!.current(peerIdOf(a, b))!;
    const sb = b.engine!.current(peerIdOf(b, a))!;
    expect(sa.sendKey.equals(sb.recvKey)).toBe(true);
    expect(sa.recvKey.equals(sb.sendKey)).toBe(true);
    expect(sa.localIndex).toBe(sb.remoteIndex);
    expect(sa.remoteIndex).toBe(sb.localIndex);
    // The initiator confirms at once with a keepalive.
    const initiator = a.rt!.handshakeStatus('b')!.current!.isInitiator ? a : b;
    expect(initiator.engine!.peers.get(peerIdOf(initiator, initiator === a ? b : a))!.keepalives).toBeGreaterThanOrEqual(1);
    expect(a.sessions.get('b').handshakes).toBeGreaterThanOrEqual(1);
    expect(b.sessions.get('a').handshakes).toBeGreaterThanOrEqual(1);
  });

  it('rekey-needed from the engine starts a new handshake; the responder installs it pending until session-active promotes it', async () => {
    const { a, b } = await established();
    // B accepts one initiation from a peer per minInitiationIntervalMs (20 ms).
    await new Promise((r) => setTimeout(r, 25));
    const before = b.rt!.handshakeStatus('a')!.current!;
    const sessionsBefore = b.engine!.peers.get(peerIdOf(b, a))!.sessions.length;
    const rekeysBefore = [a.sessions.get('b').rekeys, b.sessions.get('a').rekeys];
    const sentBefore = a.engine!.underlay.length;

    a.engine!.emit({ type: 'rekey-needed', peerId: peerIdOf(a, b), localIndex: a.rt!.handshakeStatus('b')!.current!.localIndex, reason: 'age' });
    expect(a.engine!.underlay.length).toBe(sentBefore + 1);
    expect(a.engine!.underlay.at(-1)!.datagram[0]).toBe(INITIATION);

    const unwire = wire(a, b);
    try {
      await until('both installed the new session', () => b.engine!.peers.get(peerIdOf(b, a))!.sessions.length > sessionsBefore && a.sessions.get('b').rekeys > rekeysBefore[0]!);
    } finally {
      unwire();
    }
    const fresh = b.engine!.peers.get(peerIdOf(b, a))!.sessions.at(-1)!;
    // B had a current session, so the answered one waits for A's first message.
    expect(fresh.pending).toBe(true);
    // Both daemons announce the checksum-partial capability: each engine may mark segments to the other.
    expect(fresh.csumPartial).toBe(true);
    expect(a.engine!.peers.get(peerIdOf(a, b))!.sessions.at(-1)!.csumPartial).toBe(true);
    expect(b.rt!.handshakeStatus('a')!.current!.localIndex).toBe(before.localIndex);
    expect([a.sessions.get('b').rekeys, b.sessions.get('a').rekeys]).toEqual([rekeysBefore[0]! + 1, rekeysBefore[1]! + 1]);

    b.engine!.emit({ type: 'session-active', peerId: peerIdOf(b, a), localIndex: fresh.localIndex });
    expect(b.rt!.handshakeStatus('a')!.current!.localIndex).toBe(fresh.localIndex);
    expect(b.rt!.handshakeStatus('a')!.previous!.localIndex).toBe(before.localIndex);
  });

  it('the timer retries an unanswered initiation; nothing is sent after close', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const a = host('a', 4789);
    const b = host('b', 4790);
    pair(a, b);
    const rt = await start(a);
    const engine = a.engine!;
    expect(engine.underlay).toHaveLength(1);
    vi.advanceTimersByTime(5_000 + 334); // rekeyTimeout plus the largest jitter
    expect(engine.underlay).toHaveLength(2);
    expect(engine.underlay[1]!.datagram[0]).toBe(INITIATION);
    expect(rt.handshakeStatus('b')!.attempts).toBe(2);
    rt.close();
    vi.advanceTimersByTime(60_000);
    expect(engine.underlay).toHaveLength(2);
  });
});

describe('VPC runtime: control events', () => {
  const arpRequest = (senderMac: string, senderIp: string, targetIp: string): Buffer =>
    buildEthernet({
      dst: 'ff:ff:ff:ff:ff:ff',
      src: senderMac,
      etherType: 0x0806,
      payload: buildArp({ op: 1, senderMac, senderIp: ipv4ToInt(senderIp)!, targetMac: '00:00:00:00:00:00', targetIp: ipv4ToInt(targetIp)! }),
    });

  it('an ARP request from a guest is answered into its port; punts are counted by reason; an unknown port is counted', async () => {
    const h = host('a', 4789);
    const e = localEni(h, '10.0.1.10');
    const rt = await start(h);
    const engine = h.engine!;
    const portId = portOf(engine, e);

    engine.emit({ type: 'frame', portId, reason: 'arp', frame: arpRequest(e.mac, '10.0.1.10', '10.0.1.1') });
    expect(engine.frames).toHaveLength(1);
    expect(engine.frames[0]!.portId).toBe(portId);
    const eth = parseEthernet(engine.frames[0]!.frame)!;
    expect(eth).toMatchObject({ dst: e.mac, src: GATEWAY_MAC });
    expect(parseArp(eth.payload)).toMatchObject({ op: 2, senderMac: GATEWAY_MAC, senderIp: ipv4ToInt('10.0.1.1'), targetIp: ipv4ToInt('10.0.1.10') });

    engine.emit({ type: 'frame', portId, reason: 'broadcast', frame: arpRequest(e.mac, '10.0.1.10', '10.0.1.1') });
    engine.emit({ type: 'frame', portId: 99, reason: 'arp', frame: arpRequest(e.mac, '10.0.1.10', '10.0.1.1') });
    const control = rt.controlStats();
    expect(control.punts).toMatchObject({ broadcast: 1, unknownPort: 1 });
    expect(control.arp.replies).toBe(1);
    expect(engine.frames).toHaveLength(1);
  });

  it("a VPC's MTU is its local ENIs' port MTU and what DHCP hands out; one the underlay cannot carry is not attached", async () => {
    const h = host('a', 4789);
    const small = localEni(h, '10.0.1.10');
    const vpcId = h.state.model.createVpc({ cidr: '10.1.0.0/16', id: 'vpc-00000000000000002', mtu: 9001 }).id;
    h.state.model.createSubnet({ vpcId, cidr: '10.1.1.0/24', id: 'subnet-00000000000000002' });
    // The MAC and subnet of the captured DISCOVER (fixtures.ts).
    const jumbo = h.state.model.createEni({ subnetId: 'subnet-00000000000000002', privateIp: '10.1.1.23', mac: '52:54:00:12:34:56', hostId: LOCAL_HOST_ID });
    h.state.setKind(jumbo.id, 'tap');
    await start(h, { maxVpcMtu: 9001 });
    const engine = h.engine!;
    expect(engine.ports.get(portOf(engine, jumbo))!.opts.mtu).toBe(9001);
    expect(engine.ports.get(portOf(engine, small))!.opts.mtu).toBe(VPC_DEFAULT_MTU);
    engine.emit({ type: 'frame', portId: portOf(engine, jumbo), reason: 'dhcp', frame: hex(UDHCPC_DISCOVER) });
    expect(engine.frames).toHaveLength(1);
    const offer = parseDhcp(parseUdpFrame(engine.frames[0]!.frame)!.udp.payload)!;
    expect(offer.options.get(26)!.readUInt16BE(0)).toBe(9001);

    // The same state on a host whose underlay carries 1426-byte VPCs: the small ENI only.
    const low = host('b', 4790);
    const lowJumbo = low.state.model.createVpc({ cidr: '10.1.0.0/16', id: 'vpc-00000000000000002', mtu: 9001 }).id;
    low.state.model.createSubnet({ vpcId: lowJumbo, cidr: '10.1.1.0/24', id: 'subnet-00000000000000002' });
    const lowSmall = localEni(low, '10.0.1.10');
    const refused = low.state.model.createEni({ subnetId: 'subnet-00000000000000002', privateIp: '10.1.1.23', hostId: LOCAL_HOST_ID });
    await start(low, { maxVpcMtu: 1426 });
    expect(low.engine!.routes.get(lowSmall.mac)).toBeDefined();
    expect(low.engine!.routes.get(refused.mac)).toBeUndefined();
    expect(low.netdevs.devices.has(refused.hostInterface)).toBe(false);
  });

  it('a reply the engine cannot send is counted, not thrown', async () => {
    const h = host('a', 4789);
    const e = localEni(h, '10.0.1.10');
    const rt = await start(h);
    const engine = h.engine!;
    engine.sendFrame = () => {
      throw Object.assign(new Error('queue full'), { code: 'ENOBUFS' });
    };
    const portId = portOf(engine, e);
    expect(() => engine.emit({ type: 'frame', portId, reason: 'arp', frame: arpRequest(e.mac, '10.0.1.10', '10.0.1.1') })).not.toThrow();
    expect(rt.controlStats().punts.sendErrors).toBe(1);
  });

  it('names the engine counters by ENI id and peer name, in one snapshot', async () => {
    const { a, b, e, rt, engine } = await hostWithEniAndPeer();
    const portId = portOf(engine, e);
    engine.counters.ports[portId]!.rxFrames = 7;
    engine.counters.peers[peerIdOf(a, b)]!.txPackets = 3;
    const before = engine.statsCalls;
    const named = rt.namedStats();
    expect(engine.statsCalls).toBe(before + 1);
    expect(Object.keys(named.enis)).toEqual([e.id]);
    expect(named.enis[e.id]!.rxFrames).toBe(7);
    expect(Object.keys(named.peers)).toEqual(['b']);
    expect(named.peers.b!.txPackets).toBe(3);
  });
});

describe('VPC runtime: start and close', () => {
  it('close removes the ports, closes the engine, wipes the private key and keeps the netdevs', async () => {
    const { a, e, rt, engine } = await hostWithEniAndPeer();
    const portId = portOf(engine, e);
    rt.close();
    started.splice(started.indexOf(rt), 1);
    expect(engine.ports.size).toBe(0);
    expect(engine.calls.slice(-2)).toEqual([`removePort ${portId}`, 'close']);
    expect(engine.closed).toBe(true);
    expect(a.keys.privateKey.equals(Buffer.alloc(32))).toBe(true);
    expect(a.netdevs.devices.has(e.hostInterface)).toBe(true);
    expect(a.netdevs.removed).toEqual([]);
  });

  it('a start that fails closes the engine and wipes the private key', async () => {
    const a = host('a', 4789);
    let engine: FakeEngine | undefined;
    const failing = (opts: ConstructorParameters<typeof FakeEngine>[0]) => {
      engine = new FakeEngine(opts);
      engine.setRoute = () => {
        throw new Error('table full');
      };
      return engine;
    };
    await expect(start(a, { engine: failing })).rejects.toThrow(/table full/);
    expect(engine!.closed).toBe(true);
    expect(a.keys.privateKey.equals(Buffer.alloc(32))).toBe(true);
  });

  it('control events during the start are ignored (the runtime is not live yet)', async () => {
    const a = host('a', 4789);
    const e = localEni(a, '10.0.1.10');
    let engine: FakeEngine | undefined;
    a.netdevs.ensure = async () => {
      engine!.emit({ type: 'frame', portId: 1, reason: 'broadcast', frame: Buffer.alloc(60) });
    };
    const rt = await start(a, { engine: (opts) => (engine = new FakeEngine(opts)) });
    expect(engine!.routes.get(e.mac)).toEqual({ port: expect.any(Number) });
    expect(rt.controlStats().punts).toEqual({ broadcast: 0, multicast: 0, route: 0, unknownPort: 0, sendErrors: 0 });
  });
});
