import { describe, expect, it } from 'vitest';
import { NbdCmd, NbdCmdFlag, NbdErrno, NbdReplyFlag, NbdReplyType, NbdState, NbdTxFlag } from '../../src/nbd/constants.js';
import { NbdProtocolError } from '../../src/nbd/errors.js';
import {
  RequestDecoder,
  encodeBlockStatusChunk,
  encodeErrorChunk,
  encodeErrorOffsetChunk,
  encodeNoneChunk,
  encodeOffsetDataHeader,
  encodeOffsetHoleChunk,
  encodeSimpleReply,
  encodeStructuredHeader,
  toNbdErrno,
  validateRequest,
  type NbdRequest,
  type RequestContext,
} from '../../src/nbd/transmission.js';

interface RequestSpec {
  type: number;
  flags?: number;
  cookie?: bigint;
  offset?: bigint;
  length?: number;
  payload?: Buffer;
}

function encodeRequest(spec: RequestSpec): Buffer {
  const header = Buffer.alloc(28);
  header.writeUInt32BE(0x25609513, 0);
  header.writeUInt16BE(spec.flags ?? 0, 4);
  header.writeUInt16BE(spec.type, 6);
  header.writeBigUInt64BE(spec.cookie ?? 0n, 8);
  header.writeBigUInt64BE(spec.offset ?? 0n, 16);
  header.writeUInt32BE(spec.length ?? spec.payload?.length ?? 0, 24);
  return spec.payload ? Buffer.concat([header, spec.payload]) : header;
}

function decodeAll(decoder: RequestDecoder): NbdRequest[] {
  return [...decoder.requests()];
}

/** Decode `stream` fed as the given chunks, returning what came out. */
function decodeChunks(chunks: Buffer[], options?: ConstructorParameters<typeof RequestDecoder>[0]): NbdRequest[] {
  const decoder = new RequestDecoder(options);
  const out: NbdRequest[] = [];
  for (const chunk of chunks) {
    decoder.push(chunk);
    out.push(...decodeAll(decoder));
  }
  expect(decoder.bufferedBytes).toBe(0);
  return out;
}

const pattern = (n: number, seed: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff));

describe('RequestDecoder', () => {
  const specs: RequestSpec[] = [
    { type: NbdCmd.READ, cookie: 1n, offset: 4096n, length: 512 },
    { type: NbdCmd.WRITE, flags: NbdCmdFlag.FUA, cookie: 0xffffffffffffffffn, offset: 0n, payload: pattern(37, 1) },
    { type: NbdCmd.WRITE, cookie: 3n, offset: 1n << 40n, payload: Buffer.alloc(0) },
    { type: NbdCmd.FLUSH, cookie: 4n },
    { type: NbdCmd.WRITE, cookie: 5n, offset: 512n, payload: pattern(5, 9) },
    { type: NbdCmd.BLOCK_STATUS, flags: NbdCmdFlag.REQ_ONE, cookie: 6n, offset: 0n, length: 0xffffffff },
    { type: NbdCmd.DISC, cookie: 7n },
  ];
  const expected: NbdRequest[] = specs.map((s) => ({
    type: s.type,
    flags: s.flags ?? 0,
    cookie: s.cookie ?? 0n,
    offset: s.offset ?? 0n,
    length: s.length ?? s.payload?.length ?? 0,
    ...(s.payload ? { payload: s.payload } : {}),
  }));
  const stream = Buffer.concat(specs.map(encodeRequest));

  it('decodes a whole stream in one chunk', () => {
    expect(decodeChunks([stream])).toEqual(expected);
  });

  it('decodes across every single split point', () => {
    for (let split = 0; split <= stream.length; split++) {
      expect(decodeChunks([stream.subarray(0, split), stream.subarray(split)])).toEqual(expected);
    }
  });

  it('decodes across every pair of split points', () => {
    for (let a = 0; a <= stream.length; a += 3) {
      for (let b = a; b <= stream.length; b += 5) {
        expect(decodeChunks([stream.subarray(0, a), stream.subarray(a, b), stream.subarray(b)])).toEqual(expected);
      }
    }
  });

  it('decodes 1-byte chunks', () => {
    expect(decodeChunks([...stream].map((b) => Buffer.from([b])))).toEqual(expected);
  });

  it('returns a zero-copy view when a payload lies in one chunk', () => {
    const chunk = encodeRequest({ type: NbdCmd.WRITE, payload: pattern(4096, 3) });
    const decoder = new RequestDecoder();
    decoder.push(chunk);
    const request = decoder.next();
    expect(request?.payload?.buffer).toBe(chunk.buffer);
    expect(request?.payload?.byteOffset).toBe(chunk.byteOffset + 28);
  });

  it('copies a payload that straddles chunks into a buffer of its own', () => {
    const whole = encodeRequest({ type: NbdCmd.WRITE, payload: pattern(100, 3) });
    const decoder = new RequestDecoder();
    decoder.push(whole.subarray(0, 60));
    expect(decoder.next()).toBeNull();
    decoder.push(whole.subarray(60));
    const payload = decoder.next()?.payload;
    expect(payload?.equals(pattern(100, 3))).toBe(true);
    expect(payload?.length).toBe(100);
  });

  it('transient input: decodes at every split, and nothing points into the caller buffer', () => {
    const decodeTransient = (parts: Buffer[]): NbdRequest[] => {
      const decoder = new RequestDecoder();
      const out: NbdRequest[] = [];
      for (const part of parts) {
        const scratch = Buffer.from(part); // the socket's reusable buffer
        decoder.push(scratch, true);
        scratch.fill(0xee); // the next read overwrites it
        out.push(...decodeAll(decoder));
      }
      expect(decoder.bufferedBytes).toBe(0);
      return out;
    };
    for (let split = 0; split <= stream.length; split++) {
      expect(decodeTransient([stream.subarray(0, split), stream.subarray(split)])).toEqual(expected);
    }
    expect(decodeTransient([...stream].map((b) => Buffer.from([b])))).toEqual(expected);
  });

  it('direct reads: the rest of a large payload is read straight into its own buffer', () => {
    const payload = pattern(100_000, 4);
    const whole = Buffer.concat([encodeRequest({ type: NbdCmd.WRITE, cookie: 9n, payload }), encodeRequest({ type: NbdCmd.FLUSH, cookie: 10n })]);
    const taken: Buffer[] = [];
    const decoder = new RequestDecoder({ allocate: (n) => (taken[taken.length] = Buffer.alloc(n)) });
    expect(decoder.directReadTarget()).toBeNull();
    decoder.push(whole.subarray(0, 28 + 1000), true);
    let target = decoder.directReadTarget();
    expect(target?.length).toBe(99_000);
    expect(target?.buffer).toBe(taken[0]!.buffer); // the payload buffer itself
    whole.copy(target!, 0, 1028, 1028 + 50_000);
    decoder.directReadDone(50_000);
    expect(decoder.next()).toBeNull();
    expect(decoder.bufferedBytes).toBe(28 + 51_000);
    target = decoder.directReadTarget();
    expect(target?.length).toBe(49_000);
    whole.copy(target!, 0, 51_028, 100_028);
    decoder.directReadDone(49_000);
    expect(decoder.directReadTarget()).toBeNull(); // the next header comes through the staging path
    decoder.push(whole.subarray(100_028), true);
    const got = decodeAll(decoder);
    expect(got.map((r) => r.cookie)).toEqual([9n, 10n]);
    expect(got[0]!.payload!.equals(payload)).toBe(true);
    expect(got[0]!.payloadAllocated).toBe(true);
    expect(decoder.bufferedBytes).toBe(0);
    expect(() => decoder.directReadDone(1)).toThrow(RangeError);
  });

  it('direct reads: small payload remainders keep arriving batched with their neighbours', () => {
    const decoder = new RequestDecoder();
    decoder.push(encodeRequest({ type: NbdCmd.WRITE, payload: pattern(4096, 1) }).subarray(0, 100), true);
    expect(decoder.directReadTarget()).toBeNull();
    expect(decoder.directReadTarget(1024)?.length).toBe(4096 - 72);
  });

  it('pulls nothing until asked (backpressure)', () => {
    const decoder = new RequestDecoder();
    decoder.push(stream);
    expect(decoder.bufferedBytes).toBe(stream.length);
    decoder.next();
    expect(decoder.bufferedBytes).toBe(stream.length - 28);
  });

  describe('oversized WRITE payloads', () => {
    const options = { maxPayload: 16, maxDiscard: 64 };
    const oversized = encodeRequest({ type: NbdCmd.WRITE, cookie: 10n, offset: 0n, payload: pattern(40, 5) });
    const after = encodeRequest({ type: NbdCmd.WRITE, cookie: 11n, offset: 0n, payload: pattern(16, 6) });
    const last = encodeRequest({ type: NbdCmd.READ, cookie: 12n, length: 4 });
    const overStream = Buffer.concat([oversized, after, last]);
    const overExpected: NbdRequest[] = [
      { type: NbdCmd.WRITE, flags: 0, cookie: 10n, offset: 0n, length: 40, payloadDiscarded: true },
      { type: NbdCmd.WRITE, flags: 0, cookie: 11n, offset: 0n, length: 16, payload: pattern(16, 6) },
      { type: NbdCmd.READ, flags: 0, cookie: 12n, offset: 0n, length: 4 },
    ];

    it('discards the payload, marks the request and keeps the stream in sync at every split', () => {
      for (let split = 0; split <= overStream.length; split++) {
        expect(decodeChunks([overStream.subarray(0, split), overStream.subarray(split)], options)).toEqual(overExpected);
      }
      expect(decodeChunks([...overStream].map((b) => Buffer.from([b])), options)).toEqual(overExpected);
    });

    it('emits the marked request only after the payload is drained, without buffering it', () => {
      const decoder = new RequestDecoder(options);
      decoder.push(oversized.subarray(0, 28 + 10));
      expect(decoder.next()).toBeNull();
      expect(decoder.bufferedBytes).toBe(0);
      decoder.push(oversized.subarray(38, 60));
      expect(decoder.bufferedBytes).toBe(0);
      expect(decoder.next()).toBeNull();
      decoder.push(oversized.subarray(60));
      expect(decoder.next()?.payloadDiscarded).toBe(true);
    });

    it('is fatal beyond the discard limit', () => {
      const decoder = new RequestDecoder(options);
      decoder.push(encodeRequest({ type: NbdCmd.WRITE, length: 65 }));
      expect(() => decoder.next()).toThrow(NbdProtocolError);
      expect(() => decoder.next()).toThrow(/65 bytes/);
    });

    it('validates its limits', () => {
      expect(() => new RequestDecoder({ maxPayload: 10, maxDiscard: 5 })).toThrow(RangeError);
    });
  });

  it('returns earlier requests, then fails for good on bad magic', () => {
    const bad = Buffer.concat([encodeRequest({ type: NbdCmd.FLUSH, cookie: 1n }), Buffer.alloc(28, 0xee)]);
    const decoder = new RequestDecoder();
    decoder.push(bad);
    expect(decoder.next()?.cookie).toBe(1n);
    for (let i = 0; i < 2; i++) {
      try {
        decoder.next();
        expect.unreachable();
      } catch (err) {
        expect(err).toBeInstanceOf(NbdProtocolError);
        expect((err as NbdProtocolError).code).toBe('NBD_BAD_MAGIC');
      }
    }
  });

  it('names the extended request magic', () => {
    const header = encodeRequest({ type: NbdCmd.READ });
    header.writeUInt32BE(0x21e41c71, 0);
    const decoder = new RequestDecoder();
    decoder.push(header);
    expect(() => decoder.next()).toThrow(/extended header/);
  });
});

describe('reply encoders', () => {
  const COOKIE = 0x0102030405060708n;
  const C = '0102030405060708';
  const SR = '668e33ef';

  it('simple reply', () => {
    expect(encodeSimpleReply(COOKIE, 0).toString('hex')).toBe('67446698' + '00000000' + C);
    expect(encodeSimpleReply(COOKIE, NbdErrno.ENOSPC).toString('hex')).toBe('67446698' + '0000001c' + C);
  });

  it('structured header', () => {
    expect(encodeStructuredHeader(NbdReplyFlag.DONE, NbdReplyType.BLOCK_STATUS, COOKIE, 12).toString('hex')).toBe(
      SR + '0001' + '0005' + C + '0000000c',
    );
  });

  it('OFFSET_DATA header includes the offset and counts it in the length', () => {
    expect(encodeOffsetDataHeader(0, COOKIE, 0x1000n, 512).toString('hex')).toBe(SR + '0000' + '0001' + C + '00000208' + '0000000000001000');
    expect(() => encodeOffsetDataHeader(0, COOKIE, 0n, 0)).toThrow(RangeError);
    expect(() => encodeOffsetDataHeader(0, COOKIE, 0n, 0xffffffff - 7)).toThrow(RangeError);
  });

  it('OFFSET_HOLE', () => {
    expect(encodeOffsetHoleChunk(NbdReplyFlag.DONE, COOKIE, 0x200n, 0x10000).toString('hex')).toBe(
      SR + '0001' + '0002' + C + '0000000c' + '0000000000000200' + '00010000',
    );
    expect(() => encodeOffsetHoleChunk(0, COOKIE, 0n, 0)).toThrow(RangeError);
  });

  it('NONE', () => {
    expect(encodeNoneChunk(COOKIE).toString('hex')).toBe(SR + '0001' + '0000' + C + '00000000');
  });

  it('ERROR', () => {
    expect(encodeErrorChunk(NbdReplyFlag.DONE, COOKIE, NbdErrno.EINVAL, 'bad').toString('hex')).toBe(
      SR + '0001' + '8001' + C + '00000009' + '00000016' + '0003' + '626164',
    );
    expect(encodeErrorChunk(NbdReplyFlag.DONE, COOKIE, NbdErrno.EIO, '').toString('hex')).toBe(
      SR + '0001' + '8001' + C + '00000006' + '00000005' + '0000',
    );
    expect(() => encodeErrorChunk(0, COOKIE, 0, 'x')).toThrow(RangeError);
  });

  it('ERROR truncates long messages on a UTF-8 boundary and drops NULs', () => {
    const chunk = encodeErrorChunk(NbdReplyFlag.DONE, COOKIE, NbdErrno.EIO, 'é'.repeat(3000));
    const messageLength = chunk.readUInt16BE(24);
    expect(messageLength).toBe(4096);
    expect(chunk.readUInt32BE(16)).toBe(6 + 4096);
    expect(chunk.subarray(26).toString('utf8')).toBe('é'.repeat(2048));

    // '€' is 3 bytes; after 'ab' the 4096-byte cut lands mid-character and must back off to 4094.
    const straddling = encodeErrorChunk(0, COOKIE, NbdErrno.EIO, 'ab' + '€'.repeat(2000));
    expect(straddling.readUInt16BE(24)).toBe(4094);
    expect(straddling.subarray(26).toString('utf8')).toBe('ab' + '€'.repeat(1364));

    expect(encodeErrorChunk(0, COOKIE, NbdErrno.EIO, 'a\0b').subarray(26).toString()).toBe('ab');
  });

  it('ERROR_OFFSET', () => {
    expect(encodeErrorOffsetChunk(0, COOKIE, NbdErrno.EIO, 'x', 0x400n).toString('hex')).toBe(
      SR + '0000' + '8002' + C + '0000000f' + '00000005' + '0001' + '78' + '0000000000000400',
    );
  });

  it('BLOCK_STATUS', () => {
    const chunk = encodeBlockStatusChunk(NbdReplyFlag.DONE, COOKIE, 1, [
      { length: 0x10000, flags: 0 },
      { length: 0x200, flags: NbdState.HOLE | NbdState.ZERO },
    ]);
    expect(chunk.toString('hex')).toBe(SR + '0001' + '0005' + C + '00000014' + '00000001' + '00010000' + '00000000' + '00000200' + '00000003');
    expect(() => encodeBlockStatusChunk(0, COOKIE, 1, [])).toThrow(RangeError);
    expect(() => encodeBlockStatusChunk(0, COOKIE, 1, [{ length: 0, flags: 0 }])).toThrow(RangeError);
  });
});

describe('validateRequest', () => {
  const MiB = 1024 * 1024;
  const allTx =
    NbdTxFlag.HAS_FLAGS |
    NbdTxFlag.SEND_FLUSH |
    NbdTxFlag.SEND_FUA |
    NbdTxFlag.SEND_TRIM |
    NbdTxFlag.SEND_WRITE_ZEROES |
    NbdTxFlag.SEND_DF |
    NbdTxFlag.SEND_CACHE |
    NbdTxFlag.SEND_FAST_ZERO;
  const base: RequestContext = {
    exportSize: 64n * BigInt(MiB),
    txFlags: allTx,
    structuredReplies: true,
    metaContextIds: new Set([1]),
    minBlock: 512,
    maxPayload: 32 * MiB,
    readOnly: false,
  };
  const req = (type: number, offset: bigint | number, length: number, flags = 0, extra: Partial<NbdRequest> = {}): NbdRequest => ({
    type,
    flags,
    cookie: 1n,
    offset: BigInt(offset),
    length,
    ...extra,
  });
  const end = base.exportSize;
  const { READ, WRITE, DISC, FLUSH, TRIM, CACHE, WRITE_ZEROES, BLOCK_STATUS } = NbdCmd;
  const { FUA, NO_HOLE, DF, REQ_ONE, FAST_ZERO } = NbdCmdFlag;
  const { EINVAL, ENOSPC, EPERM } = NbdErrno;

  const cases: [string, NbdRequest, Partial<RequestContext>, number | null][] = [
    // accepted
    ['read', req(READ, 0, 4096), {}, null],
    ['write', req(WRITE, 512, 1024), {}, null],
    ['read up to the end', req(READ, end - 512n, 512), {}, null],
    ['zero-length read', req(READ, 0, 0), {}, null],
    ['zero-length write at the end', req(WRITE, end, 0), {}, null],
    ['flush', req(FLUSH, 0, 0), {}, null],
    ['disc', req(DISC, 0, 0), {}, null],
    ['trim', req(TRIM, 0, 1024), {}, null],
    ['huge trim beyond maxPayload', req(TRIM, 0, 64 * MiB), {}, null],
    ['huge write zeroes beyond maxPayload', req(WRITE_ZEROES, 0, 64 * MiB), {}, null],
    ['cache', req(CACHE, 0, 4096), {}, null],
    ['write zeroes with NO_HOLE|FAST_ZERO|FUA', req(WRITE_ZEROES, 0, 512, NO_HOLE | FAST_ZERO | FUA), {}, null],
    ['FUA on read (clients do this)', req(READ, 0, 512, FUA), {}, null],
    ['FUA on flush', req(FLUSH, 0, 0, FUA), {}, null],
    ['DF read', req(READ, 0, 512, DF), {}, null],
    ['block status REQ_ONE', req(BLOCK_STATUS, 0, 512, REQ_ONE), {}, null],
    ['read of exactly maxPayload', req(READ, 0, 32 * MiB), {}, null],
    ['unaligned read with minBlock 1', req(READ, 1, 3), { minBlock: 1 }, null],
    ['read on read-only export', req(READ, 0, 512), { readOnly: true }, null],
    // unknown commands and flags
    ['unknown command 8 (RESIZE)', req(8, 0, 0), {}, EINVAL],
    ['unknown command 0xffff', req(0xffff, 0, 0), {}, EINVAL],
    ['unknown flag bit 5 (PAYLOAD_LEN)', req(READ, 0, 512, 1 << 5), {}, EINVAL],
    ['unknown flag bit 15', req(WRITE, 0, 512, 0x8000), {}, EINVAL],
    ['FUA not advertised', req(WRITE, 0, 512, FUA), { txFlags: allTx & ~NbdTxFlag.SEND_FUA }, EINVAL],
    ['NO_HOLE on write', req(WRITE, 0, 512, NO_HOLE), {}, EINVAL],
    ['NO_HOLE on trim', req(TRIM, 0, 512, NO_HOLE), {}, EINVAL],
    ['FAST_ZERO on write', req(WRITE, 0, 512, FAST_ZERO), {}, EINVAL],
    ['FAST_ZERO not advertised', req(WRITE_ZEROES, 0, 512, FAST_ZERO), { txFlags: allTx & ~NbdTxFlag.SEND_FAST_ZERO }, EINVAL],
    ['DF on write', req(WRITE, 0, 512, DF), {}, EINVAL],
    ['DF not advertised', req(READ, 0, 512, DF), { txFlags: allTx & ~NbdTxFlag.SEND_DF }, EINVAL],
    ['DF without structured replies', req(READ, 0, 512, DF), { structuredReplies: false }, EINVAL],
    ['REQ_ONE on read', req(READ, 0, 512, REQ_ONE), {}, EINVAL],
    // read-only export
    ['write on read-only', req(WRITE, 0, 512), { readOnly: true }, EPERM],
    ['trim on read-only', req(TRIM, 0, 512), { readOnly: true }, EPERM],
    ['write zeroes on read-only', req(WRITE_ZEROES, 0, 512), { readOnly: true }, EPERM],
    ['write with READ_ONLY tx flag', req(WRITE, 0, 512), { txFlags: allTx | NbdTxFlag.READ_ONLY }, EPERM],
    ['trim on read-only that never advertised trim', req(TRIM, 0, 512), { readOnly: true, txFlags: NbdTxFlag.HAS_FLAGS }, EPERM],
    ['zero-length write on read-only', req(WRITE, 0, 0), { readOnly: true }, EPERM],
    // commands not advertised / not negotiated
    ['flush not advertised', req(FLUSH, 0, 0), { txFlags: allTx & ~NbdTxFlag.SEND_FLUSH }, EINVAL],
    ['trim not advertised', req(TRIM, 0, 512), { txFlags: allTx & ~NbdTxFlag.SEND_TRIM }, EINVAL],
    ['write zeroes not advertised', req(WRITE_ZEROES, 0, 512), { txFlags: allTx & ~NbdTxFlag.SEND_WRITE_ZEROES }, EINVAL],
    ['cache not advertised', req(CACHE, 0, 512), { txFlags: allTx & ~NbdTxFlag.SEND_CACHE }, EINVAL],
    ['block status without contexts', req(BLOCK_STATUS, 0, 512), { metaContextIds: new Set() }, EINVAL],
    ['block status without structured replies', req(BLOCK_STATUS, 0, 512), { structuredReplies: false }, EINVAL],
    ['zero-length block status', req(BLOCK_STATUS, 0, 0), {}, EINVAL],
    // reserved offset/length
    ['flush with offset', req(FLUSH, 512, 0), {}, EINVAL],
    ['flush with length', req(FLUSH, 0, 512), {}, EINVAL],
    ['disc with length', req(DISC, 0, 1), {}, EINVAL],
    // bounds
    ['read past the end', req(READ, end - 512n, 1024), {}, EINVAL],
    ['read starting past the end', req(READ, end + 512n, 0), {}, EINVAL],
    ['read at max u64 offset', req(READ, 0xfffffffffffffe00n, 512), {}, EINVAL],
    ['write past the end', req(WRITE, end, 512), {}, ENOSPC],
    ['write zeroes past the end', req(WRITE_ZEROES, end - 512n, 1024), {}, ENOSPC],
    ['trim past the end', req(TRIM, end, 512), {}, EINVAL],
    ['cache past the end', req(CACHE, end, 512), {}, EINVAL],
    ['block status past the end', req(BLOCK_STATUS, end, 512), {}, EINVAL],
    // alignment
    ['unaligned read offset', req(READ, 1, 512), {}, EINVAL],
    ['unaligned read length', req(READ, 0, 513), {}, EINVAL],
    ['unaligned write', req(WRITE, 256, 512), {}, EINVAL],
    ['unaligned trim', req(TRIM, 0, 100), {}, EINVAL],
    ['unaligned write zeroes', req(WRITE_ZEROES, 4096, 4097), {}, EINVAL],
    ['unaligned block status', req(BLOCK_STATUS, 100, 512), {}, EINVAL],
    ['4096-aligned context rejects 512 I/O', req(READ, 512, 512), { minBlock: 4096 }, EINVAL],
    ['unaligned length ≥ 2^31', req(TRIM, 0, 0x80000001), { exportSize: 1n << 40n }, EINVAL],
    // size limits
    ['read above maxPayload', req(READ, 0, 32 * MiB + 512), {}, EINVAL],
    ['DF read above maxPayload', req(READ, 0, 32 * MiB + 512, DF), {}, EINVAL],
    ['write above maxPayload', req(WRITE, 0, 32 * MiB + 512), {}, EINVAL],
    ['cache above maxPayload', req(CACHE, 0, 32 * MiB + 512), {}, EINVAL],
    ['write whose payload was discarded', req(WRITE, 0, 1024, 0, { payloadDiscarded: true }), { maxPayload: 512 }, EINVAL],
  ];

  it.each(cases)('%s', (_label, request, overrides, errno) => {
    const result = validateRequest(request, { ...base, ...overrides });
    if (errno === null) {
      expect(result).toBeNull();
    } else {
      expect(result?.errno).toBe(errno);
      expect(result?.message).toMatch(/\S/);
    }
  });
});

describe('toNbdErrno', () => {
  const sys = (code: string): Error => Object.assign(new Error(code), { code });

  it.each<[string, unknown, number]>([
    ['EIO', sys('EIO'), NbdErrno.EIO],
    ['ENOSPC', sys('ENOSPC'), NbdErrno.ENOSPC],
    ['EDQUOT', sys('EDQUOT'), NbdErrno.ENOSPC],
    ['EFBIG', sys('EFBIG'), NbdErrno.ENOSPC],
    ['EROFS', sys('EROFS'), NbdErrno.EPERM],
    ['EACCES', sys('EACCES'), NbdErrno.EPERM],
    ['EPERM', sys('EPERM'), NbdErrno.EPERM],
    ['ENOMEM', sys('ENOMEM'), NbdErrno.ENOMEM],
    ['EINVAL', sys('EINVAL'), NbdErrno.EINVAL],
    ['ENOTSUP outside FAST_ZERO', sys('ENOTSUP'), NbdErrno.EINVAL],
    ['EOPNOTSUPP outside FAST_ZERO', sys('EOPNOTSUPP'), NbdErrno.EINVAL],
    ['EOVERFLOW outside DF', sys('EOVERFLOW'), NbdErrno.EINVAL],
    ['ESHUTDOWN', sys('ESHUTDOWN'), NbdErrno.ESHUTDOWN],
    ['AbortError', Object.assign(new Error('aborted'), { name: 'AbortError', code: 'ABORT_ERR' }), NbdErrno.ESHUTDOWN],
    ['unknown code', sys('ENOENT'), NbdErrno.EIO],
    ['no code', new Error('boom'), NbdErrno.EIO],
    ['numeric code', { code: 5 }, NbdErrno.EIO],
    ['string', 'EIO', NbdErrno.EIO],
    ['undefined', undefined, NbdErrno.EIO],
    ['null', null, NbdErrno.EIO],
    ['explicit nbdErrno', Object.assign(new Error('ro'), { code: 'VOLUME_READ_ONLY', nbdErrno: NbdErrno.EPERM }), NbdErrno.EPERM],
    ['explicit nbdErrno wins over code', Object.assign(sys('EIO'), { nbdErrno: NbdErrno.ENOSPC }), NbdErrno.ENOSPC],
    ['invalid explicit nbdErrno falls back to code', Object.assign(sys('ENOSPC'), { nbdErrno: 2 }), NbdErrno.ENOSPC],
  ])('%s', (_label, err, expected) => {
    expect(toNbdErrno(err)).toBe(expected);
  });

  it('keeps ENOTSUP for FAST_ZERO and EOVERFLOW for DF', () => {
    expect(toNbdErrno(sys('ENOTSUP'), { fastZero: true })).toBe(NbdErrno.ENOTSUP);
    expect(toNbdErrno(sys('EOPNOTSUPP'), { fastZero: true })).toBe(NbdErrno.ENOTSUP);
    expect(toNbdErrno(sys('EOVERFLOW'), { df: true })).toBe(NbdErrno.EOVERFLOW);
    expect(toNbdErrno({ nbdErrno: NbdErrno.ENOTSUP })).toBe(NbdErrno.EINVAL);
  });
});
