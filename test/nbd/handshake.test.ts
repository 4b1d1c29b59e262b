import { describe, expect, it } from 'vitest';
import { NbdHandshakeFlag, NbdInfo, NbdOpt, NbdRep, NbdTxFlag } from '../../src/nbd/constants.js';
import { NbdOptionError, NbdProtocolError } from '../../src/nbd/errors.js';
import {
  HandshakeReader,
  encodeAck,
  encodeExportNameReply,
  encodeInfoBlockSize,
  encodeInfoDescription,
  encodeInfoExport,
  encodeInfoName,
  encodeMetaContextReply,
  encodeOptionError,
  encodeOptionReply,
  encodeServerGreeting,
  encodeServerReply,
  parseClientFlags,
  parseEmptyOption,
  parseExportNameData,
  parseInfoRequest,
  parseMetaContextRequest,
  type ClientOption,
} from '../../src/nbd/handshake.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const u16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
};
const IHAVEOPT = hex('49484156454f5054');
const option = (opt: number, data: Buffer = Buffer.alloc(0)): Buffer => Buffer.concat([IHAVEOPT, u32(opt), u32(data.length), data]);
const infoData = (name: string, types: number[]): Buffer =>
  Buffer.concat([u32(Buffer.byteLength(name)), Buffer.from(name), u16(types.length), ...types.map(u16)]);
const metaData = (name: string, queries: string[]): Buffer =>
  Buffer.concat([
    u32(Buffer.byteLength(name)),
    Buffer.from(name),
    u32(queries.length),
    ...queries.flatMap((q) => [u32(Buffer.byteLength(q)), Buffer.from(q)]),
  ]);

function expectProtocolError(fn: () => unknown, code: string): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(NbdProtocolError);
    expect((err as NbdProtocolError).code).toBe(code);
    return;
  }
  throw new Error(`expected NbdProtocolError ${code}`);
}

function expectOptionError(fn: () => unknown, pattern: RegExp): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(NbdOptionError);
    expect((err as NbdOptionError).code).toBe('NBD_OPTION_INVALID');
    expect((err as NbdOptionError).replyType).toBe(NbdRep.ERR_INVALID);
    expect((err as Error).message).toMatch(pattern);
    return;
  }
  throw new Error('expected NbdOptionError');
}

describe('greeting and client flags', () => {
  it('encodes NBDMAGIC, IHAVEOPT and FIXED_NEWSTYLE|NO_ZEROES', () => {
    expect(encodeServerGreeting().toString('hex')).toBe('4e42444d41474943' + '49484156454f5054' + '0003');
  });

  it.each([
    [0, { fixedNewstyle: false, noZeroes: false }],
    [1, { fixedNewstyle: true, noZeroes: false }],
    [3, { fixedNewstyle: true, noZeroes: true }],
  ])('parses client flags %i', (flags, expected) => {
    expect(parseClientFlags(u32(flags))).toEqual(expected);
  });

  it.each([4, 0x80000000, 0xffffffff])('rejects unknown client flags 0x%s', (flags) => {
    expectProtocolError(() => parseClientFlags(u32(flags)), 'NBD_BAD_CLIENT_FLAGS');
  });

  it('rejects a client flag the server did not advertise', () => {
    expectProtocolError(() => parseClientFlags(u32(3), NbdHandshakeFlag.FIXED_NEWSTYLE), 'NBD_BAD_CLIENT_FLAGS');
    expect(parseClientFlags(u32(1), NbdHandshakeFlag.FIXED_NEWSTYLE).fixedNewstyle).toBe(true);
  });
});

describe('HandshakeReader', () => {
  const drainOptions = (reader: HandshakeReader): ClientOption[] => {
    const out: ClientOption[] = [];
    for (let o = reader.nextOption(); o !== null; o = reader.nextOption()) out.push(o);
    return out;
  };

  const stream = Buffer.concat([
    u32(3),
    option(NbdOpt.STRUCTURED_REPLY),
    option(NbdOpt.GO, infoData('vol1', [NbdInfo.BLOCK_SIZE])),
    hex('25609513'), // pipelined transmission bytes
  ]);
  const expected: ClientOption[] = [
    { kind: 'option', option: NbdOpt.STRUCTURED_REPLY, data: Buffer.alloc(0) },
    { kind: 'option', option: NbdOpt.GO, data: infoData('vol1', [NbdInfo.BLOCK_SIZE]) },
  ];

  it('reads flags then options at every split point, leaving later bytes untouched', () => {
    for (let split = 0; split <= stream.length; split++) {
      const reader = new HandshakeReader();
      reader.push(stream.subarray(0, split));
      const options: ClientOption[] = [];
      let flags = reader.readClientFlags();
      if (flags !== null) options.push(...drainOptions(reader));
      reader.push(stream.subarray(split));
      flags ??= reader.readClientFlags();
      expect(flags).toEqual({ fixedNewstyle: true, noZeroes: true });
      options.push(...drainOptions(reader));
      expect(options).toEqual(expected);
      expect(Buffer.concat(reader.takeRemaining()).toString('hex')).toBe('25609513');
    }
  });

  it('reads a byte-at-a-time stream', () => {
    const reader = new HandshakeReader();
    const options: ClientOption[] = [];
    let flagsRead = false;
    for (const byte of stream) {
      reader.push(Buffer.from([byte]));
      if (!flagsRead) flagsRead = reader.readClientFlags() !== null;
      if (flagsRead) options.push(...drainOptions(reader));
    }
    expect(options).toEqual(expected);
  });

  it('returns null for a truncated option', () => {
    const reader = new HandshakeReader();
    reader.push(u32(1));
    reader.readClientFlags();
    const full = option(NbdOpt.INFO, infoData('x', []));
    reader.push(full.subarray(0, full.length - 1));
    expect(reader.nextOption()).toBeNull();
    expect(reader.nextOption()).toBeNull();
    reader.push(full.subarray(full.length - 1));
    expect(reader.nextOption()).toEqual({ kind: 'option', option: NbdOpt.INFO, data: infoData('x', []) });
  });

  it('fails on bad option magic', () => {
    const reader = new HandshakeReader();
    reader.push(Buffer.concat([u32(1), hex('4e42444d41474943'), u32(NbdOpt.LIST), u32(0)]));
    reader.readClientFlags();
    expectProtocolError(() => reader.nextOption(), 'NBD_BAD_MAGIC');
  });

  it('discards an oversized option and stays in sync', () => {
    const reader = new HandshakeReader({ maxOptionData: 8, maxOptionDiscard: 100 });
    reader.push(u32(1));
    reader.readClientFlags();
    const big = option(NbdOpt.EXPORT_NAME, Buffer.alloc(50, 0x61));
    const next = option(NbdOpt.ABORT);
    const all = Buffer.concat([big, next]);
    const seen: ClientOption[] = [];
    for (let i = 0; i < all.length; i += 7) {
      reader.push(all.subarray(i, i + 7));
      seen.push(...drainOptions(reader));
      // Discarded bytes are dropped as they arrive, never buffered beyond one header.
      expect(reader.bufferedBytes).toBeLessThan(16);
    }
    expect(seen).toEqual([
      { kind: 'oversized', option: NbdOpt.EXPORT_NAME, length: 50 },
      { kind: 'option', option: NbdOpt.ABORT, data: Buffer.alloc(0) },
    ]);
  });

  it('fails on an option longer than the discard limit', () => {
    const reader = new HandshakeReader({ maxOptionData: 8, maxOptionDiscard: 100 });
    reader.push(Buffer.concat([u32(1), IHAVEOPT, u32(NbdOpt.GO), u32(101)]));
    reader.readClientFlags();
    expectProtocolError(() => reader.nextOption(), 'NBD_OPTION_TOO_LARGE');
  });

  it('fails after too many options', () => {
    const reader = new HandshakeReader({ maxOptions: 3 });
    reader.push(Buffer.concat([u32(1), ...Array.from({ length: 4 }, () => option(NbdOpt.LIST))]));
    reader.readClientFlags();
    for (let i = 0; i < 3; i++) expect(reader.nextOption()?.kind).toBe('option');
    expect(reader.optionsRead).toBe(3);
    expectProtocolError(() => reader.nextOption(), 'NBD_TOO_MANY_OPTIONS');
  });

  it('rejects out-of-order use', () => {
    const reader = new HandshakeReader();
    expectProtocolError(() => reader.nextOption(), 'NBD_DECODER_STATE');
    reader.push(u32(0));
    reader.readClientFlags();
    expectProtocolError(() => reader.readClientFlags(), 'NBD_DECODER_STATE');
    reader.push(option(NbdOpt.GO, infoData('abc', [])).subarray(0, 18));
    expect(reader.nextOption()).toBeNull();
    expectProtocolError(() => reader.takeRemaining(), 'NBD_DECODER_STATE');
  });

  it('validates its limits', () => {
    expect(() => new HandshakeReader({ maxOptionData: 10, maxOptionDiscard: 5 })).toThrow(RangeError);
  });
});

describe('option payload parsers', () => {
  it('accepts empty data only for data-less options', () => {
    expect(() => parseEmptyOption(NbdOpt.LIST, Buffer.alloc(0))).not.toThrow();
    expectOptionError(() => parseEmptyOption(NbdOpt.LIST, Buffer.from('x')), /NBD_OPT_LIST must not carry data/);
    expectOptionError(() => parseEmptyOption(NbdOpt.STRUCTURED_REPLY, Buffer.alloc(4)), /STRUCTURED_REPLY/);
  });

  it('parses EXPORT_NAME', () => {
    expect(parseExportNameData(Buffer.from('vol-é'))).toBe('vol-é');
    expect(parseExportNameData(Buffer.alloc(0))).toBe('');
    expectOptionError(() => parseExportNameData(Buffer.from('a\0b')), /NUL/);
    expectOptionError(() => parseExportNameData(hex('c3')), /UTF-8/);
    expectOptionError(() => parseExportNameData(Buffer.alloc(4097, 0x61)), /4097 bytes/);
    expect(parseExportNameData(Buffer.alloc(4096, 0x61))).toHaveLength(4096);
  });

  describe('INFO/GO', () => {
    it('parses name and info types, dropping duplicates', () => {
      expect(parseInfoRequest(NbdOpt.GO, infoData('vol1', [3, 1, 3, 77]))).toEqual({ name: 'vol1', infoTypes: [3, 1, 77] });
      expect(parseInfoRequest(NbdOpt.INFO, infoData('', []))).toEqual({ name: '', infoTypes: [] });
    });

    it.each<[string, Buffer, RegExp]>([
      ['shorter than 6 bytes', hex('0000000000'), /at least 6/],
      ['name length overruns the option', Buffer.concat([u32(5), Buffer.from('abcd'), u16(0)]), /name length 5 overruns/],
      ['name length 0xffffffff', Buffer.concat([u32(0xffffffff), u16(0)]), /overruns/],
      ['odd number of info bytes', Buffer.concat([infoData('a', [1]), hex('00')]), /announces 1 info requests but carries 3/],
      ['count larger than list', Buffer.concat([u32(1), Buffer.from('a'), u16(2), u16(1)]), /announces 2 .* carries 2/],
      ['count smaller than list', Buffer.concat([u32(1), Buffer.from('a'), u16(0), u16(1)]), /announces 0/],
      ['name with NUL', infoData('a\0', []), /NUL/],
      ['name not UTF-8', Buffer.concat([u32(1), hex('ff'), u16(0)]), /UTF-8/],
      ['name over 4096 bytes', infoData('x'.repeat(4097), []), /4097 bytes/],
    ])('rejects %s', (_label, data, pattern) => {
      expectOptionError(() => parseInfoRequest(NbdOpt.GO, data), pattern);
    });
  });

  describe('LIST/SET_META_CONTEXT', () => {
    it('parses export name and queries', () => {
      expect(parseMetaContextRequest(NbdOpt.SET_META_CONTEXT, metaData('vol1', ['base:allocation', 'qemu:']))).toEqual({
        exportName: 'vol1',
        queries: ['base:allocation', 'qemu:'],
      });
      expect(parseMetaContextRequest(NbdOpt.LIST_META_CONTEXT, metaData('', []))).toEqual({ exportName: '', queries: [] });
      expect(parseMetaContextRequest(NbdOpt.LIST_META_CONTEXT, metaData('v', ['']))).toEqual({ exportName: 'v', queries: [''] });
    });

    const good = metaData('vol1', ['base:allocation']);
    it.each<[string, Buffer, RegExp]>([
      ['empty data', Buffer.alloc(0), /truncated before export name length/],
      ['name overrun', Buffer.concat([u32(10), Buffer.from('vol1')]), /export name length 10 overruns/],
      ['missing query count', Buffer.concat([u32(4), Buffer.from('vol1')]), /truncated before query count/],
      ['absurd query count', Buffer.concat([u32(0), u32(0xffffffff)]), /announces 4294967295 queries/],
      ['query length overrun', Buffer.concat([u32(0), u32(1), u32(20), Buffer.from('base:')]), /query length 20 overruns/],
      ['truncated query length', Buffer.concat([u32(0), u32(2), u32(0), hex('0000')]), /announces 2 queries|truncated before query length/],
      ['trailing bytes', Buffer.concat([good, hex('00')]), /1 trailing bytes/],
      ['query with NUL', metaData('v', ['base:\0']), /query contains a NUL/],
      ['every truncation of a good request', good.subarray(0, good.length - 3), /overruns/],
    ])('rejects %s', (_label, data, pattern) => {
      expectOptionError(() => parseMetaContextRequest(NbdOpt.SET_META_CONTEXT, data), pattern);
    });

    it('rejects every strict prefix of a valid request', () => {
      for (let n = 0; n < good.length; n++) {
        expect(() => parseMetaContextRequest(NbdOpt.LIST_META_CONTEXT, good.subarray(0, n))).toThrow(NbdOptionError);
      }
    });
  });
});

describe('option reply encoders', () => {
  const MAGIC = '0003e889045565a9';

  it('ACK', () => {
    expect(encodeAck(NbdOpt.ABORT).toString('hex')).toBe(MAGIC + '00000002' + '00000001' + '00000000');
  });

  it('generic reply with data', () => {
    expect(encodeOptionReply(7, 3, hex('abcd')).toString('hex')).toBe(MAGIC + '00000007' + '00000003' + '00000002' + 'abcd');
  });

  it('error with message', () => {
    expect(encodeOptionError(NbdOpt.GO, NbdRep.ERR_UNKNOWN, 'no').toString('hex')).toBe(
      MAGIC + '00000007' + '80000006' + '00000002' + '6e6f',
    );
    expect(encodeOptionError(NbdOpt.LIST, NbdRep.ERR_INVALID).toString('hex')).toBe(MAGIC + '00000003' + '80000003' + '00000000');
    expect(() => encodeOptionError(NbdOpt.LIST, NbdRep.ACK, 'x')).toThrow(RangeError);
  });

  it('error messages are cut to 4096 bytes on a UTF-8 boundary', () => {
    const reply = encodeOptionError(NbdOpt.GO, NbdRep.ERR_POLICY, 'a'.repeat(4095) + '€€');
    expect(reply.readUInt32BE(16)).toBe(4095);
    expect(reply.subarray(20).toString('utf8')).toBe('a'.repeat(4095));
  });

  it('REP_SERVER', () => {
    expect(encodeServerReply('vol1').toString('hex')).toBe(MAGIC + '00000003' + '00000002' + '00000008' + '00000004' + '766f6c31');
    expect(encodeServerReply('v', 'd').toString('hex')).toBe(MAGIC + '00000003' + '00000002' + '00000006' + '00000001' + '76' + '64');
    expect(() => encodeServerReply('a\0')).toThrow(RangeError);
  });

  it('INFO_EXPORT always sets HAS_FLAGS', () => {
    const flags = NbdTxFlag.SEND_FLUSH | NbdTxFlag.SEND_FUA;
    expect(encodeInfoExport(NbdOpt.GO, 0x100000n, flags).toString('hex')).toBe(
      MAGIC + '00000007' + '00000003' + '0000000c' + '0000' + '0000000000100000' + '000d',
    );
    expect(() => encodeInfoExport(NbdOpt.GO, -1n, 1)).toThrow(RangeError);
    expect(() => encodeInfoExport(NbdOpt.GO, 1n << 64n, 1)).toThrow(RangeError);
    expect(() => encodeInfoExport(NbdOpt.GO, 1n, 0x10000)).toThrow(RangeError);
  });

  it('INFO_NAME and INFO_DESCRIPTION', () => {
    expect(encodeInfoName(NbdOpt.INFO, 'ab').toString('hex')).toBe(MAGIC + '00000006' + '00000003' + '00000004' + '0001' + '6162');
    expect(encodeInfoDescription(NbdOpt.GO, 'd').toString('hex')).toBe(MAGIC + '00000007' + '00000003' + '00000003' + '0002' + '64');
  });

  it('INFO_BLOCK_SIZE', () => {
    expect(encodeInfoBlockSize(NbdOpt.GO, 4096, 4096, 32 * 1024 * 1024).toString('hex')).toBe(
      MAGIC + '00000007' + '00000003' + '0000000e' + '0003' + '00001000' + '00001000' + '02000000',
    );
    expect(encodeInfoBlockSize(NbdOpt.GO, 1, 512, 0xffffffff).subarray(20).toString('hex')).toBe('0003' + '00000001' + '00000200' + 'ffffffff');
    expect(() => encodeInfoBlockSize(NbdOpt.GO, 3, 4096, 4096)).toThrow(RangeError); // min not a power of two
    expect(() => encodeInfoBlockSize(NbdOpt.GO, 131072, 131072, 131072)).toThrow(RangeError); // min > 64 KiB
    expect(() => encodeInfoBlockSize(NbdOpt.GO, 512, 256, 4096)).toThrow(RangeError); // preferred < 512
    expect(() => encodeInfoBlockSize(NbdOpt.GO, 4096, 4096, 6000)).toThrow(RangeError); // max not a multiple
  });

  it('REP_META_CONTEXT', () => {
    expect(encodeMetaContextReply(NbdOpt.SET_META_CONTEXT, 1, 'base:allocation').toString('hex')).toBe(
      MAGIC + '0000000a' + '00000004' + '00000013' + '00000001' + Buffer.from('base:allocation').toString('hex'),
    );
  });

  it('EXPORT_NAME reply with and without zero padding', () => {
    const padded = encodeExportNameReply(0x200n, NbdTxFlag.READ_ONLY, false);
    expect(padded.length).toBe(134);
    expect(padded.subarray(0, 10).toString('hex')).toBe('0000000000000200' + '0003');
    expect(padded.subarray(10).every((b) => b === 0)).toBe(true);
    expect(encodeExportNameReply(0x200n, 1, true).toString('hex')).toBe('0000000000000200' + '0001');
  });
});
