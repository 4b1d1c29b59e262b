/**
 * Fleet mode end to end: three etcd members and four daemons, each host a network namespace on
 * one bridged underlay (the members run in the hub namespace, on its address), zero `peer add`
 * and zero remote ENI records. Hosts find each other through their etcd records, guests on every
 * host reach each other, iperf3 between two hosts never stalls while the etcd leader is killed
 * (and changes work again after the election), an ENI moves and every host follows, 200 concurrent `eni create` from
 * all hosts get distinct addresses, hostile records are ignored and counted, the data plane
 * keeps forwarding with every etcd member down while changes are refused in one line, a change
 * made meanwhile arrives, a compacted revision forces a relist, and a killed host drops out
 * when its lease expires and rejoins with the same identity.
 *
 * Every name starts with a unique prefix; afterAll kills what was started and deletes the
 * namespaces and the etcd directory even when a test fails. Counts, not timings.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FleetHostInfo, FleetStatus } from '../../src/api/fleet.js';
import type { EniInfo } from '../../src/api/vpc.js';
import { VPC_API } from '../../src/api/vpc.js';
import { ControlClient } from '../../src/control/client.js';
import { tempDir } from '../helpers/nitride.js';
import { NsLab, must, waitFor, type NsHost } from '../helpers/netns.js';
import { startEtcd, type EtcdCluster } from '../helpers/etcd.js';
import { iperf } from '../helpers/iperf.js';
import { run } from '../helpers/run.js';

const hasCommand = (cmd: string) => ['/usr/sbin', '/usr/bin', '/sbin', '/bin'].some((d) => existsSync(`${d}/${cmd}`));
const canRun = process.getuid?.() === 0 && hasCommand('ip') && hasCommand('tc') && hasCommand('busybox') && hasCommand('etcd') && hasCommand('etcdctl') && hasCommand('iperf3');

const prefix = 'ntf' + randomBytes(3).toString('hex');
const octet = 16 + (randomBytes(1)[0]! % 200);
const VPC_ID = 'vpc-0f1e2d3c4b5a69788';
const SUBNET_ID = 'subnet-0f1e2d3c4b5a69788';
const BULK_SUBNET = 'subnet-0f1e2d3c4b5a69799';
const NAMES = ['h1', 'h2', 'h3', 'h4'] as const;

const scratch = tempDir('nitride-fleet-');
const lab = new NsLab(prefix, scratch.dir);
let etcd: EtcdCluster;
const iperfServers: ChildProcess[] = [];

function pingReceived(out: string): number {
  const m = /(\d+) packets received/.exec(out);
  return m ? Number(m[1]) : -1;
}

async function ping(fromNs: string, ip: string, count = 3): Promise<number> {
  const r = await run('ip', ['netns', 'exec', fromNs, 'busybox', 'ping', '-c', String(count), '-W', '3', ip]);
  return pingReceived(r.stdout);
}

describe.skipIf(!canRun)('a fleet of four hosts on etcd', () => {
  const hosts: NsHost[] = [];
  const guests: Array<{ ns: string; ip: string; ifname: string }> = [];
  const statusOf = (h: NsHost) => h.json<FleetStatus>(['fleet', 'status']);
  const hostsOf = (h: NsHost) => h.json<FleetHostInfo[]>(['fleet', 'hosts']);

  beforeAll(async () => {
    const namespaces = [];
    for (const n of NAMES) namespaces.push(await lab.addNamespace(n));
    const { ips, hub, hubIp } = await lab.bridgedUnderlay(namespaces, octet);
    etcd = await startEtcd({ members: 3, netns: hub, host: hubIp, parent: scratch.dir });
    for (const [i, n] of NAMES.entries()) hosts.push(await lab.startHost(n, namespaces[i]!, ips[i]!, await etcd.daemonArgs(n)));
  }, 240_000);

  afterAll(async () => {
    for (const p of iperfServers) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    await lab.teardown();
    await etcd?.destroy();
    scratch.cleanup();
  }, 60_000);

  it('hosts register and find each other: sessions with every other host, no peer add', async () => {
    await waitFor('every host sees four hosts with sessions', async () => {
      for (const h of hosts) {
        const list = await hostsOf(h);
        if (list.length !== 4 || list.some((x) => !x.self && x.session !== 'established')) return false;
      }
      return true;
    });
    const list = await hostsOf(hosts[0]!);
    expect(list.map((x) => [x.hostId, x.self])).toEqual([
      ['h1', true],
      ['h2', false],
      ['h3', false],
      ['h4', false],
    ]);
    expect(list.find((x) => x.hostId === 'h2')!.publicKey).toBe((await hosts[1]!.json<{ publicKey: string }>(['key', 'show'])).publicKey);
    expect(list.find((x) => x.hostId === 'h2')!.endpoint).toBe(`${hosts[1]!.underlayIp}:4789`);
    const s = await statusOf(hosts[0]!);
    expect(s).toMatchObject({ hostId: 'h1', state: 'ok', hosts: 4 });
    expect(s.registeredAt).not.toBeNull();
    const r = await hosts[0]!.cli(['peer', 'add', '--name', 'x', '--endpoint', '10.0.0.9:4789', '--public-key', list[1]!.publicKey]);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/fleet mode/);
  });

  it('a VPC, a subnet and an ENI per host made on different hosts: every host has the whole model', async () => {
    await hosts[0]!.json(['vpc', 'create', '--cidr', '172.30.0.0/16', '--id', VPC_ID]);
    await hosts[1]!.json(['subnet', 'create', '--vpc', VPC_ID, '--cidr', '172.30.1.0/24', '--id', SUBNET_ID]);
    const enis: EniInfo[] = [];
    const beforeCreates = Date.now();
    for (const h of hosts) enis.push(await h.json<EniInfo>(['eni', 'create', '--subnet', SUBNET_ID, '--kind', 'veth']));
    expect(new Set(enis.map((e) => e.privateIp)).size).toBe(4);
    for (const e of enis) expect(e).toMatchObject({ hostId: 'local', kind: 'veth' });
    await waitFor('every host has the four ENIs', async () => {
      for (const [i, h] of hosts.entries()) {
        const list = await h.json<EniInfo[]>(['eni', 'list']);
        if (list.length !== 4) return false;
        const owners = Object.fromEntries(list.map((e) => [e.id, e.hostId]));
        for (const [j, e] of enis.entries()) if (owners[e.id] !== (i === j ? 'local' : NAMES[j])) return false;
      }
      return true;
    });
    // An id another host's ENI has is refused here too (found by its key, not by parsing every record).
    const dup = await hosts[1]!.cli(['eni', 'create', '--subnet', SUBNET_ID, '--id', enis[0]!.id, '--kind', 'veth']);
    expect(dup.code).not.toBe(0);
    expect(dup.stderr.trim().split('\n')).toHaveLength(1);
    expect(dup.stderr).toMatch(new RegExp(`ENI ${enis[0]!.id} already exists`));
    // Each engine got the last ENI at a time it records (bench-fleet times propagation by it).
    for (const h of hosts) {
      const s = await statusOf(h);
      expect(Date.parse(s.appliedAt!), h.name).toBeGreaterThanOrEqual(beforeCreates);
      expect(Date.parse(s.appliedAt!), h.name).toBeLessThanOrEqual(Date.now());
    }
    for (const [i, h] of hosts.entries()) {
      const g = await lab.dhcpGuest(h, `g${i}`, enis[i]!);
      expect(g.lease.ip).toBe(enis[i]!.privateIp);
      guests.push({ ns: g.ns, ip: enis[i]!.privateIp, ifname: g.ifname });
    }
  }, 120_000);

  it('guests on every host reach each other (all twelve pairs, zero peer add)', async () => {
    for (const from of guests) {
      for (const to of guests) {
        if (from !== to) expect(await ping(from.ns, to.ip), `${from.ip} -> ${to.ip}`).toBeGreaterThanOrEqual(2);
      }
    }
  }, 120_000);

  it('the etcd leader killed under iperf3: no error, no interval without data; eni create works again after the election', async () => {
    const leader = await etcd.leader();
    const [from, to] = [guests[0]!, guests[1]!];
    try {
      // Longer than a host lease (10 s): a host whose lease lapsed in the election would drop out of its peers' views within the run.
      const transfer = iperf(iperfServers, from.ns, to, 20, ['-i', '1']);
      await waitFor('the iperf3 connection', async () => (await run('ip', ['netns', 'exec', from.ns, 'ss', '-Htn', 'state', 'established', 'dport', '=', ':5201'])).stdout.trim() !== '', 20_000);
      await etcd.stopMember(leader);
      const r = await transfer;
      expect(r.error).toBeUndefined();
      expect(r.code).toBe(0);
      expect(r.intervals.length).toBeGreaterThanOrEqual(20);
      expect(r.intervals.findIndex((b) => b === 0), `bytes per interval: ${r.intervals.join(' ')}`).toBe(-1);

      // A mutation during the election may be refused (one line); once a leader is elected it is accepted.
      let made: EniInfo | undefined;
      await waitFor('eni create accepted after the election', async () => {
        const c = await hosts[2]!.cli(['eni', 'create', '--subnet', SUBNET_ID, '--host', 'hz', '--json']);
        if (c.code === 0) made = JSON.parse(c.stdout) as EniInfo;
        else if (c.stderr.trim().split('\n').length !== 1) throw Object.assign(new Error(`a refusal of more than one line: ${c.stderr}`), { fatal: true });
        return c.code === 0;
      }, 60_000);
      expect(await etcd.leader()).not.toBe(leader);
      await waitFor('every host sees the new ENI', async () => {
        for (const h of hosts) if (!(await h.json<EniInfo[]>(['eni', 'list'])).some((e) => e.id === made!.id)) return false;
        return true;
      });
      // With two members of three up, every call is served (one that picks the dead member goes on to the next) and no host is degraded.
      for (let i = 0; i < 8; i++) await hosts[i % hosts.length]!.json(['eni', 'create', '--subnet', SUBNET_ID, '--host', 'hz']);
      for (const h of hosts) expect((await statusOf(h)).state, h.name).toBe('ok');
      // Every host is still registered (no lease was lost for good) and in session with the others.
      await waitFor('four hosts in session everywhere', async () => {
        for (const h of hosts) if ((await hostsOf(h)).filter((x) => x.self || x.session === 'established').length !== 4) return false;
        return true;
      });
    } finally {
      await etcd.startMember(leader);
    }
  }, 180_000);

  it('eni move: the owner changes and every host follows', async () => {
    const e = await hosts[0]!.json<EniInfo>(['eni', 'create', '--subnet', SUBNET_ID, '--kind', 'veth']);
    await must('ip', '-n', hosts[0]!.ns, 'link', 'show', e.hostInterface);
    const moved = await hosts[2]!.json<EniInfo>(['eni', 'move', e.id, '--host', 'h2']);
    expect(moved.hostId).toBe('h2');
    await waitFor('every host sees the ENI on h2', async () => {
      const seen = await Promise.all(hosts.map((h) => h.json<EniInfo>(['eni', 'describe', e.id])));
      return seen[0]!.hostId === 'h2' && seen[1]!.hostId === 'local' && seen[2]!.hostId === 'h2';
    });
    // Its netdev followed it.
    await waitFor('netdev on h2, gone from h1', async () => (await run('ip', ['-n', hosts[1]!.ns, 'link', 'show', e.hostInterface])).code === 0 && (await run('ip', ['-n', hosts[0]!.ns, 'link', 'show', e.hostInterface])).code !== 0);
    await hosts[1]!.json(['eni', 'delete', e.id]);
    await waitFor('deleted everywhere', async () => (await hosts[0]!.json<EniInfo[]>(['eni', 'list'])).every((x) => x.id !== e.id));
  });

  it('200 concurrent eni create from all four hosts in one subnet: all addresses distinct', async () => {
    await hosts[2]!.json(['subnet', 'create', '--vpc', VPC_ID, '--cidr', '172.30.2.0/24', '--id', BULK_SUBNET]);
    // Placed on a host that is not running: no netdevs, only records (the race is in the allocation).
    const clients = hosts.map((h) => new ControlClient({ socketPath: h.controlSocket, timeoutMs: 120_000 }));
    // 200 calls, up to 20 in flight on each daemon at once (a control socket admits 64 connections).
    let next = 0;
    const created: EniInfo[] = [];
    await Promise.all(
      Array.from({ length: 60 }, async (_, lane) => {
        while (next < 200) {
          next++;
          created.push(await clients[lane % clients.length]!.call<EniInfo>('POST', VPC_API.enis, { subnetId: BULK_SUBNET, hostId: 'hz' }));
        }
      }),
    );
    expect(created).toHaveLength(200);
    const ips = created.map((e) => e.privateIp);
    expect(new Set(ips).size).toBe(200);
    expect(new Set(created.map((e) => e.mac)).size).toBe(200);
    await waitFor('every host sees 200 ENIs in the subnet', async () => {
      for (const h of hosts) if ((await h.json<EniInfo[]>(['eni', 'list'])).filter((e) => e.subnetId === BULK_SUBNET).length !== 200) return false;
      return true;
    });
    // etcd agrees: 200 address claims.
    const claims = await etcd.etcdctl(['get', '--prefix', '--keys-only', `/nitride/ips/${BULK_SUBNET}/`]);
    expect(claims.stdout.split('\n').filter(Boolean)).toHaveLength(200);
    const full = await hosts[0]!.cli(['eni', 'create', '--subnet', BULK_SUBNET, '--ip', ips[0]!, '--host', 'hz']);
    expect(full.code).not.toBe(0);
    expect(full.stderr).toMatch(/already assigned/);
  }, 300_000);

  it('hostile records are ignored and counted; a host claiming another one\'s key gets no peer', async () => {
    const before = (await statusOf(hosts[1]!)).counters.badRecords;
    const h1Key = (await hosts[0]!.json<{ publicKey: string }>(['key', 'show'])).publicKey;
    const puts: Array<[string, string]> = [
      ['/nitride/enis/h3/eni-0000000000000bad1', '{not json'],
      ['/nitride/enis/h3/eni-0000000000000bad2', JSON.stringify({ id: 'eni-0000000000000bad2', vpcId: VPC_ID, subnetId: SUBNET_ID, mac: '02:00:00:00:0b:ad', privateIp: '8.8.8.8', sourceDestCheck: true, hostInterface: 'nibad', hostId: 'h3', securityGroups: [] })],
      ['/nitride/hosts/evil', JSON.stringify({ hostId: 'evil', endpoint: '10.9.9.9:4789', publicKey: h1Key, version: '0' })],
      ['/nitride/vpcs/vpc-00000000000000bad', JSON.stringify({ id: 'vpc-00000000000000bad', cidr: '127.0.0.0/16' })],
    ];
    for (const [k, v] of puts) expect((await etcd.etcdctl(['put', k, v])).code).toBe(0);
    await waitFor('four records counted on h2', async () => (await statusOf(hosts[1]!)).counters.badRecords >= before + 4);
    expect((await hosts[1]!.cli(['metrics'])).stdout).toMatch(new RegExp(`^nitride_fleet_bad_records_total ${before + 4}$`, 'm'));
    expect((await hostsOf(hosts[1]!)).map((h) => h.hostId)).toEqual(['h1', 'h2', 'h3', 'h4']);
    expect((await hosts[1]!.json<EniInfo[]>(['eni', 'list'])).some((e) => /^eni-0000000000000bad/.test(e.id))).toBe(false);
    expect(readFileSync(path.join(scratch.dir, 'h2', 'state', 'fleet.json'), 'utf8')).toContain('"revision"');
    for (const [k] of puts) await etcd.etcdctl(['del', k]);
    // Still serving.
    expect(await ping(guests[0]!.ns, guests[1]!.ip)).toBeGreaterThanOrEqual(2);
  });

  it('every etcd member down: forwarding and DHCP continue, changes are refused in one line; back up, a change made meanwhile arrives', async () => {
    await etcd.stopAll();
    await waitFor('h1 degraded', async () => (await statusOf(hosts[0]!)).state === 'degraded');
    const s = await hosts[0]!.json<{ health: string; problems: string[] }>(['status']);
    expect(s.health).toBe('degraded');
    expect(s.problems.join(' ')).toMatch(/fleet: degraded \(etcd unreachable since /);
    expect((await hosts[0]!.cli(['status'])).stdout).toMatch(/fleet: +degraded \(etcd unreachable since \d{4}-/);
    const refused = await hosts[0]!.cli(['eni', 'create', '--subnet', SUBNET_ID, '--kind', 'veth']);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toMatch(/etcd unreachable since .*refused/);
    const metrics = (await hosts[0]!.cli(['metrics'])).stdout;
    expect(metrics).toMatch(/^nitride_fleet_degraded 1$/m);
    expect(metrics).toMatch(/^nitride_fleet_hosts 4$/m);
    for (const from of guests) for (const to of guests) if (from !== to) expect(await ping(from.ns, to.ip, 2)).toBeGreaterThanOrEqual(1);
    // DHCP answers from the kept view.
    const renew = await run('ip', ['netns', 'exec', guests[1]!.ns, 'busybox', 'udhcpc', '-i', guests[1]!.ifname, '-n', '-q', '-f', '-t', '3', '-T', '2', '-s', '/bin/true']);
    expect(renew.code).toBe(0);

    await etcd.startAll();
    await waitFor('h1 ok again', async () => (await statusOf(hosts[0]!)).state === 'ok');
    await waitFor('h2 ok again', async () => (await statusOf(hosts[1]!)).state === 'ok');
    const e = await hosts[0]!.json<EniInfo>(['eni', 'create', '--subnet', BULK_SUBNET, '--host', 'hz']);
    await waitFor('the change reaches h2', async () => (await hosts[1]!.json<EniInfo[]>(['eni', 'list'])).some((x) => x.id === e.id));
  }, 180_000);

  it('a daemon restarted after a compaction relists; one started with etcd down runs on its snapshot', async () => {
    const h3 = hosts[2]!;
    let made = '';
    await h3.restartDaemon(async () => {
      made = (await hosts[0]!.json<EniInfo>(['eni', 'create', '--subnet', BULK_SUBNET, '--host', 'hz'])).id;
      // One more revision, so that the compaction removes the one after h3's snapshot.
      expect((await etcd.etcdctl(['put', '/nitride-test/bump', 'x'])).code).toBe(0);
      const rev = JSON.parse((await etcd.etcdctl(['endpoint', 'status', '-w', 'json'])).stdout)[0].Status.header.revision as number;
      expect((await etcd.etcdctl(['compact', String(rev)])).code).toBe(0);
    });
    await waitFor('h3 sees the change', async () => (await h3.json<EniInfo[]>(['eni', 'list'])).some((x) => x.id === made));
    // This process listed once: when its watch from the snapshot's revision hit the compaction.
    expect((await statusOf(h3)).counters.relists).toBe(1);
    expect(h3.output).toMatch(/listing again/);

    // Static start: etcd down, the daemon comes up on its snapshot and forwards.
    await etcd.stopAll();
    try {
      await h3.restartDaemon();
      const st = await statusOf(h3);
      expect(st.state).toBe('degraded');
      expect((await h3.json<EniInfo[]>(['eni', 'list'])).some((x) => x.id === made)).toBe(true);
      // Its peers come from the snapshot: the handshake with h1 needs no etcd.
      await waitFor('a session with h1 from the snapshot', async () => (await hostsOf(h3)).find((x) => x.hostId === 'h1')?.session === 'established');
      expect(await ping(guests[2]!.ns, guests[0]!.ip, 3)).toBeGreaterThanOrEqual(1);
    } finally {
      await etcd.startAll();
    }
    await waitFor('h3 ok again', async () => (await statusOf(h3)).state === 'ok');
  }, 180_000);

  it('kill -9 a host: every other host drops it when its lease expires; restarted, it rejoins with the same identity and its ENI answers', async () => {
    const h3 = hosts[2]!;
    const others = hosts.filter((h) => h !== h3);
    const key = (await h3.json<{ publicKey: string }>(['key', 'show'])).publicKey;
    await waitFor('h3 registered everywhere', async () => {
      for (const h of others) if ((await statusOf(h)).hosts !== 4) return false;
      return true;
    });
    const exited = new Promise((r) => h3.daemon.once('exit', r));
    h3.daemon.kill('SIGKILL');
    await exited;
    await waitFor('every other host drops h3', async () => {
      for (const h of others) {
        if ((await hostsOf(h)).some((x) => x.hostId === 'h3') || (await statusOf(h)).hosts !== 3) return false;
      }
      return true;
    }, 40_000);
    await h3.restartDaemon();
    expect((await statusOf(h3)).hostId).toBe('h3');
    expect((await h3.json<{ publicKey: string }>(['key', 'show'])).publicKey).toBe(key);
    await waitFor('h3 back everywhere with the same key and a session', async () => {
      for (const h of others) {
        const x = (await hostsOf(h)).find((y) => y.hostId === 'h3');
        if (x?.publicKey !== key || x.session !== 'established') return false;
      }
      return true;
    });
    for (const g of guests) if (g !== guests[2]) expect(await ping(g.ns, guests[2]!.ip), `${g.ip} -> ${guests[2]!.ip}`).toBeGreaterThanOrEqual(2);
  }, 120_000);
});
