/**
 * Handshake-phase codec (proto.md "Fixed newstyle negotiation", "Option types", "Option reply types").
 * Pure: the server feeds received bytes into a HandshakeReader and writes the Buffers built here.
 */
import { ByteQueue } from './byte-queue.js';
import {
  NbdClientFlag,
  NbdHandshakeFlag,
  NbdHeaderSize,
  NbdInfo,
  NbdLimits,
  NbdMagic,
  NbdOpt,
  NbdRep,
  NbdTxFlag,
  isOptionErrorReply,
  optionName,
} from './constants.js';
import { NbdOptionError, NbdProtocolError } from './errors.js';
import { decodeNbdString, encodeNbdMessage, encodeNbdString } from './strings.js';

/** Handshake flags we always advertise. */
export const SERVER_HANDSHAKE_FLAGS = NbdHandshakeFlag.FIXED_NEWSTYLE | NbdHandshakeFlag.NO_ZEROES;

/** NBDMAGIC, IHAVEOPT, handshake flags FIXED_NEWSTYLE|NO_ZEROES (18 bytes). */
export function encodeServerGreeting(): Buffer {
  const buf = Buffer.allocUnsafe(NbdHeaderSize.GREETING);
  buf.writeBigUInt64BE(NbdMagic.NBDMAGIC, 0);
  buf.writeBigUInt64BE(NbdMagic.IHAVEOPT, 8);
  buf.writeUInt16BE(SERVER_HANDSHAKE_FLAGS, 16);
  return buf;
}

export interface ClientFlags {
  /** Client speaks fixed newstyle. If false it may only send NBD_OPT_EXPORT_NAME. */
  fixedNewstyle: boolean;
  /** Omit the 124 zero bytes after the NBD_OPT_EXPORT_NAME reply. */
  noZeroes: boolean;
}

/**
 * Parse the client's u32 flags. Unknown bits, or bits the server did not advertise, are fatal
 * (proto.md: "the server MUST drop the TCP connection").
 */
export function parseClientFlags(buf: Buffer, advertised: number = SERVER_HANDSHAKE_FLAGS): ClientFlags {
  if (buf.length !== NbdHeaderSize.CLIENT_FLAGS) {
    throw new RangeError(`client flags are ${NbdHeaderSize.CLIENT_FLAGS} bytes, got ${buf.length}`);
  }
  const flags = buf.readUInt32BE(0);
  // Client flag bits mirror the handshake flag bits, so "advertised" masks both.
  const allowed = (NbdClientFlag.FIXED_NEWSTYLE | NbdClientFlag.NO_ZEROES) & advertised;
  const unexpected = flags & ~allowed;
  if (unexpected !== 0) {
    throw new NbdProtocolError(
      'NBD_BAD_CLIENT_FLAGS',
      `client flags 0x${flags.toString(16)} include unknown or unadvertised bits 0x${(unexpected >>> 0).toString(16)}`,
    );
  }
  return {
    fixedNewstyle: (flags & NbdClientFlag.FIXED_NEWSTYLE) !== 0,
    noZeroes: (flags & NbdClientFlag.NO_ZEROES) !== 0,
  };
}

/** One option from the client. */
export type ClientOption =
  /** Complete option; `data` is exactly the option's payload. */
  | { kind: 'option'; option: number; data: Buffer }
  /**
   * Payload longer than `maxOptionData`: its bytes were discarded, so negotiation can go on.
   * Reply with NBD_REP_ERR_TOO_BIG (or disconnect if the option was NBD_OPT_EXPORT_NAME).
   */
  | { kind: 'oversized'; option: number; length: number };

export interface HandshakeReaderOptions {
  /** Largest option payload returned; larger ones are discarded. Default NbdLimits.MAX_OPTION_DATA. */
  maxOptionData?: number;
  /** Largest option payload discarded; larger is fatal. Default NbdLimits.MAX_OPTION_DISCARD. */
  maxOptionDiscard?: number;
  /** Options allowed on this connection; one more is fatal. Default NbdLimits.MAX_OPTIONS. */
  maxOptions?: number;
  /** Handshake flags the server advertised, to validate the client flags against. */
  advertisedFlags?: number;
}

/**
 * Incremental reader for the client's side of the handshake: `push` received bytes, then call
 * `readClientFlags()` once and `nextOption()` repeatedly; both return null until enough bytes arrived
 * and throw NbdProtocolError when the server must disconnect. Nothing is read ahead of what is asked,
 * so after GO/EXPORT_NAME/STARTTLS `takeRemaining()` yields the bytes for the next stage.
 */
export class HandshakeReader {
  private readonly queue = new ByteQueue();
  private readonly maxOptionData: number;
  private readonly maxOptionDiscard: number;
  private readonly maxOptions: number;
  private readonly advertisedFlags: number;
  private clientFlags: ClientFlags | null = null;
  private optionCount = 0;
  /** Header of the option whose payload we are waiting for or discarding. */
  private pending: { option: number; length: number; discarding: boolean; remaining: number } | null = null;

  constructor(options: HandshakeReaderOptions = {}) {
    this.maxOptionData = options.maxOptionData ?? NbdLimits.MAX_OPTION_DATA;
    this.maxOptionDiscard = options.maxOptionDiscard ?? NbdLimits.MAX_OPTION_DISCARD;
    this.maxOptions = options.maxOptions ?? NbdLimits.MAX_OPTIONS;
    this.advertisedFlags = options.advertisedFlags ?? SERVER_HANDSHAKE_FLAGS;
    if (this.maxOptionDiscard < this.maxOptionData) throw new RangeError('maxOptionDiscard < maxOptionData');
  }

  /** Bytes received but not yet consumed (for backpressure). */
  get bufferedBytes(): number {
    return this.queue.length;
  }

  /** Options read so far, including oversized ones. */
  get optionsRead(): number {
    return this.optionCount;
  }

  push(chunk: Buffer): void {
    this.queue.push(chunk);
    // Discard oversized option data as it arrives rather than buffering it.
    if (this.pending?.discarding) this.pending.remaining -= this.queue.skip(this.pending.remaining);
  }

  /** The client's flags once 4 bytes are available, else null. Call before `nextOption()`. */
  readClientFlags(): ClientFlags | null {
    if (this.clientFlags !== null) throw new NbdProtocolError('NBD_DECODER_STATE', 'client flags already read');
    if (this.queue.length < NbdHeaderSize.CLIENT_FLAGS) return null;
    this.clientFlags = parseClientFlags(this.queue.take(NbdHeaderSize.CLIENT_FLAGS), this.advertisedFlags);
    return this.clientFlags;
  }

  /** The next complete option, or null until its bytes have arrived. */
  nextOption(): ClientOption | null {
    if (this.clientFlags === null) throw new NbdProtocolError('NBD_DECODER_STATE', 'options read before client flags');
    if (this.pending === null) {
      if (this.queue.length < NbdHeaderSize.OPTION) return null;
      const header = this.queue.take(NbdHeaderSize.OPTION);
      const magic = header.readBigUInt64BE(0);
      if (magic !== NbdMagic.IHAVEOPT) {
        throw new NbdProtocolError('NBD_BAD_MAGIC', `option magic 0x${magic.toString(16)} is not IHAVEOPT`);
      }
      const option = header.readUInt32BE(8);
      const length = header.readUInt32BE(12);
      if (++this.optionCount > this.maxOptions) {
        throw new NbdProtocolError('NBD_TOO_MANY_OPTIONS', `more than ${this.maxOptions} options in one handshake`);
      }
      if (length > this.maxOptionDiscard) {
        throw new NbdProtocolError(
          'NBD_OPTION_TOO_LARGE',
          `${optionName(option)} carries ${length} bytes, more than ${this.maxOptionDiscard}`,
        );
      }
      const discarding = length > this.maxOptionData;
      this.pending = { option, length, discarding, remaining: length };
      if (discarding) this.pending.remaining -= this.queue.skip(length);
    }
    const pending = this.pending;
    if (pending.discarding) {
      if (pending.remaining > 0) return null;
      this.pending = null;
      return { kind: 'oversized', option: pending.option, length: pending.length };
    }
    if (this.queue.length < pending.length) return null;
    this.pending = null;
    return { kind: 'option', option: pending.option, data: this.queue.take(pending.length) };
  }

  /** Unconsumed bytes (e.g. pipelined requests after GO, TLS records after STARTTLS); empties the reader. */
  takeRemaining(): Buffer[] {
    if (this.pending !== null) throw new NbdProtocolError('NBD_DECODER_STATE', 'an option is still being read');
    return this.queue.takeAll();
  }
}

// ---------------------------------------------------------------------------------------------
// Option payload parsers. Each throws NbdOptionError (reply NBD_REP_ERR_INVALID) on bad syntax.

/**
 * Options that carry no data: LIST, STARTTLS, STRUCTURED_REPLY, EXTENDED_HEADERS.
 * (ABORT data SHOULD be ignored instead, so do not call this for ABORT.)
 */
export function parseEmptyOption(option: number, data: Buffer): void {
  if (data.length !== 0) throw new NbdOptionError(`${optionName(option)} must not carry data (got ${data.length} bytes)`);
}

/** NBD_OPT_EXPORT_NAME: the whole payload is the name. On error the server must disconnect. */
export function parseExportNameData(data: Buffer): string {
  return decodeNbdString(data, 'export name');
}

export interface InfoRequest {
  name: string;
  /** Requested NBD_INFO_* types, duplicates removed, unknown types kept (the server ignores them). */
  infoTypes: number[];
}

/** NBD_OPT_INFO / NBD_OPT_GO: u32 name length, name, u16 count, count × u16 info type. */
export function parseInfoRequest(option: number, data: Buffer): InfoRequest {
  const what = optionName(option);
  if (data.length < 6) throw new NbdOptionError(`${what} data is ${data.length} bytes, need at least 6`);
  const nameLength = data.readUInt32BE(0);
  if (nameLength > data.length - 6) {
    throw new NbdOptionError(`${what} name length ${nameLength} overruns the ${data.length}-byte option`);
  }
  const name = decodeNbdString(data.subarray(4, 4 + nameLength), 'export name');
  const countOffset = 4 + nameLength;
  const count = data.readUInt16BE(countOffset);
  const listBytes = data.length - countOffset - 2;
  if (listBytes !== count * 2) {
    throw new NbdOptionError(`${what} announces ${count} info requests but carries ${listBytes} bytes for them`);
  }
  const infoTypes: number[] = [];
  for (let i = 0; i < count; i++) {
    const type = data.readUInt16BE(countOffset + 2 + i * 2);
    if (!infoTypes.includes(type)) infoTypes.push(type);
  }
  return { name, infoTypes };
}

export interface MetaContextRequest {
  exportName: string;
  /** Query strings in request order; an empty list means "all" for LIST and "none" for SET. */
  queries: string[];
}

/**
 * NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT: u32 name length, name, u32 query count,
 * count × (u32 length, query). Lengths must fit exactly (proto.md: syntactically invalid ⇒ MUST
 * NBD_REP_ERR_INVALID). Query semantics (namespace matching) are the server's.
 */
export function parseMetaContextRequest(option: number, data: Buffer): MetaContextRequest {
  const what = optionName(option);
  let offset = 0;
  const readLength = (field: string): number => {
    if (data.length - offset < 4) throw new NbdOptionError(`${what} is truncated before ${field}`);
    const value = data.readUInt32BE(offset);
    offset += 4;
    return value;
  };
  const readString = (field: string): string => {
    const length = readLength(`${field} length`);
    if (length > data.length - offset) {
      throw new NbdOptionError(`${what} ${field} length ${length} overruns the ${data.length}-byte option`);
    }
    const text = decodeNbdString(data.subarray(offset, offset + length), field);
    offset += length;
    return text;
  };
  const exportName = readString('export name');
  const count = readLength('query count');
  // Each query needs at least its 4-byte length: reject absurd counts before looping.
  if (count > (data.length - offset) / 4) {
    throw new NbdOptionError(`${what} announces ${count} queries but has only ${data.length - offset} bytes left`);
  }
  const queries: string[] = [];
  for (let i = 0; i < count; i++) queries.push(readString('query'));
  if (offset !== data.length) {
    throw new NbdOptionError(`${what} has ${data.length - offset} trailing bytes after its queries`);
  }
  return { exportName, queries };
}

// ---------------------------------------------------------------------------------------------
// Option reply encoders (fixed newstyle): magic u64, u32 option, u32 reply type, u32 length, data.

/** Any option reply. `data` is copied in: option replies are small and off the hot path. */
export function encodeOptionReply(option: number, replyType: number, data?: Buffer): Buffer {
  const dataLength = data?.length ?? 0;
  const buf = Buffer.allocUnsafe(NbdHeaderSize.OPTION_REPLY + dataLength);
  buf.writeBigUInt64BE(NbdMagic.OPTION_REPLY, 0);
  buf.writeUInt32BE(option >>> 0, 8);
  buf.writeUInt32BE(replyType >>> 0, 12);
  buf.writeUInt32BE(dataLength, 16);
  data?.copy(buf, NbdHeaderSize.OPTION_REPLY);
  return buf;
}

/** NBD_REP_ACK. */
export function encodeAck(option: number): Buffer {
  return encodeOptionReply(option, NbdRep.ACK);
}

/** Error reply (bit 31 set) with an optional human-readable message, truncated to 4096 bytes. */
export function encodeOptionError(option: number, replyType: number, message?: string): Buffer {
  if (!isOptionErrorReply(replyType)) throw new RangeError(`reply type 0x${replyType.toString(16)} is not an error`);
  return encodeOptionReply(option, replyType, message === undefined ? undefined : encodeNbdMessage(message));
}

/** NBD_REP_SERVER for NBD_OPT_LIST: u32 name length, name, optional description. */
export function encodeServerReply(name: string, description?: string): Buffer {
  const nameBytes = encodeNbdString(name, 'export name');
  const descriptionBytes = description === undefined ? Buffer.alloc(0) : encodeNbdString(description, 'description');
  const data = Buffer.allocUnsafe(4 + nameBytes.length + descriptionBytes.length);
  data.writeUInt32BE(nameBytes.length, 0);
  nameBytes.copy(data, 4);
  descriptionBytes.copy(data, 4 + nameBytes.length);
  return encodeOptionReply(NbdOpt.LIST, NbdRep.SERVER, data);
}

function checkExportSize(size: bigint): void {
  if (size < 0n || size > 0xffffffffffffffffn) throw new RangeError(`export size ${size} does not fit in u64`);
}

function checkTxFlags(txFlags: number): number {
  if (!Number.isInteger(txFlags) || txFlags < 0 || txFlags > 0xffff) throw new RangeError(`bad transmission flags ${txFlags}`);
  // HAS_FLAGS MUST always be 1; set it here so no caller can forget.
  return txFlags | NbdTxFlag.HAS_FLAGS;
}

/** NBD_REP_INFO / NBD_INFO_EXPORT: u16 type, u64 size, u16 transmission flags (length 12). */
export function encodeInfoExport(option: number, size: bigint, txFlags: number): Buffer {
  checkExportSize(size);
  const data = Buffer.allocUnsafe(12);
  data.writeUInt16BE(NbdInfo.EXPORT, 0);
  data.writeBigUInt64BE(size, 2);
  data.writeUInt16BE(checkTxFlags(txFlags), 10);
  return encodeOptionReply(option, NbdRep.INFO, data);
}

function encodeInfoString(option: number, infoType: number, text: string, what: string): Buffer {
  const bytes = encodeNbdString(text, what);
  const data = Buffer.allocUnsafe(2 + bytes.length);
  data.writeUInt16BE(infoType, 0);
  bytes.copy(data, 2);
  return encodeOptionReply(option, NbdRep.INFO, data);
}

/** NBD_REP_INFO / NBD_INFO_NAME: the canonical export name. */
export function encodeInfoName(option: number, name: string): Buffer {
  return encodeInfoString(option, NbdInfo.NAME, name, 'export name');
}

/** NBD_REP_INFO / NBD_INFO_DESCRIPTION: human-readable description. */
export function encodeInfoDescription(option: number, description: string): Buffer {
  return encodeInfoString(option, NbdInfo.DESCRIPTION, description, 'description');
}

const isPowerOfTwo = (n: number): boolean => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;

/**
 * NBD_REP_INFO / NBD_INFO_BLOCK_SIZE: u16 type, u32 minimum, u32 preferred, u32 maximum (length 14).
 * Checks the spec's constraints ("Block size constraints") since clients that asked MUST obey them.
 */
export function encodeInfoBlockSize(option: number, minimum: number, preferred: number, maximum: number): Buffer {
  if (!isPowerOfTwo(minimum) || minimum > NbdLimits.MAX_MIN_BLOCK_SIZE) {
    throw new RangeError(`minimum block size ${minimum} must be a power of two ≤ ${NbdLimits.MAX_MIN_BLOCK_SIZE}`);
  }
  if (!isPowerOfTwo(preferred) || preferred < Math.max(minimum, 512) || preferred > 0xffffffff) {
    throw new RangeError(`preferred block size ${preferred} must be a power of two ≥ max(minimum, 512)`);
  }
  if (
    !Number.isInteger(maximum) ||
    maximum < minimum ||
    maximum > 0xffffffff ||
    (maximum !== NbdLimits.BLOCK_SIZE_UNLIMITED && maximum % minimum !== 0)
  ) {
    throw new RangeError(`maximum block size ${maximum} must be a multiple of ${minimum} or 0xffffffff`);
  }
  const data = Buffer.allocUnsafe(14);
  data.writeUInt16BE(NbdInfo.BLOCK_SIZE, 0);
  data.writeUInt32BE(minimum, 2);
  data.writeUInt32BE(preferred, 6);
  data.writeUInt32BE(maximum, 10);
  return encodeOptionReply(option, NbdRep.INFO, data);
}

/**
 * NBD_REP_META_CONTEXT: u32 context id, name. For LIST_META_CONTEXT the id SHOULD be 0; for
 * SET_META_CONTEXT it is the id the client will see in BLOCK_STATUS chunks.
 */
export function encodeMetaContextReply(option: number, contextId: number, name: string): Buffer {
  if (!Number.isInteger(contextId) || contextId < 0 || contextId > 0xffffffff) throw new RangeError(`bad context id ${contextId}`);
  const nameBytes = encodeNbdString(name, 'context name');
  const data = Buffer.allocUnsafe(4 + nameBytes.length);
  data.writeUInt32BE(contextId, 0);
  nameBytes.copy(data, 4);
  return encodeOptionReply(option, NbdRep.META_CONTEXT, data);
}

/**
 * Success reply to NBD_OPT_EXPORT_NAME (not an option reply): u64 size, u16 transmission flags,
 * then 124 zero bytes unless the client set NBD_FLAG_C_NO_ZEROES.
 */
export function encodeExportNameReply(size: bigint, txFlags: number, noZeroes: boolean): Buffer {
  checkExportSize(size);
  const buf = Buffer.alloc(10 + (noZeroes ? 0 : NbdHeaderSize.EXPORT_NAME_ZERO_PADDING));
  buf.writeBigUInt64BE(size, 0);
  buf.writeUInt16BE(checkTxFlags(txFlags), 8);
  return buf;
}
