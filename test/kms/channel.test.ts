/**
 * The network KMS's channel without sockets: the handshake between a host key and the KMS's
 * key, records, replays, forgeries and broken framing. Counts and outcomes, no timings.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { ChannelInitiator, FrameReader, RecordCipher, acceptInitiation, frame, monotonicClock } from '../../src/kms/channel.js';
import { KMS_WIRE_MAX_FRAME, KMS_WIRE_MAX_RECORD_PLAINTEXT, KMS_WIRE_REFUSAL } from '../../src/kms/protocol.js';
import { loadSodium, type Sodium } from '../../src/kms/sodium.js';
import { consumeInitiation, generateHostKeys, type HandshakePeer, type KeyPair } from '../../src/vpc/handshake.js';

let sodium: Sodium;
let kms: KeyPair;
let host: KeyPair;
beforeAll(async () => {
  sodium = await loadSodium();
  kms = generateHostKeys(sodium);
  host = generateHostKeys(sodium);
});

/** Strip the length prefix of one frame. */
const body = (f: Buffer) => f.subarray(4);

function pair(now = 1_000): { client: RecordCipher; server: RecordCipher; peer: HandshakePeer } {
  const known = new Map<string, HandshakePeer>([[host.publicKey.toString('hex'), { staticPublic: host.publicKey }]]);
  const initiator = new ChannelInitiator(sodium, host, kms.publicKey);
  const init = initiator.start(now);
  const accepted = acceptInitiation(sodium, kms, (k) => known.get(k.toString('hex')), body(init), now);
  if (!accepted.ok) throw new Error(accepted.reason);
  const finished = initiator.finish(body(accepted.responseFrame), now);
  if (!finished.ok) throw new Error(String(finished.reason ?? finished.refused));
  return { client: finished.cipher, server: accepted.cipher, peer: accepted.peer };
}

describe('KMS channel handshake', () => {
  it('a known host key gets a session; records go both ways', () => {
    const { client, server } = pair();
    const [req] = client.seal(Buffer.from('POST /v1/decrypt'));
    const opened = server.open(body(req!));
    expect(opened.ok && opened.plaintext.toString()).toBe('POST /v1/decrypt');
    const [reply] = server.seal(Buffer.from([1, 2, 3]));
    const back = client.open(body(reply!));
    expect(back.ok && [...back.plaintext]).toEqual([1, 2, 3]);
  });

  it('an unknown key is refused (unknown-peer), and a wrong KMS key fails mac1', () => {
    const init = new ChannelInitiator(sodium, host, kms.publicKey).start(1);
    expect(acceptInitiation(sodium, kms, () => undefined, body(init), 1)).toEqual({ ok: false, reason: 'unknown-peer' });
    const other = generateHostKeys(sodium);
    const toOther = new ChannelInitiator(sodium, host, other.publicKey).start(2);
    expect(acceptInitiation(sodium, kms, () => ({ staticPublic: host.publicKey }), body(toOther), 2)).toEqual({ ok: false, reason: 'bad-mac1' });
  });

  it('a replayed initiation is refused: timestamps must grow per host', () => {
    const peer: HandshakePeer = { staticPublic: host.publicKey };
    const init = body(new ChannelInitiator(sodium, host, kms.publicKey).start(5_000));
    expect(acceptInitiation(sodium, kms, () => peer, init, 5_000).ok).toBe(true);
    expect(acceptInitiation(sodium, kms, () => peer, init, 5_001)).toEqual({ ok: false, reason: 'replay' });
    // several connections from one host in a burst are fine (no flood limit here) with a monotonic clock
    const clock = monotonicClock(() => 6_000);
    for (let i = 0; i < 3; i++) expect(acceptInitiation(sodium, kms, () => peer, body(new ChannelInitiator(sodium, host, kms.publicKey).start(clock())), 6_000).ok).toBe(true);
  });

  it('a KMS initiation is not a VPC one (different prologue)', () => {
    const init = body(new ChannelInitiator(sodium, host, kms.publicKey).start(1));
    expect(consumeInitiation(sodium, kms, () => ({ staticPublic: host.publicKey }), init, 1)).toEqual({ ok: false, reason: 'decrypt-failed' });
  });

  it('the client reads a refusal as text and rejects a garbage answer', () => {
    const i1 = new ChannelInitiator(sodium, host, kms.publicKey);
    i1.start(1);
    const refusal = Buffer.concat([Buffer.from([KMS_WIRE_REFUSAL, 0, 0, 0]), Buffer.from('no grant\n\x01')]);
    expect(i1.finish(refusal, 1)).toEqual({ ok: false, refused: 'no grant??' });
    const i2 = new ChannelInitiator(sodium, host, kms.publicKey);
    i2.start(1);
    const bogus = Buffer.alloc(92);
    bogus[0] = 2;
    expect(i2.finish(bogus, 1).ok).toBe(false);
  });
});

describe('KMS channel records', () => {
  it('a replayed record is dropped and counted; later records still open', () => {
    const { client, server } = pair();
    const [a] = client.seal(Buffer.from('a'));
    const [b] = client.seal(Buffer.from('b'));
    expect(server.open(body(a!)).ok).toBe(true);
    expect(server.open(body(a!))).toEqual({ ok: false, reason: 'replayed' });
    expect(server.open(body(b!)).ok).toBe(true);
    expect(server.open(body(b!))).toEqual({ ok: false, reason: 'replayed' });
    expect(server.dropped).toEqual({ replayed: 2, forged: 0, malformed: 0 });
  });

  it('a forged record (any flipped bit, or another session\'s record) is dropped and counted', () => {
    const { client, server } = pair();
    const other = pair(2_000);
    const [good] = client.seal(Buffer.from('hello world'));
    for (const offset of [8, 16, 20, good!.length - 5]) {
      const bad = Buffer.from(body(good!));
      bad[offset - 4]! ^= 0x01;
      expect(server.open(bad).ok, `offset ${offset}`).toBe(false);
    }
    const [foreign] = other.client.seal(Buffer.from('hello world'));
    expect(server.open(body(foreign!)).ok).toBe(false);
    expect(server.dropped.forged + server.dropped.replayed + server.dropped.malformed).toBe(5);
    expect(server.dropped.forged).toBeGreaterThanOrEqual(4);
    // the genuine record still opens after all that
    expect(server.open(body(good!)).ok).toBe(true);
  });

  it('short or mistyped messages are malformed', () => {
    const { server } = pair();
    expect(server.open(Buffer.alloc(10))).toEqual({ ok: false, reason: 'malformed' });
    expect(server.open(Buffer.alloc(40, 9))).toEqual({ ok: false, reason: 'malformed' });
    expect(server.dropped.malformed).toBe(2);
  });

  it('large writes are split into records that fit a frame', () => {
    const { client, server } = pair();
    const big = Buffer.alloc(KMS_WIRE_MAX_RECORD_PLAINTEXT * 2 + 5, 7);
    const frames = client.seal(big);
    expect(frames.length).toBe(3);
    for (const f of frames) expect(f.length - 4).toBeLessThanOrEqual(KMS_WIRE_MAX_FRAME);
    const out = Buffer.concat(frames.map((f) => {
      const r = server.open(body(f));
      if (!r.ok) throw new Error(r.reason);
      return r.plaintext;
    }));
    expect(out.equals(big)).toBe(true);
  });
});

describe('FrameReader', () => {
  it('reassembles frames split at every byte boundary', () => {
    const frames = [frame(Buffer.from('one')), frame(Buffer.alloc(300, 1)), frame(Buffer.from('three'))];
    const stream = Buffer.concat(frames);
    for (let cut = 1; cut < stream.length; cut += 7) {
      const r = new FrameReader();
      const got = [...r.push(Buffer.from(stream.subarray(0, cut))).frames, ...r.push(Buffer.from(stream.subarray(cut))).frames];
      expect(got.map((g) => g.length)).toEqual([3, 300, 5]);
    }
  });

  it('a zero or oversize length is malformed, and stays so', () => {
    const zero = new FrameReader();
    expect(zero.push(Buffer.from([0, 0, 0, 0, 1])).malformed).toBe(true);
    const huge = new FrameReader();
    const head = Buffer.alloc(4);
    head.writeUInt32BE(KMS_WIRE_MAX_FRAME + 1);
    expect(huge.push(head).malformed).toBe(true);
    expect(huge.push(frame(Buffer.from('x'))).malformed).toBe(true);
  });
});
