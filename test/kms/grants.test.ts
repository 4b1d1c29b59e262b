/** Grant logic without files or sockets: validation, context matching, who may do what. */
import { describe, expect, it } from 'vitest';
import { checkGrantRequest, contextMatches, findGrant, hostIdOf, newGrant } from '../../src/kms/grants.js';
import type { Grant } from '../../src/kms/protocol.js';

const KEY_A = Buffer.alloc(32, 1).toString('base64');
const KEY_B = Buffer.alloc(32, 2).toString('base64');
const fixed = (n: number) => Buffer.alloc(n, 0xab);

function grant(over: Partial<Grant>): Grant {
  return { grantId: 'grant-0000000000000001', hostId: 'a', publicKey: KEY_A, keyId: 'key-1', operations: ['Decrypt'], context: {}, createdAt: 'now', ...over };
}

describe('grant context matching (subset, prefix with *)', () => {
  it('exact, prefix, missing and extra pairs', () => {
    expect(contextMatches({ volume: 'vol-1' }, { volume: 'vol-1' })).toBe(true);
    expect(contextMatches({ volume: 'vol-1' }, { volume: 'vol-10' })).toBe(false);
    expect(contextMatches({ volume: 'vol-*' }, { volume: 'vol-0abc' })).toBe(true);
    expect(contextMatches({ volume: 'vol-*' }, { purpose: 'host-key' })).toBe(false);
    expect(contextMatches({ volume: 'vol-*' }, { volume: 'vol-1', extra: 'x' })).toBe(true);
    expect(contextMatches({}, { anything: 'x' })).toBe(true);
    expect(contextMatches({ toString: 'x' }, {})).toBe(false);
  });
});

describe('findGrant', () => {
  const grants = [grant({ context: { volume: 'vol-*' } }), grant({ grantId: 'grant-0000000000000002', hostId: 'b', publicKey: KEY_B, operations: ['GenerateDataKey'], keyId: 'key-2' })];
  it('needs the same host key, key, operation and a matching context', () => {
    expect(findGrant(grants, KEY_A, 'Decrypt', 'key-1', { volume: 'vol-1' })?.grantId).toBe('grant-0000000000000001');
    expect(findGrant(grants, KEY_B, 'Decrypt', 'key-1', { volume: 'vol-1' })).toBeUndefined();
    expect(findGrant(grants, KEY_A, 'GenerateDataKey', 'key-1', { volume: 'vol-1' })).toBeUndefined();
    expect(findGrant(grants, KEY_A, 'Decrypt', 'key-2', { volume: 'vol-1' })).toBeUndefined();
    expect(findGrant(grants, KEY_A, 'Decrypt', 'key-1', { purpose: 'host-key' })).toBeUndefined();
    expect(hostIdOf(grants, KEY_B)).toBe('b');
    expect(hostIdOf(grants, Buffer.alloc(32, 3).toString('base64'))).toBeUndefined();
  });
});

describe('grant requests', () => {
  it('are checked: host id, key, operations, context values', () => {
    const ok = checkGrantRequest({ hostId: 'host-a', publicKey: KEY_A, keyId: 'alias/x', operations: ['Decrypt', 'Decrypt'], context: { volume: 'vol-*' } });
    expect(ok.operations).toEqual(['Decrypt']);
    expect(() => checkGrantRequest({ hostId: '-bad', publicKey: KEY_A, keyId: 'k', operations: ['Decrypt'] })).toThrow(/host id/);
    expect(() => checkGrantRequest({ hostId: 'a', publicKey: 'short', keyId: 'k', operations: ['Decrypt'] })).toThrow(/public key/);
    expect(() => checkGrantRequest({ hostId: 'a', publicKey: KEY_A, keyId: 'k', operations: [] })).toThrow(/at least one operation/);
    expect(() => checkGrantRequest({ hostId: 'a', publicKey: KEY_A, keyId: 'k', operations: ['Encrypt' as 'Decrypt'] })).toThrow(/unknown operation/);
    expect(() => checkGrantRequest({ hostId: 'a', publicKey: KEY_A, keyId: 'k', operations: ['Decrypt'], context: { volume: 'v*x*' } })).toThrow(/only at the end/);
    expect(() => checkGrantRequest({ hostId: 'a', publicKey: KEY_A, keyId: 'k', operations: ['Decrypt'], context: { volume: '' } })).toThrow(/must not be empty/);
  });

  it('one host id per key and one key per host id', () => {
    const existing = [grant({})];
    const g = newGrant({ hostId: 'a', publicKey: KEY_A, keyId: 'key-2', operations: ['Decrypt'], context: {} }, existing, new Date(0), fixed);
    expect(g).toMatchObject({ grantId: 'grant-abababababababab', hostId: 'a', createdAt: '1970-01-01T00:00:00.000Z' });
    expect(() => newGrant({ hostId: 'b', publicKey: KEY_A, keyId: 'key-1', operations: ['Decrypt'], context: {} }, existing, new Date(), fixed)).toThrow(/already belongs to host a/);
    expect(() => newGrant({ hostId: 'a', publicKey: KEY_B, keyId: 'key-1', operations: ['Decrypt'], context: {} }, existing, new Date(), fixed)).toThrow(/another public key/);
  });
});
