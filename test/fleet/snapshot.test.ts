/** The fleet snapshot file (src/fleet/snapshot.ts): written in pieces, the same text as one JSON.stringify. Pure: a temp dir, no etcd. */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readSnapshot, writeSnapshot, type FleetSnapshot } from '../../src/fleet/snapshot.js';

const dir = mkdtempSync(path.join(tmpdir(), 'nitride-snapshot-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const snapshot = (n: number): FleetSnapshot => ({
  version: 1,
  hostId: 'h1',
  revision: 7 + n,
  kvs: Array.from({ length: n }, (_, i) => ({ key: `/nitride/enis/h2/eni-${i}`, value: JSON.stringify({ id: `eni-${i}`, note: 'quote " and \\ and \u00e9' }), createRevision: i + 1, modRevision: i + 2 })),
});

describe('fleet snapshot file', () => {
  for (const n of [0, 1, 999, 1000, 1001, 2345]) {
    it(`${n} keys: the text of JSON.stringify, read back whole`, async () => {
      const file = path.join(dir, `fleet-${n}.json`);
      const s = snapshot(n);
      await writeSnapshot(file, s);
      expect(readFileSync(file, 'utf8')).toBe(JSON.stringify(s));
      expect(await readSnapshot(file, 'h1')).toEqual(s);
      expect(await readSnapshot(file, 'h2')).toBeUndefined();
    });
  }
});
