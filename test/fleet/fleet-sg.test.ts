/**
 * Security groups in fleet mode, end to end: one etcd member and three daemons, each host a
 * network namespace on one bridged underlay. Guests on h2 and h3; every change is made on a
 * host other than the ones whose guests it affects: a group created on h1 applies to h2's ENI,
 * rules authorized and revoked on h1 or h3 change what passes between the guests of h2 and h3
 * (a source group stands for its members on every host), concurrent rule changes from three
 * hosts lose none, hostile group records are ignored and counted, a flow log stays its host's
 * across fleet changes, and a network ACL made, filled and associated from three hosts
 * filters traffic between two others' guests.
 *
 * Every name starts with a unique prefix; afterAll kills what was started and deletes the
 * namespaces and the etcd directory even when a test fails. Counts, not timings.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FleetStatus } from '../../src/api/fleet.js';
import type { SecurityGroupRecord } from '../../src/api/security-groups.js';
import type { EniInfo } from '../../src/api/vpc.js';
import { tempDir } from '../helpers/nitride.js';
import { NsLab, must, waitFor, type NsHost } from '../helpers/netns.js';
import { startEtcd, type EtcdCluster } from '../helpers/etcd.js';
import { run } from '../helpers/run.js';
import { SG_PROBE_PY } from '../helpers/sg-probe.js';

const hasCommand = (cmd: string) => ['/usr/sbin', '/usr/bin', '/sbin', '/bin'].some((d) => existsSync(`${d}/${cmd}`));
const canRun = process.getuid?.() === 0 && hasCommand('ip') && hasCommand('busybox') && hasCommand('python3') && hasCommand('etcd') && hasCommand('etcdctl');

const prefix = 'nts' + randomBytes(3).toString('hex');
const octet = 16 + (randomBytes(1)[0]! % 200);
const VPC_ID = 'vpc-05e5e5e5e5e5e5e51';
const SUBNET_ID = 'subnet-05e5e5e5e5e5e5e51';
const DEFAULT_SG = `sg-${VPC_ID.slice(4)}`;
const SG_WEB = 'sg-05e5e5e5e5e5e5e5a';
const SG_OTHER = 'sg-05e5e5e5e5e5e5e5b';
const ACL_X = 'acl-05e5e5e5e5e5e5e5c';
const NAMES = ['h1', 'h2', 'h3'] as const;

const scratch = tempDir('nitride-fleet-sg-');
const lab = new NsLab(prefix, scratch.dir);
let etcd: EtcdCluster;

describe.skipIf(!canRun)('security groups in a fleet of three hosts on etcd', () => {
  const hosts: NsHost[] = [];
  const servers: ChildProcess[] = [];
  let eniB: EniInfo;
  let eniC: EniInfo;
  let gb: { ns: string };
  let gc: { ns: string };
  const h1 = () => hosts[0]!;
  const h2 = () => hosts[1]!;
  const h3 = () => hosts[2]!;
  const probe = async (ns: string, ...args: string[]) => (await run('ip', ['netns', 'exec', ns, 'python3', '-c', SG_PROBE_PY, ...args])).stdout.trim();
  const serve = (ns: string, ...args: string[]) => {
    servers.push(spawn('ip', ['netns', 'exec', ns, 'python3', '-c', SG_PROBE_PY, ...args], { stdio: 'ignore' }));
  };
  const ok = async (h: NsHost, args: string[]) => {
    const r = await h.cli(args);
    expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
    return r.stdout;
  };
  /** Every host's view has the group as `want` says (the hosts apply a change when their watch delivers it). */
  const everyHost = (what: string, want: (g: SecurityGroupRecord) => boolean) =>
    waitFor(`every host: ${what}`, async () => {
      for (const h of hosts) {
        const r = await h.cli(['sg', 'describe', SG_WEB, '--json']);
        if (r.code !== 0 || !want(JSON.parse(r.stdout) as SecurityGroupRecord)) return false;
      }
      return true;
    });
  const port5001 = (g: SecurityGroupRecord) => g.ingress.some((r) => r.fromPort === 5001);

  beforeAll(async () => {
    const namespaces = [];
    for (const n of NAMES) namespaces.push(await lab.addNamespace(n));
    const { ips, hub, hubIp } = await lab.bridgedUnderlay(namespaces, octet);
    etcd = await startEtcd({ members: 1, netns: hub, host: hubIp, parent: scratch.dir });
    for (const [i, n] of NAMES.entries()) hosts.push(await lab.startHost(n, namespaces[i]!, ips[i]!, await etcd.daemonArgs(n)));
    await h1().json(['vpc', 'create', '--cidr', '172.29.0.0/16', '--id', VPC_ID]);
    await h1().json(['subnet', 'create', '--vpc', VPC_ID, '--cidr', '172.29.1.0/24', '--id', SUBNET_ID]);
    eniB = await h2().json<EniInfo>(['eni', 'create', '--subnet', SUBNET_ID, '--kind', 'veth']);
    eniC = await h3().json<EniInfo>(['eni', 'create', '--subnet', SUBNET_ID, '--kind', 'veth']);
    await waitFor('every host has both ENIs and sessions with the others', async () => {
      for (const h of hosts) {
        if ((await h.json<EniInfo[]>(['eni', 'list'])).length !== 2) return false;
        const peers = await h.json<Array<{ self: boolean; session: string }>>(['fleet', 'hosts']);
        if (peers.length !== 3 || peers.some((p) => !p.self && p.session !== 'established')) return false;
      }
      return true;
    }, 120_000);
    gb = await lab.dhcpGuest(h2(), 'gb', eniB);
    gc = await lab.dhcpGuest(h3(), 'gc', eniC);
    serve(gb.ns, 'tcpserve', eniB.privateIp, '5001');
    serve(gb.ns, 'tcpserve', eniB.privateIp, '5002');
    await waitFor('probe servers', async () => (await must('ip', 'netns', 'exec', gb.ns, 'ss', '-Hltn')).includes(':5002'));
  }, 300_000);

  afterAll(async () => {
    for (const p of servers) p.kill('SIGKILL');
    await lab.teardown();
    await etcd?.destroy();
    scratch.cleanup();
  }, 60_000);

  it('a group created on h1 is every host\'s; put on h2\'s ENI from h1, it stops inbound traffic from h3\'s guest', async () => {
    expect(await probe(gc.ns, 'tcpconnect', eniB.privateIp, '5001', '3')).toBe('ok'); // both in the default group
    await ok(h1(), ['sg', 'create', '--vpc', VPC_ID, '--name', 'web', '--id', SG_WEB]);
    await everyHost('web exists with no ingress rules', (g) => g.ingress.length === 0 && g.name === 'web');
    expect((await etcd.etcdctl(['get', '--print-value-only', `/nitride/sgs/${SG_WEB}`])).stdout).toContain('"name":"web"');
    await ok(h1(), ['eni', 'modify', eniB.id, '--groups', SG_WEB]);
    await waitFor('h2 runs its ENI in web', async () => (await h2().json<EniInfo>(['eni', 'describe', eniB.id])).securityGroups.join() === SG_WEB);
    expect(await probe(gc.ns, 'tcpconnect', eniB.privateIp, '5001', '2')).toBe('timeout');
    // An ENI created into the group on another host (a record only: host hz runs no daemon).
    const extra = await h3().json<EniInfo>(['eni', 'create', '--subnet', SUBNET_ID, '--groups', SG_WEB, '--host', 'hz']);
    await waitFor('every host has it in web', async () => {
      for (const h of hosts) if ((await h.json<EniInfo>(['eni', 'describe', extra.id])).securityGroups.join() !== SG_WEB) return false;
      return true;
    });
    await ok(h1(), ['eni', 'delete', extra.id]);
    await waitFor('deleted everywhere', async () => {
      for (const h of hosts) if ((await h.json<EniInfo[]>(['eni', 'list'])).some((e) => e.id === extra.id)) return false;
      return true;
    });
    // Two groups of one name, from another host: refused in one line.
    const dup = await h3().cli(['sg', 'create', '--vpc', VPC_ID, '--name', 'web']);
    expect(dup.code).not.toBe(0);
    expect(dup.stderr.trim().split('\n')).toHaveLength(1);
    expect(dup.stderr).toMatch(/already has a security group named 'web'/);
  });

  it('authorize on h3, revoke on h1: what passes between the guests of h3 and h2 follows; a source group stands for its members on every host', async () => {
    await ok(h3(), ['sg', 'authorize-ingress', SG_WEB, '--protocol', 'tcp', '--port', '5001', '--source-group', DEFAULT_SG]);
    await everyHost('port 5001 open', port5001);
    expect(await probe(gc.ns, 'tcpconnect', eniB.privateIp, '5001', '3')).toBe('ok');
    expect(await probe(gc.ns, 'tcpconnect', eniB.privateIp, '5002', '2')).toBe('timeout');
    // h3's guest leaves the default group (changed on h1): the rule no longer covers it.
    await ok(h1(), ['sg', 'create', '--vpc', VPC_ID, '--name', 'other', '--id', SG_OTHER]);
    await ok(h1(), ['eni', 'modify', eniC.id, '--groups', SG_OTHER]);
    await waitFor('h2 sees C in other', async () => (await h2().json<EniInfo>(['eni', 'describe', eniC.id])).securityGroups.join() === SG_OTHER);
    expect(await probe(gc.ns, 'tcpconnect', eniB.privateIp, '5001', '2')).toBe('timeout');
    await ok(h2(), ['eni', 'modify', eniC.id, '--groups', `${DEFAULT_SG},${SG_OTHER}`]);
    await waitFor('h2 sees C in both', async () => (await h2().json<EniInfo>(['eni', 'describe', eniC.id])).securityGroups.length === 2);
    expect(await probe(gc.ns, 'tcpconnect', eniB.privateIp, '5001', '3')).toBe('ok');
    // A group in use, or named by a rule, cannot go.
    const del = await h3().cli(['sg', 'delete', SG_WEB]);
    expect(del.code).not.toBe(0);
    expect(del.stderr).toMatch(/used by 1 ENI/);
    await ok(h1(), ['sg', 'revoke-ingress', SG_WEB, '--protocol', 'tcp', '--port', '5001', '--source-group', DEFAULT_SG]);
    await everyHost('port 5001 closed', (g) => !port5001(g));
    expect(await probe(gc.ns, 'tcpconnect', eniB.privateIp, '5001', '2')).toBe('timeout');
  }, 120_000);

  it('rule changes from three hosts at once: each is applied or refused as a conflict, none is lost', async () => {
    const ports = [6001, 6002, 6003];
    const results = await Promise.all(hosts.map((h, i) => h.cli(['sg', 'authorize-ingress', SG_WEB, '--protocol', 'tcp', '--port', String(ports[i]), '--cidr', '10.0.0.0/8'])));
    const won = ports.filter((_, i) => results[i]!.code === 0);
    for (const r of results) if (r.code !== 0) expect(r.stderr).toMatch(/changed meanwhile; try again/);
    expect(won.length).toBeGreaterThanOrEqual(1);
    await everyHost('the winners, and only they, are there', (g) => g.ingress.map((r) => r.fromPort).sort().join() === won.join());
    for (const p of won) await ok(h2(), ['sg', 'revoke-ingress', SG_WEB, '--protocol', 'tcp', '--port', String(p), '--cidr', '10.0.0.0/8']);
    // The default group gets a record of its own; ENIs created in it at once from every host do
    // not contend on that record (records only: host hz runs no daemon).
    await ok(h2(), ['sg', 'authorize-ingress', DEFAULT_SG, '--protocol', 'tcp', '--port', '7000', '--cidr', '10.0.0.0/8']);
    expect((await etcd.etcdctl(['get', '--print-value-only', `/nitride/sgs/${DEFAULT_SG}`])).stdout).toContain('"fromPort":7000');
    const created = await Promise.all(Array.from({ length: 12 }, (_, i) => hosts[i % 3]!.json<EniInfo>(['eni', 'create', '--subnet', SUBNET_ID, '--host', 'hz'])));
    expect(new Set(created.map((e) => e.privateIp)).size).toBe(12);
    for (const e of created) await ok(h1(), ['eni', 'delete', e.id]);
    await ok(h3(), ['sg', 'revoke-ingress', DEFAULT_SG, '--protocol', 'tcp', '--port', '7000', '--cidr', '10.0.0.0/8']);
  }, 120_000);

  it('hostile group records are ignored and counted; traffic keeps following the valid ones', async () => {
    await ok(h1(), ['sg', 'authorize-ingress', SG_WEB, '--protocol', 'tcp', '--port', '5002', '--source-group', SG_OTHER]);
    await everyHost('port 5002 open', (g) => g.ingress.some((r) => r.fromPort === 5002));
    const before = (await h2().json<FleetStatus>(['fleet', 'status'])).counters.badRecords;
    const puts: Array<[string, string]> = [
      ['/nitride/sgs/sg-0bad0bad0bad0bad1', '{not json'],
      // Opens everything, but names a group that does not exist.
      ['/nitride/sgs/sg-0bad0bad0bad0bad2', JSON.stringify({ id: 'sg-0bad0bad0bad0bad2', vpcId: VPC_ID, name: 'evil', description: '', ingress: [{ protocol: 'all', sourceGroup: 'sg-0bad0bad0bad0bad9' }], egress: [] })],
      // Claims the VPC's default group under another key.
      ['/nitride/sgs/sg-0bad0bad0bad0bad3', JSON.stringify({ id: DEFAULT_SG, vpcId: VPC_ID, name: 'default', description: '', ingress: [{ protocol: 'all', cidr: '0.0.0.0/0' }], egress: [] })],
    ];
    for (const [k, v] of puts) expect((await etcd.etcdctl(['put', k, v])).code).toBe(0);
    await waitFor('three records counted on h2', async () => (await h2().json<FleetStatus>(['fleet', 'status'])).counters.badRecords >= before + 3);
    expect((await h2().cli(['metrics'])).stdout).toMatch(new RegExp(`^nitride_fleet_bad_records_total ${before + 3}$`, 'm'));
    expect((await h2().json<SecurityGroupRecord[]>(['sg', 'list'])).map((g) => g.id).sort()).toEqual([DEFAULT_SG, SG_WEB, SG_OTHER].sort());
    expect(await probe(gc.ns, 'tcpconnect', eniB.privateIp, '5002', '3')).toBe('ok');
    expect(await probe(gc.ns, 'tcpconnect', eniB.privateIp, '5001', '2')).toBe('timeout');
    for (const [k] of puts) await etcd.etcdctl(['del', k]);
  }, 60_000);

  it('a flow log stays its host\'s across fleet changes', async () => {
    const fl = await h2().json<{ id: string }>(['flow-logs', 'create', '--eni', eniB.id, '--interval', '1']);
    expect((await h2().json<Array<{ id: string }>>(['flow-logs', 'list'])).map((f) => f.id)).toEqual([fl.id]);
    expect(await h3().json<unknown[]>(['flow-logs', 'list'])).toEqual([]);
    // A fleet change rebuilds h2's view: the flow log stays, and records traffic.
    await ok(h3(), ['sg', 'authorize-ingress', SG_WEB, '--protocol', 'tcp', '--port', '5001', '--source-group', SG_OTHER]);
    await waitFor('h2 has the new rule', async () => port5001(await h2().json<SecurityGroupRecord>(['sg', 'describe', SG_WEB])));
    expect((await h2().json<Array<{ id: string }>>(['flow-logs', 'list'])).map((f) => f.id)).toEqual([fl.id]);
    expect(await probe(gc.ns, 'tcpconnect', eniB.privateIp, '5001', '3')).toBe('ok');
    await waitFor('a record of the accepted connection', async () => (await h2().cli(['flow-logs', 'tail', '--eni', eniB.id])).stdout.includes(`${eniC.privateIp} ${eniB.privateIp}`));
  }, 60_000);

  it('a network ACL made on h1, filled on h3, associated from h2: what passes between h3\'s and h2\'s guests follows; taken back, it is gone everywhere', async () => {
    const DEFAULT_ACL = `acl-${VPC_ID.slice(4)}`;
    expect(await probe(gc.ns, 'tcpconnect', eniB.privateIp, '5001', '3')).toBe('ok'); // the groups allow 5001 and 5002 now
    await ok(h1(), ['nacl', 'create', '--vpc', VPC_ID, '--id', ACL_X]);
    await ok(h3(), ['nacl', 'create-entry', ACL_X, '--rule-number', '100', '--ingress', '--protocol', 'tcp', '--port', '5001', '--cidr', '0.0.0.0/0', '--action', 'deny']);
    await ok(h3(), ['nacl', 'create-entry', ACL_X, '--rule-number', '200', '--ingress', '--protocol', 'all', '--cidr', '0.0.0.0/0', '--action', 'allow']);
    await ok(h1(), ['nacl', 'create-entry', ACL_X, '--rule-number', '100', '--egress', '--protocol', 'all', '--cidr', '0.0.0.0/0', '--action', 'allow']);
    await ok(h2(), ['nacl', 'associate', ACL_X, '--subnet', SUBNET_ID]);
    const acl = (h: NsHost) => h.json<{ entries: unknown[]; subnets: string[] }>(['nacl', 'describe', ACL_X]);
    await waitFor('every host has the ACL on the subnet', async () => {
      for (const h of hosts) {
        const a = await acl(h);
        if (a.entries.length !== 3 || a.subnets.join() !== SUBNET_ID) return false;
      }
      return true;
    });
    expect(await probe(gc.ns, 'tcpconnect', eniB.privateIp, '5001', '2')).toBe('timeout'); // the groups allow it; the ACL does not
    expect(await probe(gc.ns, 'tcpconnect', eniB.privateIp, '5002', '3')).toBe('ok');
    // A subnet deleted on another host leaves the ACL that had it in the same transaction.
    const SUBNET_2 = 'subnet-05e5e5e5e5e5e5e52';
    await ok(h1(), ['subnet', 'create', '--vpc', VPC_ID, '--cidr', '172.29.2.0/24', '--id', SUBNET_2]);
    await ok(h3(), ['nacl', 'associate', ACL_X, '--subnet', SUBNET_2]);
    await ok(h2(), ['subnet', 'delete', SUBNET_2]);
    expect(JSON.parse((await etcd.etcdctl(['get', '--print-value-only', `/nitride/acls/${ACL_X}`])).stdout).subnets).toEqual([SUBNET_ID]);
    await waitFor('every host: the ACL has the first subnet only', async () => {
      for (const h of hosts) if ((await acl(h)).subnets.join() !== SUBNET_ID) return false;
      return true;
    });
    const busy = await h1().cli(['nacl', 'delete', ACL_X]);
    expect(busy.code).not.toBe(0);
    expect(busy.stderr).toMatch(/associated with 1 subnet/);
    await ok(h3(), ['nacl', 'associate', DEFAULT_ACL, '--subnet', SUBNET_ID]);
    await waitFor('every host: the subnet is back on the default ACL', async () => {
      for (const h of hosts) if ((await acl(h)).subnets.length !== 0) return false;
      return true;
    });
    expect(await probe(gc.ns, 'tcpconnect', eniB.privateIp, '5001', '3')).toBe('ok');
    await ok(h2(), ['nacl', 'delete', ACL_X]);
    await waitFor('deleted everywhere', async () => {
      for (const h of hosts) if ((await h.cli(['nacl', 'describe', ACL_X])).code === 0) return false;
      return true;
    });
    expect((await etcd.etcdctl(['get', '--prefix', '--keys-only', '/nitride/acls/'])).stdout.trim()).toBe('');
  }, 90_000);
});
