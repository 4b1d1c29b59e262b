// scripts/fleet-etcd-rbac.sh (`enable`, then `host ID...`) in one process through the etcd3
// client's auth API: the same root user, roles, users and permissions, for benchmarks with
// dozens of hosts (the script makes ~12 etcdctl calls per host). Keep hostPermissions in step
// with the script: test/fleet/rbac-fast.test.ts compares what both leave in etcd.

/** etcdctl's `--prefix`: the range end of every key starting with `prefix`. */
const prefixEnd = (prefix) => {
  const b = Buffer.from(prefix);
  b[b.length - 1]++;
  return b;
};

/** The permissions of host `id`'s role: [type, key, prefix?]. */
export const hostPermissions = (id) => [
  ['Read', '/nitride/', true],
  ['Readwrite', `/nitride/hosts/${id}`, false],
  ['Readwrite', `/nitride/enis/${id}/`, true],
  ...['vpcs', 'subnets', 'sgs', 'acls', 'ips', 'macs'].map((s) => ['Readwrite', `/nitride/${s}/`, true]),
];

const existing = (err) => {
  if (!/already exists/.test(err.message)) throw err;
};

/** A role `nitride-host-<id>` and a password-less user `<id>` per host, then root and auth on. */
export async function setupFleetRbac(client, hostIds, { concurrency = 8 } = {}) {
  const auth = client.auth;
  const host = async (id) => {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(id)) throw new Error(`'${id}' is not a host id`);
    const role = `nitride-host-${id}`;
    await auth.roleAdd({ name: role }).catch(existing);
    for (const [permType, key, prefix] of hostPermissions(id)) {
      await auth.roleGrantPermission({ name: role, perm: { permType, key: Buffer.from(key), range_end: prefix ? prefixEnd(key) : Buffer.alloc(0) } });
    }
    await auth.userAdd({ name: id, password: '', options: { no_password: true } }).catch(existing);
    await auth.userGrantRole({ user: id, role });
  };
  const queue = [...hostIds];
  await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, async () => {
    while (queue.length) await host(queue.shift());
  }));
  await auth.userAdd({ name: 'root', password: '', options: { no_password: true } }).catch(existing);
  await auth.userGrantRole({ user: 'root', role: 'root' });
  await auth.authEnable();
}
