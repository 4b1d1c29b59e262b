/** Network ACLs: the records (AWS's defaults, checks, associations, persistence) and the compiled table with its reference evaluator. */
import { describe, expect, it } from 'vitest';
import { ID_PATTERNS } from '../../src/api/ids.js';
import { ConflictError, NotFoundError, UsageError } from '../../src/common/errors.js';
import { IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP } from '../../src/vpc/constants.js';
import { VpcModel } from '../../src/vpc/model.js';
import { ipv4ToInt } from '../../src/vpc/packets.js';
import { MAX_NACL_ENTRIES_PER_DIRECTION, defaultAclId } from '../../src/vpc/network-acls.js';
import { NACL_ACTION_ALLOW, NACL_ACTION_DENY, compileNacl, encodeNacl, evaluateNacl } from '../../src/vpc/nacl-table.js';
import { SG_DIR_EGRESS, SG_DIR_INGRESS, SG_ENTRY_BYTES, SG_PROTO_ALL, type SgPacket } from '../../src/vpc/sg-table.js';

const ip = (s: string): number => ipv4ToInt(s)!;
const VPC = 'vpc-0a1b2c3d4e5f60718';
const ACL = 'acl-0000000000000000a';

function setup() {
  const model = new VpcModel({ localHostId: 'local' });
  model.createVpc({ cidr: '10.0.0.0/16', id: VPC });
  const s1 = model.createSubnet({ vpcId: VPC, cidr: '10.0.1.0/24' }).id;
  const s2 = model.createSubnet({ vpcId: VPC, cidr: '10.0.2.0/24' }).id;
  return { model, s1, s2 };
}
const pkt = (direction: SgPacket['direction'], protocol: number, peer: string, port: number): SgPacket => ({ direction, protocol, peer: ip(peer), port });

describe('network ACL records', () => {
  it('every VPC has a default ACL (id derived from the VPC id) allowing all both ways; subnets use it until associated elsewhere', () => {
    const { model, s1, s2 } = setup();
    const def = model.describeNetworkAcl(defaultAclId(VPC));
    expect(def).toEqual({
      id: 'acl-0a1b2c3d4e5f60718',
      vpcId: VPC,
      isDefault: true,
      entries: [
        { ruleNumber: 100, direction: 'ingress', protocol: 'all', cidr: '0.0.0.0/0', action: 'allow' },
        { ruleNumber: 100, direction: 'egress', protocol: 'all', cidr: '0.0.0.0/0', action: 'allow' },
      ],
      subnets: [s1, s2],
    });
    expect(def.id).toMatch(ID_PATTERNS.acl);
    expect(() => model.networkAcls.delete(def.id)).toThrow(/default network ACL/);
    // A new ACL has no entries; associating moves a subnet; the default takes it back.
    expect(model.createNetworkAcl({ vpcId: VPC, id: ACL })).toMatchObject({ isDefault: false, entries: [], subnets: [] });
    expect(model.associateNetworkAcl(ACL, s1).subnets).toEqual([s1]);
    expect(model.subnetAcl(s1).id).toBe(ACL);
    expect(model.describeNetworkAcl(def.id).subnets).toEqual([s2]);
    expect(() => model.networkAcls.delete(ACL)).toThrow(ConflictError);
    expect(() => model.deleteVpc(VPC)).toThrow(/subnet/);
    model.associateNetworkAcl(def.id, s1);
    expect(model.subnetAcl(s1).id).toBe(def.id);
    model.networkAcls.delete(ACL);
    expect(() => model.networkAcls.get(ACL)).toThrow(NotFoundError);
  });

  it('entries: numbered 1-32766, unique per direction, kept in evaluation order; ports and CIDRs checked; a limit per direction', () => {
    const { model } = setup();
    model.createNetworkAcl({ vpcId: VPC, id: ACL });
    model.networkAcls.addEntry(ACL, { ruleNumber: 200, direction: 'ingress', protocol: 'tcp', fromPort: 22, toPort: 22, cidr: '10.0.0.0/8', action: 'allow' });
    model.networkAcls.addEntry(ACL, { ruleNumber: 100, direction: 'ingress', protocol: 'tcp', fromPort: 22, toPort: 22, cidr: '10.9.0.0/16', action: 'deny' });
    model.networkAcls.addEntry(ACL, { ruleNumber: 100, direction: 'egress', protocol: 'icmp', cidr: '0.0.0.0/0', action: 'allow' });
    const acl = model.networkAcls.get(ACL);
    expect(acl.entries.map((e) => `${e.direction} ${e.ruleNumber}`)).toEqual(['ingress 100', 'ingress 200', 'egress 100']);
    expect(acl.entries[2]).toEqual({ ruleNumber: 100, direction: 'egress', protocol: 'icmp', fromPort: -1, toPort: -1, cidr: '0.0.0.0/0', action: 'allow' });
    const bad: Array<[object, RegExp]> = [
      [{ ruleNumber: 100, direction: 'ingress', protocol: 'all', cidr: '0.0.0.0/0', action: 'allow' }, /already has ingress rule 100/],
      [{ ruleNumber: 0, direction: 'ingress', protocol: 'all', cidr: '0.0.0.0/0', action: 'allow' }, /rule number 0 is not in 1-32766/],
      [{ ruleNumber: 32767, direction: 'ingress', protocol: 'all', cidr: '0.0.0.0/0', action: 'allow' }, /not in 1-32766/],
      [{ ruleNumber: 5, direction: 'ingress', protocol: 'tcp', fromPort: 90, toPort: 80, cidr: '0.0.0.0/0', action: 'allow' }, /reversed/],
      [{ ruleNumber: 5, direction: 'ingress', protocol: 'tcp', cidr: '0.0.0.0/0', action: 'allow' }, /needs a port/],
      [{ ruleNumber: 5, direction: 'ingress', protocol: 'all', cidr: '10.0.0.1/8', action: 'allow' }, /host bits set/],
      [{ ruleNumber: 5, direction: 'ingress', protocol: 'all', cidr: 'x', action: 'allow' }, /not an IPv4 CIDR/],
      [{ ruleNumber: 5, direction: 'ingress', protocol: 'all', cidr: '0.0.0.0/0', action: 'maybe' }, /allow or deny/],
    ];
    for (const [entry, message] of bad) expect(() => model.networkAcls.addEntry(ACL, entry as never), JSON.stringify(entry)).toThrow(message);
    expect(model.networkAcls.get(ACL)).toEqual(acl);
    for (let n = 1; model.networkAcls.get(ACL).entries.filter((e) => e.direction === 'egress').length < MAX_NACL_ENTRIES_PER_DIRECTION; n++) {
      if (n !== 100) model.networkAcls.addEntry(ACL, { ruleNumber: n, direction: 'egress', protocol: 'all', cidr: '0.0.0.0/0', action: 'deny' });
    }
    expect(() => model.networkAcls.addEntry(ACL, { ruleNumber: 5000, direction: 'egress', protocol: 'all', cidr: '0.0.0.0/0', action: 'deny' })).toThrow(/the limit is 40/);
    model.networkAcls.deleteEntry(ACL, 'ingress', 100);
    expect(() => model.networkAcls.deleteEntry(ACL, 'ingress', 100)).toThrow(/no ingress rule 100/);
    expect(() => model.networkAcls.addEntry('acl-99999999999999999', { ruleNumber: 1, direction: 'ingress', protocol: 'all', cidr: '0.0.0.0/0', action: 'deny' })).toThrow(NotFoundError);
  });

  it('an ACL associates only subnets of its VPC; deleting a subnet drops its association; a VPC goes only without custom ACLs', () => {
    const { model, s1, s2 } = setup();
    model.createVpc({ cidr: '10.1.0.0/16', id: 'vpc-0a1b2c3d4e5f60719' });
    const other = model.createNetworkAcl({ vpcId: 'vpc-0a1b2c3d4e5f60719' });
    expect(other.id).toMatch(ID_PATTERNS.acl);
    expect(() => model.associateNetworkAcl(other.id, s1)).toThrow(UsageError);
    expect(() => model.createNetworkAcl({ vpcId: VPC, id: 'acl-x' })).toThrow(/not a network ACL id/);
    model.createNetworkAcl({ vpcId: VPC, id: ACL });
    model.associateNetworkAcl(ACL, s1);
    model.deleteSubnet(s1);
    expect(model.networkAcls.get(ACL).subnets).toEqual([]);
    model.deleteSubnet(s2);
    expect(() => model.deleteVpc(VPC)).toThrow(/network ACL/);
    model.networkAcls.delete(ACL);
    model.deleteVpc(VPC);
    expect(model.networkAcls.list(VPC)).toEqual([]);
  });

  it('persisted in the state file: entries, associations, a changed default ACL; older files get default ACLs', () => {
    const { model, s1 } = setup();
    model.createNetworkAcl({ vpcId: VPC, id: ACL });
    model.networkAcls.addEntry(ACL, { ruleNumber: 10, direction: 'ingress', protocol: 'udp', fromPort: 53, toPort: 53, cidr: '10.0.0.0/8', action: 'allow' });
    model.associateNetworkAcl(ACL, s1);
    model.networkAcls.deleteEntry(defaultAclId(VPC), 'egress', 100);
    const state = JSON.parse(JSON.stringify(model.toJSON()));
    const back = VpcModel.fromJSON(state, { localHostId: 'local' });
    expect(back.networkAcls.list()).toEqual(model.networkAcls.list());
    expect(back.subnetAcl(s1).id).toBe(ACL);
    delete state.networkAcls;
    const old = VpcModel.fromJSON(state, { localHostId: 'local' });
    expect(old.subnetAcl(s1).id).toBe(defaultAclId(VPC));
    expect(old.networkAcls.get(defaultAclId(VPC)).entries).toHaveLength(2);
  });
});

describe('network ACL table', () => {
  const entries = compileNacl([
    { ruleNumber: 200, direction: 'ingress', protocol: 'all', cidr: '0.0.0.0/0', action: 'allow' },
    { ruleNumber: 100, direction: 'ingress', protocol: 'tcp', fromPort: 5000, toPort: 5010, cidr: '10.0.1.0/24', action: 'deny' },
    { ruleNumber: 50, direction: 'ingress', protocol: 'tcp', fromPort: 5005, toPort: 5005, cidr: '10.0.1.7/32', action: 'allow' },
    { ruleNumber: 10, direction: 'egress', protocol: 'icmp', fromPort: 8, toPort: -1, cidr: '10.0.0.0/16', action: 'allow' },
  ]);

  it('compiles in evaluation order (direction, then rule number) and encodes the action beside the security-group layout', () => {
    expect(entries.map((e) => [e.direction, e.lo, e.hi, e.action])).toEqual([
      [SG_DIR_INGRESS, 5005, 5005, NACL_ACTION_ALLOW],
      [SG_DIR_INGRESS, 5000, 5010, NACL_ACTION_DENY],
      [SG_DIR_INGRESS, 0, 0xffff, NACL_ACTION_ALLOW],
      [SG_DIR_EGRESS, 8 << 8, (8 << 8) | 0xff, NACL_ACTION_ALLOW],
    ]);
    expect(entries[2]!.protocol).toBe(SG_PROTO_ALL);
    const buf = encodeNacl(entries);
    expect(buf.length).toBe(entries.length * SG_ENTRY_BYTES);
    expect([...buf.subarray(0, SG_ENTRY_BYTES)]).toEqual([SG_DIR_INGRESS, IP_PROTO_TCP, 32, NACL_ACTION_ALLOW, 7, 1, 0, 10, 0x8d, 0x13, 0x8d, 0x13]);
    expect(buf[SG_ENTRY_BYTES + 3]).toBe(NACL_ACTION_DENY);
  });

  it('the lowest-numbered matching rule decides; no match denies', () => {
    expect(evaluateNacl(entries, pkt('ingress', IP_PROTO_TCP, '10.0.1.7', 5005))).toBe(true); // rule 50 before the deny at 100
    expect(evaluateNacl(entries, pkt('ingress', IP_PROTO_TCP, '10.0.1.8', 5005))).toBe(false); // rule 100
    expect(evaluateNacl(entries, pkt('ingress', IP_PROTO_TCP, '10.0.1.8', 5011))).toBe(true); // rule 200
    expect(evaluateNacl(entries, pkt('ingress', IP_PROTO_UDP, '10.0.1.8', 5005))).toBe(true);
    expect(evaluateNacl(entries, pkt('egress', IP_PROTO_ICMP, '10.0.3.1', 8 << 8))).toBe(true);
    expect(evaluateNacl(entries, pkt('egress', IP_PROTO_ICMP, '10.0.3.1', 0))).toBe(false); // echo reply: no rule
    expect(evaluateNacl(entries, pkt('egress', IP_PROTO_TCP, '10.1.0.1', 80))).toBe(false);
  });
});
