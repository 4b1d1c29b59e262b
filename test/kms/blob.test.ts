import { describe, expect, it } from 'vitest';
import {
  BLOB_MAGIC,
  HEADER_BYTES,
  NONCE_BYTES,
  TAG_BYTES,
  checkContext,
  encodeContext,
  parseBlob,
  unwrap,
  wrap,
} from '../../src/kms/blob.js';
import { KmsInvalidCiphertextError } from '../../src/kms/provider.js';
import { loadSodium } from '../../src/kms/sodium.js';

const KEY_ID = 'key-' + '0123456789abcdef'.repeat(2);

describe('ciphertext blob format', () => {
  it('has the documented layout: magic, version, key id, key version, nonce, ciphertext+tag', async () => {
    const sodium = await loadSodium();
    const master = sodium.randombytes_buf(32);
    const dataKey = sodium.randombytes_buf(64);
    const blob = wrap(sodium, dataKey, master, KEY_ID, 7, { volume: 'vol-1' });
    expect(HEADER_BYTES).toBe(48);
    expect(blob.length).toBe(HEADER_BYTES + 64 + TAG_BYTES);
    expect(blob.subarray(0, 3)).toEqual(BLOB_MAGIC);
    expect(blob[3]).toBe(1);
    expect(blob.subarray(4, 20).toString('hex')).toBe(KEY_ID.slice(4));
    expect(blob.readUInt32BE(20)).toBe(7);
    const header = parseBlob(blob);
    expect(header).toMatchObject({ keyId: KEY_ID, keyVersion: 7 });
    expect(header.nonce.length).toBe(NONCE_BYTES);
    const opened = unwrap(sodium, header, master, { volume: 'vol-1' });
    expect(opened.equals(Buffer.from(dataKey))).toBe(true);
    // the plaintext Buffer owns its whole ArrayBuffer: wiping it wipes the only copy
    expect(opened.buffer.byteLength).toBe(opened.length);
    // fresh nonce every time
    expect(wrap(sodium, dataKey, master, KEY_ID, 7, { volume: 'vol-1' }).equals(blob)).toBe(false);
  });

  it('binds the encryption context and every header byte (AEAD associated data)', async () => {
    const sodium = await loadSodium();
    const master = sodium.randombytes_buf(32);
    const blob = wrap(sodium, sodium.randombytes_buf(64), master, KEY_ID, 1, { volume: 'vol-1', purpose: 'ebs' });
    // order of pairs does not matter
    expect(() => unwrap(sodium, parseBlob(blob), master, { purpose: 'ebs', volume: 'vol-1' })).not.toThrow();
    for (const ctx of [{ volume: 'vol-2', purpose: 'ebs' }, { volume: 'vol-1' }, {}, { volume: 'vol-1', purpose: 'ebs', x: '' }] as Array<Record<string, string>>) {
      expect(() => unwrap(sodium, parseBlob(blob), master, ctx)).toThrow(KmsInvalidCiphertextError);
    }
    // the key version is authenticated: same material, other version number
    const other = Buffer.from(blob);
    other.writeUInt32BE(2, 20);
    expect(() => unwrap(sodium, parseBlob(other), master, { volume: 'vol-1', purpose: 'ebs' })).toThrow(/does not authenticate/);
    // wrong master key
    expect(() => unwrap(sodium, parseBlob(blob), sodium.randombytes_buf(32), { volume: 'vol-1', purpose: 'ebs' })).toThrow(KmsInvalidCiphertextError);
  });

  it('encodes contexts canonically and unambiguously', () => {
    expect(encodeContext({ b: '2', a: '1' }).equals(encodeContext({ a: '1', b: '2' }))).toBe(true);
    expect(encodeContext({ ab: 'c' }).equals(encodeContext({ a: 'bc' }))).toBe(false);
    expect(encodeContext({ a: 'b', c: 'd' }).equals(encodeContext({ a: 'b\u0000\u0000\u0000\u0001c' }))).toBe(false);
    expect(encodeContext({}).equals(Buffer.from([0, 0, 0, 0]))).toBe(true);
  });

  it('rejects malformed contexts', () => {
    for (const bad of [null, 'vol-1', ['a'], { a: 1 }, { '': 'x' }, { a: '\ud800' }, { ['k'.repeat(257)]: 'x' }]) {
      expect(() => checkContext(bad), JSON.stringify(bad)).toThrow();
    }
    expect(() => checkContext({ volume: 'vol-1', empty: '' })).not.toThrow();
  });

  it('rejects malformed blobs with KMS_INVALID_CIPHERTEXT', async () => {
    const sodium = await loadSodium();
    const blob = wrap(sodium, sodium.randombytes_buf(64), sodium.randombytes_buf(32), KEY_ID, 1, {});
    const cases: Array<[string, Buffer]> = [
      ['empty', Buffer.alloc(0)],
      ['header only', blob.subarray(0, HEADER_BYTES + TAG_BYTES)],
      ['bad magic', Buffer.concat([Buffer.from('XKB'), blob.subarray(3)])],
      ['future version', Buffer.concat([blob.subarray(0, 3), Buffer.from([2]), blob.subarray(4)])],
      ['key version 0', (() => { const b = Buffer.from(blob); b.writeUInt32BE(0, 20); return b; })()],
      ['too long', Buffer.concat([blob, Buffer.alloc(2000)])],
    ];
    for (const [name, b] of cases) {
      let err: unknown;
      try {
        parseBlob(b);
      } catch (e) {
        err = e;
      }
      expect(err, name).toBeInstanceOf(KmsInvalidCiphertextError);
      expect((err as KmsInvalidCiphertextError).code).toBe('KMS_INVALID_CIPHERTEXT');
    }
  });
});
