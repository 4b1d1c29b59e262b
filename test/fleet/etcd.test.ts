/**
 * The etcd harness and the fleet store against real members (Debian's etcd 3.4): three members
 * over TLS with client-certificate auth; the store lists, guards transactions by revision,
 * watches, and keeps working with one member killed; a client without a certificate signed by
 * the CA is refused.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetStore } from '../../src/fleet/store.js';
import { startEtcd, type EtcdCluster } from '../helpers/etcd.js';
import { runOk } from '../helpers/run.js';

const canRun = existsSync('/usr/bin/etcd') && existsSync('/usr/bin/etcdctl');

describe.skipIf(!canRun)('etcd harness and fleet store', () => {
  let etcd: EtcdCluster;
  let store: FleetStore;

  beforeAll(async () => {
    etcd = await startEtcd({ members: 3 });
    const c = await etcd.clientCert('host-a');
    store = await FleetStore.open({ endpoints: etcd.endpoints, ...c });
  }, 120_000);

  afterAll(async () => {
    store?.close();
    await etcd?.destroy();
    if (etcd) expect(existsSync(etcd.dir)).toBe(false);
  }, 60_000);

  it('the host id is the CN of the client certificate', () => {
    expect(store.hostId).toBe('host-a');
  });

  it('puts under a guard once; a second guarded put fails; list and watch see the revision', async () => {
    const first = await store.txn({ guards: [{ key: '/t/x', target: 'Create', revision: 0 }], puts: [{ key: '/t/x', value: '1' }] });
    expect(first.succeeded).toBe(true);
    const again = await store.txn({ guards: [{ key: '/t/x', target: 'Create', revision: 0 }], puts: [{ key: '/t/x', value: '2' }] });
    expect(again.succeeded).toBe(false);
    const listed = await store.list('/t/');
    expect(listed.kvs.map((k) => [k.key, k.value])).toEqual([['/t/x', '1']]);
    expect(listed.revision).toBeGreaterThanOrEqual(first.revision);
    // A compare-and-swap on the mod revision.
    const swap = await store.txn({ guards: [{ key: '/t/x', target: 'Mod', revision: listed.kvs[0]!.modRevision }], puts: [{ key: '/t/x', value: '3' }] });
    expect(swap.succeeded).toBe(true);
    const watcher = store.watch('/t/', first.revision);
    const seen: string[] = [];
    await new Promise<void>((resolve) => {
      watcher.on('put', (kv) => {
        seen.push(kv.value.toString());
        if (seen.length === 2) resolve();
      });
    });
    await watcher.cancel();
    expect(seen).toEqual(['1', '3']);
  });

  it('one member killed: the others still serve', async () => {
    await etcd.stopMember(0);
    try {
      let ok = false;
      for (let i = 0; i < 30 && !ok; i++) {
        ok = (await store.txn({ guards: [{ key: '/t/y', target: 'Create', revision: 0 }], puts: [{ key: '/t/y', value: 'y' }] }).catch(() => ({ succeeded: false }))).succeeded;
        if (!ok) await new Promise((r) => setTimeout(r, 500));
      }
      expect(ok).toBe(true);
    } finally {
      await etcd.startMember(0);
    }
  });

  it('a client certificate from another CA is refused', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'nitride-otherca-'));
    try {
      const p = (n: string) => path.join(dir, n);
      await runOk('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', p('k'), '-out', p('c'), '-days', '1', '-subj', '/CN=root']);
      const rogue = await FleetStore.open({ endpoints: etcd.endpoints, ca: (await etcd.clientCert('root')).ca, cert: p('c'), key: p('k') });
      try {
        await expect(rogue.list('/t/')).rejects.toThrow();
      } finally {
        rogue.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
