/**
 * Per-host etcd RBAC (scripts/fleet-etcd-rbac.sh) against a real member: host B's credentials
 * cannot overwrite host A's record or ENIs (nor change their groups) — etcd refuses, and the daemon passes etcd's error on
 * in one line — while B still registers, watches and writes its own. Host A is played by a
 * store with A's certificate (no daemon, so no netdevs outside a namespace); B is a real daemon
 * whose ENIs here are all remote.
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FleetHostInfo } from '../../src/api/fleet.js';
import type { EniInfo } from '../../src/api/vpc.js';
import { fleetKeys } from '../../src/fleet/records.js';
import { FleetStore } from '../../src/fleet/store.js';
import { startHost, type TestHost } from '../helpers/nitride.js';
import { waitFor } from '../helpers/netns.js';
import { startEtcd, type EtcdCluster } from '../helpers/etcd.js';

const canRun = process.getuid?.() === 0 && existsSync('/usr/bin/etcd') && existsSync('/usr/bin/etcdctl');
const VPC = 'vpc-0a0a0a0a0a0a0a0a0';
const SUBNET = 'subnet-0a0a0a0a0a0a0a0a0';
const ENI_A = 'eni-0a0a0a0a0a0a0a0a1';

describe.skipIf(!canRun)('fleet RBAC: a role per host over its own keys', () => {
  let etcd: EtcdCluster;
  let storeA: FleetStore;
  let storeB: FleetStore;
  let b: TestHost;
  const hostA = JSON.stringify({ hostId: 'a', endpoint: '10.0.0.1:4789', publicKey: Buffer.alloc(32, 1).toString('base64'), version: 'test' });

  beforeAll(async () => {
    etcd = await startEtcd();
    await etcd.rbac(['enable']);
    await etcd.rbac(['host', 'a', 'b']);
    storeA = await FleetStore.open({ endpoints: etcd.endpoints, ...(await etcd.clientCert('a')) });
    storeB = await FleetStore.open({ endpoints: etcd.endpoints, ...(await etcd.clientCert('b')) });
    // Host A: its record, a VPC, a subnet and one ENI of its own, all with A's credentials.
    const put = (key: string, value: string) => storeA.txn({ guards: [{ key, target: 'Create', revision: 0 }], puts: [{ key, value }] });
    for (const [k, v] of [
      [fleetKeys.host('a'), hostA],
      [fleetKeys.vpc(VPC), JSON.stringify({ id: VPC, cidr: '10.40.0.0/16' })],
      [fleetKeys.subnet(SUBNET), JSON.stringify({ id: SUBNET, vpcId: VPC, cidr: '10.40.1.0/24' })],
      [fleetKeys.eni('a', ENI_A), JSON.stringify({ id: ENI_A, vpcId: VPC, subnetId: SUBNET, mac: '02:00:00:0a:0a:01', privateIp: '10.40.1.10', sourceDestCheck: true, hostInterface: 'nia1', hostId: 'a', securityGroups: [`sg-${VPC.slice(4)}`] })],
      [fleetKeys.ip(SUBNET, '10.40.1.10'), ENI_A],
      [fleetKeys.mac('02:00:00:0a:0a:01'), ENI_A],
    ]) expect((await put(k!, v!)).succeeded).toBe(true);
    b = await startHost({ daemonArgs: await etcd.daemonArgs('b') });
  }, 120_000);

  afterAll(async () => {
    storeA?.close();
    storeB?.close();
    await b?.stop();
    await etcd?.destroy();
  }, 60_000);

  it('auth is on: a host without a user is refused', async () => {
    const stranger = await FleetStore.open({ endpoints: etcd.endpoints, ...(await etcd.clientCert('stranger')) });
    try {
      await expect(stranger.list('/nitride/')).rejects.toThrow(/permission denied|user name not found|not found/);
    } finally {
      stranger.close();
    }
  });

  it('host B registers, watches and sees A and A\'s ENI under its own role', async () => {
    await waitFor('B sees both hosts', async () => {
      const r = await b.cli(['fleet', 'hosts', '--json']);
      return r.code === 0 && (JSON.parse(r.stdout) as FleetHostInfo[]).map((h) => h.hostId).join() === 'a,b';
    });
    const enis = JSON.parse((await b.cli(['eni', 'list', '--json'])).stdout) as EniInfo[];
    expect(enis.map((e) => [e.id, e.hostId])).toEqual([[ENI_A, 'a']]);
  });

  it('B\'s credentials cannot overwrite A\'s record: etcd says permission denied', async () => {
    const forged = JSON.stringify({ hostId: 'a', endpoint: '10.0.0.66:4789', publicKey: Buffer.alloc(32, 6).toString('base64'), version: 'evil' });
    await expect(storeB.client.put(fleetKeys.host('a')).value(forged).exec()).rejects.toThrow(/permission denied/);
    await expect(storeB.txn({ guards: [{ key: fleetKeys.host('a'), target: 'Create', revision: 0 }], puts: [{ key: fleetKeys.host('a'), value: forged }] })).rejects.toThrow(/permission denied/);
    await expect(storeB.client.delete().key(fleetKeys.host('a')).exec()).rejects.toThrow(/permission denied/);
    expect(await storeA.client.get(fleetKeys.host('a')).string()).toBe(hostA);
  });

  it('B\'s credentials cannot claim, move or delete A\'s ENI; the daemon says so in one line', async () => {
    await expect(storeB.client.put(fleetKeys.eni('a', ENI_A)).value('{}').exec()).rejects.toThrow(/permission denied/);
    for (const args of [
      ['eni', 'move', ENI_A, '--host', 'b'],
      ['eni', 'delete', ENI_A],
      ['eni', 'create', '--subnet', SUBNET, '--host', 'a'],
      ['eni', 'modify', ENI_A, '--groups', `sg-${VPC.slice(4)}`],
    ]) {
      const r = await b.cli(args);
      expect(r.code, args.join(' ')).not.toBe(0);
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr, args.join(' ')).toMatch(/etcd refused or did not answer: .*permission denied/);
    }
    const enis = JSON.parse((await b.cli(['eni', 'list', '--json'])).stdout) as EniInfo[];
    expect(enis.map((e) => [e.id, e.hostId])).toEqual([[ENI_A, 'a']]);
  });

  it('B creates, changes and deletes a security group (the shared model)', async () => {
    const sg = 'sg-0b0b0b0b0b0b0b0b1';
    for (const args of [
      ['sg', 'create', '--vpc', VPC, '--name', 'web', '--id', sg],
      ['sg', 'authorize-ingress', sg, '--protocol', 'tcp', '--port', '80', '--cidr', '0.0.0.0/0'],
      ['sg', 'delete', sg],
    ]) {
      const r = await b.cli(args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
    }
  });

  it('B writes under its own prefix (the positive control)', async () => {
    const key = fleetKeys.eni('b', 'eni-0b0b0b0b0b0b0b0b1');
    expect((await storeB.txn({ guards: [{ key, target: 'Create', revision: 0 }], puts: [{ key, value: '{}' }] })).succeeded).toBe(true);
    expect((await storeB.txn({ guards: [{ key, target: 'Create', revision: 1 }], deletes: [key] })).succeeded).toBe(false);
    await storeB.client.delete().key(key).exec();
  });
});
