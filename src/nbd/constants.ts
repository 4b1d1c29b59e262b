/**
 * Every NBD wire constant in one place, named after the spec (NetworkBlockDevice/nbd doc/proto.md):
 * `NbdOpt.GO` is `NBD_OPT_GO`, `NbdCmdFlag.FUA` is `NBD_CMD_FLAG_FUA`, and so on.
 * All integers on the wire are big-endian. 64-bit values are bigint.
 */

/** Magic numbers (proto.md "Newstyle negotiation", "Fixed newstyle negotiation", "Transmission"). */
export const NbdMagic = {
  /** 'NBDMAGIC', first 8 bytes the server sends (a.k.a. INIT_PASSWD). */
  NBDMAGIC: 0x4e42444d41474943n,
  /** 'IHAVEOPT', second 8 bytes of the greeting and the prefix of every client option. */
  IHAVEOPT: 0x49484156454f5054n,
  /** Prefix of every fixed-newstyle option reply. */
  OPTION_REPLY: 0x0003e889045565a9n,
  /** Compact (28-byte) request header. */
  REQUEST: 0x25609513,
  /** Extended (32-byte) request header; only after NBD_OPT_EXTENDED_HEADERS, which we do not offer. */
  EXTENDED_REQUEST: 0x21e41c71,
  /** Simple reply (formerly NBD_REPLY_MAGIC). */
  SIMPLE_REPLY: 0x67446698,
  /** Structured reply chunk. */
  STRUCTURED_REPLY: 0x668e33ef,
  /** Extended reply chunk (extended headers). */
  EXTENDED_REPLY: 0x6e8a278c,
} as const;

/** Handshake flags, u16 sent by the server after IHAVEOPT (proto.md "Handshake flags"). */
export const NbdHandshakeFlag = {
  FIXED_NEWSTYLE: 1 << 0,
  NO_ZEROES: 1 << 1,
} as const;

/**
 * Client flags, u32 reply to the greeting (proto.md "Client flags"). Bits mirror the handshake flags;
 * the server MUST drop the connection on any other bit or on one it did not advertise.
 */
export const NbdClientFlag = {
  FIXED_NEWSTYLE: 1 << 0,
  NO_ZEROES: 1 << 1,
} as const;

/** Option numbers, `NBD_OPT_*` (proto.md "Option types"). */
export const NbdOpt = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  /** Withdrawn; never valid. */
  PEEK_EXPORT: 4,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
  /** Experimental (extension-ext-header branch, QEMU 8.2). */
  EXTENDED_HEADERS: 11,
} as const;

/** Bit 31 marks every option error reply type. */
export const NBD_REP_ERR_BIT = 0x80000000;

/** Option reply types, `NBD_REP_*` (proto.md "Option reply types"). Errors have bit 31 set. */
export const NbdRep = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: NBD_REP_ERR_BIT + 1,
  ERR_POLICY: NBD_REP_ERR_BIT + 2,
  ERR_INVALID: NBD_REP_ERR_BIT + 3,
  ERR_PLATFORM: NBD_REP_ERR_BIT + 4,
  ERR_TLS_REQD: NBD_REP_ERR_BIT + 5,
  ERR_UNKNOWN: NBD_REP_ERR_BIT + 6,
  ERR_SHUTDOWN: NBD_REP_ERR_BIT + 7,
  ERR_BLOCK_SIZE_REQD: NBD_REP_ERR_BIT + 8,
  ERR_TOO_BIG: NBD_REP_ERR_BIT + 9,
  /** Experimental (extended headers). */
  ERR_EXT_HEADER_REQD: NBD_REP_ERR_BIT + 10,
} as const;

/** Information types inside `NBD_REP_INFO` and in INFO/GO requests, `NBD_INFO_*` (proto.md "NBD_REP_INFO"). */
export const NbdInfo = {
  /** u64 size, u16 transmission flags; mandatory before ACK. */
  EXPORT: 0,
  NAME: 1,
  DESCRIPTION: 2,
  /** u32 minimum, u32 preferred, u32 maximum block size. */
  BLOCK_SIZE: 3,
} as const;

/** Transmission flags, u16 sent with the export, `NBD_FLAG_*` (proto.md "Transmission flags"). */
export const NbdTxFlag = {
  /** MUST always be set. */
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  /** Also exposes NBD_CMD_FLAG_NO_HOLE. */
  SEND_WRITE_ZEROES: 1 << 6,
  /** Only when structured replies were negotiated. */
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  /** Experimental (extension-resize). */
  SEND_RESIZE: 1 << 9,
  SEND_CACHE: 1 << 10,
  /** Only together with SEND_WRITE_ZEROES. */
  SEND_FAST_ZERO: 1 << 11,
  /** Experimental (extended headers). */
  BLOCK_STATUS_PAYLOAD: 1 << 12,
} as const;

/** Request types, `NBD_CMD_*` (proto.md "Request types"). */
export const NbdCmd = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
  /** Experimental (extension-resize); we treat it as unknown. */
  RESIZE: 8,
} as const;

/** Command flags, u16 in every request, `NBD_CMD_FLAG_*` (proto.md "Command flags"). */
export const NbdCmdFlag = {
  /** Any command, only if SEND_FUA was advertised. */
  FUA: 1 << 0,
  /** WRITE_ZEROES only. */
  NO_HOLE: 1 << 1,
  /** READ only, only if SEND_DF was advertised. */
  DF: 1 << 2,
  /** BLOCK_STATUS only. */
  REQ_ONE: 1 << 3,
  /** WRITE_ZEROES only, only if SEND_FAST_ZERO was advertised. */
  FAST_ZERO: 1 << 4,
  /** Extended headers only. */
  PAYLOAD_LEN: 1 << 5,
} as const;

/** Structured reply chunk flags, `NBD_REPLY_FLAG_*` (proto.md "Structured reply flags"). */
export const NbdReplyFlag = {
  DONE: 1 << 0,
} as const;

/** Bit 15 marks every structured error chunk type. */
export const NBD_REPLY_TYPE_ERR_BIT = 0x8000;

/** Structured reply chunk types, `NBD_REPLY_TYPE_*` (proto.md "Structured reply types"). */
export const NbdReplyType = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  /** Experimental (extended headers). */
  BLOCK_STATUS_EXT: 6,
  ERROR: NBD_REPLY_TYPE_ERR_BIT + 1,
  ERROR_OFFSET: NBD_REPLY_TYPE_ERR_BIT + 2,
} as const;

/** The one metadata context the spec defines (proto.md "The base: metadata namespace"). */
export const BASE_ALLOCATION_CONTEXT = 'base:allocation';

/** `base:allocation` status flags, `NBD_STATE_*`. Reporting 0 is always safe. */
export const NbdState = {
  HOLE: 1 << 0,
  ZERO: 1 << 1,
} as const;

/**
 * Error values for replies (proto.md "Error values"). Fixed numbers, not the host's errno.
 * EOVERFLOW only for DF reads, ENOTSUP only for FAST_ZERO, ENOMEM SHOULD NOT be used.
 */
export const NbdErrno = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

/** Fixed sizes of wire headers, in bytes. */
export const NbdHeaderSize = {
  /** NBDMAGIC + IHAVEOPT + u16 handshake flags. */
  GREETING: 18,
  CLIENT_FLAGS: 4,
  /** IHAVEOPT + u32 option + u32 length. */
  OPTION: 16,
  /** magic u64 + u32 option + u32 type + u32 length. */
  OPTION_REPLY: 20,
  /** magic + u16 flags + u16 type + u64 cookie + u64 offset + u32 length. */
  REQUEST: 28,
  /** magic + u32 error + u64 cookie. */
  SIMPLE_REPLY: 16,
  /** magic + u16 flags + u16 type + u64 cookie + u32 length. */
  STRUCTURED_REPLY: 20,
  /** Reserved zeroes after the NBD_OPT_EXPORT_NAME reply unless NO_ZEROES was negotiated. */
  EXPORT_NAME_ZERO_PADDING: 124,
} as const;

const KiB = 1024;
const MiB = 1024 * KiB;

/** Limits this codec enforces; all are policy choices within what the spec allows. */
export const NbdLimits = {
  /** Strings (names, queries, messages) MUST be ≤ 4096 bytes (proto.md "Conventions"). */
  MAX_STRING_BYTES: 4096,
  /**
   * Largest option payload we parse. Real options are a name (≤ 4096) plus a few info types or
   * meta-context queries; 64 KiB leaves ample room. Larger options are discarded and answered
   * with NBD_REP_ERR_TOO_BIG.
   */
  MAX_OPTION_DATA: 64 * KiB,
  /** Options larger than this are a denial of service: hard disconnect instead of discarding. */
  MAX_OPTION_DISCARD: 16 * MiB,
  /** Options per connection before we call it a denial of service and hard-disconnect. */
  MAX_OPTIONS: 256,
  /** Largest READ/WRITE payload. The spec says lengths below 2^25 SHOULD NOT be deemed DoS. */
  MAX_PAYLOAD: 32 * MiB,
  /**
   * Requests a connection may have running at once (QEMU uses up to 16, fio iodepth more); the
   * native lane stops reading while this many of its forwarded requests wait for JS.
   */
  MAX_IN_FLIGHT: 64,
  /** Oversized WRITE payloads up to this are discarded (stream stays in sync); beyond it we disconnect. */
  MAX_WRITE_DISCARD: 64 * MiB,
  /** DF reads up to this MUST be served unfragmented (proto.md NBD_CMD_READ). */
  MIN_DF_SUPPORTED: 64 * KiB,
  /** Largest minimum block size the spec allows. */
  MAX_MIN_BLOCK_SIZE: 64 * KiB,
  /** BLOCK_STATUS extents per chunk we should not exceed (reference doc: SHOULD ≤ 2^20). */
  MAX_EXTENTS_PER_CHUNK: 1 << 20,
  /** "No inherent limit" value of the maximum block size. */
  BLOCK_SIZE_UNLIMITED: 0xffffffff,
} as const;

type ValueOf<T> = T[keyof T];
export type NbdOptValue = ValueOf<typeof NbdOpt>;
export type NbdRepValue = ValueOf<typeof NbdRep>;
export type NbdInfoValue = ValueOf<typeof NbdInfo>;
export type NbdCmdValue = ValueOf<typeof NbdCmd>;
export type NbdReplyTypeValue = ValueOf<typeof NbdReplyType>;
export type NbdErrnoValue = ValueOf<typeof NbdErrno>;

/** True for reply types with bit 31 set (option errors). */
export function isOptionErrorReply(replyType: number): boolean {
  return (replyType & NBD_REP_ERR_BIT) !== 0;
}

/** Spec name of a command number, for logs ("NBD_CMD_READ", or "NBD_CMD_<n>" if unknown). */
export function commandName(type: number): string {
  for (const [name, value] of Object.entries(NbdCmd)) if (value === type) return `NBD_CMD_${name}`;
  return `NBD_CMD_${type}`;
}

/** Spec name of an option number, for logs ("NBD_OPT_GO", or "NBD_OPT_<n>" if unknown). */
export function optionName(option: number): string {
  for (const [name, value] of Object.entries(NbdOpt)) if (value === option) return `NBD_OPT_${name}`;
  return `NBD_OPT_${option}`;
}
