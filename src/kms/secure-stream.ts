/**
 * The network KMS's channel on sockets: the TCP listener that runs the KMS side of the
 * handshake, the client connector and HTTP agent the daemon uses, and {@link SecureStream},
 * the Duplex of plaintext HTTP bytes over records both sides hand to node:http. The protocol
 * itself is in `channel.ts` (pure).
 */
import http from 'node:http';
import net from 'node:net';
import { Duplex } from 'node:stream';
import { RuntimeError, oneLine } from '../common/errors.js';
import { formatEndpoint } from '../common/endpoint.js';
import type { HandshakePeer, HandshakeRejectReason, KeyPair } from '../vpc/handshake.js';
import { ChannelInitiator, FrameReader, REFUSAL_NO_GRANT, acceptInitiation, frame, monotonicClock, refusal, type RecordCipher, type RecordDrop } from './channel.js';
import { KmsAccessDeniedError, KmsUnavailableError } from './provider.js';
import type { Sodium } from './sodium.js';

/** How long a handshake may take before the connection is dropped. */
const HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * Plaintext HTTP bytes over a handshaken socket. Received plaintext is zeroed once node:http
 * has consumed it (at once when the stream flows, else when its buffer drains or at close).
 */
export class SecureStream extends Duplex {
  private readonly held: Buffer[] = [];

  constructor(
    readonly socket: net.Socket,
    private readonly cipher: RecordCipher,
    private readonly reader: FrameReader,
    private readonly onDrop: (reason: RecordDrop) => void,
  ) {
    super();
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('end', () => this.push(null));
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => this.destroy());
    socket.on('timeout', () => this.emit('timeout'));
  }

  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress;
  }

  get remotePort(): number | undefined {
    return this.socket.remotePort;
  }

  /** As net.Socket's: 0 also removes `callback` (node:http sets and clears one per request). */
  setTimeout(ms: number, callback?: () => void): this {
    this.socket.setTimeout(ms);
    if (callback) {
      if (ms === 0) this.off('timeout', callback);
      else this.once('timeout', callback);
    }
    return this;
  }

  setNoDelay(noDelay?: boolean): this {
    this.socket.setNoDelay(noDelay);
    return this;
  }

  setKeepAlive(enable?: boolean, delay?: number): this {
    this.socket.setKeepAlive(enable, delay);
    return this;
  }

  ref(): this {
    this.socket.ref();
    return this;
  }

  unref(): this {
    this.socket.unref();
    return this;
  }

  override _read(): void {
    this.release();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.socket.write(Buffer.concat(this.cipher.seal(chunk)), callback);
  }

  /** A corked batch (node:http's head and body) leaves as one TCP write. */
  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (err?: Error | null) => void): void {
    this.socket.write(Buffer.concat(chunks.flatMap((c) => this.cipher.seal(c.chunk))), callback);
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.socket.end(callback);
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.socket.destroy();
    for (const b of this.held.splice(0)) b.fill(0);
    this.reader.wipe();
    this.cipher.wipe();
    callback(err);
  }

  private receive(chunk: Buffer): void {
    const { frames, malformed } = this.reader.push(chunk);
    for (const f of frames) {
      const r = this.cipher.open(f);
      if (!r.ok) {
        this.onDrop(r.reason);
        continue;
      }
      this.held.push(r.plaintext);
      this.push(r.plaintext);
    }
    this.release();
    if (malformed) {
      this.onDrop('malformed');
      this.destroy();
    }
  }

  /** Zero what node:http has taken (everything, once nothing is buffered). */
  private release(): void {
    if (this.readableLength === 0) for (const b of this.held.splice(0)) b.fill(0);
  }
}

// ---- the KMS side ---------------------------------------------------------------------------

export interface ChannelListenerOptions<P extends HandshakePeer> {
  sodium: Sodium;
  local: KeyPair;
  /** The host record of a key some grant names (kept across connections for replay checks). */
  lookup: (publicKey: Buffer) => P | undefined;
  /** A handshaken connection: serve HTTP on `stream`. */
  onSession: (stream: SecureStream, peer: P, address: string) => void;
  /** A handshake refused (`publicKey` when it was decrypted: an unknown host), or a dropped record. */
  onReject: (reason: HandshakeRejectReason, address: string, publicKey: Buffer | undefined) => void;
  onDrop: (reason: RecordDrop) => void;
}

/** A TCP server that admits only clients completing the handshake with a known host key. */
export function channelServer<P extends HandshakePeer>(options: ChannelListenerOptions<P>): net.Server {
  return net.createServer((socket) => {
    const address = formatEndpoint({ host: socket.remoteAddress ?? '?', port: socket.remotePort ?? 0 });
    const reader = new FrameReader();
    socket.setTimeout(HANDSHAKE_TIMEOUT_MS);
    socket.once('timeout', () => socket.destroy());
    socket.on('error', () => socket.destroy());
    const onData = (chunk: Buffer): void => {
      const { frames, malformed } = reader.push(chunk);
      if (malformed) {
        options.onReject('malformed', address, undefined);
        socket.destroy();
        return;
      }
      if (frames.length === 0) return;
      socket.off('data', onData);
      let refusedKey: Buffer | undefined;
      const result = acceptInitiation(
        options.sodium,
        options.local,
        (key) => {
          const peer = options.lookup(key);
          if (!peer) refusedKey = Buffer.from(key);
          return peer;
        },
        frames[0]!,
        Date.now(),
      );
      if (!result.ok) {
        options.onReject(result.reason, address, result.reason === 'unknown-peer' ? refusedKey : undefined);
        if (result.reason === 'unknown-peer') socket.end(frame(refusal(REFUSAL_NO_GRANT)));
        else socket.destroy();
        return;
      }
      socket.setTimeout(0);
      socket.removeAllListeners('timeout');
      socket.setNoDelay(true);
      socket.write(result.responseFrame);
      const stream = new SecureStream(socket, result.cipher, reader, options.onDrop);
      // anything that came with the initiation is records already
      for (const extra of frames.slice(1)) stream.socket.emit('data', frame(extra));
      options.onSession(stream, result.peer, address);
    };
    socket.on('data', onData);
  });
}

// ---- the daemon side ------------------------------------------------------------------------

export interface ChannelClientOptions {
  sodium: Sodium;
  host: string;
  port: number;
  kmsPublicKey: Buffer;
  /** The host key pair (the caller keeps and wipes it). */
  hostKey: () => Promise<KeyPair>;
  timeoutMs?: number;
}

/** Connect and handshake; a refusal or a failed handshake is a typed KMS error. */
export async function connectChannel(options: ChannelClientOptions, now: () => number, onDrop: (reason: RecordDrop) => void = () => {}): Promise<SecureStream> {
  const keys = await options.hostKey();
  const where = formatEndpoint({ host: options.host, port: options.port });
  return new Promise<SecureStream>((resolve, reject) => {
    const socket = net.connect({ host: options.host, port: options.port });
    const initiator = new ChannelInitiator(options.sodium, keys, options.kmsPublicKey);
    const reader = new FrameReader();
    let settled = false;
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      initiator.abandon();
      reader.wipe();
      socket.destroy();
      reject(err);
    };
    socket.setTimeout(options.timeoutMs ?? HANDSHAKE_TIMEOUT_MS, () => fail(new KmsUnavailableError(`no handshake answer from the KMS at ${where}`)));
    socket.on('error', (err) => fail(new KmsUnavailableError(`cannot reach the KMS at ${where}: ${oneLine(err)}`, { cause: err })));
    socket.on('close', () => fail(new KmsUnavailableError(`the KMS at ${where} closed the connection during the handshake (wrong --kms-public-key?)`)));
    socket.on('connect', () => socket.write(initiator.start(now())));
    const onData = (chunk: Buffer): void => {
      const { frames, malformed } = reader.push(chunk);
      if (malformed) return fail(new KmsUnavailableError(`the KMS at ${where} sent a malformed handshake frame`));
      if (frames.length === 0) return;
      socket.off('data', onData);
      const r = initiator.finish(frames[0]!, now());
      if (!r.ok) {
        if (r.refused !== undefined) return fail(new KmsAccessDeniedError(`the KMS at ${where} refused this host: ${r.refused}`));
        return fail(new KmsUnavailableError(`handshake with the KMS at ${where} failed (${r.reason}; wrong --kms-public-key?)`));
      }
      settled = true;
      socket.setTimeout(0);
      socket.removeAllListeners('timeout').removeAllListeners('error').removeAllListeners('close');
      // request/reply: no Nagle delay between a request's records and the reply's
    socket.setNoDelay(true);
    const stream = new SecureStream(socket, r.cipher, reader, onDrop);
      for (const extra of frames.slice(1)) socket.emit('data', frame(extra));
      resolve(stream);
    };
    socket.on('data', onData);
  });
}

/**
 * node:http's agent over the channel: one connection at a time (calls queue on it; its
 * handshake timestamps then always grow on the KMS's side), kept alive between calls until
 * the KMS closes an idle one.
 */
export class ChannelAgent extends http.Agent {
  private readonly clock = monotonicClock();

  constructor(private readonly channel: ChannelClientOptions) {
    super({ keepAlive: true, maxSockets: 1, maxFreeSockets: 1 });
  }

  override createConnection(_options: unknown, callback: (err: Error | null, stream?: Duplex) => void): undefined {
    connectChannel(this.channel, this.clock).then(
      (s) => callback(null, s),
      (err: unknown) => callback(err instanceof Error ? err : new RuntimeError(String(err), 'KMS_UNAVAILABLE')),
    );
    return undefined;
  }
}
