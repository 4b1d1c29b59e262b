/**
 * The network KMS's secure channel, without sockets or timers: framing, the Noise IK
 * handshake of the VPC (`src/vpc/handshake.ts`, with the KMS's own prologue identifier) and
 * the record layer that carries the HTTP bytes afterwards. Wire format in `protocol.ts`.
 *
 * Why Noise and not mTLS: every host already has an X25519 identity (its VPC host key, the
 * one peers and the fleet pin); with Noise IK the KMS authorizes exactly that key, with no CA,
 * no certificates to issue, rotate or revoke, and one handshake implementation in the project.
 *
 * Records: ChaCha20-Poly1305 (libsodium) under the session's keys, the counter as nonce. A
 * stream is ordered, so the receiver wants counters to grow: one at or below the last
 * accepted is a replay and is dropped (before any decryption); one that fails authentication
 * is a forgery and is dropped. Both are counted; the connection goes on (a desynchronised
 * frame length is malformed and ends it).
 */
import {
  UNDERLAY_DATA,
  UNDERLAY_DATA_HEADER_BYTES,
  UNDERLAY_DATA_TAG_BYTES,
  UNDERLAY_HANDSHAKE_INITIATION,
  UNDERLAY_HANDSHAKE_RESPONSE,
} from '../vpc/constants.js';
import {
  consumeInitiation,
  consumeResponse,
  createInitiation,
  wipeInitiationState,
  wipeSession,
  type HandshakePeer,
  type HandshakeRejectReason,
  type InitiationState,
  type KeyPair,
  type Session,
} from '../vpc/handshake.js';
import { KMS_WIRE_IDENTIFIER, KMS_WIRE_LENGTH_BYTES, KMS_WIRE_MAX_FRAME, KMS_WIRE_MAX_RECORD_PLAINTEXT, KMS_WIRE_REFUSAL } from './protocol.js';
import type { Sodium } from './sodium.js';

const IDENTIFIER = Buffer.from(KMS_WIRE_IDENTIFIER, 'ascii');
const NONCE_BYTES = 12;
const REFUSAL_MAX_TEXT = 512;

/** A frame: the length prefix, then `message`. */
export function frame(message: Uint8Array): Buffer {
  const out = Buffer.alloc(KMS_WIRE_LENGTH_BYTES + message.length);
  out.writeUInt32BE(message.length, 0);
  out.set(message, KMS_WIRE_LENGTH_BYTES);
  return out;
}

/** Cuts a byte stream into frames. After `malformed` the stream is unusable (lengths are lost). */
export class FrameReader {
  private pending: Buffer[] = [];
  private size = 0;
  malformed = false;

  /** Frames completed by `chunk`; `{ malformed: true }` once a length is 0 or above the limit. */
  push(chunk: Buffer): { frames: Buffer[]; malformed: boolean } {
    if (this.malformed) return { frames: [], malformed: true };
    this.pending.push(chunk);
    this.size += chunk.length;
    const frames: Buffer[] = [];
    while (this.size >= KMS_WIRE_LENGTH_BYTES) {
      const head = this.peek(KMS_WIRE_LENGTH_BYTES);
      const length = head.readUInt32BE(0);
      if (length === 0 || length > KMS_WIRE_MAX_FRAME) {
        this.malformed = true;
        this.wipe();
        return { frames, malformed: true };
      }
      if (this.size < KMS_WIRE_LENGTH_BYTES + length) break;
      const all = this.take(KMS_WIRE_LENGTH_BYTES + length);
      frames.push(all.subarray(KMS_WIRE_LENGTH_BYTES));
    }
    return { frames, malformed: false };
  }

  /** Zero what is buffered (record ciphertext only, but nothing lingers). */
  wipe(): void {
    for (const b of this.pending) b.fill(0);
    this.pending = [];
    this.size = 0;
  }

  private peek(n: number): Buffer {
    if (this.pending[0]!.length >= n) return this.pending[0]!.subarray(0, n);
    const joined = Buffer.concat(this.pending);
    this.pending = [joined];
    return joined.subarray(0, n);
  }

  private take(n: number): Buffer {
    const joined = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
    const out = Buffer.from(joined.subarray(0, n));
    const rest = joined.subarray(n);
    if (this.pending.length > 1) for (const b of this.pending) b.fill(0);
    this.pending = rest.length ? [rest] : [];
    this.size -= n;
    return out;
  }
}

export type RecordDrop = 'replayed' | 'forged' | 'malformed';

/** One direction pair of record keys (a handshake's session). Wipe it when the connection ends. */
export class RecordCipher {
  private sendCounter = 0n;
  /** The next counter we accept at least. */
  private recvNext = 0n;
  readonly dropped: Record<RecordDrop, number> = { replayed: 0, forged: 0, malformed: 0 };

  constructor(
    private readonly sodium: Sodium,
    private readonly session: Session,
  ) {}

  /** Seal `plaintext` into record frames of at most {@link KMS_WIRE_MAX_RECORD_PLAINTEXT} bytes each. */
  seal(plaintext: Uint8Array): Buffer[] {
    const out: Buffer[] = [];
    for (let offset = 0; offset < plaintext.length || (offset === 0 && plaintext.length === 0); offset += KMS_WIRE_MAX_RECORD_PLAINTEXT) {
      const piece = plaintext.subarray(offset, offset + KMS_WIRE_MAX_RECORD_PLAINTEXT);
      const header = Buffer.alloc(UNDERLAY_DATA_HEADER_BYTES);
      header[0] = UNDERLAY_DATA;
      header.writeUInt32LE(this.session.remoteIndex >>> 0, 4);
      header.writeBigUInt64LE(this.sendCounter, 8);
      const ct = this.sodium.crypto_aead_chacha20poly1305_ietf_encrypt(piece, header, null, nonce(this.sendCounter), this.session.sendKey);
      this.sendCounter++;
      out.push(frame(Buffer.concat([header, ct])));
      if (plaintext.length === 0) break;
    }
    return out;
  }

  /** Open one record message (a frame without its length). The plaintext is the caller's to wipe. */
  open(message: Buffer): { ok: true; plaintext: Buffer } | { ok: false; reason: RecordDrop } {
    if (message.length < UNDERLAY_DATA_HEADER_BYTES + UNDERLAY_DATA_TAG_BYTES || message[0] !== UNDERLAY_DATA || message[1] || message[2] || message[3]) return this.drop('malformed');
    if (message.readUInt32LE(4) !== this.session.localIndex >>> 0) return this.drop('forged');
    const counter = message.readBigUInt64LE(8);
    if (counter < this.recvNext) return this.drop('replayed');
    let plaintext: Uint8Array;
    try {
      plaintext = this.sodium.crypto_aead_chacha20poly1305_ietf_decrypt(
        null,
        message.subarray(UNDERLAY_DATA_HEADER_BYTES),
        message.subarray(0, UNDERLAY_DATA_HEADER_BYTES),
        nonce(counter),
        this.session.recvKey,
      );
    } catch {
      return this.drop('forged');
    }
    this.recvNext = counter + 1n;
    return { ok: true, plaintext: Buffer.from(plaintext.buffer, plaintext.byteOffset, plaintext.byteLength) };
  }

  wipe(): void {
    wipeSession(this.sodium, this.session);
  }

  private drop(reason: RecordDrop): { ok: false; reason: RecordDrop } {
    this.dropped[reason]++;
    return { ok: false, reason };
  }
}

function nonce(counter: bigint): Buffer {
  const n = Buffer.alloc(NONCE_BYTES);
  n.writeBigUInt64LE(counter, 4);
  return n;
}

/** A refusal message: why the KMS will not talk to this key (sent in the clear, then it closes). */
export function refusal(reason: string): Buffer {
  const text = Buffer.from(reason.slice(0, REFUSAL_MAX_TEXT), 'utf8');
  const out = Buffer.alloc(4 + text.length);
  out[0] = KMS_WIRE_REFUSAL;
  text.copy(out, 4);
  return out;
}

// ---- the two ends of the handshake ----------------------------------------------------------

/** The client's side: `start()` gives the initiation frame, `finish()` takes the KMS's answer. */
export class ChannelInitiator {
  private state: InitiationState | undefined;

  constructor(
    private readonly sodium: Sodium,
    private readonly local: KeyPair,
    private readonly kmsPublicKey: Uint8Array,
  ) {}

  start(now: number): Buffer {
    const { message, state } = createInitiation(this.sodium, this.local, this.kmsPublicKey, now, { identifier: IDENTIFIER });
    this.state = state;
    return frame(message);
  }

  /** The answer: a cipher, the KMS's refusal text, or why the answer is not one. */
  finish(message: Buffer, now: number): { ok: true; cipher: RecordCipher } | { ok: false; refused?: string; reason?: HandshakeRejectReason } {
    const state = this.state;
    if (!state) return { ok: false, reason: 'stale' };
    if (message[0] === KMS_WIRE_REFUSAL) {
      this.abandon();
      return { ok: false, refused: message.subarray(4).toString('utf8').replace(/[^\x20-\x7e]/g, '?') };
    }
    if (message[0] !== UNDERLAY_HANDSHAKE_RESPONSE) return { ok: false, reason: 'not-handshake' };
    const result = consumeResponse(this.sodium, state, message, now);
    if (!result.ok) return { ok: false, reason: result.reason };
    this.state = undefined;
    return { ok: true, cipher: new RecordCipher(this.sodium, result.session) };
  }

  /** Wipe a handshake that will not finish. */
  abandon(): void {
    if (this.state && !this.state.consumed) wipeInitiationState(this.sodium, this.state);
    this.state = undefined;
  }
}

/**
 * The KMS's side: answer a client's first frame. `lookup` gives the host record (with its
 * replay state) of a public key that some grant names, else undefined (refused: unknown-peer).
 * Any rate of initiations is accepted from a host (a daemon may open several connections);
 * the timestamp must still grow, so a recorded initiation never yields a second session.
 */
export function acceptInitiation<P extends HandshakePeer>(
  sodium: Sodium,
  local: KeyPair,
  lookup: (publicKey: Buffer) => P | undefined,
  message: Buffer,
  now: number,
): { ok: true; peer: P; responseFrame: Buffer; cipher: RecordCipher } | { ok: false; reason: HandshakeRejectReason } {
  if (message[0] !== UNDERLAY_HANDSHAKE_INITIATION) return { ok: false, reason: 'not-handshake' };
  const result = consumeInitiation(sodium, local, lookup, message, now, { identifier: IDENTIFIER, minIntervalMs: 0 });
  if (!result.ok) return result;
  return { ok: true, peer: result.peer, responseFrame: frame(result.response), cipher: new RecordCipher(sodium, result.session) };
}

/** The refusal of a key no grant names (the KMS logs and audits the key; the client knows its own). */
export const REFUSAL_NO_GRANT = 'this KMS has no grant for your host key (ask its operator: nitride kms grant create)';

/** Monotonic handshake clock for one client: TAI64N timestamps must grow even within a millisecond. */
export function monotonicClock(now: () => number = Date.now): () => number {
  let last = 0;
  return () => {
    last = Math.max(now(), last + 1);
    return last;
  };
}
