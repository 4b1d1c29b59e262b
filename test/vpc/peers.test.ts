/** A new peer's checks: its name, endpoint and key, and no clash with this host or another peer. */
import { describe, expect, it } from 'vitest';
import { loadSodium } from '../../src/kms/sodium.js';
import { encodeKey, generateHostKeys, type PeerHandshakeStatus } from '../../src/vpc/handshake.js';
import type { PeerRecord } from '../../src/vpc/manager.js';
import { newPeerRecord, sessionState } from '../../src/vpc/peers.js';

const sodium = await loadSodium();
const key = () => encodeKey(generateHostKeys(sodium).publicKey);

describe('new peer', () => {
  const b: PeerRecord = { name: 'b', endpoint: '127.0.0.1:4790', publicKey: key(), plaintext: false };

  it('is a record with the key in canonical form, not plaintext unless asked', () => {
    const k = key();
    expect(newPeerRecord({ name: 'c', endpoint: '[::1]:4791', publicKey: ` ${k}` }, [b])).toEqual({ name: 'c', endpoint: '[::1]:4791', publicKey: k, plaintext: false });
    expect(newPeerRecord({ name: 'c', endpoint: '127.0.0.1:4791', publicKey: k, plaintext: true }, [b]).plaintext).toBe(true);
  });

  it('refuses a bad name, this host\'s name, a name, key or endpoint taken, a bad endpoint or key', () => {
    const cases: Array<[Parameters<typeof newPeerRecord>[0], RegExp]> = [
      [{ name: '-x', endpoint: '127.0.0.1:1', publicKey: key() }, /peer name '-x' must be/],
      [{ name: 'local', endpoint: '127.0.0.1:1', publicKey: key() }, /'local' names this host/],
      [{ name: 'b', endpoint: '127.0.0.1:1', publicKey: key() }, /peer b already exists/],
      [{ name: 'c', endpoint: 'localhost:1', publicKey: key() }, /endpoint must be NUMERIC-HOST:PORT/],
      [{ name: 'c', endpoint: '127.0.0.1:1', publicKey: 'nope' }, /public key/],
      [{ name: 'c', endpoint: '127.0.0.1:1', publicKey: b.publicKey }, /public key already belongs to peer b/],
      [{ name: 'c', endpoint: b.endpoint, publicKey: key() }, /endpoint 127\.0\.0\.1:4790 already belongs to peer b/],
    ];
    for (const [input, error] of cases) expect(() => newPeerRecord(input, [b]), input.name).toThrow(error);
  });
});

describe('session state', () => {
  const status = (s: Partial<PeerHandshakeStatus>): PeerHandshakeStatus => ({ id: 'b', publicKey: '', wanted: true, current: null, previous: null, next: null, handshaking: false, attempts: 0, nextEventAt: null, ...s });
  const session = { localIndex: 1, remoteIndex: 2, createdAt: 0, isInitiator: true };

  it('is established with a current session, else handshaking or none; unknown without the runtime', () => {
    expect(sessionState(status({ current: session, handshaking: true }))).toBe('established');
    expect(sessionState(status({ handshaking: true }))).toBe('handshaking');
    expect(sessionState(status({}))).toBe('none');
    expect(sessionState(undefined)).toBe('unknown');
  });
});
