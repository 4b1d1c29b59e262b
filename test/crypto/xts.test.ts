import { execFileSync } from 'node:child_process';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { nativeAddonPath, XtsCipher, xtsDecrypt, xtsEncrypt, type DataUnitNumber } from '../../src/native/addon.js';

/** The plain64 tweak: data unit number as a 16-byte little-endian value. */
function tweak(n: bigint): Buffer {
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64LE(n & 0xffff_ffff_ffff_ffffn, 0);
  iv.writeBigUInt64LE(n >> 64n, 8);
  return iv;
}

/** Reference: node:crypto, one cipher object per data unit. */
function referenceXts(decrypt: boolean, key: Buffer, unit: number, first: bigint, data: Buffer): Buffer {
  const out = Buffer.alloc(data.length);
  for (let off = 0, n = first; off < data.length; off += unit, n++) {
    const c = decrypt
      ? createDecipheriv('aes-256-xts', key, tweak(n))
      : createCipheriv('aes-256-xts', key, tweak(n));
    const part = Buffer.concat([c.update(data.subarray(off, off + unit)), c.final()]);
    part.copy(out, off);
  }
  return out;
}

function randomKey(): Buffer {
  for (;;) {
    const k = randomBytes(64);
    if (!k.subarray(0, 32).equals(k.subarray(32))) return k;
  }
}

const FIRST_UNITS: DataUnitNumber[] = [
  0,
  1,
  7,
  2 ** 32 - 2, // crosses the 32-bit boundary within the buffer
  2 ** 32 + 5,
  Number.MAX_SAFE_INTEGER - 8,
  2n ** 53n + 1n, // not representable as a number
  2n ** 63n + 12345n,
  2n ** 64n - 4n, // last units of the 64-bit space
];

// IEEE 1619-2007 Annex B, vector 10 (XTS-AES-256, data unit 0xff, 512 bytes).
const IEEE_KEY =
  '27182818284590452353602874713526624977572470936999595749669676273141592653589793238462643383279502884197169399375105820974944592';
const IEEE_UNIT = 0xffn;
const IEEE_PT = Buffer.from(Array.from({ length: 512 }, (_, i) => i & 0xff));
const IEEE_CT =
  '1c3b3a102f770386e4836c99e370cf9bea00803f5e482357a4ae12d414a3e63b5d31e276f8fe4a8d66b317f9ac683f44680a86ac35adfc3345befecb4bb188fd' +
  '5776926c49a3095eb108fd1098baec70aaa66999a72a82f27d848b21d4a741b0c5cd4d5fff9dac89aeba122961d03a757123e9870f8acf1000020887891429ca' +
  '2a3e7a7d7df7b10355165c8b9a6d0a7de8b062c4500dc4cd120c0f7418dae3d0b5781c34803fa75421c790dfe1de1834f280d7667b327f6c8cd7557e12ac3a' +
  '0f93ec05c52e0493ef31a12d3d9260f79a289d6a379bc70c50841473d1a8cc81ec583e9645e07b8d9670655ba5bbcfecc6dc3966380ad8fecb17b6ba02469a' +
  '020a84e18e8f84252070c13e9f1f289be54fbc481457778f616015e1327a02b140f1505eb309326d68378f8374595c849d84f4c333ec4423885143cb47bd71' +
  'c5edae9be69a2ffeceb1bec9de244fbe15992b11b77c040f12bd8f6a975a44a0f90c29a9abc3d4d893927284c58754cce294529f8614dcd2aba991925fedc4' +
  'ae74ffac6e333b93eb4aff0479da9a410e4450e0dd7ae4c6e2910900575da401fc07059f645e8b7e9bfdef33943054ff84011493c27b3429eaedb4ed537644' +
  '1a77ed43851ad77f16f541dfd269d50d6a5f14fb0aab1cbb4c1550be97f7ab4066193c4caa773dad38014bd2092fa755c824bb5e54c4f36ffda9fcea70b9c6' +
  'e693e148c151';

describe('AES-256-XTS addon', () => {
  it('matches the IEEE 1619 vector 10 (data unit number 0xff)', () => {
    const key = Buffer.from(IEEE_KEY, 'hex');
    const buf = Buffer.from(IEEE_PT);
    xtsEncrypt(key, 512, IEEE_UNIT, buf);
    expect(buf.toString('hex')).toBe(IEEE_CT);
    const c = new XtsCipher(key, 512);
    const buf2 = Buffer.from(IEEE_PT);
    c.encrypt(0xff, buf2);
    expect(buf2.toString('hex')).toBe(IEEE_CT);
    c.decrypt(0xff, buf2);
    expect(buf2.equals(IEEE_PT)).toBe(true);
    c.destroy();
  });

  for (const unit of [512, 1024, 2048, 4096]) {
    describe(`data unit ${unit}`, () => {
      for (const first of FIRST_UNITS) {
        it(`equals node:crypto per data unit, first unit ${first}`, () => {
          const key = randomKey();
          const plain = randomBytes(unit * 4);
          const expected = referenceXts(false, key, unit, BigInt(first), plain);

          const viaCipher = Buffer.from(plain);
          const cipher = new XtsCipher(key, unit);
          expect(cipher.dataUnitSize).toBe(unit);
          cipher.encrypt(first, viaCipher);
          expect(viaCipher.equals(expected)).toBe(true);

          const viaOneShot = Buffer.from(plain);
          xtsEncrypt(key, unit, first, viaOneShot);
          expect(viaOneShot.equals(expected)).toBe(true);

          // Decryption: against node:crypto and round trip, both APIs.
          expect(referenceXts(true, key, unit, BigInt(first), expected).equals(plain)).toBe(true);
          cipher.decrypt(first, viaCipher);
          expect(viaCipher.equals(plain)).toBe(true);
          xtsDecrypt(key, unit, first, viaOneShot);
          expect(viaOneShot.equals(plain)).toBe(true);
          cipher.destroy();
        });
      }

      it('treats each data unit independently (offset into a larger run)', () => {
        const key = randomKey();
        const c = new XtsCipher(key, unit);
        const whole = randomBytes(unit * 8);
        const a = Buffer.from(whole);
        c.encrypt(1000n, a);
        const b = Buffer.from(whole.subarray(unit * 3, unit * 5));
        c.encrypt(1003, b);
        expect(b.equals(a.subarray(unit * 3, unit * 5))).toBe(true);
        c.destroy();
      });

      it('works on a Uint8Array view with a non-zero byteOffset', () => {
        const key = randomKey();
        const backing = randomBytes(unit * 3 + 16);
        const view = new Uint8Array(backing.buffer, backing.byteOffset + 16, unit * 3);
        const plain = Buffer.from(view);
        const c = new XtsCipher(key, unit);
        c.encrypt(5, view);
        expect(Buffer.from(view).equals(referenceXts(false, key, unit, 5n, plain))).toBe(true);
        c.destroy();
      });

      it('accepts an empty buffer', () => {
        const c = new XtsCipher(randomKey(), unit);
        expect(() => c.encrypt(0, Buffer.alloc(0))).not.toThrow();
        c.destroy();
      });
    });
  }

  // XtsCipher runs the addon's VAES code where the CPU has it (then the tests
  // above check it against node:crypto); NITRIDE_XTS_IMPL=openssl forces
  // OpenSSL, in a child process since the choice is made once per process.
  it('gives the same bytes with NITRIDE_XTS_IMPL=openssl, across many data units', () => {
    const key = randomKey();
    const plain = randomBytes(1 << 20);
    const first = 2n ** 64n - 256n; // 1 MiB of 4 KiB units up to the last number
    const child = `
      const { XtsCipher } = require(${JSON.stringify(nativeAddonPath)});
      const chunks = []; process.stdin.on('data', (d) => chunks.push(d)).on('end', () => {
        const all = Buffer.concat(chunks);
        const c = new XtsCipher(all.subarray(0, 64), 4096);
        const buf = Buffer.from(all.subarray(64));
        c.encrypt(${first}n, buf);
        process.stdout.write(c.implementation + '\\n' + buf.toString('base64'));
      });`;
    const out = execFileSync(process.execPath, ['-e', child], {
      input: Buffer.concat([key, plain]),
      env: { ...process.env, NITRIDE_XTS_IMPL: 'openssl' },
      maxBuffer: 4 << 20,
    }).toString();
    const [impl, b64] = out.split('\n');
    expect(impl).toBe('openssl');
    const c = new XtsCipher(key, 4096);
    expect(['vaes-avx512', 'openssl']).toContain(c.implementation);
    const buf = Buffer.from(plain);
    c.encrypt(first, buf);
    expect(buf.equals(Buffer.from(b64!, 'base64'))).toBe(true);
    c.decrypt(first, buf);
    expect(buf.equals(plain)).toBe(true);
    c.destroy();
  });

  it('enforces whole data units', () => {
    const key = randomKey();
    const c = new XtsCipher(key, 4096);
    const buf = randomBytes(4096 + 512);
    const before = Buffer.from(buf);
    expect(() => c.encrypt(0, buf)).toThrow(/buffer length 4608 is not a multiple of the data unit size 4096/);
    expect(buf.equals(before)).toBe(true); // untouched
    expect(() => xtsEncrypt(key, 512, 0, randomBytes(100))).toThrow(RangeError);
    expect(() => c.decrypt(0, randomBytes(16))).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    c.destroy();
  });

  it('rejects keys whose halves are equal', () => {
    const half = randomBytes(32);
    const key = Buffer.concat([half, half]);
    expect(() => new XtsCipher(key, 512)).toThrow(/key halves are identical/);
    expect(() => xtsEncrypt(key, 512, 0, Buffer.alloc(512))).toThrow(/key halves are identical/);
    expect(() => xtsDecrypt(key, 512, 0, Buffer.alloc(512))).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }),
    );
  });

  it('rejects bad keys, unit sizes and data unit numbers', () => {
    const key = randomKey();
    expect(() => new XtsCipher(key.subarray(0, 32), 512)).toThrow(/key must be 64 bytes, got 32/);
    expect(() => new XtsCipher('k'.repeat(64) as unknown as Buffer, 512)).toThrow(TypeError);
    expect(() => new XtsCipher(key, 100)).toThrow(/dataUnitSize must be 512, 1024, 2048 or 4096/);
    const c = new XtsCipher(key, 512);
    const buf = Buffer.alloc(1024);
    expect(() => c.encrypt(-1, buf)).toThrow(RangeError);
    expect(() => c.encrypt(1.5, buf)).toThrow(RangeError);
    expect(() => c.encrypt(2 ** 53, buf)).toThrow(/use a bigint/);
    expect(() => c.encrypt(-1n, buf)).toThrow(RangeError);
    expect(() => c.encrypt(2n ** 64n, buf)).toThrow(RangeError);
    expect(() => c.encrypt(2n ** 64n - 1n, buf)).toThrow(/overflow 2\^64/); // 2 units from the last number
    expect(() => c.encrypt(2n ** 64n - 1n, Buffer.alloc(512))).not.toThrow();
    expect(() => c.encrypt('0' as unknown as number, buf)).toThrow(TypeError);
    expect(() => c.encrypt(0, new Uint16Array(512) as unknown as Uint8Array)).toThrow(TypeError);
    c.destroy();
  });

  it('throws after destroy(), which is idempotent', () => {
    const c = new XtsCipher(randomKey(), 512);
    expect(c.destroyed).toBe(false);
    c.destroy();
    expect(c.destroyed).toBe(true);
    c.destroy();
    expect(() => c.encrypt(0, Buffer.alloc(512))).toThrow(/destroyed/);
    expect(() => c.decrypt(0, Buffer.alloc(512))).toThrow(
      expect.objectContaining({ code: 'ERR_NITRIDE_XTS_DESTROYED' }),
    );
  });

  it('requires new', () => {
    expect(() => (XtsCipher as unknown as (k: Buffer, n: number) => void)(randomKey(), 512)).toThrow(TypeError);
  });
});
