import { beforeAll, describe, expect, it } from 'vitest';
import { ConflictError, NotFoundError, UsageError } from '../../src/common/errors.js';
import { loadSodium, type Sodium } from '../../src/kms/sodium.js';
import {
  HandshakeManager,
  consumeInitiation,
  consumeResponse,
  createInitiation,
  decodeKey,
  encodeKey,
  generateHostKeys,
  publicKeyOf,
  tai64n,
  underlayMessageType,
  type HandshakeAction,
  type HandshakePeer,
  type InitiationState,
  type KeyPair,
  type Session,
} from '../../src/vpc/handshake.js';
import { UNDERLAY_CAPABILITIES, UNDERLAY_CAP_CSUM_PARTIAL } from '../../src/vpc/constants.js';
import { HANDSHAKE_VECTOR as V, hex } from './fixtures.js';

let sodium: Sodium;
beforeAll(async () => {
  sodium = await loadSodium();
});

const T0 = 1_700_000_000_000;

function pinned(...peers: HandshakePeer[]): (s: Buffer) => HandshakePeer | undefined {
  return (s) => peers.find((p) => Buffer.from(p.staticPublic).equals(s));
}

/** mac1 as the protocol computes it, for tests that tamper and re-MAC (what an attacker knowing the public key can do). */
function remac(message: Buffer, receiverStatic: Buffer): Buffer {
  const off = message.length === 148 ? 116 : 60;
  const key = sodium.crypto_generichash(32, Buffer.concat([Buffer.from('mac1----'), receiverStatic]), null);
  Buffer.from(sodium.crypto_generichash(16, message.subarray(0, off), key)).copy(message, off);
  return message;
}

function handshake(a: KeyPair, b: KeyPair, now = T0): { ai: Session; br: Session; state: InitiationState } {
  const { message, state } = createInitiation(sodium, a, b.publicKey, now);
  const peerA: HandshakePeer = { staticPublic: a.publicKey };
  const r = consumeInitiation(sodium, b, pinned(peerA), message, now);
  if (!r.ok) throw new Error(r.reason);
  const done = consumeResponse(sodium, state, r.response, now);
  if (!done.ok) throw new Error(done.reason);
  return { ai: done.session, br: r.session, state };
}

describe('host keys', () => {
  it('generates clamped X25519 pairs and encodes them as 44-character base64', () => {
    const k = generateHostKeys(sodium);
    expect(k.privateKey.length).toBe(32);
    expect(k.privateKey[0]! & 7).toBe(0);
    expect(k.privateKey[31]! & 0xc0).toBe(0x40);
    expect(publicKeyOf(sodium, k.privateKey)).toEqual(k.publicKey);
    const text = encodeKey(k.publicKey);
    expect(text).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    expect(decodeKey(text)).toEqual(k.publicKey);
    expect(generateHostKeys(sodium).publicKey.equals(k.publicKey)).toBe(false);
  });

  it('refuses keys that are not 32 bytes of canonical base64', () => {
    for (const bad of ['', 'abc', Buffer.alloc(31).toString('base64'), Buffer.alloc(33).toString('base64'), 'A'.repeat(43) + '!', 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=']) {
      expect(() => decodeKey(bad), bad).toThrow(UsageError);
    }
    expect(() => publicKeyOf(sodium, Buffer.alloc(31))).toThrow(UsageError);
  });

  it('TAI64N is 2^62 + seconds, then nanoseconds, big-endian', () => {
    expect(tai64n(V.timestampMs).toString('hex')).toBe('400000006553f1000754d4c0');
  });
});

describe('handshake messages', () => {
  it('a full initiation/response yields matching keys and crossed indices', () => {
    const a = generateHostKeys(sodium);
    const b = generateHostKeys(sodium);
    const { message, state } = createInitiation(sodium, a, b.publicKey, T0, { localIndex: 0xaabbccdd });
    expect(message.length).toBe(148);
    expect(message.subarray(0, 8).toString('hex')).toBe('01000000ddccbbaa');
    expect(message.subarray(132)).toEqual(Buffer.alloc(16)); // mac2: no cookie
    const peerA: HandshakePeer = { staticPublic: a.publicKey };
    const r = consumeInitiation(sodium, b, pinned(peerA), message, T0, { localIndex: 7 });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.peer).toBe(peerA);
    expect(r.response.length).toBe(92);
    expect(r.response.subarray(0, 12).toString('hex')).toBe('0200000007000000ddccbbaa');
    const done = consumeResponse(sodium, state, r.response, T0 + 3);
    expect(done.ok).toBe(true);
    if (!done.ok) return;
    const ai = done.session;
    const br = r.session;
    expect(ai).toMatchObject({ localIndex: 0xaabbccdd, remoteIndex: 7, isInitiator: true, createdAt: T0 + 3 });
    expect(br).toMatchObject({ localIndex: 7, remoteIndex: 0xaabbccdd, isInitiator: false, createdAt: T0 });
    expect(ai.sendKey.length).toBe(32);
    expect(ai.sendKey).toEqual(br.recvKey);
    expect(ai.recvKey).toEqual(br.sendKey);
    expect(ai.sendKey.equals(ai.recvKey)).toBe(false);
    // the initiator's secrets are gone
    expect(state.consumed).toBe(true);
    expect(state.ephemeralPrivate.every((x) => x === 0)).toBe(true);
    expect(state.chainingKey.every((x) => x === 0)).toBe(true);
    // the responder recorded the timestamp
    expect(peerA.lastTimestamp).toEqual(tai64n(T0));
    expect(peerA.lastInitiationAt).toBe(T0);
  });

  it('every handshake gives fresh keys', () => {
    const a = generateHostKeys(sodium);
    const b = generateHostKeys(sodium);
    const one = handshake(a, b, T0);
    const two = handshake(a, b, T0 + 1000);
    expect(one.ai.sendKey.equals(two.ai.sendKey)).toBe(false);
  });

  it('matches an independent implementation (known-answer vector)', () => {
    const initiator: KeyPair = { privateKey: hex(V.initiatorPrivate), publicKey: hex(V.initiatorPublic) };
    const responder: KeyPair = { privateKey: hex(V.responderPrivate), publicKey: hex(V.responderPublic) };
    expect(publicKeyOf(sodium, initiator.privateKey)).toEqual(initiator.publicKey);
    // as responder: mac1, static and timestamp all open
    const peer: HandshakePeer = { staticPublic: initiator.publicKey };
    const r = consumeInitiation(sodium, responder, pinned(peer), hex(V.initiation), T0);
    expect(r.ok).toBe(true);
    if (r.ok) expect(r.session.remoteIndex).toBe(0x11223344);
    expect(peer.lastTimestamp).toEqual(tai64n(V.timestampMs));
    // as initiator: resume the reference's state and take its response
    const ephemeralPrivate = hex(V.initiatorEphemeralPrivate);
    const state: InitiationState = {
      localIndex: 0x11223344,
      peerStatic: responder.publicKey,
      createdAt: V.timestampMs,
      local: initiator,
      ephemeralPrivate,
      ephemeralPublic: publicKeyOf(sodium, ephemeralPrivate),
      chainingKey: hex(V.chainingKey),
      hash: hex(V.hash),
      consumed: false,
    };
    const done = consumeResponse(sodium, state, hex(V.response), T0);
    expect(done.ok).toBe(true);
    if (!done.ok) return;
    expect(done.session.remoteIndex).toBe(0x55667788);
    expect(done.session.sendKey.toString('hex')).toBe(V.initiatorSend);
    expect(done.session.recvKey.toString('hex')).toBe(V.initiatorRecv);
  });

  it('rejects an unknown static key', () => {
    const a = generateHostKeys(sodium);
    const b = generateHostKeys(sodium);
    const { message } = createInitiation(sodium, a, b.publicKey, T0);
    expect(consumeInitiation(sodium, b, () => undefined, message, T0)).toEqual({ ok: false, reason: 'unknown-peer' });
    const someoneElse: HandshakePeer = { staticPublic: generateHostKeys(sodium).publicKey };
    expect(consumeInitiation(sodium, b, pinned(someoneElse), message, T0)).toEqual({ ok: false, reason: 'unknown-peer' });
  });

  it('rejects a replayed initiation, an older timestamp and a flood', () => {
    const a = generateHostKeys(sodium);
    const b = generateHostKeys(sodium);
    const peerA: HandshakePeer = { staticPublic: a.publicKey };
    const first = createInitiation(sodium, a, b.publicKey, T0).message;
    expect(consumeInitiation(sodium, b, pinned(peerA), first, T0).ok).toBe(true);
    expect(consumeInitiation(sodium, b, pinned(peerA), first, T0 + 60_000)).toEqual({ ok: false, reason: 'replay' });
    const older = createInitiation(sodium, a, b.publicKey, T0 - 1).message;
    expect(consumeInitiation(sodium, b, pinned(peerA), older, T0 + 60_000)).toEqual({ ok: false, reason: 'replay' });
    const soon = createInitiation(sodium, a, b.publicKey, T0 + 5).message;
    expect(consumeInitiation(sodium, b, pinned(peerA), soon, T0 + 5)).toEqual({ ok: false, reason: 'flood' });
    // a rejected attempt does not move the bar
    expect(peerA.lastTimestamp).toEqual(tai64n(T0));
    expect(consumeInitiation(sodium, b, pinned(peerA), soon, T0 + 25).ok).toBe(true);
  });

  it('rejects mac1 made for another responder key', () => {
    const a = generateHostKeys(sodium);
    const b = generateHostKeys(sodium);
    const c = generateHostKeys(sodium);
    const { message } = createInitiation(sodium, a, c.publicKey, T0);
    expect(consumeInitiation(sodium, b, pinned({ staticPublic: a.publicKey }), message, T0)).toEqual({ ok: false, reason: 'bad-mac1' });
  });

  it('rejects any tampered byte of an initiation, with or without a recomputed mac1', () => {
    const a = generateHostKeys(sodium);
    const b = generateHostKeys(sodium);
    const { message } = createInitiation(sodium, a, b.publicKey, T0);
    for (let i = 0; i < 132; i++) {
      const peerA: HandshakePeer = { staticPublic: a.publicKey };
      const t = Buffer.from(message);
      t[i]! ^= 0x01;
      const r = consumeInitiation(sodium, b, pinned(peerA), t, T0);
      expect(r.ok, `byte ${i}`).toBe(false);
      if (i < 116) {
        // re-MAC'd: passes mac1, must still fail. Bytes 4-7 (sender index) are not authenticated
        // by the AEADs (as in WireGuard): it only routes the response back.
        const r2 = consumeInitiation(sodium, b, pinned(peerA), remac(t, b.publicKey), T0);
        if (i >= 4 && i < 8) expect(r2.ok, `byte ${i}`).toBe(true);
        else expect(r2, `byte ${i}`).toMatchObject({ ok: false, reason: i < 4 ? 'malformed' : expect.stringMatching(/decrypt-failed|bad-key/) });
      }
    }
    expect(consumeInitiation(sodium, b, pinned({ staticPublic: a.publicKey }), message.subarray(0, 147), T0)).toEqual({ ok: false, reason: 'malformed' });
  });

  it('rejects a low-order ephemeral key', () => {
    const a = generateHostKeys(sodium);
    const b = generateHostKeys(sodium);
    const { message } = createInitiation(sodium, a, b.publicKey, T0);
    const t = Buffer.from(message);
    t.fill(0, 8, 40); // the all-zero point
    expect(consumeInitiation(sodium, b, pinned({ staticPublic: a.publicKey }), remac(t, b.publicKey), T0)).toEqual({ ok: false, reason: 'bad-key' });
  });

  it('rejects tampered, misdirected and replayed responses; a bad one does not spoil the handshake', () => {
    const a = generateHostKeys(sodium);
    const b = generateHostKeys(sodium);
    const { message, state } = createInitiation(sodium, a, b.publicKey, T0);
    const r = consumeInitiation(sodium, b, pinned({ staticPublic: a.publicKey }), message, T0);
    if (!r.ok) throw new Error(r.reason);
    for (let i = 0; i < 76; i++) {
      const t = Buffer.from(r.response);
      t[i]! ^= 0x80;
      expect(consumeResponse(sodium, state, t, T0).ok, `byte ${i}`).toBe(false);
      if (i >= 12 && i < 60) expect(consumeResponse(sodium, state, remac(t, a.publicKey), T0), `byte ${i}`).toMatchObject({ ok: false });
    }
    const wrongIndex = Buffer.from(r.response);
    wrongIndex.writeUInt32LE((state.localIndex ^ 1) >>> 0, 8);
    expect(consumeResponse(sodium, state, wrongIndex, T0)).toEqual({ ok: false, reason: 'index-mismatch' });
    expect(consumeResponse(sodium, state, r.response, T0).ok).toBe(true);
    expect(consumeResponse(sodium, state, r.response, T0)).toEqual({ ok: false, reason: 'stale' });
  });

  // An older daemon writes 16 zero bytes of mac2 and never reads it (as consume* here do not,
  // beyond the capabilities): each side learns what the other announced, and nothing else changes.
  it('carries capabilities in mac2 both ways; zeros (an older daemon) read as none', () => {
    const a = generateHostKeys(sodium);
    const b = generateHostKeys(sodium);
    const peerA: HandshakePeer = { staticPublic: a.publicKey };
    const exchange = (capsA: number, capsB: number, alter?: (m: Buffer) => void) => {
      const { message, state } = createInitiation(sodium, a, b.publicKey, T0, { capabilities: capsA });
      alter?.(message);
      peerA.lastTimestamp = undefined;
      peerA.lastInitiationAt = undefined;
      const r = consumeInitiation(sodium, b, pinned(peerA), message, T0, { capabilities: capsB });
      if (!r.ok) throw new Error(r.reason);
      const done = consumeResponse(sodium, state, r.response, T0);
      if (!done.ok) throw new Error(done.reason);
      expect(done.session.sendKey).toEqual(r.session.recvKey);
      return { message, response: r.response, ai: done.session, br: r.session };
    };
    expect(UNDERLAY_CAPABILITIES & UNDERLAY_CAP_CSUM_PARTIAL).toBe(UNDERLAY_CAP_CSUM_PARTIAL);
    const both = exchange(UNDERLAY_CAPABILITIES, UNDERLAY_CAPABILITIES);
    expect(both.message.subarray(132).toString('hex')).toBe('01' + '00'.repeat(15));
    expect(both.response.subarray(76).toString('hex')).toBe('01' + '00'.repeat(15));
    expect([both.ai.peerCapabilities, both.br.peerCapabilities]).toEqual([UNDERLAY_CAPABILITIES, UNDERLAY_CAPABILITIES]);
    // An older responder (its response byte for byte what it always sent) and an older initiator.
    const oldB = exchange(UNDERLAY_CAPABILITIES, 0);
    expect(oldB.response.subarray(76)).toEqual(Buffer.alloc(16));
    expect([oldB.ai.peerCapabilities, oldB.br.peerCapabilities]).toEqual([0, UNDERLAY_CAPABILITIES]);
    const oldA = exchange(0, UNDERLAY_CAPABILITIES);
    expect(oldA.message.subarray(132)).toEqual(Buffer.alloc(16));
    expect([oldA.ai.peerCapabilities, oldA.br.peerCapabilities]).toEqual([UNDERLAY_CAPABILITIES, 0]);
    // Anything but a bit set and 12 zero bytes (a cookie MAC, say) is no capability.
    const cookie = exchange(UNDERLAY_CAPABILITIES, UNDERLAY_CAPABILITIES, (m) => (m[140] = 1));
    expect(cookie.br.peerCapabilities).toBe(0);
  });

  it('classifies underlay datagrams', () => {
    expect(underlayMessageType(Buffer.concat([Buffer.from([1, 0, 0, 0]), Buffer.alloc(144)]))).toBe(1);
    expect(underlayMessageType(Buffer.concat([Buffer.from([1, 0, 0, 0]), Buffer.alloc(143)]))).toBeNull();
    expect(underlayMessageType(Buffer.concat([Buffer.from([2, 0, 0, 0]), Buffer.alloc(88)]))).toBe(2);
    expect(underlayMessageType(Buffer.concat([Buffer.from([3, 0, 0, 0]), Buffer.alloc(60)]))).toBe(3);
    expect(underlayMessageType(Buffer.concat([Buffer.from([4, 0, 0, 0]), Buffer.alloc(28)]))).toBe(4);
    expect(underlayMessageType(Buffer.concat([Buffer.from([4, 0, 0, 0]), Buffer.alloc(27)]))).toBeNull();
    expect(underlayMessageType(Buffer.from([4, 0, 1, 0]))).toBeNull();
    expect(underlayMessageType(Buffer.from([5, 0, 0, 0, 9]))).toBe(5);
    expect(underlayMessageType(Buffer.from([9, 0, 0, 0]))).toBeNull();
    expect(underlayMessageType(Buffer.alloc(2))).toBeNull();
  });
});

// =============================================================================================
// The state machine, with a fake clock and a fake network
// =============================================================================================

interface Node {
  name: string;
  keys: KeyPair;
  m: HandshakeManager;
  /** Sessions the "engine" holds, by local index. */
  engine: Map<number, { session: Session; sendable: boolean; sendKeyCopy: Buffer; recvKeyCopy: Buffer }>;
}

/** Two managers; `capabilitiesB` (what b announces) 0 makes b behave as a daemon that predates capabilities. */
function pair(opts: { capabilitiesB?: number } = {}): { clock: { t: number }; a: Node; b: Node } {
  const clock = { t: T0 };
  const make = (name: string, keys = generateHostKeys(sodium), capabilities?: number): Node => {
    return { name, keys, m: new HandshakeManager({ sodium, local: keys, now: () => clock.t, random: () => 0, capabilities }), engine: new Map() };
  };
  let a = make('a');
  let b = make('b');
  // make `a` the one with the smaller public key (the tie-break winner) so tests can rely on it
  if (Buffer.compare(a.keys.publicKey, b.keys.publicKey) > 0) [a, b] = [b, a];
  if (opts.capabilitiesB !== undefined) b = make('b', b.keys, opts.capabilitiesB);
  a.name = 'a';
  b.name = 'b';
  a.m.addPeer('b', b.keys.publicKey);
  b.m.addPeer('a', a.keys.publicKey);
  return { clock, a, b };
}

/**
 * Carry out actions of `from` as a daemon would: engine bookkeeping at once, datagrams
 * delivered afterwards in order (`drop` loses them). An initiator's keepalive arrives as
 * "data" on the new session, which makes the peer confirm it.
 */
function run(actions: HandshakeAction[], from: Node, to: Node, opts: { drop?: boolean; log?: string[]; rekeys?: boolean[] } = {}): void {
  const network: Array<() => void> = [];
  const handle = (acts: HandshakeAction[], self: Node, other: Node): void => {
    for (const act of acts) {
      opts.log?.push(`${self.name}:${act.type}${act.type === 'send' ? ':' + act.kind : ''}`);
      switch (act.type) {
        case 'send':
          if (!opts.drop) network.push(() => handle(other.m.handleMessage(act.message).actions, other, self));
          break;
        case 'install':
          opts.rekeys?.push(act.replacesCurrent);
          self.engine.set(act.session.localIndex, { session: act.session, sendable: act.sendable, sendKeyCopy: Buffer.from(act.session.sendKey), recvKeyCopy: Buffer.from(act.session.recvKey) });
          if (act.keepalive && !opts.drop) network.push(() => handle(other.m.confirm(self.name, act.session.remoteIndex), other, self));
          break;
        case 'promote':
          self.engine.get(act.localIndex)!.sendable = true;
          break;
        case 'expire':
          self.engine.delete(act.localIndex);
          break;
        case 'give-up':
          break;
      }
    }
  };
  handle(actions, from, to);
  while (network.length) network.shift()!();
}

/** Keys of the two ends' current sessions agree (a sends what b receives and vice versa). */
function expectPaired(a: Node, b: Node): void {
  const sa = a.m.status('b').current!;
  const sb = b.m.status('a').current!;
  expect(sa).not.toBeNull();
  expect(sb).not.toBeNull();
  expect(sa.localIndex).toBe(sb.remoteIndex);
  expect(sb.localIndex).toBe(sa.remoteIndex);
  const ea = a.engine.get(sa.localIndex)!;
  const eb = b.engine.get(sb.localIndex)!;
  expect(ea.sendable && eb.sendable).toBe(true);
  expect(ea.sendKeyCopy).toEqual(eb.recvKeyCopy);
  expect(ea.recvKeyCopy).toEqual(eb.sendKeyCopy);
}

describe('HandshakeManager', () => {
  it('connect: initiation, response, receive-only install, keepalive, confirmation', () => {
    const { a, b } = pair();
    const log: string[] = [];
    const rekeys: boolean[] = [];
    run(a.m.connect('b'), a, b, { log, rekeys });
    expect(log).toEqual(['a:send:initiation', 'b:send:response', 'b:install', 'a:install', 'b:promote']);
    expect(rekeys).toEqual([false, false]);
    expectPaired(a, b);
    expect(a.m.status('b')).toMatchObject({ wanted: true, handshaking: false, previous: null, next: null, current: { isInitiator: true } });
    expect(b.m.status('a')).toMatchObject({ wanted: false, current: { isInitiator: false } });
  });

  it('connect initiates at once even when the clock moves between its reads (a loaded host)', () => {
    let t = T0;
    const local = generateHostKeys(sodium);
    const m = new HandshakeManager({ sodium, local, now: () => t++, random: () => 0 });
    m.addPeer('b', generateHostKeys(sodium).publicKey);
    expect(m.connect('b').map((act) => act.type)).toEqual(['send']);
  });

  it('schedules rekey by the initiator at 120 s, the responder at 165 s, expiry at 180 s', () => {
    const { clock, a, b } = pair();
    run(a.m.connect('b'), a, b);
    expect(a.m.nextTimerAt()).toBe(T0 + 120_000);
    expect(b.m.nextTimerAt()).toBe(T0 + 180_000); // b does not want the session itself: only expiry
    run(b.m.connect('a'), b, a);
    expect(b.m.status('a').nextEventAt).toBe(T0 + 165_000);
    clock.t = T0 + 119_999;
    expect(a.m.onTimer()).toEqual([]);
    clock.t = T0 + 120_000;
    const old = a.m.status('b').current!;
    const log: string[] = [];
    const rekeys: boolean[] = [];
    run(a.m.onTimer(), a, b, { log, rekeys });
    expect(log.slice(0, 2)).toEqual(['a:send:initiation', 'b:send:response']);
    expect(rekeys).toEqual([true, true]);
    expectPaired(a, b);
    expect(a.m.status('b').previous).toEqual(old);
    expect(a.m.status('b').current!.createdAt).toBe(T0 + 120_000);
    // b: the previous session is still receivable
    expect(b.m.status('a').previous!.localIndex).toBe(old.remoteIndex);
    expect(a.m.nextTimerAt()).toBe(T0 + 180_000); // expiry of the previous session
    clock.t = T0 + 180_000;
    const expired: HandshakeAction[] = a.m.onTimer();
    expect(expired).toEqual([{ type: 'expire', peerName: 'b', localIndex: old.localIndex, reason: 'too-old' }]);
    run(expired, a, b);
    expect(a.engine.has(old.localIndex)).toBe(false);
    expect(a.m.nextTimerAt()).toBe(T0 + 240_000);
  });

  it('retries every rekeyTimeout with a new initiation, ignores a late answer to an old one, gives up after 90 s, restarts later', () => {
    const { clock, a, b } = pair();
    const first = a.m.connect('b');
    expect(first).toHaveLength(1);
    const firstInit = (first[0] as { message: Buffer }).message;
    expect(a.m.nextTimerAt()).toBe(T0 + 5_000);
    clock.t = T0 + 5_000;
    const retry = a.m.onTimer();
    expect(retry).toMatchObject([{ type: 'send', kind: 'initiation' }]);
    expect(a.m.status('b').attempts).toBe(2);
    // b answers the first (stale) initiation: a drops the answer
    const staleAnswer = b.m.handleMessage(firstInit).actions.find((x) => x.type === 'send') as { message: Buffer };
    expect(a.m.handleMessage(staleAnswer.message)).toMatchObject({ reject: 'index-mismatch', actions: [] });
    expect(a.m.rejects['index-mismatch']).toBe(1);
    // keep losing everything until 90 s
    let gaveUp: HandshakeAction | undefined;
    while (!gaveUp) {
      clock.t = a.m.nextTimerAt()!;
      const acts = a.m.onTimer();
      gaveUp = acts.find((x) => x.type === 'give-up');
    }
    expect(clock.t).toBe(T0 + 90_000);
    expect(gaveUp).toEqual({ type: 'give-up', peerName: 'b', attempts: 18 });
    expect(a.m.status('b').handshaking).toBe(false);
    expect(a.m.nextTimerAt()).toBe(T0 + 90_000 + 120_000);
    clock.t = T0 + 210_000;
    expect(a.m.onTimer()).toMatchObject([{ type: 'send', kind: 'initiation' }]);
  });

  it('rekey-needed starts a handshake at once, but only one at a time', () => {
    const { clock, a, b } = pair();
    run(a.m.connect('b'), a, b);
    clock.t += 10_000;
    const acts = b.m.rekeyNeeded('a');
    expect(acts).toMatchObject([{ type: 'send', kind: 'initiation' }]);
    expect(b.m.rekeyNeeded('a')).toEqual([]);
    run(acts, b, a);
    expectPaired(a, b);
    expect(b.m.status('a').current!.isInitiator).toBe(true);
  });

  it('expires sessions at rejectAfter and wipes their keys', () => {
    const { clock, a, b } = pair();
    run(a.m.connect('b'), a, b);
    const s = [...b.engine.values()][0]!.session;
    clock.t = T0 + 180_000;
    const acts = b.m.onTimer();
    expect(acts).toEqual([{ type: 'expire', peerName: 'a', localIndex: s.localIndex, reason: 'too-old' }]);
    expect(s.sendKey.every((x) => x === 0) && s.recvKey.every((x) => x === 0)).toBe(true);
    expect(b.m.status('a').current).toBeNull();
    expect(b.m.nextTimerAt()).toBeUndefined();
  });

  it('simultaneous connects converge on one session (the greater public key yields)', () => {
    const { a, b } = pair();
    const fromA = a.m.connect('b');
    const fromB = b.m.connect('a');
    // cross the initiations in flight, then deliver everything
    const initA = (fromA[0] as { message: Buffer }).message;
    const initB = (fromB[0] as { message: Buffer }).message;
    const bAnswers = b.m.handleMessage(initA);
    expect(b.m.status('a').handshaking).toBe(false); // b (greater key) abandoned its own attempt
    const aAnswers = a.m.handleMessage(initB);
    expect(a.m.status('b').handshaking).toBe(true); // a keeps its own
    run(aAnswers.actions, a, b);
    run(bAnswers.actions, b, a);
    expectPaired(a, b);
    expect(a.m.status('b').current!.isInitiator).toBe(true);
    expect(b.m.status('a').current!.isInitiator).toBe(false);
    expect(b.m.rejects['index-mismatch']).toBe(1); // a's answer to b's abandoned initiation
  });

  it('a responder whose session is never confirmed initiates itself after rekeyTimeout', () => {
    const { clock, a, b } = pair();
    run(b.m.connect('a'), b, a, { drop: true }); // lost
    const init = a.m.connect('b');
    // b answers but the answer is lost
    const answer = b.m.handleMessage((init[0] as { message: Buffer }).message);
    expect(answer.actions.map((x) => x.type)).toEqual(['send', 'install']);
    expect(b.m.status('a').next).not.toBeNull();
    clock.t = T0 + 5_000;
    const acts = b.m.onTimer();
    expect(acts).toMatchObject([{ type: 'send', kind: 'initiation' }]);
  });

  it('handles junk without state changes and counts reasons', () => {
    const { a, b } = pair();
    expect(a.m.handleMessage(Buffer.alloc(0))).toEqual({ actions: [], reject: 'not-handshake' });
    expect(a.m.handleMessage(Buffer.from([3, 0, 0, 0, ...Buffer.alloc(60)]))).toEqual({ actions: [], reject: 'cookie-unsupported' });
    expect(a.m.handleMessage(Buffer.from([2, 0, 0, 0]))).toEqual({ actions: [], reject: 'malformed' });
    expect(a.m.handleMessage(Buffer.concat([Buffer.from([2, 0, 0, 0]), Buffer.alloc(88)]))).toEqual({ actions: [], reject: 'index-mismatch' });
    const stranger = generateHostKeys(sodium);
    const { message } = createInitiation(sodium, stranger, a.keys.publicKey, T0);
    expect(a.m.handleMessage(message)).toEqual({ actions: [], reject: 'unknown-peer' });
    expect(a.m.rejects).toMatchObject({ 'not-handshake': 1, 'cookie-unsupported': 1, malformed: 1, 'index-mismatch': 1, 'unknown-peer': 1 });
    expect(b.m.status('a').current).toBeNull();
  });

  it('disconnect and removePeer expire everything', () => {
    const { a, b } = pair();
    run(a.m.connect('b'), a, b);
    const acts = a.m.disconnect('b');
    expect(acts).toMatchObject([{ type: 'expire', reason: 'disconnected' }]);
    expect(a.m.nextTimerAt()).toBeUndefined();
    expect(b.m.removePeer('a')).toMatchObject([{ type: 'expire', reason: 'disconnected' }]);
    expect(() => b.m.status('a')).toThrow(NotFoundError);
    expect(b.m.listPeers()).toEqual([]);
  });

  it('installs sessions with the capabilities the peer announced; an older peer announces none', () => {
    const { a, b } = pair();
    run(a.m.connect('b'), a, b);
    expect([...a.engine.values()].map((e) => e.session.peerCapabilities)).toEqual([UNDERLAY_CAPABILITIES]);
    expect([...b.engine.values()].map((e) => e.session.peerCapabilities)).toEqual([UNDERLAY_CAPABILITIES]);
    const old = pair({ capabilitiesB: 0 });
    run(old.a.m.connect('b'), old.a, old.b);
    run(old.b.m.rekeyNeeded('a'), old.b, old.a);
    expect(new Set([...old.a.engine.values()].map((e) => e.session.peerCapabilities))).toEqual(new Set([0]));
    expect(new Set([...old.b.engine.values()].map((e) => e.session.peerCapabilities))).toEqual(new Set([UNDERLAY_CAPABILITIES]));
  });

  it('validates peers and timers', () => {
    const keys = generateHostKeys(sodium);
    const m = new HandshakeManager({ sodium, local: keys, now: () => T0 });
    const other = generateHostKeys(sodium).publicKey;
    m.addPeer('p', other);
    expect(() => m.addPeer('p', generateHostKeys(sodium).publicKey)).toThrow(ConflictError);
    expect(() => m.addPeer('q', other)).toThrow(/already belongs to peer p/);
    expect(() => m.addPeer('self', keys.publicKey)).toThrow(/own public key/);
    expect(() => m.addPeer('low', Buffer.alloc(32))).toThrow(/low-order/);
    expect(() => m.addPeer('short', Buffer.alloc(31))).toThrow(UsageError);
    expect(() => m.connect('nobody')).toThrow(NotFoundError);
    expect(() => new HandshakeManager({ sodium, local: keys, now: () => 0, timers: { rekeyAfterSeconds: 200 } })).toThrow(/rekeyAfter/);
    expect(() => new HandshakeManager({ sodium, local: keys, now: () => 0, timers: { rekeyTimeoutSeconds: -1 } })).toThrow(UsageError);
    expect(m.status('p').publicKey).toBe(encodeKey(other));
  });
});
