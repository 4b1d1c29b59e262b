import { describe, expect, it } from 'vitest';
import { ID_PATTERNS } from '../../src/api/ids.js';
import { ConflictError, NotFoundError, RuntimeError, UsageError } from '../../src/common/errors.js';
import { GATEWAY_MAC } from '../../src/vpc/constants.js';
import { VpcModel, VpcTables, checkMac, reservedRole, subnetDns, subnetRouter, usableAddresses, vpcDnsAddress, type EniEntry } from '../../src/vpc/model.js';
import { intToIpv4, ipv4ToInt, isLocallyAdministeredMac, isUnicastMac, parseCidr } from '../../src/vpc/packets.js';

const ip = (s: string): number => ipv4ToInt(s)!;

function setup(): { model: VpcModel; vpcId: string; subnetId: string } {
  const model = new VpcModel({ localHostId: 'host-a' });
  const vpcId = model.createVpc({ cidr: '10.0.0.0/16', name: 'main' }).id;
  const subnetId = model.createSubnet({ vpcId, cidr: '10.0.1.0/24' }).id;
  return { model, vpcId, subnetId };
}

describe('VPCs', () => {
  it('creates with AWS-style ids and normalised CIDRs', () => {
    const model = new VpcModel({ localHostId: 'host-a' });
    const vpc = model.createVpc({ cidr: '10.0.0.0/16' });
    expect(vpc.id).toMatch(ID_PATTERNS.vpc);
    expect(vpc.cidr).toBe('10.0.0.0/16');
    expect(model.getVpc(vpc.id)).toEqual(vpc);
    expect(model.listVpcs()).toEqual([vpc]);
    // VPC address spaces are independent: overlap is fine
    expect(() => model.createVpc({ cidr: '10.0.0.0/16' })).not.toThrow();
  });

  it('validates CIDR syntax, prefix range, host bits and special ranges', () => {
    const model = new VpcModel({ localHostId: 'h' });
    expect(() => model.createVpc({ cidr: '10.0.0.0' })).toThrow(UsageError);
    expect(() => model.createVpc({ cidr: '10.0.0.0/15' })).toThrow(/between \/16 and \/28/);
    expect(() => model.createVpc({ cidr: '10.0.0.0/29' })).toThrow(/between \/16 and \/28/);
    expect(() => model.createVpc({ cidr: '10.0.0.5/16' })).toThrow(/host bits set \(did you mean 10\.0\.0\.0\/16\?\)/);
    expect(() => model.createVpc({ cidr: '127.0.0.0/16' })).toThrow(/loopback/);
    expect(() => model.createVpc({ cidr: '169.254.0.0/16' })).toThrow(/link-local/);
    expect(() => model.createVpc({ cidr: '224.0.0.0/16' })).toThrow(/multicast/);
    expect(() => model.createVpc({ cidr: '0.0.0.0/16' })).toThrow(/this network/);
    expect(model.createVpc({ cidr: '192.168.0.0/28' }).cidr).toBe('192.168.0.0/28');
  });

  it('validates given ids and refuses duplicates', () => {
    const model = new VpcModel({ localHostId: 'h' });
    expect(() => model.createVpc({ cidr: '10.0.0.0/16', id: 'vpc-123' })).toThrow(/not a VPC id/);
    model.createVpc({ cidr: '10.0.0.0/16', id: 'vpc-0123456789abcdef0' });
    expect(() => model.createVpc({ cidr: '10.1.0.0/16', id: 'vpc-0123456789abcdef0' })).toThrow(ConflictError);
  });

  it('deletes only empty VPCs; unknown ids are NotFound', () => {
    const { model, vpcId, subnetId } = setup();
    expect(() => model.deleteVpc(vpcId)).toThrow(ConflictError);
    model.deleteSubnet(subnetId);
    model.deleteVpc(vpcId);
    expect(() => model.getVpc(vpcId)).toThrow(NotFoundError);
    expect(() => model.createSubnet({ vpcId, cidr: '10.0.1.0/24' })).toThrow(/VPC vpc-\w+ does not exist/);
  });
});

describe('subnets', () => {
  it('must lie inside the VPC, be /16-/28 and not overlap siblings', () => {
    const { model, vpcId } = setup();
    expect(() => model.createSubnet({ vpcId, cidr: '10.1.0.0/24' })).toThrow(/not inside/);
    expect(() => model.createSubnet({ vpcId, cidr: '10.0.0.0/29' })).toThrow(/\/16 and \/28/);
    expect(() => model.createSubnet({ vpcId, cidr: '10.0.1.128/25' })).toThrow(ConflictError);
    expect(() => model.createSubnet({ vpcId, cidr: '10.0.0.0/16' })).toThrow(/overlaps/);
    expect(model.createSubnet({ vpcId, cidr: '10.0.2.0/28' }).cidr).toBe('10.0.2.0/28');
    // another VPC's subnets do not collide with ours
    const other = model.createVpc({ cidr: '10.0.0.0/16' }).id;
    expect(model.createSubnet({ vpcId: other, cidr: '10.0.1.0/24' }).vpcId).toBe(other);
    expect(model.listSubnets(vpcId)).toHaveLength(2);
    expect(model.listSubnets()).toHaveLength(3);
  });

  it('reserves network, router, DNS, future-use and broadcast', () => {
    const s = parseCidr('10.0.1.0/24')!;
    expect(reservedRole(s, ip('10.0.1.0'))).toBe('network');
    expect(reservedRole(s, ip('10.0.1.1'))).toBe('router');
    expect(reservedRole(s, ip('10.0.1.2'))).toBe('dns');
    expect(reservedRole(s, ip('10.0.1.3'))).toBe('reserved');
    expect(reservedRole(s, ip('10.0.1.255'))).toBe('broadcast');
    expect(reservedRole(s, ip('10.0.1.4'))).toBeNull();
    expect(reservedRole(s, ip('10.0.2.0'))).toBeNull();
    expect(intToIpv4(subnetRouter(s))).toBe('10.0.1.1');
    expect(intToIpv4(subnetDns(s))).toBe('10.0.1.2');
    expect(intToIpv4(vpcDnsAddress(parseCidr('10.0.0.0/16')!))).toBe('10.0.0.2');
    expect(usableAddresses(parseCidr('10.0.0.0/28')!)).toBe(11);
  });

  it('refuses deleting a subnet with ENIs', () => {
    const { model, subnetId } = setup();
    const eni = model.createEni({ subnetId });
    expect(() => model.deleteSubnet(subnetId)).toThrow(new RegExp(`still has 1 ENI\\(s\\) \\(${eni.id}\\)`));
    model.deleteEni(eni.id);
    model.deleteSubnet(subnetId);
  });
});

describe('ENIs and IPAM', () => {
  it('auto-assigns the lowest free address after the reserved ones, a local unicast MAC, an interface name, defaults', () => {
    const { model, vpcId, subnetId } = setup();
    const eni = model.createEni({ subnetId });
    expect(eni).toMatchObject({ vpcId, subnetId, privateIp: '10.0.1.4', sourceDestCheck: true, hostId: 'host-a' });
    expect(eni.id).toMatch(ID_PATTERNS.eni);
    expect(eni.mac).toMatch(/^02(:[0-9a-f]{2}){5}$/);
    expect(isUnicastMac(eni.mac) && isLocallyAdministeredMac(eni.mac)).toBe(true);
    expect(eni.hostInterface).toBe(`ni${eni.id.slice(4, 12)}`);
    expect(eni.hostInterface.length).toBeLessThanOrEqual(15);
    expect(model.createEni({ subnetId }).privateIp).toBe('10.0.1.5');
  });

  it('takes a given address if it is in the subnet, not reserved and free', () => {
    const { model, subnetId } = setup();
    const a = model.createEni({ subnetId, privateIp: '10.0.1.200' });
    expect(a.privateIp).toBe('10.0.1.200');
    expect(() => model.createEni({ subnetId, privateIp: '10.0.1.200' })).toThrow(new RegExp(`already assigned to ${a.id}`));
    expect(() => model.createEni({ subnetId, privateIp: '10.0.2.7' })).toThrow(/not in subnet/);
    expect(() => model.createEni({ subnetId, privateIp: '10.0.1.1' })).toThrow(/reserved .*VPC router/);
    expect(() => model.createEni({ subnetId, privateIp: '10.0.1.2' })).toThrow(/reserved .*DNS/);
    expect(() => model.createEni({ subnetId, privateIp: '10.0.1.3' })).toThrow(/reserved/);
    expect(() => model.createEni({ subnetId, privateIp: '10.0.1.0' })).toThrow(/network address/);
    expect(() => model.createEni({ subnetId, privateIp: '10.0.1.255' })).toThrow(/broadcast/);
    expect(() => model.createEni({ subnetId, privateIp: '10.0.1.0256' })).toThrow(/not an IPv4 address/);
  });

  it('reports exhaustion of a /28 (11 usable) and reuses freed addresses', () => {
    const model = new VpcModel({ localHostId: 'h' });
    const vpcId = model.createVpc({ cidr: '10.0.0.0/16' }).id;
    const subnetId = model.createSubnet({ vpcId, cidr: '10.0.0.16/28' }).id;
    const enis = Array.from({ length: 11 }, () => model.createEni({ subnetId }));
    expect(enis.map((e) => e.privateIp)).toEqual(Array.from({ length: 11 }, (_, i) => `10.0.0.${20 + i}`));
    expect(model.subnetUsage(subnetId)).toEqual({ total: 16, reserved: 5, used: 11, available: 0 });
    let err: unknown;
    try {
      model.createEni({ subnetId });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConflictError);
    expect((err as ConflictError).code).toBe('SUBNET_FULL');
    expect((err as Error).message).toMatch(/no free address: all 11 usable addresses are in use/);
    model.deleteEni(enis[3]!.id);
    expect(model.createEni({ subnetId }).privateIp).toBe('10.0.0.23');
  });

  it('validates given MACs: syntax, unicast, not zero, not the gateway, unique', () => {
    const { model, subnetId } = setup();
    const a = model.createEni({ subnetId, mac: '52-54-00-AA-BB-CC' });
    expect(a.mac).toBe('52:54:00:aa:bb:cc');
    expect(() => model.createEni({ subnetId, mac: '52:54:00:aa:bb:cc' })).toThrow(new RegExp(`already used by ${a.id}`));
    expect(() => model.createEni({ subnetId, mac: '01:00:5e:00:00:01' })).toThrow(/multicast/);
    expect(() => model.createEni({ subnetId, mac: 'ff:ff:ff:ff:ff:ff' })).toThrow(/multicast\/broadcast/);
    expect(() => model.createEni({ subnetId, mac: '00:00:00:00:00:00' })).toThrow(/all zeroes/);
    expect(() => model.createEni({ subnetId, mac: GATEWAY_MAC })).toThrow(/gateway/);
    expect(() => model.createEni({ subnetId, mac: 'nope' })).toThrow(UsageError);
    expect(checkMac('02:00:00:00:00:09')).toBe('02:00:00:00:00:09');
  });

  it('never auto-assigns the gateway MAC or a MAC in use', () => {
    // a random source that first yields the gateway's bytes, then a used MAC, then a fresh one
    const draws = [Buffer.from('6e69740001', 'hex'), Buffer.from('0000000001', 'hex'), Buffer.from('0000000001', 'hex'), Buffer.from('0000000002', 'hex')];
    let d = 0;
    let k = 0;
    const random = (bytes: number): Buffer => (bytes === 5 ? draws[d++]! : Buffer.alloc(bytes, ++k));
    const model = new VpcModel({ localHostId: 'h', random });
    const vpcId = model.createVpc({ cidr: '10.0.0.0/16' }).id;
    const subnetId = model.createSubnet({ vpcId, cidr: '10.0.1.0/24' }).id;
    expect(model.createEni({ subnetId }).mac).toBe('02:00:00:00:00:01');
    expect(model.createEni({ subnetId }).mac).toBe('02:00:00:00:00:02');
  });

  it('validates interface names (≤ 15 chars) and keeps them unique per host', () => {
    const { model, subnetId } = setup();
    expect(() => model.createEni({ subnetId, hostInterface: 'a-very-long-name' })).toThrow(/interface name/);
    expect(() => model.createEni({ subnetId, hostInterface: 'bad/name' })).toThrow(/interface name/);
    expect(() => model.createEni({ subnetId, hostInterface: '..' })).toThrow(/interface name/);
    const a = model.createEni({ subnetId, hostInterface: 'tap0' });
    expect(() => model.createEni({ subnetId, hostInterface: 'tap0' })).toThrow(new RegExp(`already used by ${a.id}`));
    expect(model.createEni({ subnetId, hostInterface: 'tap0', hostId: 'host-b' }).hostInterface).toBe('tap0');
  });

  it('validates host ids and other fields; modifies only mutable attributes', () => {
    const { model, subnetId } = setup();
    expect(() => model.createEni({ subnetId, hostId: '-bad' })).toThrow(/host id/);
    expect(() => model.createEni({ subnetId, description: 'x'.repeat(256) })).toThrow(/description/);
    expect(() => model.createEni({ subnetId: 'subnet-00000000000000000' })).toThrow(NotFoundError);
    const e = model.createEni({ subnetId, sourceDestCheck: false, description: 'nat box' });
    expect(e.sourceDestCheck).toBe(false);
    const m = model.modifyEni(e.id, { sourceDestCheck: true, hostId: 'host-b' });
    expect(m).toMatchObject({ sourceDestCheck: true, hostId: 'host-b', privateIp: e.privateIp, mac: e.mac });
    expect(model.tables.lookupById(e.id)).toMatchObject({ hostId: 'host-b', sourceDestCheck: true });
    expect(model.tables.isLocal(model.tables.lookupById(e.id)!)).toBe(false);
    expect(() => model.modifyEni(e.id, { sourceDestCheck: 'yes' as unknown as boolean })).toThrow(UsageError);
    expect(() => model.getEni('eni-00000000000000000')).toThrow(NotFoundError);
  });

  it('keeps allowances (bits/s, packets/s) when set; modify with null removes one; bad values are one-line usage errors', () => {
    const { model, subnetId } = setup();
    const plain = model.createEni({ subnetId });
    expect(plain).not.toHaveProperty('bandwidth');
    expect(plain).not.toHaveProperty('pps');
    const e = model.createEni({ subnetId, bandwidth: 200_000_000, pps: 100_000 });
    expect(e).toMatchObject({ bandwidth: 200_000_000, pps: 100_000 });
    expect(model.modifyEni(e.id, { pps: null, bandwidth: 1_000_000_000 })).toMatchObject({ bandwidth: 1_000_000_000 });
    expect(model.getEni(e.id)).not.toHaveProperty('pps');
    expect(model.modifyEni(e.id, { sourceDestCheck: false })).toMatchObject({ bandwidth: 1_000_000_000 });
    for (const bad of [{ bandwidth: 0 }, { bandwidth: 999 }, { bandwidth: 1.5e12 }, { bandwidth: 1e6 + 0.5 }, { pps: 0 }, { pps: -1 }, { pps: 2e9 }, { pps: 1.5 }]) {
      expect(() => model.createEni({ subnetId, ...bad }), JSON.stringify(bad)).toThrow(UsageError);
      expect(() => model.modifyEni(e.id, bad), JSON.stringify(bad)).toThrow(/^(bandwidth|pps) .* is not a whole number in [\d-]+$/);
    }
    expect(model.getEni(e.id)).toMatchObject({ bandwidth: 1_000_000_000 });
    expect(model.listEnis()).toHaveLength(2);
  });
});

describe('VpcTables (the ENI directory)', () => {
  it('is kept in step with the model and looks up by VPC+IP, MAC and id', () => {
    const { model, vpcId, subnetId } = setup();
    const a = model.createEni({ subnetId });
    const b = model.createEni({ subnetId, hostId: 'host-b' });
    const t = model.tables;
    expect(t.lookupByIp(vpcId, ip(a.privateIp))!.eniId).toBe(a.id);
    expect(t.lookupByMac(b.mac)).toMatchObject({ eniId: b.id, hostId: 'host-b', ip: ip(b.privateIp), subnet: { network: ip('10.0.1.0'), prefix: 24 }, vpc: { network: ip('10.0.0.0'), prefix: 16 } });
    expect(t.listByHost().map((e) => e.eniId)).toEqual([a.id]);
    expect(t.listByHost('host-b').map((e) => e.eniId)).toEqual([b.id]);
    expect(t.list()).toHaveLength(2);
    // the same address in another VPC is another ENI
    const other = model.createVpc({ cidr: '10.0.0.0/16' }).id;
    const os = model.createSubnet({ vpcId: other, cidr: '10.0.1.0/24' }).id;
    const c = model.createEni({ subnetId: os });
    expect(c.privateIp).toBe(a.privateIp);
    expect(t.lookupByIp(other, ip(c.privateIp))!.eniId).toBe(c.id);
    expect(t.lookupByIp(vpcId, ip(c.privateIp))!.eniId).toBe(a.id);
    model.deleteEni(a.id);
    expect(t.lookupByIp(vpcId, ip(a.privateIp))).toBeUndefined();
    expect(t.lookupByMac(a.mac)).toBeUndefined();
    expect(t.size).toBe(2);
  });

  it('entries are frozen snapshots', () => {
    const t = new VpcTables('h');
    const entry: EniEntry = { eniId: 'eni-1', vpcId: 'v', subnetId: 's', mac: '02:00:00:00:00:01', ip: 5, subnet: { network: 0, prefix: 24 }, vpc: { network: 0, prefix: 16 }, hostId: 'h', sourceDestCheck: true, hostInterface: 'x' };
    t.put(entry);
    entry.ip = 6;
    expect(t.lookupById('eni-1')!.ip).toBe(5);
    expect(Object.isFrozen(t.lookupById('eni-1'))).toBe(true);
    t.put({ ...entry, mac: '02:00:00:00:00:02' });
    expect(t.lookupByMac('02:00:00:00:00:01')).toBeUndefined();
    expect(t.lookupByIp('v', 5)).toBeUndefined();
    expect(t.lookupByIp('v', 6)!.mac).toBe('02:00:00:00:00:02');
  });
});

describe('state file JSON', () => {
  it('round-trips', () => {
    const { model, subnetId } = setup();
    model.createEni({ subnetId, description: 'web', bandwidth: 200_000_000, pps: 50_000 });
    model.createEni({ subnetId, hostId: 'host-b', sourceDestCheck: false, mac: '52:54:00:00:00:01', privateIp: '10.0.1.77' });
    const json = JSON.parse(JSON.stringify(model.toJSON()));
    const again = VpcModel.fromJSON(json, { localHostId: 'host-a' });
    expect(again.toJSON()).toEqual(model.toJSON());
    expect(again.tables.list()).toEqual(model.tables.list());
    // IPAM state restored: next auto address skips the restored ones
    expect(again.createEni({ subnetId }).privateIp).toBe('10.0.1.5');
  });

  it('refuses malformed or inconsistent state with a RuntimeError naming the problem', () => {
    const { model, subnetId } = setup();
    const eni = model.createEni({ subnetId });
    const good = model.toJSON();
    const bad = (mutate: (s: ReturnType<VpcModel['toJSON']>) => void): (() => VpcModel) => {
      const s = structuredClone(good);
      mutate(s);
      return () => VpcModel.fromJSON(s, { localHostId: 'host-a' });
    };
    expect(bad((s) => ((s as { version: number }).version = 2))).toThrow(RuntimeError);
    expect(bad((s) => ((s.enis[0] as unknown as Record<string, unknown>).extra = 1))).toThrow(/invalid VPC state/);
    expect(bad((s) => s.enis.push({ ...s.enis[0]!, id: 'eni-00000000000000001', mac: '02:00:00:00:00:99' }))).toThrow(/already assigned/);
    expect(bad((s) => s.enis.push({ ...s.enis[0]!, id: 'eni-00000000000000001', privateIp: '10.0.1.9', hostInterface: 'x' }))).toThrow(/already used/);
    expect(bad((s) => (s.enis[0]!.privateIp = '10.0.1.1'))).toThrow(/reserved/);
    expect(bad((s) => (s.subnets[0]!.cidr = '10.9.0.0/24'))).toThrow(/not inside/);
    expect(bad((s) => (s.enis[0]!.vpcId = 'vpc-00000000000000000'))).toThrow(/names vpc-00000000000000000/);
    expect(bad((s) => (s.enis[0]!.subnetId = 'subnet-00000000000000000'))).toThrow(/does not exist/);
    expect(() => VpcModel.fromJSON('nope', { localHostId: 'h' })).toThrow(/invalid VPC state/);
    expect(eni.id).toBeTruthy();
  });
});
