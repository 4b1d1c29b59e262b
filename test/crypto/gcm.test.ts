import { execFileSync } from 'node:child_process';
import { createCipheriv, randomBytes, randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { AesGcm, nativeAddonPath } from '../../src/native/addon.js';

// AesGcm is the VPC data plane's AES-256-GCM (native/src/gcm.h): the addon's
// VAES code where the CPU has it, else OpenSSL (NITRIDE_GCM_IMPL=openssl
// forces that, per process).

const hex = (s: string): Buffer => Buffer.from(s, 'hex');

/** Reference: node:crypto (node's OpenSSL). */
function reference(key: Buffer, iv: Buffer, aad: Buffer, plain: Buffer): { ct: Buffer; tag: Buffer } {
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(aad);
  const ct = Buffer.concat([c.update(plain), c.final()]);
  return { ct, tag: c.getAuthTag() };
}

function seal(g: AesGcm, iv: Buffer, aad: Buffer, plain: Buffer): { ct: Buffer; tag: Buffer } {
  const ct = Buffer.from(plain);
  const tag = Buffer.alloc(16);
  g.seal(iv, aad, ct, tag);
  return { ct, tag };
}

const cpuHasVaes = ['vaes', 'vpclmulqdq', 'avx512f', 'avx512bw', 'avx512vl'].every((f) =>
  new RegExp(`^flags\\s*:.*\\b${f}\\b`, 'm').test(readFileSync('/proc/cpuinfo', 'utf8')),
);

const K15 = 'feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308';
const P15 =
  'd9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255';
const C15 =
  '522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad';

// McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 13-16
// (AES-256, 96-bit IV), and NIST CAVS gcmEncryptExtIV256 (PTlen 0, AADlen
// 128, count 0) for AAD only.
const VECTORS = [
  { name: 'McGrew-Viega 13 (empty)', key: '00'.repeat(32), iv: '00'.repeat(12), aad: '', p: '', c: '', t: '530f8afbc74536b9a963b4f1c4cb738b' },
  {
    name: 'McGrew-Viega 14',
    key: '00'.repeat(32),
    iv: '00'.repeat(12),
    aad: '',
    p: '00'.repeat(16),
    c: 'cea7403d4d606b6e074ec5d3baf39d18',
    t: 'd0d1c8a799996bf0265b98b5d48ab919',
  },
  { name: 'McGrew-Viega 15', key: K15, iv: 'cafebabefacedbaddecaf888', aad: '', p: P15, c: C15, t: 'b094dac5d93471bdec1a502270e3cc6c' },
  {
    name: 'McGrew-Viega 16 (AAD, partial block)',
    key: K15,
    iv: 'cafebabefacedbaddecaf888',
    aad: 'feedfacedeadbeeffeedfacedeadbeefabaddad2',
    p: P15.slice(0, 120),
    c: C15.slice(0, 120),
    t: '76fc6ece0f4e1768cddf8853bb2d551b',
  },
  {
    name: 'NIST gcmEncryptExtIV256 AAD only',
    key: '78dc4e0aaf52d935c3c01eea57428f00ca1fd475f5da86a49c8dd73d68c8e223',
    iv: 'd79cf22d504cc793c3fb6c8a',
    aad: 'b96baa8c1c75a671bfb2d08d06be5f36',
    p: '',
    c: '',
    t: '3e5d486aa2e30b22e040b85723a06e76',
  },
];

describe('AesGcm', () => {
  // The file passes with NITRIDE_GCM_IMPL=openssl too (then every test below
  // checks the fallback).
  it('runs the VAES code where the CPU has it, unless NITRIDE_GCM_IMPL=openssl', () => {
    const g = new AesGcm(randomBytes(32));
    expect(g.implementation).toBe(cpuHasVaes && process.env.NITRIDE_GCM_IMPL !== 'openssl' ? 'vaes-avx512' : 'openssl');
    g.destroy();
  });

  for (const v of VECTORS) {
    it(`matches the known answer: ${v.name}`, () => {
      const g = new AesGcm(hex(v.key));
      const { ct, tag } = seal(g, hex(v.iv), hex(v.aad), hex(v.p));
      expect(ct.toString('hex')).toBe(v.c);
      expect(tag.toString('hex')).toBe(v.t);
      const buf = hex(v.c);
      expect(g.open(hex(v.iv), hex(v.aad), buf, hex(v.t))).toBe(true);
      expect(buf.toString('hex')).toBe(v.p);
      g.destroy();
    });
  }

  it('agrees with node:crypto for every length 0..600 and random lengths up to 9,100', () => {
    const key = randomBytes(32);
    const g = new AesGcm(key);
    const lengths = [...Array.from({ length: 601 }, (_, i) => i), ...Array.from({ length: 300 }, () => randomInt(601, 9101))];
    for (const [i, n] of lengths.entries()) {
      const iv = randomBytes(12);
      // Mostly the data plane's 16-byte header; every 5th any length (AAD
      // steps of 256 bytes and masked tails too).
      const aad = randomBytes(i % 5 === 0 ? randomInt(0, 700) : 16);
      const plain = randomBytes(n);
      const want = reference(key, iv, aad, plain);
      const got = seal(g, iv, aad, plain);
      expect(got.ct.equals(want.ct), `ciphertext, length ${n}, aad ${aad.length}`).toBe(true);
      expect(got.tag.equals(want.tag), `tag, length ${n}, aad ${aad.length}`).toBe(true);
      expect(g.open(iv, aad, got.ct, want.tag), `open, length ${n}`).toBe(true); // in place
      expect(got.ct.equals(plain), `plaintext, length ${n}`).toBe(true);
    }
    g.destroy();
  });

  it('opens in place inside a larger buffer without touching the bytes around it', () => {
    const key = randomBytes(32);
    const g = new AesGcm(key);
    const iv = randomBytes(12);
    const plain = randomBytes(1386);
    const msg = Buffer.alloc(16 + 1386 + 16 + 64, 0xee);
    randomBytes(16).copy(msg, 0); // header = AAD
    const want = reference(key, iv, msg.subarray(0, 16), plain);
    want.ct.copy(msg, 16);
    want.tag.copy(msg, 16 + 1386);
    expect(g.open(iv, msg.subarray(0, 16), msg.subarray(16, 16 + 1386), msg.subarray(16 + 1386, 16 + 1386 + 16))).toBe(true);
    expect(msg.subarray(16, 16 + 1386).equals(plain)).toBe(true);
    expect(msg.subarray(16 + 1386 + 16).equals(Buffer.alloc(64, 0xee))).toBe(true);
    g.destroy();
  });

  it('rejects every single-bit flip of ciphertext, tag and AAD (and zeroes the data)', () => {
    const key = randomBytes(32);
    const g = new AesGcm(key);
    const iv = randomBytes(12);
    const aad = randomBytes(16);
    const plain = randomBytes(41); // 2 whole blocks and a partial one
    const { ct, tag } = reference(key, iv, aad, plain);
    const parts = { ct, tag, aad };
    let rejected = 0;
    for (const which of ['ct', 'tag', 'aad'] as const) {
      for (let bit = 0; bit < parts[which].length * 8; bit++) {
        const m = { ct: Buffer.from(ct), tag: Buffer.from(tag), aad: Buffer.from(aad) };
        m[which][bit >> 3]! ^= 1 << (bit & 7);
        expect(g.open(iv, m.aad, m.ct, m.tag), `${which} bit ${bit}`).toBe(false);
        expect(m.ct.equals(Buffer.alloc(ct.length)), `${which} bit ${bit}: data zeroed`).toBe(true);
        rejected++;
      }
    }
    expect(rejected).toBe((41 + 16 + 16) * 8);
    const ok = Buffer.from(ct);
    expect(g.open(iv, aad, ok, tag)).toBe(true); // the unflipped message still opens
    g.destroy();
  });

  it('rejects a wrong IV or key', () => {
    const key = randomBytes(32);
    const iv = randomBytes(12);
    const { ct, tag } = reference(key, iv, Buffer.alloc(16), randomBytes(300));
    const g = new AesGcm(key);
    const iv2 = Buffer.from(iv);
    iv2[11]! ^= 1;
    expect(g.open(iv2, Buffer.alloc(16), Buffer.from(ct), tag)).toBe(false);
    const other = new AesGcm(randomBytes(32));
    expect(other.open(iv, Buffer.alloc(16), Buffer.from(ct), tag)).toBe(false);
    g.destroy();
    other.destroy();
  });

  it('gives the same bytes with NITRIDE_GCM_IMPL=openssl', () => {
    const key = randomBytes(32);
    const cases = [0, 1, 15, 16, 17, 255, 256, 257, 1386, 9014].map((n) => ({ n, iv: randomBytes(12), aad: randomBytes(16), p: randomBytes(n) }));
    const child = `
      const { AesGcm } = require(${JSON.stringify(nativeAddonPath)});
      const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
      const g = new AesGcm(Buffer.from(input.key, 'hex'));
      const out = input.cases.map((c) => {
        const data = Buffer.from(c.p, 'hex'), tag = Buffer.alloc(16);
        g.seal(Buffer.from(c.iv, 'hex'), Buffer.from(c.aad, 'hex'), data, tag);
        return data.toString('hex') + ':' + tag.toString('hex');
      });
      process.stdout.write(JSON.stringify({ impl: g.implementation, out }));`;
    const res = JSON.parse(
      execFileSync(process.execPath, ['-e', child], {
        input: JSON.stringify({
          key: key.toString('hex'),
          cases: cases.map((c) => ({ iv: c.iv.toString('hex'), aad: c.aad.toString('hex'), p: c.p.toString('hex') })),
        }),
        env: { ...process.env, NITRIDE_GCM_IMPL: 'openssl' },
        maxBuffer: 4 << 20,
      }).toString(),
    ) as { impl: string; out: string[] };
    expect(res.impl).toBe('openssl');
    const g = new AesGcm(key);
    for (const [i, c] of cases.entries()) {
      const { ct, tag } = seal(g, c.iv, c.aad, c.p);
      expect(res.out[i], `length ${c.n}`).toBe(ct.toString('hex') + ':' + tag.toString('hex'));
    }
    g.destroy();
  });

  it('rejects bad arguments with one-line errors and refuses use after destroy', () => {
    expect(() => new AesGcm(Buffer.alloc(16))).toThrow(/^AesGcm: key must be 32 bytes, got 16$/);
    const g = new AesGcm(randomBytes(32));
    expect(() => g.seal(Buffer.alloc(8), Buffer.alloc(0), Buffer.alloc(0), Buffer.alloc(16))).toThrow(/iv must be 12 bytes, got 8/);
    expect(() => g.seal(Buffer.alloc(12), Buffer.alloc(0), Buffer.alloc(0), Buffer.alloc(8))).toThrow(/tag must be 16 bytes, got 8/);
    g.destroy();
    expect(() => g.open(Buffer.alloc(12), Buffer.alloc(0), Buffer.alloc(0), Buffer.alloc(16))).toThrow(
      expect.objectContaining({ code: 'ERR_NITRIDE_GCM_DESTROYED' }),
    );
  });
});
