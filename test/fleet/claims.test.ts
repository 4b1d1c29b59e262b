/**
 * The mirror's compact claim store (src/fleet/claims.ts) against a plain map of the same keys:
 * after random puts and deletes of canonical and odd keys, every key reads back as it went in,
 * and `under(prefix)` lists what the map has under that prefix. Pure.
 */
import { describe, expect, it } from 'vitest';
import { ClaimStore, isClaimKey } from '../../src/fleet/claims.js';
import type { StoredKv } from '../../src/fleet/store.js';

const KEYS = [
  '/nitride/ips/subnet-0000000000000000a/10.1.1.10',
  '/nitride/ips/subnet-0000000000000000a/10.1.1.11',
  '/nitride/ips/subnet-0000000000000000b/10.1.1.10',
  '/nitride/ips/subnet-0000000000000000b/255.255.255.254',
  '/nitride/ips/subnet-0000000000000000a/010.1.1.10', // not canonical: kept whole
  '/nitride/ips/subnet-0000000000000000a/x',
  '/nitride/ips/a/b/10.0.0.1',
  '/nitride/ips//10.0.0.1',
  '/nitride/macs/02:00:00:00:00:01',
  '/nitride/macs/ff:ff:ff:ff:ff:fe',
  '/nitride/macs/00:00:00:00:00:00',
  '/nitride/macs/02:00:00:00:00:0A', // not canonical
  '/nitride/macs/02:00:00:00:00',
];
const PREFIXES = ['/nitride/', '/nitride/ips/', '/nitride/ips/subnet-0000000000000000a/', '/nitride/ips/subnet-0000000000000000a/10.1.1.1', '/nitride/macs/', '/nitride/macs/02', '/nitride/enis/'];

const sorted = (kvs: Iterable<StoredKv>) => [...kvs].sort((a, b) => (a.key < b.key ? -1 : 1));

describe('claim store', () => {
  it('reads back every key as it went in, and lists by prefix as a map does', () => {
    let seed = 7;
    const r = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000);
    const store = new ClaimStore();
    const ref = new Map<string, StoredKv>();
    for (let i = 0; i < 2000; i++) {
      const key = KEYS[Math.floor(r() * KEYS.length)]!;
      if (r() < 0.3) {
        store.delete(key);
        ref.delete(key);
      } else {
        const kv = { key, value: r() < 0.9 ? `eni-0000000000000000${i % 10}` : `{"odd": ${i}}`, createRevision: i, modRevision: i + Math.floor(r() * 3) };
        store.set(kv);
        ref.set(key, kv);
      }
      for (const k of KEYS) expect(store.get(k)).toEqual(ref.get(k));
      if (i % 50 === 0) for (const p of PREFIXES) expect(sorted(store.under(p))).toEqual(sorted([...ref.values()].filter((kv) => kv.key.startsWith(p))));
    }
    store.clear();
    expect([...store.under()]).toEqual([]);
  });

  it('knows claim keys from the others', () => {
    expect(KEYS.every(isClaimKey)).toBe(true);
    expect(['/nitride/enis/a/eni-00000000000000001', '/nitride/hosts/a', '/nitride/ipsx/1'].some(isClaimKey)).toBe(false);
  });
});
