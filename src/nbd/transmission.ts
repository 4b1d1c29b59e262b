/**
 * Transmission-phase codec (proto.md "Transmission", "Request types", "Error values"): a request
 * decoder, reply encoders, the request validation gate and the errno map. Pure: no sockets, no I/O.
 * Only compact (non-extended) headers; we never offer NBD_OPT_EXTENDED_HEADERS.
 */
import {
  NbdCmd,
  NbdCmdFlag,
  NbdErrno,
  NbdHeaderSize,
  NbdLimits,
  NbdMagic,
  NbdReplyFlag,
  NbdReplyType,
  NbdTxFlag,
  commandName,
  type NbdErrnoValue,
} from './constants.js';
import { NbdProtocolError } from './errors.js';
import { encodeNbdMessage } from './strings.js';
import type { NbdLaneRequest } from '../native/addon.js';

// ---------------------------------------------------------------------------------------------
// Request decoding

/** A decoded request; the native lane forwards the same shape (the binding declares it). */
export interface NbdRequest extends NbdLaneRequest {
  /** The payload was assembled in a buffer from the decoder's `allocate`: the server may recycle it once done. */
  payloadAllocated?: true;
}

export interface RequestDecoderOptions {
  /** Largest WRITE payload delivered. Default NbdLimits.MAX_PAYLOAD (32 MiB). */
  maxPayload?: number;
  /** Larger payloads up to this are discarded to stay in sync; beyond it is fatal. Default 64 MiB. */
  maxDiscard?: number;
  /** Buffers for payloads that straddle chunks (a pool's take); default Buffer.allocUnsafe. */
  allocate?: (n: number) => Buffer;
}

/**
 * Incremental request parser: a state machine (header → payload or discard → header) that decodes
 * every byte as soon as it is given, into a FIFO of complete requests pulled with `next()`. The
 * server applies backpressure by not pulling and pausing the socket while `bufferedBytes` grows.
 *
 * Input comes two ways, both served by the same state machine:
 * - `push(chunk)`: a chunk the decoder may keep. A WRITE payload lying whole in it is a zero-copy
 *   subarray; payloads that straddle chunks are copied once into a buffer from `allocate`.
 * - transient input, for sockets that read into buffers we provide (net.Socket `onread`):
 *   `push(chunk, true)` for bytes the caller will overwrite (everything kept is copied), and
 *   `directReadTarget()` / `directReadDone(n)`, which let the socket read the rest of a large
 *   WRITE payload straight into its final buffer, with no copy at all.
 *
 * Fatal errors throw NbdProtocolError from `next()` (after every earlier request has been
 * returned) and on every later call.
 */
export class RequestDecoder {
  private readonly headerScratch = Buffer.allocUnsafe(NbdHeaderSize.REQUEST);
  /** Bytes of the next header gathered in headerScratch. */
  private headerFill = 0;
  private readonly maxPayload: number;
  private readonly maxDiscard: number;
  /** A WRITE whose payload is still arriving (payloadFill bytes so far) or being discarded. */
  private pendingWrite: NbdRequest | null = null;
  private payloadFill = 0;
  private discardRemaining = 0;
  private readonly ready: NbdRequest[] = [];
  private readyHead = 0;
  /** Received bytes not yet handed out by next() (headers and payloads; discarded bytes excluded). */
  private held = 0;
  private failure: NbdProtocolError | null = null;
  /** Decoding stopped at a fatal error; next() throws it once `ready` is drained. */
  private failed = false;
  private readonly allocate: ((n: number) => Buffer) | undefined;

  constructor(options: RequestDecoderOptions = {}) {
    this.maxPayload = options.maxPayload ?? NbdLimits.MAX_PAYLOAD;
    this.maxDiscard = options.maxDiscard ?? NbdLimits.MAX_WRITE_DISCARD;
    this.allocate = options.allocate;
    if (this.maxDiscard < this.maxPayload) throw new RangeError('maxDiscard < maxPayload');
  }

  /** Bytes received but not yet handed out by `next()` (discarded payloads are never held). */
  get bufferedBytes(): number {
    return this.held;
  }

  /**
   * Decodes `chunk`. `transient`: the caller reuses the chunk's memory afterwards, so nothing may
   * point into it (payloads are always copied).
   */
  push(chunk: Buffer, transient = false): void {
    let pos = 0;
    while (pos < chunk.length && !this.failed) {
      if (this.discardRemaining > 0) {
        const n = Math.min(this.discardRemaining, chunk.length - pos);
        pos += n;
        this.discardRemaining -= n;
        if (this.discardRemaining === 0) this.emitPending();
      } else if (this.pendingWrite !== null) {
        const payload = this.pendingWrite.payload!;
        const n = chunk.copy(payload, this.payloadFill, pos, pos + payload.length - this.payloadFill);
        pos += n;
        this.addPayloadBytes(n);
      } else if (this.headerFill === 0 && chunk.length - pos >= NbdHeaderSize.REQUEST) {
        const header = chunk.subarray(pos, pos + NbdHeaderSize.REQUEST);
        pos += NbdHeaderSize.REQUEST;
        const request = this.startRequest(header);
        // A whole payload inside a chunk we may keep is used in place.
        if (request && !transient && chunk.length - pos >= request.length) {
          request.payload = chunk.subarray(pos, pos + request.length);
          pos += request.length;
          this.held += request.length;
          this.ready.push(request);
        } else if (request) this.beginPayload(request);
      } else {
        const n = chunk.copy(this.headerScratch, this.headerFill, pos, pos + NbdHeaderSize.REQUEST - this.headerFill);
        pos += n;
        this.headerFill += n;
        if (this.headerFill < NbdHeaderSize.REQUEST) break;
        this.headerFill = 0;
        const request = this.startRequest(this.headerScratch);
        if (request) this.beginPayload(request);
      }
    }
  }

  /**
   * Where the next socket read may land directly: the unfilled rest of a WRITE payload of at least
   * `min` bytes (so small payloads still arrive batched with their neighbours), else null.
   */
  directReadTarget(min = 16 * 1024): Buffer | null {
    const write = this.pendingWrite;
    if (write === null || this.discardRemaining > 0 || this.failed) return null;
    const payload = write.payload!;
    return payload.length - this.payloadFill >= min ? payload.subarray(this.payloadFill) : null;
  }

  /** `n` bytes were read into the buffer `directReadTarget()` returned. */
  directReadDone(n: number): void {
    const write = this.pendingWrite;
    if (write === null || n < 0 || this.payloadFill + n > write.payload!.length) {
      throw new RangeError(`directReadDone(${n}) without a matching read target`);
    }
    this.addPayloadBytes(n);
  }

  /** The next complete request, or null until more bytes arrive. */
  next(): NbdRequest | null {
    if (this.readyHead < this.ready.length) {
      const request = this.ready[this.readyHead]!;
      this.ready[this.readyHead++] = undefined as unknown as NbdRequest;
      if (this.readyHead === this.ready.length) {
        this.ready.length = 0;
        this.readyHead = 0;
      }
      if (!request.payloadDiscarded) this.held -= NbdHeaderSize.REQUEST + (request.payload?.length ?? 0);
      return request;
    }
    if (this.failure !== null) throw this.failure;
    return null;
  }

  /** Every request decodable from what has been pushed so far. */
  *requests(): Generator<NbdRequest, void, undefined> {
    for (let request = this.next(); request !== null; request = this.next()) yield request;
  }

  /** Parses a header; returns a WRITE that needs its payload, or null once the request is queued. */
  private startRequest(header: Buffer): NbdRequest | null {
    let request: NbdRequest;
    try {
      request = this.parseHeader(header);
    } catch {
      this.failed = true;
      return null;
    }
    this.held += NbdHeaderSize.REQUEST;
    if (request.type !== NbdCmd.WRITE || request.length === 0) {
      if (request.type === NbdCmd.WRITE) request.payload = Buffer.alloc(0);
      this.ready.push(request);
      return null;
    }
    if (request.length > this.maxPayload) {
      if (request.length > this.maxDiscard) {
        this.failed = true;
        this.failure = new NbdProtocolError(
          'NBD_PAYLOAD_TOO_LARGE',
          `write payload of ${request.length} bytes exceeds the ${this.maxDiscard}-byte limit`,
        );
        return null;
      }
      request.payloadDiscarded = true;
      this.held -= NbdHeaderSize.REQUEST; // nothing of a discarded request is kept
      this.pendingWrite = request;
      this.discardRemaining = request.length;
      return null;
    }
    return request;
  }

  private beginPayload(write: NbdRequest): void {
    if (this.allocate) {
      write.payload = this.allocate(write.length);
      write.payloadAllocated = true;
    } else write.payload = Buffer.allocUnsafe(write.length);
    this.pendingWrite = write;
    this.payloadFill = 0;
  }

  private addPayloadBytes(n: number): void {
    this.payloadFill += n;
    this.held += n;
    if (this.payloadFill === this.pendingWrite!.payload!.length) this.emitPending();
  }

  private emitPending(): void {
    this.ready.push(this.pendingWrite!);
    this.pendingWrite = null;
    this.payloadFill = 0;
  }

  private parseHeader(header: Buffer): NbdRequest {
    const magic = header.readUInt32BE(0);
    if (magic !== NbdMagic.REQUEST) {
      const hint = magic === NbdMagic.EXTENDED_REQUEST ? ' (extended header, never negotiated)' : '';
      this.fail('NBD_BAD_MAGIC', `request magic 0x${magic.toString(16).padStart(8, '0')}${hint}`);
    }
    return {
      flags: header.readUInt16BE(4),
      type: header.readUInt16BE(6),
      cookie: header.readBigUInt64BE(8),
      offset: header.readBigUInt64BE(16),
      length: header.readUInt32BE(24),
    };
  }

  private fail(code: 'NBD_BAD_MAGIC' | 'NBD_PAYLOAD_TOO_LARGE', message: string): never {
    this.failure = new NbdProtocolError(code, message);
    throw this.failure;
  }
}

// ---------------------------------------------------------------------------------------------
// Reply encoders. Each returns only headers (and small fixed payloads); bulk data is written by the
// server as a separate buffer (writev) so it is never copied here.

function writeCookie(buf: Buffer, offset: number, cookie: bigint): void {
  buf.writeBigUInt64BE(BigInt.asUintN(64, cookie), offset);
}

/**
 * Simple reply header: magic, u32 error, u64 cookie (16 bytes). For a successful READ the server
 * writes the `length` data bytes right after it; for anything else nothing follows.
 */
export function encodeSimpleReply(cookie: bigint, error: number): Buffer {
  const buf = Buffer.allocUnsafe(NbdHeaderSize.SIMPLE_REPLY);
  buf.writeUInt32BE(NbdMagic.SIMPLE_REPLY, 0);
  buf.writeUInt32BE(error >>> 0, 4);
  writeCookie(buf, 8, cookie);
  return buf;
}

/** Structured reply chunk header: magic, u16 flags, u16 type, u64 cookie, u32 payload length (20 bytes). */
export function encodeStructuredHeader(flags: number, type: number, cookie: bigint, length: number): Buffer {
  const buf = Buffer.allocUnsafe(NbdHeaderSize.STRUCTURED_REPLY);
  writeStructuredHeader(buf, flags, type, cookie, length);
  return buf;
}

function writeStructuredHeader(buf: Buffer, flags: number, type: number, cookie: bigint, length: number): void {
  if (!Number.isInteger(length) || length < 0 || length > 0xffffffff) throw new RangeError(`chunk length ${length} is not a u32`);
  buf.writeUInt32BE(NbdMagic.STRUCTURED_REPLY, 0);
  buf.writeUInt16BE(flags, 4);
  buf.writeUInt16BE(type, 6);
  writeCookie(buf, 8, cookie);
  buf.writeUInt32BE(length, 16);
}

/** Largest data length of one OFFSET_DATA chunk (the u32 length also covers the 8-byte offset). */
export const MAX_OFFSET_DATA_LENGTH = 0xffffffff - 8;

/**
 * NBD_REPLY_TYPE_OFFSET_DATA header plus its u64 offset (28 bytes); the server writes `dataLength`
 * data bytes after it. dataLength must be ≥ 1.
 */
export function encodeOffsetDataHeader(flags: number, cookie: bigint, offset: bigint, dataLength: number): Buffer {
  if (!Number.isInteger(dataLength) || dataLength < 1 || dataLength > MAX_OFFSET_DATA_LENGTH) {
    throw new RangeError(`OFFSET_DATA length ${dataLength} out of range`);
  }
  const buf = Buffer.allocUnsafe(NbdHeaderSize.STRUCTURED_REPLY + 8);
  writeStructuredHeader(buf, flags, NbdReplyType.OFFSET_DATA, cookie, 8 + dataLength);
  buf.writeBigUInt64BE(offset, 20);
  return buf;
}

/** NBD_REPLY_TYPE_OFFSET_HOLE: header, u64 offset, u32 hole size (nonzero) — 32 bytes. */
export function encodeOffsetHoleChunk(flags: number, cookie: bigint, offset: bigint, holeLength: number): Buffer {
  if (!Number.isInteger(holeLength) || holeLength < 1 || holeLength > 0xffffffff) {
    throw new RangeError(`OFFSET_HOLE size ${holeLength} out of range`);
  }
  const buf = Buffer.allocUnsafe(NbdHeaderSize.STRUCTURED_REPLY + 12);
  writeStructuredHeader(buf, flags, NbdReplyType.OFFSET_HOLE, cookie, 12);
  buf.writeBigUInt64BE(offset, 20);
  buf.writeUInt32BE(holeLength, 28);
  return buf;
}

/** NBD_REPLY_TYPE_NONE: always DONE, no payload (20 bytes). */
export function encodeNoneChunk(cookie: bigint): Buffer {
  return encodeStructuredHeader(NbdReplyFlag.DONE, NbdReplyType.NONE, cookie, 0);
}

function checkErrno(error: number): void {
  if (!Number.isInteger(error) || error <= 0 || error > 0xffffffff) throw new RangeError(`error chunk needs a nonzero errno, got ${error}`);
}

/**
 * NBD_REPLY_TYPE_ERROR: header, u32 error, u16 message length, message. The message is cut to
 * 4096 bytes on a UTF-8 boundary (the spec's string limit).
 */
export function encodeErrorChunk(flags: number, cookie: bigint, error: number, message: string): Buffer {
  return errorChunk(NbdReplyType.ERROR, flags, cookie, error, message).buf;
}

/** NBD_REPLY_TYPE_ERROR_OFFSET: as ERROR, followed by the u64 offset where the error occurred. */
export function encodeErrorOffsetChunk(flags: number, cookie: bigint, error: number, message: string, offset: bigint): Buffer {
  const { buf, end } = errorChunk(NbdReplyType.ERROR_OFFSET, flags, cookie, error, message, 8);
  buf.writeBigUInt64BE(offset, end);
  return buf;
}

/** An error chunk with `extra` bytes left after the message (at `end`) for the caller to fill. */
function errorChunk(type: number, flags: number, cookie: bigint, error: number, message: string, extra = 0): { buf: Buffer; end: number } {
  checkErrno(error);
  const text = encodeNbdMessage(message);
  const payload = 6 + text.length + extra;
  const buf = Buffer.allocUnsafe(NbdHeaderSize.STRUCTURED_REPLY + payload);
  writeStructuredHeader(buf, flags, type, cookie, payload);
  buf.writeUInt32BE(error, 20);
  buf.writeUInt16BE(text.length, 24);
  text.copy(buf, 26);
  return { buf, end: 26 + text.length };
}

export interface BlockStatusExtent {
  /** Nonzero u32. */
  length: number;
  /** Context-defined status bits (NbdState for base:allocation). */
  flags: number;
}

/** NBD_REPLY_TYPE_BLOCK_STATUS: header, u32 context id, then (u32 length, u32 flags) per extent (≥ 1). */
export function encodeBlockStatusChunk(
  flags: number,
  cookie: bigint,
  contextId: number,
  extents: readonly BlockStatusExtent[],
): Buffer {
  if (extents.length === 0) throw new RangeError('BLOCK_STATUS needs at least one extent');
  if (extents.length > NbdLimits.MAX_EXTENTS_PER_CHUNK) throw new RangeError(`too many extents (${extents.length})`);
  const payloadLength = 4 + 8 * extents.length;
  const buf = Buffer.allocUnsafe(NbdHeaderSize.STRUCTURED_REPLY + payloadLength);
  writeStructuredHeader(buf, flags, NbdReplyType.BLOCK_STATUS, cookie, payloadLength);
  buf.writeUInt32BE(contextId >>> 0, 20);
  let pos = 24;
  for (const extent of extents) {
    if (!Number.isInteger(extent.length) || extent.length < 1 || extent.length > 0xffffffff) {
      throw new RangeError(`extent length ${extent.length} must be a nonzero u32`);
    }
    buf.writeUInt32BE(extent.length, pos);
    buf.writeUInt32BE(extent.flags >>> 0, pos + 4);
    pos += 8;
  }
  return buf;
}

// ---------------------------------------------------------------------------------------------
// Validation gate

/** What the server negotiated for this connection. */
export interface RequestContext {
  exportSize: bigint;
  /** Transmission flags advertised to the client (NbdTxFlag bits). */
  txFlags: number;
  structuredReplies: boolean;
  /** Ids handed out by NBD_OPT_SET_META_CONTEXT for this export; empty if none selected. */
  metaContextIds: ReadonlySet<number>;
  /** Alignment enforced on offset and length (1 = none). Power of two. */
  minBlock: number;
  /** Largest READ/WRITE/CACHE length accepted. */
  maxPayload: number;
  readOnly: boolean;
}

export interface RequestRejection {
  errno: NbdErrnoValue;
  /** One line for logs and structured error chunks. */
  message: string;
}

const KNOWN_CMD_FLAGS = NbdCmdFlag.FUA | NbdCmdFlag.NO_HOLE | NbdCmdFlag.DF | NbdCmdFlag.REQ_ONE | NbdCmdFlag.FAST_ZERO;

/** Commands whose offset/length address the export (the rest must send zeroes). */
const RANGED_COMMANDS: ReadonlySet<number> = new Set([
  NbdCmd.READ,
  NbdCmd.WRITE,
  NbdCmd.TRIM,
  NbdCmd.CACHE,
  NbdCmd.WRITE_ZEROES,
  NbdCmd.BLOCK_STATUS,
]);

const reject = (errno: NbdErrnoValue, message: string): RequestRejection => ({ errno, message });

/**
 * The single place that decides whether a request may reach the backend. Returns null if it may,
 * else the errno to reply with (proto.md "Error values", "Block size constraints", "Request types"):
 * - unknown command, unknown flag, flag not valid for the command or not advertised → EINVAL;
 * - oversized WRITE whose payload the decoder discarded → EINVAL;
 * - WRITE/TRIM/WRITE_ZEROES on a read-only export → EPERM (before "not advertised", since a
 *   read-only export typically advertises neither TRIM nor WRITE_ZEROES);
 * - FLUSH/TRIM/WRITE_ZEROES/CACHE not advertised, BLOCK_STATUS with no selected context → EINVAL;
 * - FLUSH/DISC with nonzero offset or length → EINVAL;
 * - past the end: WRITE/WRITE_ZEROES → ENOSPC, READ/TRIM/CACHE/BLOCK_STATUS → EINVAL;
 * - offset or length not a multiple of minBlock → EINVAL;
 * - READ/WRITE/CACHE longer than maxPayload → EINVAL (EOVERFLOW is reserved for DF reads we cannot
 *   send in one chunk, which never happens below 2^32 − 8; TRIM/WRITE_ZEROES carry no payload and
 *   are not capped because the kernel client sends them up to 4 GiB without knowing our maximum);
 * - zero-length BLOCK_STATUS → EINVAL (no valid reply exists: extents must be nonzero). Zero-length
 *   READ/WRITE/TRIM/CACHE/WRITE_ZEROES pass and should simply succeed.
 */
export function validateRequest(req: NbdRequest, ctx: RequestContext): RequestRejection | null {
  const name = commandName(req.type);
  if (req.type > NbdCmd.BLOCK_STATUS) return reject(NbdErrno.EINVAL, `unknown command ${req.type}`);
  if (req.payloadDiscarded) {
    return reject(NbdErrno.EINVAL, `${name} payload of ${req.length} bytes exceeds the maximum of ${ctx.maxPayload}`);
  }

  const flags = req.flags;
  if ((flags & ~KNOWN_CMD_FLAGS) !== 0) {
    return reject(NbdErrno.EINVAL, `${name} has unknown flags 0x${(flags & ~KNOWN_CMD_FLAGS).toString(16)}`);
  }
  if (flags & NbdCmdFlag.FUA && !(ctx.txFlags & NbdTxFlag.SEND_FUA)) return reject(NbdErrno.EINVAL, `${name} uses FUA, which was not advertised`);
  if (flags & NbdCmdFlag.NO_HOLE && req.type !== NbdCmd.WRITE_ZEROES) return reject(NbdErrno.EINVAL, `NO_HOLE is only valid on WRITE_ZEROES, not ${name}`);
  if (flags & NbdCmdFlag.FAST_ZERO) {
    if (req.type !== NbdCmd.WRITE_ZEROES) return reject(NbdErrno.EINVAL, `FAST_ZERO is only valid on WRITE_ZEROES, not ${name}`);
    if (!(ctx.txFlags & NbdTxFlag.SEND_FAST_ZERO)) return reject(NbdErrno.EINVAL, 'FAST_ZERO was not advertised');
  }
  if (flags & NbdCmdFlag.DF) {
    if (req.type !== NbdCmd.READ) return reject(NbdErrno.EINVAL, `DF is only valid on READ, not ${name}`);
    if (!ctx.structuredReplies || !(ctx.txFlags & NbdTxFlag.SEND_DF)) return reject(NbdErrno.EINVAL, 'DF was not advertised');
  }
  if (flags & NbdCmdFlag.REQ_ONE && req.type !== NbdCmd.BLOCK_STATUS) return reject(NbdErrno.EINVAL, `REQ_ONE is only valid on BLOCK_STATUS, not ${name}`);

  const writes = req.type === NbdCmd.WRITE || req.type === NbdCmd.TRIM || req.type === NbdCmd.WRITE_ZEROES;
  if (writes && (ctx.readOnly || ctx.txFlags & NbdTxFlag.READ_ONLY)) return reject(NbdErrno.EPERM, `${name} on a read-only export`);

  switch (req.type) {
    case NbdCmd.FLUSH:
      if (!(ctx.txFlags & NbdTxFlag.SEND_FLUSH)) return reject(NbdErrno.EINVAL, 'FLUSH was not advertised');
      break;
    case NbdCmd.TRIM:
      if (!(ctx.txFlags & NbdTxFlag.SEND_TRIM)) return reject(NbdErrno.EINVAL, 'TRIM was not advertised');
      break;
    case NbdCmd.WRITE_ZEROES:
      if (!(ctx.txFlags & NbdTxFlag.SEND_WRITE_ZEROES)) return reject(NbdErrno.EINVAL, 'WRITE_ZEROES was not advertised');
      break;
    case NbdCmd.CACHE:
      if (!(ctx.txFlags & NbdTxFlag.SEND_CACHE)) return reject(NbdErrno.EINVAL, 'CACHE was not advertised');
      break;
    case NbdCmd.BLOCK_STATUS:
      if (!ctx.structuredReplies || ctx.metaContextIds.size === 0) {
        return reject(NbdErrno.EINVAL, 'BLOCK_STATUS without a selected metadata context');
      }
      if (req.length === 0) return reject(NbdErrno.EINVAL, 'zero-length BLOCK_STATUS');
      break;
  }

  if (!RANGED_COMMANDS.has(req.type)) {
    // FLUSH and DISC: offset and length are reserved and MUST be zero.
    if (req.offset !== 0n || req.length !== 0) return reject(NbdErrno.EINVAL, `${name} with nonzero offset or length`);
    return null;
  }

  if (req.offset > ctx.exportSize || BigInt(req.length) > ctx.exportSize - req.offset) {
    const errno = req.type === NbdCmd.WRITE || req.type === NbdCmd.WRITE_ZEROES ? NbdErrno.ENOSPC : NbdErrno.EINVAL;
    return reject(errno, `${name} of ${req.length} bytes at ${req.offset} is beyond the ${ctx.exportSize}-byte export`);
  }
  if (ctx.minBlock > 1) {
    const mask = ctx.minBlock - 1;
    if ((req.length & mask) !== 0 || (req.offset & BigInt(mask)) !== 0n) {
      return reject(NbdErrno.EINVAL, `${name} of ${req.length} bytes at ${req.offset} is not aligned to ${ctx.minBlock} bytes`);
    }
  }
  if ((req.type === NbdCmd.READ || req.type === NbdCmd.WRITE || req.type === NbdCmd.CACHE) && req.length > ctx.maxPayload) {
    return reject(NbdErrno.EINVAL, `${name} of ${req.length} bytes exceeds the maximum of ${ctx.maxPayload}`);
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Errno map

/**
 * NBD error value for a failed backend operation (modelled on nbdkit's nbd_errno()).
 * An error may carry an explicit `nbdErrno` (our volume layer's errors can set it); otherwise its
 * Node/system `code` is mapped. ENOTSUP is only legal for FAST_ZERO and EOVERFLOW only for DF
 * reads, so both become EINVAL unless `fastZero`/`df` says the request had that flag.
 * Anything unrecognised is EIO.
 */
export function toNbdErrno(err: unknown, request?: { fastZero?: boolean; df?: boolean }): NbdErrnoValue {
  if (typeof err !== 'object' || err === null) return NbdErrno.EIO;
  const explicit = (err as { nbdErrno?: unknown }).nbdErrno;
  if (typeof explicit === 'number' && NBD_ERRNO_VALUES.has(explicit)) return legalFor(explicit as NbdErrnoValue, request);
  const code = (err as { code?: unknown }).code;
  if (typeof code !== 'string') return NbdErrno.EIO;
  return legalFor(CODE_TO_NBD_ERRNO[code] ?? NbdErrno.EIO, request);
}

function legalFor(errno: NbdErrnoValue, request?: { fastZero?: boolean; df?: boolean }): NbdErrnoValue {
  if (errno === NbdErrno.ENOTSUP && !request?.fastZero) return NbdErrno.EINVAL;
  if (errno === NbdErrno.EOVERFLOW && !request?.df) return NbdErrno.EINVAL;
  return errno;
}

const NBD_ERRNO_VALUES: ReadonlySet<number> = new Set(Object.values(NbdErrno));

const CODE_TO_NBD_ERRNO: Readonly<Record<string, NbdErrnoValue>> = {
  EPERM: NbdErrno.EPERM,
  EACCES: NbdErrno.EPERM,
  EROFS: NbdErrno.EPERM,
  EIO: NbdErrno.EIO,
  ENOMEM: NbdErrno.ENOMEM,
  EINVAL: NbdErrno.EINVAL,
  ENOSPC: NbdErrno.ENOSPC,
  EDQUOT: NbdErrno.ENOSPC,
  EFBIG: NbdErrno.ENOSPC,
  EOVERFLOW: NbdErrno.EOVERFLOW,
  ENOTSUP: NbdErrno.ENOTSUP,
  EOPNOTSUPP: NbdErrno.ENOTSUP,
  ESHUTDOWN: NbdErrno.ESHUTDOWN,
  // An operation aborted because the server is shutting down (AbortController).
  ABORT_ERR: NbdErrno.ESHUTDOWN,
};
