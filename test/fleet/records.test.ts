/** The fleet's view built from etcd records (pure: no etcd): what is kept, what is refused and why. */
import { describe, expect, it } from 'vitest';
import { buildView, fleetKeys, type ParseCache } from '../../src/fleet/records.js';
import type { StoredKv } from '../../src/fleet/store.js';

const KEY_A = Buffer.alloc(32, 1).toString('base64');
const KEY_B = Buffer.alloc(32, 2).toString('base64');
const VPC = 'vpc-0000000000000000a';
const SUBNET = 'subnet-0000000000000000a';
let rev = 0;
const kv = (key: string, value: unknown): StoredKv => {
  rev++;
  return { key, value: typeof value === 'string' ? value : JSON.stringify(value), createRevision: rev, modRevision: rev };
};
const host = (hostId: string, publicKey: string, endpoint = `10.0.0.${hostId.length}:4789`) => kv(fleetKeys.host(hostId), { hostId, endpoint, publicKey, version: '0.1.0' });
const eni = (hostId: string, id: string, ip: string, mac: string, extra: object = {}) =>
  kv(fleetKeys.eni(hostId, id), { id, vpcId: VPC, subnetId: SUBNET, mac, privateIp: ip, sourceDestCheck: true, hostInterface: `ni${id.slice(-8)}`, hostId, securityGroups: [`sg-${VPC.slice(4)}`], ...extra });
const base = () => [host('a', KEY_A, '10.0.0.1:4789'), host('bb', KEY_B, '10.0.0.2:4789'), kv(fleetKeys.vpc(VPC), { id: VPC, cidr: '10.1.0.0/16' }), kv(fleetKeys.subnet(SUBNET), { id: SUBNET, vpcId: VPC, cidr: '10.1.1.0/24' })];

describe('buildView', () => {
  it('with a parse cache: the same view, a refused record stays refused, a rewritten key is checked again', () => {
    const cache: ParseCache = new Map();
    const good = eni('bb', 'eni-00000000000000002', '10.1.1.11', '02:00:00:00:00:02');
    const corrupt = eni('bb', 'eni-00000000000000003', '10.1.1.12', '02:00:00:00:00:03', { sourceDestCheck: 'yes' });
    const records = [...base(), good, corrupt];
    const plain = buildView(records, 'a');
    for (let round = 0; round < 2; round++) {
      const cached = buildView(records, 'a', undefined, cache);
      expect(cached.model.listEnis()).toEqual(plain.model.listEnis());
      expect(cached.bad).toEqual(plain.bad);
      expect(cached.bad.map((b) => b.key)).toEqual([corrupt.key]);
    }
    expect(cache.get(good.key)).toMatchObject({ modRevision: good.modRevision, error: null });
    // The same key rewritten with a bad value at a later revision is refused, not taken from the cache.
    const rewritten = { ...good, value: JSON.stringify({ ...JSON.parse(good.value), extra: 1 }), modRevision: rev + 100 };
    const after = buildView([...base(), rewritten, corrupt], 'a', undefined, cache);
    expect(after.model.listEnis()).toEqual([]);
    expect(after.bad.map((b) => b.key).sort()).toEqual([good.key, corrupt.key].sort());
  });

  it('this host\'s ENIs are local, the others keep their host id; peers are the other hosts', () => {
    const view = buildView([...base(), eni('a', 'eni-00000000000000001', '10.1.1.10', '02:00:00:00:00:01', { kind: 'veth' }), eni('bb', 'eni-00000000000000002', '10.1.1.11', '02:00:00:00:00:02')], 'a');
    expect(view.bad).toEqual([]);
    expect(view.model.listEnis().map((e) => [e.id, e.hostId])).toEqual([
      ['eni-00000000000000001', 'local'],
      ['eni-00000000000000002', 'bb'],
    ]);
    expect(view.kinds).toEqual({ 'eni-00000000000000001': 'veth' });
    expect(view.peers).toEqual([{ name: 'bb', endpoint: '10.0.0.2:4789', publicKey: KEY_B, plaintext: false }]);
    expect(view.hosts.map((h) => h.hostId)).toEqual(['a', 'bb']);
  });

  it('refuses corrupt and hostile records one by one, with a reason, and keeps the rest', () => {
    const good = eni('bb', 'eni-00000000000000002', '10.1.1.11', '02:00:00:00:00:02');
    const records = [
      ...base(),
      good,
      kv(fleetKeys.eni('bb', 'eni-00000000000000003'), '{not json'),
      // Same address as an older record: the older one wins.
      eni('bb', 'eni-00000000000000004', '10.1.1.11', '02:00:00:00:00:04'),
      // Key and content disagree on the host (a host writing under its prefix for another).
      kv(fleetKeys.eni('bb', 'eni-00000000000000005'), JSON.parse(eni('a', 'eni-00000000000000005', '10.1.1.12', '02:00:00:00:00:05').value)),
      // Outside its subnet; a reserved address; a multicast MAC.
      eni('bb', 'eni-00000000000000006', '10.9.9.9', '02:00:00:00:00:06'),
      eni('bb', 'eni-00000000000000007', '10.1.1.1', '02:00:00:00:00:07'),
      eni('bb', 'eni-00000000000000008', '10.1.1.13', '01:00:00:00:00:08'),
      // A host claiming another's key or endpoint, a host record under another name, a bad key.
      host('evil', KEY_A, '10.0.0.9:4789'),
      host('evil2', Buffer.alloc(32, 3).toString('base64'), '10.0.0.2:4789'),
      kv(fleetKeys.host('c'), { hostId: 'd', endpoint: '10.0.0.4:4789', publicKey: Buffer.alloc(32, 4).toString('base64'), version: '1' }),
      kv(fleetKeys.host('e'), { hostId: 'e', endpoint: 'host.example:4789', publicKey: 'short', version: '1' }),
      // A VPC over loopback; a subnet outside its VPC; unknown fields.
      kv(fleetKeys.vpc('vpc-0000000000000000b'), { id: 'vpc-0000000000000000b', cidr: '127.0.0.0/16' }),
      kv(fleetKeys.subnet('subnet-0000000000000000b'), { id: 'subnet-0000000000000000b', vpcId: VPC, cidr: '10.2.0.0/24' }),
      kv(fleetKeys.vpc('vpc-0000000000000000c'), { id: 'vpc-0000000000000000c', cidr: '10.3.0.0/16', extra: 1 }),
      // An MTU no VPC may have, and one that is not a number.
      kv(fleetKeys.vpc('vpc-0000000000000000d'), { id: 'vpc-0000000000000000d', cidr: '10.4.0.0/16', mtu: 65000 }),
      kv(fleetKeys.vpc('vpc-0000000000000000e'), { id: 'vpc-0000000000000000e', cidr: '10.5.0.0/16', mtu: '9001' }),
    ];
    const view = buildView(records, 'a');
    expect(view.model.listEnis().map((e) => e.id)).toEqual(['eni-00000000000000002']);
    expect(view.hosts.map((h) => h.hostId)).toEqual(['a', 'bb']);
    expect(view.model.listVpcs().map((v) => v.id)).toEqual([VPC]);
    expect(view.model.listSubnets().map((s) => s.id)).toEqual([SUBNET]);
    const reasons = Object.fromEntries(view.bad.map((b) => [b.key, b.reason]));
    expect(Object.keys(reasons)).toHaveLength(15);
    expect(reasons[fleetKeys.vpc('vpc-0000000000000000d')]).toMatch(/MTU 65000 is not a whole number in 1280-9001/);
    expect(reasons[fleetKeys.vpc('vpc-0000000000000000e')]).toMatch(/mtu/);
    expect(reasons[fleetKeys.eni('bb', 'eni-00000000000000003')]).toBe('not JSON');
    expect(reasons[fleetKeys.eni('bb', 'eni-00000000000000004')]).toMatch(/already assigned to eni-00000000000000002/);
    expect(reasons[fleetKeys.eni('bb', 'eni-00000000000000005')]).toMatch(/on host a/);
    expect(reasons[fleetKeys.host('evil')]).toMatch(/public key of host a/);
    expect(reasons[fleetKeys.host('evil2')]).toMatch(/endpoint of host bb/);
    expect(reasons[fleetKeys.host('e')]).toMatch(/endpoint|publicKey/);
    expect(reasons[fleetKeys.vpc('vpc-0000000000000000b')]).toMatch(/loopback/);
  });

  it('a record claiming this host\'s own public key is refused even when it is older', () => {
    const records = [host('evil', KEY_A, '10.0.0.9:4789'), host('a', KEY_A, '10.0.0.1:4789')];
    const view = buildView(records, 'a', KEY_A);
    expect(view.peers).toEqual([]);
    expect(view.bad.map((b) => b.key)).toEqual([fleetKeys.host('evil')]);
  });

  it('security groups: kept with their rules, a default group\'s record replaces its rules, rules name groups of any host\'s ENIs', () => {
    const DEF = `sg-${VPC.slice(4)}`;
    const web = { id: 'sg-0000000000000000e', vpcId: VPC, name: 'web', description: '', ingress: [{ protocol: 'tcp', fromPort: 80, toPort: 80, sourceGroup: DEF }], egress: [{ protocol: 'all', cidr: '0.0.0.0/0' }] };
    const def = { id: DEF, vpcId: VPC, name: 'default', description: 'default VPC security group', ingress: [], egress: [{ protocol: 'all', cidr: '0.0.0.0/0' }] };
    const view = buildView(
      [...base(), kv(fleetKeys.sg(web.id), web), kv(fleetKeys.sg(DEF), def), eni('bb', 'eni-00000000000000002', '10.1.1.11', '02:00:00:00:00:02', { securityGroups: [web.id] }), eni('a', 'eni-00000000000000001', '10.1.1.10', '02:00:00:00:00:01')],
      'a',
    );
    expect(view.bad).toEqual([]);
    expect(view.model.securityGroups.get(web.id)).toEqual(web);
    expect(view.model.securityGroups.get(DEF).ingress).toEqual([]);
    // A rule naming the default group stands for its members on every host.
    expect(view.model.groupMembers(DEF)).toEqual([0x0a01010a]);
    expect(view.model.groupMembers(web.id)).toEqual([0x0a01010b]);
  });

  it('hostile group records are refused and counted; a group left out takes the groups naming it and the ENIs having it', () => {
    const g = (id: string, extra: object = {}) => ({ id, vpcId: VPC, name: id, description: '', ingress: [], egress: [], ...extra });
    const A = 'sg-0000000000000001a', B = 'sg-0000000000000001b', C = 'sg-0000000000000001c', D = 'sg-0000000000000001d';
    const records = [
      ...base(),
      kv(fleetKeys.sg(A), '{not json'),
      // Its rule names A, which is left out: B goes too; the ENI having B is refused.
      kv(fleetKeys.sg(B), g(B, { ingress: [{ protocol: 'all', sourceGroup: A }] })),
      // A rule with reversed ports; a key naming another group; a name taken by an older record.
      kv(fleetKeys.sg(C), g(C, { ingress: [{ protocol: 'tcp', fromPort: 90, toPort: 80, cidr: '0.0.0.0/0' }] })),
      kv(fleetKeys.sg(D), g(C)),
      kv(fleetKeys.sg('sg-0000000000000000f'), g('sg-0000000000000000f', { name: 'x' })),
      kv(fleetKeys.sg('sg-00000000000000010'), g('sg-00000000000000010', { name: 'x' })),
      // Claims to be the default group, in a VPC that does not exist.
      kv(fleetKeys.sg('sg-00000000000000011'), g('sg-00000000000000011', { name: 'default' })),
      kv(fleetKeys.sg('sg-00000000000000012'), g('sg-00000000000000012', { vpcId: 'vpc-0000000000000000f' })),
      eni('bb', 'eni-00000000000000002', '10.1.1.11', '02:00:00:00:00:02', { securityGroups: [B] }),
      eni('bb', 'eni-00000000000000003', '10.1.1.12', '02:00:00:00:00:03'),
    ];
    const view = buildView(records, 'a');
    expect(view.model.securityGroups.list().map((x) => x.id).sort()).toEqual([`sg-${VPC.slice(4)}`, 'sg-0000000000000000f']);
    expect(view.model.listEnis().map((e) => e.id)).toEqual(['eni-00000000000000003']);
    const reasons = Object.fromEntries(view.bad.map((b) => [b.key, b.reason]));
    expect(reasons[fleetKeys.sg(A)]).toBe('not JSON');
    expect(reasons[fleetKeys.sg(B)]).toMatch(/sg-0000000000000001a does not exist/);
    expect(reasons[fleetKeys.sg(C)]).toMatch(/reversed/);
    expect(reasons[fleetKeys.sg(D)]).toMatch(/names security group/);
    expect(reasons[fleetKeys.sg('sg-00000000000000010')]).toMatch(/already has a group named 'x'/);
    expect(reasons[fleetKeys.sg('sg-00000000000000011')]).toMatch(/default group's/);
    expect(reasons[fleetKeys.sg('sg-00000000000000012')]).toMatch(/does not exist/);
    expect(reasons[fleetKeys.eni('bb', 'eni-00000000000000002')]).toMatch(/sg-0000000000000001b does not exist/);
    expect(view.bad).toHaveLength(8);
  });

  it('a default group or ACL whose record is refused fails closed: no rules, not the ones its VPC implies', () => {
    const DEF = `sg-${VPC.slice(4)}`;
    const ACL = `acl-${VPC.slice(4)}`;
    const view = buildView([...base(), kv(fleetKeys.sg(DEF), '{corrupt'), kv(fleetKeys.acl(ACL), { id: ACL, vpcId: VPC, isDefault: false, entries: [], subnets: [] })], 'a');
    expect(view.bad.map((b) => b.key).sort()).toEqual([fleetKeys.acl(ACL), fleetKeys.sg(DEF)].sort());
    expect(view.model.securityGroups.get(DEF)).toMatchObject({ ingress: [], egress: [] });
    expect(view.model.networkAcls.get(ACL).entries).toEqual([]);
    // Without a record, the implied rules hold.
    const plain = buildView(base(), 'a');
    expect(plain.model.securityGroups.get(DEF).ingress).toEqual([{ protocol: 'all', sourceGroup: DEF }]);
    expect(plain.model.networkAcls.get(ACL).entries).toHaveLength(2);
  });

  it('network ACLs: kept with their entries and subnets; a default ACL\'s record replaces its entries; hostile ones refused whole', () => {
    const DEF = `acl-${VPC.slice(4)}`;
    const X = 'acl-0000000000000001a';
    const allow = { ruleNumber: 100, direction: 'egress', protocol: 'all', cidr: '0.0.0.0/0', action: 'allow' };
    const acl = (id: string, extra: object = {}) => ({ id, vpcId: VPC, isDefault: false, entries: [allow], subnets: [SUBNET], ...extra });
    const records = [
      ...base(),
      kv(fleetKeys.acl(X), acl(X)),
      kv(fleetKeys.acl(DEF), { id: DEF, vpcId: VPC, isDefault: true, entries: [], subnets: [] }),
      // The subnet is X's (older); a bad entry; not JSON; a default ACL claiming subnets; a non-default claiming to be default.
      kv(fleetKeys.acl('acl-0000000000000001b'), acl('acl-0000000000000001b')),
      kv(fleetKeys.acl('acl-0000000000000001c'), acl('acl-0000000000000001c', { subnets: [], entries: [{ ...allow, ruleNumber: 0 }] })),
      kv(fleetKeys.acl('acl-0000000000000001d'), '{'),
      kv(fleetKeys.acl('acl-0000000000000001e'), acl('acl-0000000000000001e', { isDefault: true, subnets: [] })),
      kv(fleetKeys.acl('acl-0000000000000001f'), acl('acl-0000000000000001f', { subnets: ['subnet-0000000000000000f'] })),
    ];
    const view = buildView(records, 'a');
    expect(view.model.subnetAcl(SUBNET).id).toBe(X);
    expect(view.model.networkAcls.get(DEF).entries).toEqual([]);
    expect(view.model.networkAcls.list().map((a) => a.id).sort()).toEqual([DEF, X].sort());
    const reasons = Object.fromEntries(view.bad.map((b) => [b.key, b.reason]));
    expect(view.bad).toHaveLength(5);
    expect(reasons[fleetKeys.acl('acl-0000000000000001b')]).toMatch(/associated with acl-0000000000000001a/);
    expect(reasons[fleetKeys.acl('acl-0000000000000001c')]).toMatch(/rule number 0/);
    expect(reasons[fleetKeys.acl('acl-0000000000000001d')]).toBe('not JSON');
    expect(reasons[fleetKeys.acl('acl-0000000000000001e')]).toMatch(/is not the default ACL/);
    expect(reasons[fleetKeys.acl('acl-0000000000000001f')]).toMatch(/does not exist/);
  });
});

