/** Security groups: the records (AWS's defaults, checks and limits) and the compiled table with its reference evaluator. */
import { describe, expect, it } from 'vitest';
import { ID_PATTERNS } from '../../src/api/ids.js';
import { ConflictError, NotFoundError, RuntimeError, UsageError } from '../../src/common/errors.js';
import { IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP } from '../../src/vpc/constants.js';
import { VpcModel } from '../../src/vpc/model.js';
import { ipv4ToInt } from '../../src/vpc/packets.js';
import { MAX_GROUPS_PER_ENI, MAX_RULES_PER_DIRECTION, defaultGroupId } from '../../src/vpc/security-groups.js';
import { SG_ENTRY_BYTES, compileSg, encodeSg, evaluateSg, type SgEntry, type SgPacket } from '../../src/vpc/sg-table.js';

const ip = (s: string): number => ipv4ToInt(s)!;
const VPC = 'vpc-0a1b2c3d4e5f60718';

function setup() {
  const model = new VpcModel({ localHostId: 'local' });
  model.createVpc({ cidr: '10.0.0.0/16', id: VPC });
  const subnetId = model.createSubnet({ vpcId: VPC, cidr: '10.0.1.0/24' }).id;
  return { model, subnetId };
}
const source = (model: VpcModel) => ({ group: (id: string) => (model.securityGroups.has(id) ? model.securityGroups.get(id) : undefined), members: (id: string) => model.groupMembers(id) });
const compiled = (model: VpcModel, eniId: string): SgEntry[] => compileSg(model.getEni(eniId).securityGroups, source(model));
const pkt = (direction: SgPacket['direction'], protocol: number, peer: string, port: number): SgPacket => ({ direction, protocol, peer: ip(peer), port });

describe('security group records', () => {
  it('every VPC has a default group (id derived from the VPC id) allowing ingress from its members and all egress', () => {
    const { model, subnetId } = setup();
    const def = model.securityGroups.get(defaultGroupId(VPC));
    expect(def).toEqual({
      id: 'sg-0a1b2c3d4e5f60718',
      vpcId: VPC,
      name: 'default',
      description: 'default VPC security group',
      ingress: [{ protocol: 'all', sourceGroup: 'sg-0a1b2c3d4e5f60718' }],
      egress: [{ protocol: 'all', cidr: '0.0.0.0/0' }],
    });
    expect(def.id).toMatch(ID_PATTERNS.sg);
    const eni = model.createEni({ subnetId });
    expect(eni.securityGroups).toEqual([def.id]);
    expect(() => model.deleteSecurityGroup(def.id)).toThrow(/default group/);
  });

  it('a new group has no ingress rules and allows all egress; names are unique per VPC', () => {
    const { model } = setup();
    const g = model.securityGroups.create({ vpcId: VPC, name: 'web', description: 'web servers' });
    expect(g).toMatchObject({ vpcId: VPC, name: 'web', ingress: [], egress: [{ protocol: 'all', cidr: '0.0.0.0/0' }] });
    expect(g.id).toMatch(ID_PATTERNS.sg);
    expect(() => model.securityGroups.create({ vpcId: VPC, name: 'web' })).toThrow(ConflictError);
    expect(() => model.securityGroups.create({ vpcId: VPC, name: 'default' })).toThrow(/reserved/);
    expect(() => model.securityGroups.create({ vpcId: VPC, name: 'x', id: 'sg-123' })).toThrow(/not a security group id/);
    const explicit = model.securityGroups.create({ vpcId: VPC, name: 'db', id: 'sg-00000000000000001' });
    expect(explicit.id).toBe('sg-00000000000000001');
  });

  it('rules are checked and normalised; duplicates and missing rules are errors that change nothing', () => {
    const { model } = setup();
    const sgs = model.securityGroups;
    const g = sgs.create({ vpcId: VPC, name: 'web' });
    sgs.authorize(g.id, 'ingress', { protocol: 'tcp', fromPort: 22, toPort: 22, cidr: '10.0.0.0/8' });
    expect(() => sgs.authorize(g.id, 'ingress', { protocol: 'tcp', fromPort: 22, toPort: 22, cidr: '10.0.0.0/8', description: 'again' })).toThrow(/already has/);
    const bad: Array<[Parameters<typeof sgs.authorize>[2], RegExp]> = [
      [{ protocol: 'tcp', fromPort: 22, toPort: 22, cidr: '10.0.0.1/8' }, /host bits set \(did you mean 10\.0\.0\.0\/8\?\)/],
      [{ protocol: 'tcp', fromPort: 22, toPort: 22, cidr: '10.0.0.0/33' }, /not an IPv4 CIDR/],
      [{ protocol: 'tcp', fromPort: 22, toPort: 22, cidr: 'ten' }, /not an IPv4 CIDR/],
      [{ protocol: 'tcp', fromPort: 80, toPort: 20, cidr: '0.0.0.0/0' }, /reversed/],
      [{ protocol: 'udp', fromPort: 0, toPort: 70000, cidr: '0.0.0.0/0' }, /not in 0-65535/],
      [{ protocol: 'tcp', cidr: '0.0.0.0/0' }, /needs a port/],
      [{ protocol: 'icmp', fromPort: -1, toPort: 3, cidr: '0.0.0.0/0' }, /code needs an ICMP type/],
      [{ protocol: 'icmp', fromPort: 256, cidr: '0.0.0.0/0' }, /ICMP type 256/],
      [{ protocol: 'all', fromPort: 1, toPort: 2, cidr: '0.0.0.0/0' }, /takes no ports/],
      [{ protocol: 'gre' as 'all', cidr: '0.0.0.0/0' }, /protocol must be one of/],
      [{ protocol: 'all' }, /exactly one of/],
      [{ protocol: 'all', cidr: '0.0.0.0/0', sourceGroup: g.id }, /exactly one of/],
      [{ protocol: 'all', sourceGroup: 'sg-99999999999999999' }, /does not exist/],
      [{ protocol: 'all', sourceGroup: 'nope' }, /not a security group id/],
    ];
    for (const [rule, message] of bad) expect(() => sgs.authorize(g.id, 'ingress', rule), JSON.stringify(rule)).toThrow(message);
    expect(sgs.get(g.id).ingress).toEqual([{ protocol: 'tcp', fromPort: 22, toPort: 22, cidr: '10.0.0.0/8' }]);
    expect(() => sgs.revoke(g.id, 'ingress', { protocol: 'tcp', fromPort: 23, toPort: 23, cidr: '10.0.0.0/8' })).toThrow(NotFoundError);
    sgs.revoke(g.id, 'ingress', { protocol: 'tcp', fromPort: 22, toPort: 22, cidr: '10.0.0.0/8' });
    expect(sgs.get(g.id).ingress).toEqual([]);
    expect(() => sgs.authorize('sg-99999999999999999', 'ingress', { protocol: 'all', cidr: '0.0.0.0/0' })).toThrow(NotFoundError);
    // A source group of another VPC is refused.
    model.createVpc({ cidr: '10.1.0.0/16', id: 'vpc-0a1b2c3d4e5f60719' });
    expect(() => sgs.authorize(g.id, 'ingress', { protocol: 'all', sourceGroup: defaultGroupId('vpc-0a1b2c3d4e5f60719') })).toThrow(/is in vpc-0a1b2c3d4e5f60719/);
  });

  it('rule limit per direction', () => {
    const { model } = setup();
    const g = model.securityGroups.create({ vpcId: VPC, name: 'many' });
    for (let p = 1; p <= MAX_RULES_PER_DIRECTION; p++) model.securityGroups.authorize(g.id, 'ingress', { protocol: 'tcp', fromPort: p, toPort: p, cidr: '0.0.0.0/0' });
    expect(() => model.securityGroups.authorize(g.id, 'ingress', { protocol: 'tcp', fromPort: 2000, toPort: 2000, cidr: '0.0.0.0/0' })).toThrow(/the limit is 1000/);
  });

  it('an ENI has 1-5 groups of its VPC; groups in use or referenced cannot be deleted', () => {
    const { model, subnetId } = setup();
    const ids = Array.from({ length: MAX_GROUPS_PER_ENI + 1 }, (_, i) => model.securityGroups.create({ vpcId: VPC, name: `g${i}` }).id);
    expect(() => model.createEni({ subnetId, securityGroups: ids })).toThrow(/1-5 security groups, not 6/);
    expect(() => model.createEni({ subnetId, securityGroups: [] })).toThrow(/not 0/);
    expect(() => model.createEni({ subnetId, securityGroups: [ids[0]!, ids[0]!] })).toThrow(/twice/);
    expect(() => model.createEni({ subnetId, securityGroups: ['sg-99999999999999999'] })).toThrow(NotFoundError);
    const eni = model.createEni({ subnetId, securityGroups: ids.slice(0, 2) });
    expect(() => model.modifyEni(eni.id, { securityGroups: ids })).toThrow(UsageError);
    expect(model.getEni(eni.id).securityGroups).toEqual(ids.slice(0, 2));
    expect(() => model.deleteSecurityGroup(ids[0]!)).toThrow(new RegExp(`used by 1 ENI\\(s\\) \\(${eni.id}\\)`));
    model.securityGroups.authorize(ids[2]!, 'ingress', { protocol: 'all', sourceGroup: ids[3]! });
    expect(() => model.deleteSecurityGroup(ids[3]!)).toThrow(/referenced by a rule/);
    model.deleteSecurityGroup(ids[4]!);
    expect(model.securityGroups.has(ids[4]!)).toBe(false);
    // A VPC with groups of its own cannot go; its default group goes with it.
    model.deleteEni(eni.id);
    model.deleteSubnet(subnetId);
    expect(() => model.deleteVpc(VPC)).toThrow(/security group/);
  });

  it('groups and memberships survive the state file; old state files get default groups', () => {
    const { model, subnetId } = setup();
    const web = model.securityGroups.create({ vpcId: VPC, name: 'web' });
    const db = model.securityGroups.create({ vpcId: VPC, name: 'db' });
    model.securityGroups.authorize(db.id, 'ingress', { protocol: 'tcp', fromPort: 5432, toPort: 5432, sourceGroup: web.id });
    model.securityGroups.authorize(web.id, 'ingress', { protocol: 'icmp', fromPort: 8, cidr: '0.0.0.0/0' });
    const eni = model.createEni({ subnetId, securityGroups: [web.id] });
    const json = JSON.parse(JSON.stringify(model.toJSON()));
    const back = VpcModel.fromJSON(json, { localHostId: 'local' });
    expect(back.securityGroups.list()).toEqual(model.securityGroups.list());
    expect(back.getEni(eni.id).securityGroups).toEqual([web.id]);

    const old = { version: 1, vpcs: json.vpcs, subnets: json.subnets, enis: json.enis.map(({ securityGroups: _, ...e }: { securityGroups: string[] }) => e) };
    const upgraded = VpcModel.fromJSON(old, { localHostId: 'local' });
    expect(upgraded.securityGroups.list().map((g) => g.id)).toEqual([defaultGroupId(VPC)]);
    expect(upgraded.getEni(eni.id).securityGroups).toEqual([defaultGroupId(VPC)]);
    // A stored rule that does not hold is refused, not skipped.
    json.securityGroups[1].ingress[0].sourceGroup = 'sg-99999999999999999';
    expect(() => VpcModel.fromJSON(json, { localHostId: 'local' })).toThrow(RuntimeError);
  });
});

describe('compiled security group table', () => {
  it('default group: ingress from members only, egress anywhere; members follow the model', () => {
    const { model, subnetId } = setup();
    const a = model.createEni({ subnetId, privateIp: '10.0.1.10' });
    model.createEni({ subnetId, privateIp: '10.0.1.20', hostId: 'hb' });
    let t = compiled(model, a.id);
    expect(evaluateSg(t, pkt('ingress', IP_PROTO_TCP, '10.0.1.20', 22))).toBe(true);
    expect(evaluateSg(t, pkt('ingress', IP_PROTO_TCP, '10.0.1.30', 22))).toBe(false);
    expect(evaluateSg(t, pkt('egress', IP_PROTO_UDP, '8.8.8.8', 53))).toBe(true);
    const c = model.createEni({ subnetId, privateIp: '10.0.1.30' });
    t = compiled(model, a.id);
    expect(evaluateSg(t, pkt('ingress', IP_PROTO_TCP, '10.0.1.30', 22))).toBe(true);
    const other = model.securityGroups.create({ vpcId: VPC, name: 'other' });
    model.modifyEni(c.id, { securityGroups: [other.id] });
    expect(evaluateSg(compiled(model, a.id), pkt('ingress', IP_PROTO_TCP, '10.0.1.30', 22))).toBe(false);
  });

  it('ports, ranges, ICMP type/code and protocol all; the union of the groups', () => {
    const { model, subnetId } = setup();
    const sgs = model.securityGroups;
    const g1 = sgs.create({ vpcId: VPC, name: 'g1' });
    const g2 = sgs.create({ vpcId: VPC, name: 'g2' });
    sgs.authorize(g1.id, 'ingress', { protocol: 'tcp', fromPort: 22, toPort: 22, cidr: '192.168.0.0/16' });
    sgs.authorize(g1.id, 'ingress', { protocol: 'udp', fromPort: 1000, toPort: 2000, cidr: '0.0.0.0/0' });
    sgs.authorize(g2.id, 'ingress', { protocol: 'icmp', fromPort: 8, cidr: '10.0.0.0/8' });
    sgs.authorize(g2.id, 'ingress', { protocol: 'icmp', fromPort: 3, toPort: 4, cidr: '10.0.0.0/8' });
    sgs.authorize(g2.id, 'ingress', { protocol: 'all', cidr: '172.16.5.5/32' });
    sgs.revoke(g1.id, 'egress', { protocol: 'all', cidr: '0.0.0.0/0' });
    sgs.revoke(g2.id, 'egress', { protocol: 'all', cidr: '0.0.0.0/0' });
    sgs.authorize(g2.id, 'egress', { protocol: 'tcp', fromPort: 443, toPort: 443, cidr: '0.0.0.0/0' });
    const eni = model.createEni({ subnetId, securityGroups: [g1.id, g2.id] });
    const t = compiled(model, eni.id);
    const cases: Array<[SgPacket, boolean]> = [
      [pkt('ingress', IP_PROTO_TCP, '192.168.3.4', 22), true],
      [pkt('ingress', IP_PROTO_TCP, '192.168.3.4', 23), false],
      [pkt('ingress', IP_PROTO_TCP, '10.0.0.1', 22), false],
      [pkt('ingress', IP_PROTO_UDP, '1.2.3.4', 1000), true],
      [pkt('ingress', IP_PROTO_UDP, '1.2.3.4', 2000), true],
      [pkt('ingress', IP_PROTO_UDP, '1.2.3.4', 2001), false],
      [pkt('ingress', IP_PROTO_TCP, '1.2.3.4', 1500), false],
      [pkt('ingress', IP_PROTO_ICMP, '10.9.9.9', (8 << 8) | 0), true],
      [pkt('ingress', IP_PROTO_ICMP, '10.9.9.9', (8 << 8) | 7), true],
      [pkt('ingress', IP_PROTO_ICMP, '10.9.9.9', (3 << 8) | 4), true],
      [pkt('ingress', IP_PROTO_ICMP, '10.9.9.9', (3 << 8) | 3), false],
      [pkt('ingress', IP_PROTO_ICMP, '11.9.9.9', (8 << 8) | 0), false],
      [pkt('ingress', 47, '172.16.5.5', 0), true],
      [pkt('ingress', IP_PROTO_TCP, '172.16.5.5', 9999), true],
      [pkt('ingress', IP_PROTO_TCP, '172.16.5.6', 9999), false],
      [pkt('egress', IP_PROTO_TCP, '8.8.8.8', 443), true],
      [pkt('egress', IP_PROTO_TCP, '8.8.8.8', 80), false],
      [pkt('egress', IP_PROTO_UDP, '8.8.8.8', 443), false],
    ];
    for (const [p, want] of cases) expect(evaluateSg(t, p), JSON.stringify(p)).toBe(want);
  });

  it('encodes 12 bytes per entry, little-endian, deduplicated', () => {
    const { model, subnetId } = setup();
    const g = model.securityGroups.create({ vpcId: VPC, name: 'g' });
    model.securityGroups.authorize(g.id, 'ingress', { protocol: 'tcp', fromPort: 80, toPort: 443, cidr: '10.1.0.0/16' });
    const g2 = model.securityGroups.create({ vpcId: VPC, name: 'g2' });
    model.securityGroups.authorize(g2.id, 'ingress', { protocol: 'tcp', fromPort: 80, toPort: 443, cidr: '10.1.0.0/16' });
    const eni = model.createEni({ subnetId, securityGroups: [g.id, g2.id] });
    const t = compiled(model, eni.id);
    expect(t).toHaveLength(2); // the shared ingress rule once, all egress once
    const buf = encodeSg(t);
    expect(buf.length).toBe(2 * SG_ENTRY_BYTES);
    expect([...buf.subarray(0, SG_ENTRY_BYTES)]).toEqual([0, 6, 16, 0, 0x00, 0x00, 0x01, 0x0a, 80, 0, 0xbb, 0x01]);
  });

  it('a member and a /32 rule of the same ports are one entry; entries sorted by address across rules', () => {
    const { model, subnetId } = setup();
    const g = model.securityGroups.create({ vpcId: VPC, name: 'g' });
    const a = model.createEni({ subnetId, privateIp: '10.0.1.20', securityGroups: [g.id] });
    model.createEni({ subnetId, privateIp: '10.0.1.9', securityGroups: [g.id] });
    model.securityGroups.authorize(g.id, 'ingress', { protocol: 'tcp', fromPort: 22, toPort: 22, sourceGroup: g.id });
    model.securityGroups.authorize(g.id, 'ingress', { protocol: 'tcp', fromPort: 22, toPort: 22, cidr: '10.0.1.20/32' });
    model.securityGroups.authorize(g.id, 'ingress', { protocol: 'tcp', fromPort: 80, toPort: 80, cidr: '10.0.1.15/32' });
    const ingress = compiled(model, a.id)
      .filter((e) => e.direction === 0)
      .map((e) => [e.network, e.lo]);
    expect(ingress).toEqual([
      [ip('10.0.1.9'), 22],
      [ip('10.0.1.15'), 80],
      [ip('10.0.1.20'), 22],
    ]);
  });
});
