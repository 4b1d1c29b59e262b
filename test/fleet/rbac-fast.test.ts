/**
 * The benchmark's one-process RBAC (scripts/lib/etcd-rbac.mjs) leaves in etcd what the
 * production script (scripts/fleet-etcd-rbac.sh) does: the same role permissions and user roles
 * per host, the root user, auth on; and it is enforced (a host cannot write another's record).
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Etcd3 as Etcd3Type } from 'etcd3';
import { FleetStore } from '../../src/fleet/store.js';
import { startEtcd, type EtcdCluster } from '../helpers/etcd.js';
import { ROOT } from '../helpers/nitride.js';
// @ts-expect-error: a script library without types
import { setupFleetRbac } from '../../scripts/lib/etcd-rbac.mjs';

const canRun = existsSync('/usr/bin/etcd') && existsSync('/usr/bin/etcdctl');
const { Etcd3 } = createRequire(path.join(ROOT, 'package.json'))('etcd3') as { Etcd3: typeof Etcd3Type };

describe.skipIf(!canRun)('fleet RBAC in one process', () => {
  let script: EtcdCluster;
  let fast: EtcdCluster;

  beforeAll(async () => {
    [script, fast] = await Promise.all([startEtcd({ members: 1 }), startEtcd({ members: 1 })]);
    await script.rbac(['host', 'ha', 'hb']);
    await script.rbac(['enable']);
    const root = await fast.clientCert('root');
    const client = new Etcd3({ hosts: fast.endpoints, credentials: { rootCertificate: readFileSync(root.ca), certChain: readFileSync(root.cert), privateKey: readFileSync(root.key) } });
    try {
      await setupFleetRbac(client, ['ha', 'hb']);
    } finally {
      client.close();
    }
  }, 120_000);

  afterAll(async () => {
    await script?.destroy();
    await fast?.destroy();
  }, 60_000);

  const out = async (etcd: EtcdCluster, args: string[]) => {
    const r = await etcd.etcdctl(args);
    expect(r.code, r.stderr).toBe(0);
    return r.stdout;
  };

  it('roles and users are the same as the script leaves (auth on: the next test)', async () => {
    for (const args of [['role', 'list'], ['user', 'list'], ['role', 'get', 'nitride-host-ha'], ['role', 'get', 'nitride-host-hb'], ['user', 'get', 'ha'], ['user', 'get', 'root']]) {
      expect(await out(fast, args), args.join(' ')).toEqual(await out(script, args));
    }
  });

  it("a host cannot write another host's record", async () => {
    const b = await FleetStore.open({ endpoints: fast.endpoints, ...(await fast.clientCert('hb')) });
    try {
      await expect(b.txn({ guards: [{ key: '/nitride/hosts/ha', target: 'Create', revision: 0 }], puts: [{ key: '/nitride/hosts/ha', value: '{}' }] })).rejects.toThrow(/permission denied/);
      expect((await b.txn({ guards: [{ key: '/nitride/hosts/hb', target: 'Create', revision: 0 }], puts: [{ key: '/nitride/hosts/hb', value: '{}' }] })).succeeded).toBe(true);
    } finally {
      b.close();
    }
  });
});
