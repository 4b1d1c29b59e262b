/**
 * Key exchange between nitride daemons: the session keys of the encrypted VPC underlay.
 *
 * Protocol: WireGuard's handshake (Noise_IKpsk2, psk = 32 zero bytes), with its message
 * layouts, KDF chain, mac1 and TAI64N replay protection, adapted to the primitives libsodium
 * has. Every host has a static X25519 key pair; each daemon pins its peers' public keys (an
 * initiation from an unknown static key is rejected). One round trip: initiation (type 1),
 * response (type 2); both then hold two 32-byte transport keys and each other's index, which
 * the native engine uses for AES-256-GCM data messages (type 4).
 *
 * Deviations from WireGuard (all in the primitives; the structure is unchanged):
 * - HASH is BLAKE2b-256 and MAC is keyed BLAKE2b-128 (WireGuard: BLAKE2s-256, keyed
 *   BLAKE2s-128): libsodium's crypto_generichash is BLAKE2b.
 * - HMAC is HMAC-BLAKE2b-256 (128-byte block) in the HKDF chain (WireGuard: HMAC-BLAKE2s).
 * - The Noise construction name says so ("Noise_IKpsk2_25519_ChaChaPoly_BLAKE2b") and the
 *   identifier is "nitride v1 vpc underlay", so these messages can never be confused with
 *   WireGuard's.
 * - Transport data uses AES-256-GCM in the native engine, not ChaCha20-Poly1305; the keys
 *   are the same KDF2(C, ε) outputs.
 * - No cookie mechanism yet: mac2 is not checked; it carries the sender's capabilities
 *   (UNDERLAY_CAPABILITIES: u32 LE, then 12 zero bytes; older daemons send 16 zero bytes, which
 *   read as none). Type 3 is reserved. A
 *   flood limit per peer (minimum interval between accepted initiations, WireGuard's
 *   INITIATIONS_PER_SECOND) applies instead.
 * - Timestamps have millisecond resolution (from the injected clock).
 *
 * Messages (integers little-endian, as WireGuard):
 *
 *     initiation (148 bytes)                   response (92 bytes)
 *       0  u8 type = 1, 3 zero bytes             0  u8 type = 2, 3 zero bytes
 *       4  u32 sender index                      4  u32 sender index
 *       8  ephemeral public key (32)             8  u32 receiver index
 *      40  AEAD(static public key) (32 + 16)    12  ephemeral public key (32)
 *      88  AEAD(TAI64N timestamp) (12 + 16)     44  AEAD(empty) (16)
 *     116  mac1 (16)                            60  mac1 (16)
 *     132  mac2 (16: capabilities)              76  mac2 (16: capabilities)
 *
 * mac1 = MAC(HASH("mac1----" ‖ receiver's static public key), message up to mac1): a host
 * answers (and spends a DH on) only messages made for its own public key.
 *
 * Secrets: private keys, chaining keys, DH results and KDF outputs live in Buffers that are
 * wiped (sodium.memzero) as soon as they are replaced; initiation states are wiped when
 * consumed or abandoned, session keys when a session expires. (libsodium.js copies inputs
 * into its WASM heap for each call; those copies are outside our reach.)
 */
import { ConflictError, NotFoundError, UsageError } from '../common/errors.js';
import type { Sodium } from '../kms/sodium.js';
import {
  UNDERLAY_COOKIE_REPLY,
  UNDERLAY_COOKIE_REPLY_BYTES,
  UNDERLAY_DATA,
  UNDERLAY_DATA_HEADER_BYTES,
  UNDERLAY_DATA_TAG_BYTES,
  UNDERLAY_HANDSHAKE_INITIATION,
  UNDERLAY_HANDSHAKE_RESPONSE,
  UNDERLAY_CAPABILITIES,
  UNDERLAY_INITIATION_BYTES,
  UNDERLAY_PLAINTEXT_DATA,
  UNDERLAY_RESPONSE_BYTES,
} from './constants.js';

export const KEY_BYTES = 32;
const MAC_BYTES = 16;
const TIMESTAMP_BYTES = 12;
const BLAKE2B_BLOCK_BYTES = 128;

const CONSTRUCTION = Buffer.from('Noise_IKpsk2_25519_ChaChaPoly_BLAKE2b', 'ascii');
/** The Noise prologue identifier of the VPC underlay; other users of this handshake pass their own (`identifier` options). */
export const VPC_IDENTIFIER = Buffer.from('nitride v1 vpc underlay', 'ascii');
const LABEL_MAC1 = Buffer.from('mac1----', 'ascii');
const PSK = Buffer.alloc(KEY_BYTES);
const ZERO_NONCE = Buffer.alloc(12);
const EMPTY = Buffer.alloc(0);

// Offsets of the two messages.
const INIT_SENDER = 4;
const INIT_EPHEMERAL = 8;
const INIT_STATIC = 40;
const INIT_TIMESTAMP = 88;
const INIT_MAC1 = 116;
const INIT_MAC2 = 132;
const RESP_SENDER = 4;
const RESP_RECEIVER = 8;
const RESP_EPHEMERAL = 12;
const RESP_EMPTY = 44;
const RESP_MAC1 = 60;
const RESP_MAC2 = 76;
const MAC2_BYTES = 16;

// =============================================================================================
// Host keys
// =============================================================================================

export interface KeyPair {
  publicKey: Buffer;
  privateKey: Buffer;
}

/** A fresh static X25519 key pair for this host (the private key clamped, as `wg genkey`). */
export function generateHostKeys(sodium: Sodium): KeyPair {
  const privateKey = buf(sodium.randombytes_buf(KEY_BYTES));
  clamp(privateKey);
  return { privateKey, publicKey: publicKeyOf(sodium, privateKey) };
}

/** The public key of a private key. */
export function publicKeyOf(sodium: Sodium, privateKey: Uint8Array): Buffer {
  if (privateKey.length !== KEY_BYTES) throw new UsageError(`an X25519 private key has ${KEY_BYTES} bytes, not ${privateKey.length}`);
  return buf(sodium.crypto_scalarmult_base(privateKey));
}

/** Standard base64 (44 characters for a key): what `nitride key show` prints and peers configure. */
export function encodeKey(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('base64');
}

/** Decode a base64 key; UsageError unless exactly 32 bytes in canonical base64. */
export function decodeKey(text: string, what = 'public key'): Buffer {
  const bytes = typeof text === 'string' && /^[A-Za-z0-9+/]{43}=$/.test(text.trim()) ? Buffer.from(text.trim(), 'base64') : null;
  if (!bytes || bytes.length !== KEY_BYTES || bytes.toString('base64') !== text.trim()) {
    throw new UsageError(`${what} must be ${KEY_BYTES} bytes in base64 (44 characters ending in '=')`);
  }
  return bytes;
}

/** X25519 private-key clamping (as `wg genkey`); deterministic, so a stored key clamps the same every time. */
export function clamp(k: Buffer): void {
  k[0]! &= 248;
  k[31]! &= 127;
  k[31]! |= 64;
}

// =============================================================================================
// Primitives
// =============================================================================================

function buf(u: Uint8Array): Buffer {
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

function wipe(sodium: Sodium, ...bufs: Array<Uint8Array | undefined | null>): void {
  for (const b of bufs) if (b && b.length) sodium.memzero(b);
}

/** Intermediate secrets of one handshake step, kept as they are made so a `finally` wipes them all. */
function secretCollector(): { keep: <T extends Buffer | null>(b: T) => T; secrets: Buffer[] } {
  const secrets: Buffer[] = [];
  const keep = <T extends Buffer | null>(b: T): T => {
    if (b) secrets.push(b);
    return b;
  };
  return { keep, secrets };
}

function hash(sodium: Sodium, ...parts: Uint8Array[]): Buffer {
  return buf(sodium.crypto_generichash(KEY_BYTES, Buffer.concat(parts), null));
}

function mac(sodium: Sodium, key: Uint8Array, data: Uint8Array): Buffer {
  return buf(sodium.crypto_generichash(MAC_BYTES, data, key));
}

/** HMAC-BLAKE2b-256 (RFC 2104 with a 128-byte block). Keys here are ≤ 32 bytes. */
function hmac(sodium: Sodium, key: Uint8Array, ...data: Uint8Array[]): Buffer {
  const block = Buffer.alloc(BLAKE2B_BLOCK_BYTES);
  block.set(key);
  const ipad = Buffer.alloc(BLAKE2B_BLOCK_BYTES);
  const opad = Buffer.alloc(BLAKE2B_BLOCK_BYTES);
  for (let i = 0; i < BLAKE2B_BLOCK_BYTES; i++) {
    ipad[i] = block[i]! ^ 0x36;
    opad[i] = block[i]! ^ 0x5c;
  }
  const innerInput = Buffer.concat([ipad, ...data]);
  const inner = buf(sodium.crypto_generichash(KEY_BYTES, innerInput, null));
  const outerInput = Buffer.concat([opad, inner]);
  const out = buf(sodium.crypto_generichash(KEY_BYTES, outerInput, null));
  wipe(sodium, block, ipad, opad, innerInput, inner, outerInput);
  return out;
}

/** WireGuard's KDFn (HKDF with HMAC): n outputs of 32 bytes. */
function kdf(sodium: Sodium, n: 1 | 2 | 3, key: Uint8Array, input: Uint8Array): Buffer[] {
  const prk = hmac(sodium, key, input);
  const out: Buffer[] = [];
  let prev: Buffer = EMPTY;
  for (let i = 1; i <= n; i++) {
    prev = hmac(sodium, prk, prev, Buffer.from([i]));
    out.push(prev);
  }
  wipe(sodium, prk);
  return out;
}

function aeadSeal(sodium: Sodium, key: Uint8Array, plaintext: Uint8Array, ad: Uint8Array): Buffer {
  return buf(sodium.crypto_aead_chacha20poly1305_ietf_encrypt(plaintext, ad, null, ZERO_NONCE, key));
}

/** Null when authentication fails. */
function aeadOpen(sodium: Sodium, key: Uint8Array, ciphertext: Uint8Array, ad: Uint8Array): Buffer | null {
  try {
    return buf(sodium.crypto_aead_chacha20poly1305_ietf_decrypt(null, ciphertext, ad, ZERO_NONCE, key));
  } catch {
    return null;
  }
}

/** X25519; null for a low-order public key (all-zero result). */
function dh(sodium: Sodium, privateKey: Uint8Array, publicKey: Uint8Array): Buffer | null {
  try {
    return buf(sodium.crypto_scalarmult(privateKey, publicKey));
  } catch {
    return null;
  }
}

/** TAI64N: big-endian 2^62 + seconds, then big-endian nanoseconds. */
export function tai64n(nowMs: number): Buffer {
  const out = Buffer.alloc(TIMESTAMP_BYTES);
  const ms = Math.max(0, Math.floor(nowMs));
  out.writeBigUInt64BE(2n ** 62n + BigInt(Math.floor(ms / 1000)), 0);
  out.writeUInt32BE((ms % 1000) * 1_000_000, 8);
  return out;
}

function initialChain(sodium: Sodium, responderStatic: Uint8Array, identifier: Uint8Array): { chain: Buffer; h: Buffer } {
  const chain = hash(sodium, CONSTRUCTION);
  const h0 = hash(sodium, chain, identifier);
  const h = hash(sodium, h0, responderStatic);
  return { chain, h };
}

function mac1Key(sodium: Sodium, receiverStatic: Uint8Array): Buffer {
  return hash(sodium, LABEL_MAC1, receiverStatic);
}

function checkMac1(sodium: Sodium, message: Buffer, macOffset: number, receiverStatic: Uint8Array): boolean {
  const expected = mac(sodium, mac1Key(sodium, receiverStatic), message.subarray(0, macOffset));
  return sodium.memcmp(expected, message.subarray(macOffset, macOffset + MAC_BYTES));
}

function randomIndex(sodium: Sodium): number {
  return buf(sodium.randombytes_buf(4)).readUInt32LE(0);
}

// =============================================================================================
// The exchange
// =============================================================================================

/** One direction-pair of transport keys, as the native engine's `setSession` takes them. */
export interface Session {
  /** Our index: the receiver index peers put in data messages to us. */
  localIndex: number;
  /** The peer's index: what we put in data messages to it. */
  remoteIndex: number;
  sendKey: Buffer;
  recvKey: Buffer;
  /** `now` (ms) when the handshake completed. */
  createdAt: number;
  isInitiator: boolean;
  /** The capability bits the peer announced in its handshake message (0 from older daemons). */
  peerCapabilities: number;
}

/** What a responder remembers per peer to refuse replays and floods (updated by {@link consumeInitiation}). */
export interface HandshakePeer {
  staticPublic: Uint8Array;
  /** TAI64N of the newest initiation accepted from this peer. */
  lastTimestamp?: Buffer;
  /** `now` (ms) when it was accepted. */
  lastInitiationAt?: number;
}

/** The initiator's half-finished handshake. Opaque; wipe with {@link wipeInitiationState} if abandoned. */
export interface InitiationState {
  readonly localIndex: number;
  readonly peerStatic: Buffer;
  readonly createdAt: number;
  readonly local: KeyPair;
  ephemeralPrivate: Buffer;
  ephemeralPublic: Buffer;
  chainingKey: Buffer;
  hash: Buffer;
  consumed: boolean;
}

export type HandshakeRejectReason =
  /** Wrong length, type or reserved bytes. */
  | 'malformed'
  /** mac1 does not match: not made for our public key (or altered). */
  | 'bad-mac1'
  /** An AEAD field did not authenticate (tampering, wrong keys). */
  | 'decrypt-failed'
  /** The initiator's static key is not a pinned peer. */
  | 'unknown-peer'
  /** Timestamp not newer than the last accepted from that peer. */
  | 'replay'
  /** Accepted an initiation from that peer too recently. */
  | 'flood'
  /** A low-order public key (X25519 gave all zeroes). */
  | 'bad-key'
  /** Response for another initiation (receiver index). */
  | 'index-mismatch'
  /** Response to an initiation already completed or abandoned. */
  | 'stale'
  /** A cookie reply (type 3): not supported yet. */
  | 'cookie-unsupported'
  /** Not a handshake message type. */
  | 'not-handshake';

export type Rejected = { ok: false; reason: HandshakeRejectReason };

/** Start a handshake with the peer whose static public key is `peerStatic`. */
export function createInitiation(
  sodium: Sodium,
  local: KeyPair,
  peerStatic: Uint8Array,
  now: number,
  options: { localIndex?: number; identifier?: Uint8Array; capabilities?: number } = {},
): { message: Buffer; state: InitiationState } {
  if (peerStatic.length !== KEY_BYTES) throw new UsageError(`a peer public key has ${KEY_BYTES} bytes, not ${peerStatic.length}`);
  const localIndex = options.localIndex ?? randomIndex(sodium);
  const { chain: c0, h: h0 } = initialChain(sodium, peerStatic, options.identifier ?? VPC_IDENTIFIER);
  const ephemeralPrivate = buf(sodium.randombytes_buf(KEY_BYTES));
  const ephemeralPublic = buf(sodium.crypto_scalarmult_base(ephemeralPrivate));

  const [c1] = kdf(sodium, 1, c0, ephemeralPublic) as [Buffer];
  const h1 = hash(sodium, h0, ephemeralPublic);
  const es = dh(sodium, ephemeralPrivate, peerStatic);
  if (!es) {
    wipe(sodium, c0, c1, ephemeralPrivate);
    throw new UsageError('peer public key is a low-order point');
  }
  const [c2, k1] = kdf(sodium, 2, c1, es) as [Buffer, Buffer];
  const encryptedStatic = aeadSeal(sodium, k1, local.publicKey, h1);
  const h2 = hash(sodium, h1, encryptedStatic);
  const ss = dh(sodium, local.privateKey, peerStatic)!; // not null: es succeeded for this key
  const [c3, k2] = kdf(sodium, 2, c2, ss) as [Buffer, Buffer];
  const timestamp = tai64n(now);
  const encryptedTimestamp = aeadSeal(sodium, k2, timestamp, h2);
  const h3 = hash(sodium, h2, encryptedTimestamp);
  wipe(sodium, c0, c1, c2, k1, k2, es, ss, h0, h1, h2);

  const message = Buffer.alloc(UNDERLAY_INITIATION_BYTES);
  message[0] = UNDERLAY_HANDSHAKE_INITIATION;
  message.writeUInt32LE(localIndex >>> 0, INIT_SENDER);
  ephemeralPublic.copy(message, INIT_EPHEMERAL);
  encryptedStatic.copy(message, INIT_STATIC);
  encryptedTimestamp.copy(message, INIT_TIMESTAMP);
  mac(sodium, mac1Key(sodium, peerStatic), message.subarray(0, INIT_MAC1)).copy(message, INIT_MAC1);
  writeCapabilities(message, INIT_MAC2, options.capabilities ?? 0);

  const state: InitiationState = {
    localIndex: localIndex >>> 0,
    peerStatic: Buffer.from(peerStatic),
    createdAt: now,
    local,
    ephemeralPrivate,
    ephemeralPublic,
    chainingKey: c3,
    hash: h3,
    consumed: false,
  };
  return { message, state };
}

/**
 * Answer an initiation. `knownPeers` maps a static public key to its pinned peer record (or
 * undefined: rejected). On success the peer's `lastTimestamp`/`lastInitiationAt` are updated
 * (replay and flood protection live in the peer record the caller keeps) and the response to
 * send back plus the responder's session are returned. Checks, cheapest first: framing, mac1,
 * static key decryption, pinning, timestamp decryption, replay, flood.
 */
export function consumeInitiation<P extends HandshakePeer>(
  sodium: Sodium,
  local: KeyPair,
  knownPeers: (staticPublic: Buffer) => P | undefined,
  message: Uint8Array,
  now: number,
  options: { localIndex?: number; minIntervalMs?: number; identifier?: Uint8Array; capabilities?: number } = {},
): { ok: true; peer: P; response: Buffer; session: Session } | Rejected {
  const msg = buf(message);
  if (msg.length !== UNDERLAY_INITIATION_BYTES || msg[0] !== UNDERLAY_HANDSHAKE_INITIATION || msg[1] || msg[2] || msg[3]) return reject('malformed');
  if (!checkMac1(sodium, msg, INIT_MAC1, local.publicKey)) return reject('bad-mac1');
  const senderIndex = msg.readUInt32LE(INIT_SENDER);
  const ephemeral = msg.subarray(INIT_EPHEMERAL, INIT_STATIC);
  const encryptedStatic = msg.subarray(INIT_STATIC, INIT_TIMESTAMP);
  const encryptedTimestamp = msg.subarray(INIT_TIMESTAMP, INIT_MAC1);

  const { keep, secrets } = secretCollector();
  try {
    const { chain: c0, h: h0 } = initialChain(sodium, local.publicKey, options.identifier ?? VPC_IDENTIFIER);
    keep(c0);
    const [c1] = kdf(sodium, 1, c0, ephemeral) as [Buffer];
    keep(c1);
    const h1 = hash(sodium, h0, ephemeral);
    const es = keep(dh(sodium, local.privateKey, ephemeral));
    if (!es) return reject('bad-key');
    const [c2, k1] = kdf(sodium, 2, c1, es) as [Buffer, Buffer];
    keep(c2);
    keep(k1);
    const peerStatic = aeadOpen(sodium, k1, encryptedStatic, h1);
    if (!peerStatic) return reject('decrypt-failed');
    const h2 = hash(sodium, h1, encryptedStatic);
    const peer = knownPeers(peerStatic);
    if (!peer) return reject('unknown-peer');
    const ss = keep(dh(sodium, local.privateKey, peerStatic));
    if (!ss) return reject('bad-key');
    const [c3, k2] = kdf(sodium, 2, c2, ss) as [Buffer, Buffer];
    keep(c3);
    keep(k2);
    const timestamp = aeadOpen(sodium, k2, encryptedTimestamp, h2);
    if (!timestamp || timestamp.length !== TIMESTAMP_BYTES) return reject('decrypt-failed');
    const h3 = hash(sodium, h2, encryptedTimestamp);
    if (peer.lastTimestamp && Buffer.compare(timestamp, peer.lastTimestamp) <= 0) return reject('replay');
    const minInterval = options.minIntervalMs ?? 20;
    if (peer.lastInitiationAt !== undefined && now - peer.lastInitiationAt < minInterval && now >= peer.lastInitiationAt) return reject('flood');
    peer.lastTimestamp = timestamp;
    peer.lastInitiationAt = now;

    // the response
    const localIndex = (options.localIndex ?? randomIndex(sodium)) >>> 0;
    const ephemeralPrivate = keep(buf(sodium.randombytes_buf(KEY_BYTES)));
    const ephemeralPublic = buf(sodium.crypto_scalarmult_base(ephemeralPrivate));
    const [c4] = kdf(sodium, 1, c3, ephemeralPublic) as [Buffer];
    keep(c4);
    const h4 = hash(sodium, h3, ephemeralPublic);
    const ee = keep(dh(sodium, ephemeralPrivate, ephemeral))!; // ephemeral passed es: not low order
    const [c5] = kdf(sodium, 1, c4, ee) as [Buffer];
    keep(c5);
    const se = keep(dh(sodium, ephemeralPrivate, peerStatic))!;
    const [c6] = kdf(sodium, 1, c5, se) as [Buffer];
    keep(c6);
    const [c7, tau, k3] = kdf(sodium, 3, c6, PSK) as [Buffer, Buffer, Buffer];
    keep(c7);
    keep(tau);
    keep(k3);
    const h5 = hash(sodium, h4, tau);
    const empty = aeadSeal(sodium, k3, EMPTY, h5);
    const [initiatorSend, initiatorRecv] = kdf(sodium, 2, c7, EMPTY) as [Buffer, Buffer];

    const response = Buffer.alloc(UNDERLAY_RESPONSE_BYTES);
    response[0] = UNDERLAY_HANDSHAKE_RESPONSE;
    response.writeUInt32LE(localIndex, RESP_SENDER);
    response.writeUInt32LE(senderIndex, RESP_RECEIVER);
    ephemeralPublic.copy(response, RESP_EPHEMERAL);
    empty.copy(response, RESP_EMPTY);
    mac(sodium, mac1Key(sodium, peerStatic), response.subarray(0, RESP_MAC1)).copy(response, RESP_MAC1);
    writeCapabilities(response, RESP_MAC2, options.capabilities ?? 0);
    return {
      ok: true,
      peer,
      response,
      session: {
        localIndex,
        remoteIndex: senderIndex,
        sendKey: initiatorRecv,
        recvKey: initiatorSend,
        createdAt: now,
        isInitiator: false,
        peerCapabilities: readCapabilities(msg, INIT_MAC2),
      },
    };
  } finally {
    wipe(sodium, ...secrets);
  }
}

/** Finish our handshake with the peer's response. On success the state is wiped and marked consumed. */
export function consumeResponse(sodium: Sodium, state: InitiationState, message: Uint8Array, now: number): { ok: true; session: Session } | Rejected {
  const msg = buf(message);
  if (msg.length !== UNDERLAY_RESPONSE_BYTES || msg[0] !== UNDERLAY_HANDSHAKE_RESPONSE || msg[1] || msg[2] || msg[3]) return reject('malformed');
  if (state.consumed) return reject('stale');
  if (msg.readUInt32LE(RESP_RECEIVER) !== state.localIndex) return reject('index-mismatch');
  if (!checkMac1(sodium, msg, RESP_MAC1, state.local.publicKey)) return reject('bad-mac1');
  const ephemeral = msg.subarray(RESP_EPHEMERAL, RESP_EMPTY);

  const { keep, secrets } = secretCollector();
  try {
    const [c1] = kdf(sodium, 1, state.chainingKey, ephemeral) as [Buffer];
    keep(c1);
    const h1 = hash(sodium, state.hash, ephemeral);
    const ee = keep(dh(sodium, state.ephemeralPrivate, ephemeral));
    if (!ee) return reject('bad-key');
    const [c2] = kdf(sodium, 1, c1, ee) as [Buffer];
    keep(c2);
    const se = keep(dh(sodium, state.local.privateKey, ephemeral))!;
    const [c3] = kdf(sodium, 1, c2, se) as [Buffer];
    keep(c3);
    const [c4, tau, k] = kdf(sodium, 3, c3, PSK) as [Buffer, Buffer, Buffer];
    keep(c4);
    keep(tau);
    keep(k);
    const h2 = hash(sodium, h1, tau);
    if (aeadOpen(sodium, k, msg.subarray(RESP_EMPTY, RESP_MAC1), h2) === null) return reject('decrypt-failed');
    const [sendKey, recvKey] = kdf(sodium, 2, c4, EMPTY) as [Buffer, Buffer];
    wipeInitiationState(sodium, state);
    return {
      ok: true,
      session: {
        localIndex: state.localIndex,
        remoteIndex: msg.readUInt32LE(RESP_SENDER),
        sendKey,
        recvKey,
        createdAt: now,
        isInitiator: true,
        peerCapabilities: readCapabilities(msg, RESP_MAC2),
      },
    };
  } finally {
    wipe(sodium, ...secrets);
  }
}

/** Wipe the secrets of an initiation (after its response, or when retried/abandoned). */
export function wipeInitiationState(sodium: Sodium, state: InitiationState): void {
  wipe(sodium, state.ephemeralPrivate, state.chainingKey, state.hash);
  state.consumed = true;
}

export function wipeSession(sodium: Sodium, session: Session): void {
  wipe(sodium, session.sendKey, session.recvKey);
}

/** Capabilities into a message's (zeroed) mac2 field: u32 LE, the rest zero. */
function writeCapabilities(message: Buffer, at: number, capabilities: number): void {
  message.writeUInt32LE(capabilities >>> 0, at);
}

/** The capabilities in a mac2 field; 0 unless its last 12 bytes are zero (a cookie MAC, should one ever be sent, is not a bit set). */
function readCapabilities(message: Buffer, at: number): number {
  for (let i = at + 4; i < at + MAC2_BYTES; i++) if (message[i] !== 0) return 0;
  return message.readUInt32LE(at);
}

function reject(reason: HandshakeRejectReason): Rejected {
  return { ok: false, reason };
}

/**
 * Type of an underlay datagram (1–5), or null if it is not one: too short, reserved bytes
 * not zero, or a handshake/cookie message of the wrong length. Data messages (4) are only
 * checked for their 16-byte header + 16-byte tag minimum.
 */
export function underlayMessageType(datagram: Uint8Array): number | null {
  if (datagram.length < 4 || datagram[1] || datagram[2] || datagram[3]) return null;
  const type = datagram[0]!;
  switch (type) {
    case UNDERLAY_HANDSHAKE_INITIATION:
      return datagram.length === UNDERLAY_INITIATION_BYTES ? type : null;
    case UNDERLAY_HANDSHAKE_RESPONSE:
      return datagram.length === UNDERLAY_RESPONSE_BYTES ? type : null;
    case UNDERLAY_COOKIE_REPLY:
      return datagram.length === UNDERLAY_COOKIE_REPLY_BYTES ? type : null;
    case UNDERLAY_DATA:
      return datagram.length >= UNDERLAY_DATA_HEADER_BYTES + UNDERLAY_DATA_TAG_BYTES ? type : null;
    case UNDERLAY_PLAINTEXT_DATA:
      return type;
    default:
      return null;
  }
}

// =============================================================================================
// Per-peer state machine
// =============================================================================================

/** Timing, as WireGuard's constants (seconds unless named otherwise). */
export interface HandshakeTimers {
  /** The initiator of the current session starts a new handshake at this age (REKEY_AFTER_TIME). */
  rekeyAfterSeconds: number;
  /** Sessions are dropped at this age (REJECT_AFTER_TIME). */
  rejectAfterSeconds: number;
  /** Resend an unanswered initiation after this (REKEY_TIMEOUT), plus jitter. */
  rekeyTimeoutSeconds: number;
  /** Give up a handshake after trying this long (REKEY_ATTEMPT_TIME). */
  rekeyAttemptSeconds: number;
  /** The responder of the current session rekeys at this age if the initiator has not (REJECT − KEEPALIVE − REKEY_TIMEOUT). */
  responderRekeyAfterSeconds: number;
  /** After giving up, start trying again after this long (the mesh is static: peers come back). */
  retryAfterGiveUpSeconds: number;
  /** Random extra delay of retries, 0..this (WireGuard: 333 ms). */
  jitterMaxMs: number;
  /** Minimum interval between two accepted initiations from one peer (1000 / INITIATIONS_PER_SECOND). */
  minInitiationIntervalMs: number;
}

export const DEFAULT_HANDSHAKE_TIMERS: Readonly<HandshakeTimers> = Object.freeze({
  rekeyAfterSeconds: 120,
  rejectAfterSeconds: 180,
  rekeyTimeoutSeconds: 5,
  rekeyAttemptSeconds: 90,
  responderRekeyAfterSeconds: 165,
  retryAfterGiveUpSeconds: 120,
  jitterMaxMs: 333,
  minInitiationIntervalMs: 20,
});

/**
 * What the daemon must do after feeding the manager an event:
 * - `send`: send `message` to the peer's underlay endpoint.
 * - `install`: give the session to the engine (`setSession`). `sendable: false` (a session we
 *   answered) means receive-only until confirmed: the engine accepts data on it but keeps
 *   sending with the current one until the peer proves it has the keys (its first data
 *   message on this session: report it with `confirm`), then `promote`. `keepalive: true` (a
 *   session we initiated) asks for an empty data message right away, so the peer can confirm.
 *   `replacesCurrent`: there was a current session (this is a rekey).
 * - `promote`: start sending with this (already installed) session.
 * - `expire`: remove the session from the engine. Its keys are wiped when the action is
 *   returned (the engine copied them when it handled the `install`: carry out `install`
 *   actions before feeding the manager the next event).
 * - `give-up`: the peer did not answer for rekeyAttemptSeconds; retried later.
 */
export type HandshakeAction =
  | { type: 'send'; peerName: string; kind: 'initiation' | 'response'; message: Buffer }
  | { type: 'install'; peerName: string; session: Session; sendable: boolean; keepalive: boolean; replacesCurrent: boolean }
  | { type: 'promote'; peerName: string; localIndex: number }
  | { type: 'expire'; peerName: string; localIndex: number; reason: 'too-old' | 'replaced' | 'disconnected' }
  | { type: 'give-up'; peerName: string; attempts: number };

/** A session as shown in status output: no keys. */
export interface SessionInfo {
  localIndex: number;
  remoteIndex: number;
  createdAt: number;
  isInitiator: boolean;
}

export interface PeerHandshakeStatus {
  /** The peer's name. */
  id: string;
  publicKey: string;
  wanted: boolean;
  current: SessionInfo | null;
  previous: SessionInfo | null;
  /** Answered but not yet confirmed by the peer's first data message. */
  next: SessionInfo | null;
  handshaking: boolean;
  attempts: number;
  /** When the manager will next act for this peer (ms), or null. */
  nextEventAt: number | null;
}

interface PeerRecord extends HandshakePeer {
  name: string;
  staticPublic: Buffer;
  wanted: boolean;
  current?: Session;
  previous?: Session;
  next?: Session;
  pending?: { state: InitiationState; firstAttemptAt: number; retryAt: number; attempts: number };
  /** After a give-up: do not start before this. */
  restartAt?: number;
}

export interface HandshakeManagerOptions {
  sodium: Sodium;
  local: KeyPair;
  /** Clock in milliseconds (Date.now in the daemon, a fake in tests). */
  now: () => number;
  timers?: Partial<HandshakeTimers>;
  /** Uniform in [0, 1), for retry jitter (default Math.random). */
  random?: () => number;
  /** Capability bits announced to peers (default UNDERLAY_CAPABILITIES; 0 behaves as a daemon that predates them). */
  capabilities?: number;
}

/**
 * The handshake state machine of all peers: no sockets, no timers. The daemon feeds it events
 * (`connect`, `handleMessage`, `rekeyNeeded`, `confirm`, `onTimer`) and carries out the
 * returned actions; it arms one timer for `nextTimerAt()`.
 *
 * Who initiates: whoever needs a session and has none (`connect`, or the engine's
 * `rekey-needed`). Afterwards the initiator of the current session rekeys it at
 * rekeyAfterSeconds; its responder only steps in at responderRekeyAfterSeconds, so in the
 * steady state one side drives. If both initiate at once, the side with the greater static
 * public key abandons its own attempt when it answers the other's, so the pair converges on
 * one session. Sessions kept: current (sending), previous (receive only, until it is
 * rejectAfter old or displaced), next (answered, unconfirmed); as WireGuard.
 */
export class HandshakeManager {
  readonly timers: HandshakeTimers;
  readonly rejects: Record<HandshakeRejectReason, number> = {
    malformed: 0,
    'bad-mac1': 0,
    'decrypt-failed': 0,
    'unknown-peer': 0,
    replay: 0,
    flood: 0,
    'bad-key': 0,
    'index-mismatch': 0,
    stale: 0,
    'cookie-unsupported': 0,
    'not-handshake': 0,
  };
  private readonly sodium: Sodium;
  private readonly local: KeyPair;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly capabilities: number;
  private readonly peers = new Map<string, PeerRecord>();
  private readonly byStatic = new Map<string, PeerRecord>();
  /** Local index → peer name, for pending initiations and live sessions. */
  private readonly indices = new Map<number, string>();

  constructor(options: HandshakeManagerOptions) {
    this.sodium = options.sodium;
    this.local = options.local;
    this.now = options.now;
    this.random = options.random ?? Math.random;
    this.capabilities = options.capabilities ?? UNDERLAY_CAPABILITIES;
    this.timers = { ...DEFAULT_HANDSHAKE_TIMERS, ...options.timers };
    const t = this.timers;
    for (const [k, v] of Object.entries(t)) if (!Number.isFinite(v) || v < 0) throw new UsageError(`handshake timer ${k} must be a non-negative number`);
    if (!(t.rekeyAfterSeconds < t.rejectAfterSeconds && t.responderRekeyAfterSeconds < t.rejectAfterSeconds && t.rekeyTimeoutSeconds > 0 && t.rekeyTimeoutSeconds < t.rekeyAttemptSeconds)) {
      throw new UsageError('handshake timers must satisfy rekeyAfter, responderRekeyAfter < rejectAfter and 0 < rekeyTimeout < rekeyAttempt');
    }
    if (this.local.publicKey.length !== KEY_BYTES || this.local.privateKey.length !== KEY_BYTES) throw new UsageError('host key pair must be two 32-byte keys');
  }

  // ---- peers --------------------------------------------------------------------------------

  addPeer(name: string, staticPublic: Uint8Array): void {
    if (typeof name !== 'string' || name.length === 0 || name.length > 128) throw new UsageError('peer name must be 1-128 characters');
    if (this.peers.has(name)) throw new ConflictError(`peer ${name} already exists`);
    if (staticPublic.length !== KEY_BYTES) throw new UsageError(`peer ${name}: public key must be ${KEY_BYTES} bytes`);
    const key = Buffer.from(staticPublic);
    if (key.equals(this.local.publicKey)) throw new UsageError(`peer ${name}: that is this host's own public key`);
    const hex = key.toString('hex');
    const other = this.byStatic.get(hex);
    if (other) throw new ConflictError(`peer ${name}: public key already belongs to peer ${other.name}`);
    const shared = dh(this.sodium, this.local.privateKey, key);
    if (!shared) throw new UsageError(`peer ${name}: public key is a low-order point`);
    wipe(this.sodium, shared);
    const record: PeerRecord = { name, staticPublic: key, wanted: false };
    this.peers.set(name, record);
    this.byStatic.set(hex, record);
  }

  removePeer(name: string): HandshakeAction[] {
    const actions = this.disconnect(name);
    const p = this.peer(name);
    this.peers.delete(name);
    this.byStatic.delete(p.staticPublic.toString('hex'));
    return actions;
  }

  listPeers(): string[] {
    return [...this.peers.keys()];
  }

  /** Keep a session with this peer up (initiating now if there is none). */
  connect(name: string): HandshakeAction[] {
    const p = this.peer(name);
    p.wanted = true;
    p.restartAt = undefined;
    return this.step(p);
  }

  /** Stop keeping a session: abandon the handshake, expire the sessions. */
  disconnect(name: string): HandshakeAction[] {
    const p = this.peer(name);
    p.wanted = false;
    p.restartAt = undefined;
    this.abandonPending(p);
    const actions: HandshakeAction[] = [];
    for (const slot of ['current', 'previous', 'next'] as const) this.expireSlot(p, slot, 'disconnected', actions);
    return actions;
  }

  // ---- events -------------------------------------------------------------------------------

  /** The engine says the current session must be replaced (message counter near its limit). */
  rekeyNeeded(name: string): HandshakeAction[] {
    const p = this.peer(name);
    if (p.pending) return [];
    p.restartAt = undefined;
    return this.initiate(p);
  }

  /** The engine received authenticated data on `localIndex`: a `next` session is confirmed. */
  confirm(name: string, localIndex: number): HandshakeAction[] {
    const p = this.peer(name);
    if (!p.next || p.next.localIndex !== localIndex) return [];
    const actions: HandshakeAction[] = [];
    this.expireSlot(p, 'previous', 'replaced', actions);
    p.previous = p.current;
    p.current = p.next;
    p.next = undefined;
    actions.push({ type: 'promote', peerName: name, localIndex });
    return actions;
  }

  /** A handshake datagram (type 1, 2 or 3) from the underlay. */
  handleMessage(message: Uint8Array): { actions: HandshakeAction[]; peerName?: string; reject?: HandshakeRejectReason } {
    const type = message.length >= 1 ? message[0] : undefined;
    if (type === UNDERLAY_HANDSHAKE_INITIATION) return this.onInitiation(message);
    if (type === UNDERLAY_HANDSHAKE_RESPONSE) return this.onResponse(message);
    return this.rejected(type === UNDERLAY_COOKIE_REPLY ? 'cookie-unsupported' : 'not-handshake');
  }

  /** Run whatever is due at `now()`: retries, give-ups, rekeys, expiries. */
  onTimer(): HandshakeAction[] {
    const actions: HandshakeAction[] = [];
    for (const p of this.peers.values()) actions.push(...this.step(p));
    return actions;
  }

  /** When `onTimer` next has work (ms), or undefined if nothing is scheduled. */
  nextTimerAt(): number | undefined {
    let next: number | undefined;
    for (const p of this.peers.values()) {
      const due = this.dueAt(p);
      if (due !== undefined && (next === undefined || due < next)) next = due;
    }
    return next;
  }

  status(name: string): PeerHandshakeStatus {
    const p = this.peer(name);
    const info = (s: Session | undefined): SessionInfo | null =>
      s ? { localIndex: s.localIndex, remoteIndex: s.remoteIndex, createdAt: s.createdAt, isInitiator: s.isInitiator } : null;
    return {
      id: name,
      publicKey: encodeKey(p.staticPublic),
      wanted: p.wanted,
      current: info(p.current),
      previous: info(p.previous),
      next: info(p.next),
      handshaking: p.pending !== undefined,
      attempts: p.pending?.attempts ?? 0,
      nextEventAt: this.dueAt(p) ?? null,
    };
  }

  // ---- internals ----------------------------------------------------------------------------

  private peer(name: string): PeerRecord {
    const p = this.peers.get(name);
    if (!p) throw new NotFoundError(`peer ${name} does not exist`);
    return p;
  }

  private rejected(reason: HandshakeRejectReason, peerName?: string): { actions: HandshakeAction[]; peerName?: string; reject: HandshakeRejectReason } {
    this.rejects[reason]++;
    return peerName === undefined ? { actions: [], reject: reason } : { actions: [], peerName, reject: reason };
  }

  private allocateIndex(peerName: string): number {
    for (;;) {
      const index = randomIndex(this.sodium);
      if (!this.indices.has(index)) {
        this.indices.set(index, peerName);
        return index;
      }
    }
  }

  private onInitiation(message: Uint8Array): { actions: HandshakeAction[]; peerName?: string; reject?: HandshakeRejectReason } {
    const localIndex = this.allocateIndex('');
    const result = consumeInitiation(this.sodium, this.local, (s) => this.byStatic.get(s.toString('hex')), message, this.now(), {
      localIndex,
      minIntervalMs: this.timers.minInitiationIntervalMs,
      capabilities: this.capabilities,
    });
    if (!result.ok) {
      this.indices.delete(localIndex);
      return this.rejected(result.reason);
    }
    const p = result.peer;
    this.indices.set(localIndex, p.name);
    const actions: HandshakeAction[] = [{ type: 'send', peerName: p.name, kind: 'response', message: result.response }];
    // simultaneous initiation: the greater public key yields
    if (p.pending && Buffer.compare(this.local.publicKey, p.staticPublic) > 0) this.abandonPending(p);
    p.restartAt = undefined;
    this.expireSlot(p, 'next', 'replaced', actions);
    this.expireSlot(p, 'previous', 'replaced', actions);
    p.next = result.session;
    actions.push({ type: 'install', peerName: p.name, session: result.session, sendable: false, keepalive: false, replacesCurrent: p.current !== undefined });
    return { actions, peerName: p.name };
  }

  private onResponse(message: Uint8Array): { actions: HandshakeAction[]; peerName?: string; reject?: HandshakeRejectReason } {
    if (message.length !== UNDERLAY_RESPONSE_BYTES) return this.rejected('malformed');
    const receiver = buf(message).readUInt32LE(RESP_RECEIVER);
    const peerName = this.indices.get(receiver);
    const p = peerName === undefined ? undefined : this.peers.get(peerName);
    if (!p || !p.pending || p.pending.state.localIndex !== receiver) return this.rejected('index-mismatch', p?.name);
    const result = consumeResponse(this.sodium, p.pending.state, message, this.now());
    if (!result.ok) return this.rejected(result.reason, p.name);
    p.pending = undefined;
    p.restartAt = undefined;
    const replacesCurrent = p.current !== undefined;
    const actions: HandshakeAction[] = [];
    if (p.next) {
      // an answered-but-unconfirmed session stays receivable as previous
      this.expireSlot(p, 'previous', 'replaced', actions);
      this.expireSlot(p, 'current', 'replaced', actions);
      p.previous = p.next;
      p.next = undefined;
    } else {
      this.expireSlot(p, 'previous', 'replaced', actions);
      p.previous = p.current;
    }
    p.current = result.session;
    actions.push({ type: 'install', peerName: p.name, session: result.session, sendable: true, keepalive: true, replacesCurrent });
    return { actions, peerName: p.name };
  }

  private initiate(p: PeerRecord): HandshakeAction[] {
    const now = this.now();
    const firstAttemptAt = p.pending?.firstAttemptAt ?? now;
    const attempts = (p.pending?.attempts ?? 0) + 1;
    this.abandonPending(p);
    const localIndex = this.allocateIndex(p.name);
    const { message, state } = createInitiation(this.sodium, this.local, p.staticPublic, now, { localIndex, capabilities: this.capabilities });
    const retryAt = now + this.timers.rekeyTimeoutSeconds * 1000 + Math.floor(this.random() * this.timers.jitterMaxMs);
    p.pending = { state, firstAttemptAt, retryAt, attempts };
    return [{ type: 'send', peerName: p.name, kind: 'initiation', message }];
  }

  private abandonPending(p: PeerRecord): void {
    if (!p.pending) return;
    this.indices.delete(p.pending.state.localIndex);
    wipeInitiationState(this.sodium, p.pending.state);
    p.pending = undefined;
  }

  private expireSlot(p: PeerRecord, slot: 'current' | 'previous' | 'next', reason: 'too-old' | 'replaced' | 'disconnected', actions: HandshakeAction[]): void {
    const s = p[slot];
    if (!s) return;
    p[slot] = undefined;
    this.indices.delete(s.localIndex);
    actions.push({ type: 'expire', peerName: p.name, localIndex: s.localIndex, reason });
    wipeSession(this.sodium, s);
  }

  /** When this peer next needs attention, or undefined. `now` is the caller's, so a step that
   *  read the clock a millisecond earlier still finds "no session: due now" due. */
  private dueAt(p: PeerRecord, now = this.now()): number | undefined {
    const t = this.timers;
    const times: number[] = [];
    for (const s of [p.current, p.previous, p.next]) if (s) times.push(s.createdAt + t.rejectAfterSeconds * 1000);
    if (p.pending) {
      times.push(p.pending.retryAt);
    } else if (p.wanted) {
      let due: number;
      if (p.current) due = p.current.createdAt + (p.current.isInitiator ? t.rekeyAfterSeconds : t.responderRekeyAfterSeconds) * 1000;
      else if (p.next) due = p.next.createdAt + t.rekeyTimeoutSeconds * 1000; // the peer never confirmed: try ourselves
      else due = now; // no session at all: now
      times.push(Math.max(due, p.restartAt ?? due));
    }
    return times.length ? Math.min(...times) : undefined;
  }

  /** Do everything due for `p` at now(). */
  private step(p: PeerRecord): HandshakeAction[] {
    const now = this.now();
    const t = this.timers;
    const actions: HandshakeAction[] = [];
    for (const slot of ['current', 'previous', 'next'] as const) {
      const s = p[slot];
      if (s && now >= s.createdAt + t.rejectAfterSeconds * 1000) this.expireSlot(p, slot, 'too-old', actions);
    }
    if (p.pending && now >= p.pending.retryAt) {
      if (now - p.pending.firstAttemptAt >= t.rekeyAttemptSeconds * 1000) {
        const attempts = p.pending.attempts;
        this.abandonPending(p);
        p.restartAt = now + t.retryAfterGiveUpSeconds * 1000;
        actions.push({ type: 'give-up', peerName: p.name, attempts });
      } else {
        actions.push(...this.initiate(p));
      }
    }
    if (!p.pending && p.wanted) {
      const due = this.dueAt(p, now);
      if (due !== undefined && now >= due) actions.push(...this.initiate(p));
    }
    return actions;
  }
}
