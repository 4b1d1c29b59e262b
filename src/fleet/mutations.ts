/**
 * The VPC's mutations in fleet mode: each is one etcd transaction guarded by revisions, so two
 * hosts changing the model at once never both win. Fields are checked first the way the
 * standalone model checks them (a scratch {@link VpcModel}); what depends on the rest of the
 * fleet (a free address, a free MAC, the subnet still there) is a guard of the transaction:
 * - an address or MAC is claimed by creating /ips/<subnet>/<ip> or /macs/<mac> (create revision
 *   0), so 200 concurrent `eni create` in one subnet from every host never hand out one twice;
 *   a lost race picks another free address from a fresh read and tries again;
 * - a subnet is created with its VPC's key rewritten under a guard on its mod revision, which
 *   serialises subnet creation per VPC (no two overlapping siblings);
 * - security groups: a group is created with its VPC's key rewritten the same way (no two groups
 *   of one name); a rule change or an ENI's new group list rewrites, under guards on their mod
 *   revisions, the groups it names, so a group deleted meanwhile makes it fail (and the other
 *   way round): no record is left naming a group that is gone;
 * - network ACLs: an ACL's record holds its entries and subnets; an association rewrites the
 *   ACL that gives the subnet up and the one that takes it, and a subnet's delete rewrites the
 *   ACL that had it, each under a guard on its mod revision.
 * Each resolves once this host's view has the change. While etcd is unreachable every mutation
 * is refused with one line.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { ConflictError, NotFoundError, RuntimeError, UsageError, oneLine } from '../common/errors.js';
import { newResourceId } from '../api/ids.js';
import { LOCAL_HOST_ID, type EniKind, type SubnetRecord, type VpcRecord } from '../api/vpc.js';
import type { CreateSecurityGroupRequest, SecurityGroupRecord, SgDirection, SgRule } from '../api/security-groups.js';
import type { CreateEniInput, CreateVpcInput, ModifyEniInput } from '../vpc/model.js';
import { defaultGroupId } from '../vpc/security-groups.js';
import { defaultAclId } from '../vpc/network-acls.js';
import type { CreateNetworkAclRequest, NaclEntry, NetworkAclRecord } from '../api/network-acls.js';
import { VpcModel, reservedRole } from '../vpc/model.js';
import { cidrFirst, cidrLast, intToIpv4, parseCidr } from '../vpc/packets.js';
import type { FleetMutations } from '../vpc/manager.js';
import type { FleetMirror } from './mirror.js';
import { FLEET_PREFIX, buildView, fleetKeys, type FleetEniRecord } from './records.js';
import type { FleetStore, Guard, StoredKv } from './store.js';

/** Attempts of one `eni create` with an automatic address before it gives up (only under heavy contention). */
const MAX_ATTEMPTS = 64;

export class FleetVpcMutations implements FleetMutations {
  constructor(
    private readonly store: FleetStore,
    private readonly mirror: FleetMirror,
  ) {}

  async createVpc(input: CreateVpcInput): Promise<VpcRecord> {
    this.writable();
    const record = scratch().createVpc(input);
    await this.commit({ guards: [{ key: fleetKeys.vpc(record.id), target: 'Create', revision: 0 }], puts: [{ key: fleetKeys.vpc(record.id), value: JSON.stringify(record) }] }, `VPC ${record.id} already exists`);
    return record;
  }

  async deleteVpc(id: string): Promise<void> {
    this.writable();
    const kv = this.need(fleetKeys.vpc(id), `VPC ${id} does not exist`);
    const subnets = this.subnets().filter((s) => s.vpcId === id);
    if (subnets.length) throw new ConflictError(`VPC ${id} still has ${subnets.length} subnet(s) (${subnets.map((s) => s.id).join(', ')}): delete them first`);
    const model = this.current();
    const groups = model.securityGroups.list(id).filter((g) => g.id !== defaultGroupId(id));
    if (groups.length) throw new ConflictError(`VPC ${id} still has ${groups.length} security group(s) (${groups.map((g) => g.id).join(', ')}): delete them first`);
    const acls = model.networkAcls.list(id).filter((a) => !a.isDefault);
    if (acls.length) throw new ConflictError(`VPC ${id} still has ${acls.length} network ACL(s) (${acls.map((a) => a.id).join(', ')}): delete them first`);
    // The default group's and ACL's records (if they were changed) go with the VPC.
    const defaults = [this.mirror.get(fleetKeys.sg(defaultGroupId(id))), this.mirror.get(fleetKeys.acl(defaultAclId(id)))].flatMap((x) => x ?? []);
    await this.commit(
      {
        guards: [kv, ...defaults].map((x) => ({ key: x.key, target: 'Mod' as const, revision: x.modRevision })),
        deletes: [kv.key, ...defaults.map((x) => x.key)],
      },
      `VPC ${id} changed meanwhile; try again`,
    );
  }

  async createSubnet(input: { vpcId: string; cidr: string; id?: string; name?: string }): Promise<SubnetRecord> {
    this.writable();
    const vpcKv = this.need(fleetKeys.vpc(input.vpcId), `VPC ${input.vpcId} does not exist`);
    const model = scratch();
    model.createVpc(JSON.parse(vpcKv.value) as VpcRecord);
    for (const s of this.subnets()) if (s.vpcId === input.vpcId) model.createSubnet(s);
    const record = model.createSubnet(input);
    if (this.mirror.get(fleetKeys.subnet(record.id))) throw new ConflictError(`subnet ${record.id} already exists`);
    await this.createInVpc(vpcKv, fleetKeys.subnet(record.id), record, `VPC ${input.vpcId} changed meanwhile (another subnet?); try again`);
    return record;
  }

  async deleteSubnet(id: string): Promise<void> {
    this.writable();
    const kv = this.need(fleetKeys.subnet(id), `subnet ${id} does not exist`);
    const enis = this.enis().filter((e) => e.record.subnetId === id);
    if (enis.length) throw new ConflictError(`subnet ${id} still has ${enis.length} ENI(s) (${enis.map((e) => e.record.id).join(', ')}): delete them first`);
    // The ACL it was associated with gives it up in the same transaction.
    const model = this.current();
    const acl = model.listSubnets().some((s) => s.id === id) ? model.subnetAcl(id) : undefined;
    const aclKv = acl && !acl.isDefault ? this.mirror.get(fleetKeys.acl(acl.id)) : undefined;
    const released = aclKv && acl ? { ...acl, subnets: acl.subnets.filter((s) => s !== id) } : undefined;
    await this.commit(
      {
        guards: [kv, ...(aclKv ? [aclKv] : [])].map((x) => ({ key: x.key, target: 'Mod' as const, revision: x.modRevision })),
        deletes: [kv.key],
        ...(aclKv && released ? { puts: [{ key: aclKv.key, value: JSON.stringify(released) }] } : {}),
      },
      `subnet ${id} changed meanwhile; try again`,
    );
  }

  async createEni(input: CreateEniInput & { kind?: EniKind }): Promise<string> {
    this.writable();
    const subnetKv = this.need(fleetKeys.subnet(input.subnetId), `subnet ${input.subnetId} does not exist`);
    const subnet = JSON.parse(subnetKv.value) as SubnetRecord;
    const hostId = input.hostId === undefined || input.hostId === LOCAL_HOST_ID ? this.store.hostId : input.hostId;
    const id = input.id ?? newResourceId('eni', randomBytes);
    if (this.enis(id).some((e) => e.record.id === id)) throw new ConflictError(`ENI ${id} already exists`);
    const vpcKv = this.need(fleetKeys.vpc(subnet.vpcId), `VPC ${subnet.vpcId} does not exist`);
    const cidr = parseCidr(subnet.cidr)!;
    const taken = new Set(this.mirror.under(fleetKeys.ipsOf(subnet.id)).map((kv) => kv.key));
    // Groups asked for are checked against the VPC's groups as the fleet has them.
    const groups = input.securityGroups ? this.current().securityGroups.list(subnet.vpcId) : [];
    for (let attempt = 1; ; attempt++) {
      const ip = input.privateIp ?? pickFree(cidr, taken, subnet.id);
      if (ip === null) throw new ConflictError(`subnet ${subnet.id} (${subnet.cidr}) has no free address`, 'SUBNET_FULL');
      // The scratch model checks every field as `eni create` does standalone (format, range, reserved).
      const model = scratch();
      model.createVpc(JSON.parse(vpcKv.value) as VpcRecord);
      for (const g of groups) model.securityGroups.restore(g);
      for (const g of groups) model.securityGroups.restoreRules(g);
      model.createSubnet(subnet);
      const { kind, ...rest } = input;
      const checked = model.createEni({ ...rest, id, privateIp: ip, hostId: LOCAL_HOST_ID });
      const record: FleetEniRecord = { ...checked, hostId, ...(kind ? { kind } : {}) };
      const guards: Guard[] = [
        { key: subnetKv.key, target: 'Create', revision: subnetKv.createRevision },
        { key: fleetKeys.ip(subnet.id, ip), target: 'Create', revision: 0 },
        { key: fleetKeys.mac(record.mac), target: 'Create', revision: 0 },
        { key: fleetKeys.eni(hostId, id), target: 'Create', revision: 0 },
      ];
      const touched = this.groupLocks(record.securityGroups, subnet.vpcId);
      const r = await this.txn({
        guards: [...guards, ...touched.guards],
        puts: [
          { key: fleetKeys.eni(hostId, id), value: JSON.stringify(record) },
          { key: fleetKeys.ip(subnet.id, ip), value: id },
          { key: fleetKeys.mac(record.mac), value: id },
          ...touched.puts,
        ],
      });
      if (r.succeeded) {
        await this.mirror.reached(r.revision);
        return id;
      }
      if (input.privateIp !== undefined || attempt >= MAX_ATTEMPTS) throw new ConflictError(input.privateIp !== undefined ? `${ip} (or MAC ${record.mac}) is already assigned` : `subnet ${subnet.id}: no free address won after ${attempt} attempts; try again`);
      // Lost a race: read the subnet's claims afresh.
      taken.add(fleetKeys.ip(subnet.id, ip));
      for (const kv of (await this.read(() => this.store.list(fleetKeys.ipsOf(subnet.id)))).kvs) taken.add(kv.key);
    }
  }

  async deleteEni(id: string): Promise<void> {
    this.writable();
    const { kv, record } = this.eni(id);
    await this.commit(
      { guards: [{ key: kv.key, target: 'Mod', revision: kv.modRevision }], deletes: [kv.key, fleetKeys.ip(record.subnetId, record.privateIp), fleetKeys.mac(record.mac)] },
      `ENI ${id} changed meanwhile; try again`,
    );
  }

  async moveEni(id: string, hostId: string): Promise<void> {
    this.writable();
    const target = hostId === LOCAL_HOST_ID ? this.store.hostId : hostId;
    const { kv, record } = this.eni(id);
    if (record.hostId === target) return;
    const moved: FleetEniRecord = { ...record, hostId: target };
    await this.commit(
      {
        guards: [
          { key: kv.key, target: 'Mod', revision: kv.modRevision },
          { key: fleetKeys.eni(target, id), target: 'Create', revision: 0 },
        ],
        deletes: [kv.key],
        puts: [{ key: fleetKeys.eni(target, id), value: JSON.stringify(moved) }],
      },
      `ENI ${id} changed meanwhile; try again`,
    );
  }

  /** Change what `eni modify` changes (groups, source/dest check, description, TCP timeout) in the ENI's record. */
  async modifyEni(id: string, changes: Omit<ModifyEniInput, 'hostId'>): Promise<void> {
    this.writable();
    if (changes.hostInterface !== undefined) throw new UsageError('in fleet mode an ENI keeps its host interface name (delete and create it)');
    const { kv, record } = this.eni(id);
    const next = this.current().modifyEni(id, changes);
    const { hostId: _local, ...fields } = next;
    const out: FleetEniRecord = { ...fields, hostId: record.hostId, ...(record.kind ? { kind: record.kind } : {}) };
    const touched = this.groupLocks(out.securityGroups, out.vpcId);
    await this.commit(
      { guards: [{ key: kv.key, target: 'Mod', revision: kv.modRevision }, ...touched.guards], puts: [{ key: kv.key, value: JSON.stringify(out) }, ...touched.puts] },
      `ENI ${id} or one of its groups changed meanwhile; try again`,
    );
  }

  async createSecurityGroup(input: CreateSecurityGroupRequest): Promise<SecurityGroupRecord> {
    this.writable();
    const vpcKv = this.need(fleetKeys.vpc(input.vpcId), `VPC ${input.vpcId} does not exist`);
    const record = this.current().securityGroups.create(input);
    await this.createInVpc(vpcKv, fleetKeys.sg(record.id), record, `VPC ${input.vpcId} changed meanwhile (another group?); try again`);
    return record;
  }

  async deleteSecurityGroup(id: string): Promise<void> {
    this.writable();
    // The model's checks: not a default group, no ENI of any host has it, no rule names it.
    this.current().deleteSecurityGroup(id);
    const kv = this.need(fleetKeys.sg(id), `security group ${id} does not exist`);
    await this.commit({ guards: [{ key: kv.key, target: 'Mod', revision: kv.modRevision }], deletes: [kv.key] }, `security group ${id} changed meanwhile; try again`);
  }

  /** Authorize or revoke one rule: the group's whole record is rewritten (a default group gets its first record). */
  async changeRule(id: string, op: 'authorize' | 'revoke', direction: SgDirection, rule: SgRule): Promise<SecurityGroupRecord> {
    this.writable();
    const groups = this.current().securityGroups;
    const record = op === 'authorize' ? groups.authorize(id, direction, rule) : groups.revoke(id, direction, rule);
    const vpcKv = this.need(fleetKeys.vpc(record.vpcId), `VPC ${record.vpcId} does not exist`);
    const key = fleetKeys.sg(id);
    const kv = this.mirror.get(key);
    const peer = op === 'authorize' && rule.sourceGroup !== undefined && rule.sourceGroup !== id ? rule.sourceGroup : undefined;
    const touched = this.groupLocks(peer ? [peer] : [], record.vpcId);
    await this.commit(
      {
        guards: [
          { key: vpcKv.key, target: 'Create', revision: vpcKv.createRevision },
          kv ? { key, target: 'Mod', revision: kv.modRevision } : { key, target: 'Create', revision: 0 },
          ...touched.guards,
        ],
        puts: [{ key, value: JSON.stringify(record) }, ...touched.puts],
      },
      `security group ${id} changed meanwhile; try again`,
    );
    return record;
  }

  async createNetworkAcl(input: CreateNetworkAclRequest): Promise<NetworkAclRecord> {
    this.writable();
    const vpcKv = this.need(fleetKeys.vpc(input.vpcId), `VPC ${input.vpcId} does not exist`);
    const record = this.current().createNetworkAcl(input);
    await this.commit(
      {
        guards: [
          { key: vpcKv.key, target: 'Create', revision: vpcKv.createRevision },
          { key: fleetKeys.acl(record.id), target: 'Create', revision: 0 },
        ],
        puts: [{ key: fleetKeys.acl(record.id), value: JSON.stringify(record) }],
      },
      `network ACL ${record.id} already exists, or VPC ${input.vpcId} is gone`,
    );
    return record;
  }

  async deleteNetworkAcl(id: string): Promise<void> {
    this.writable();
    // The model's checks: not a default ACL, no subnet uses it.
    this.current().networkAcls.delete(id);
    const kv = this.need(fleetKeys.acl(id), `network ACL ${id} does not exist`);
    await this.commit({ guards: [{ key: kv.key, target: 'Mod', revision: kv.modRevision }], deletes: [kv.key] }, `network ACL ${id} changed meanwhile; try again`);
  }

  /** Add or delete one entry: the ACL's whole record is rewritten (a default ACL gets its first record). */
  async changeNetworkAcl(id: string, change: { add: NaclEntry } | { remove: { direction: SgDirection; ruleNumber: number } }): Promise<void> {
    this.writable();
    const acls = this.current().networkAcls;
    const record = 'add' in change ? acls.addEntry(id, change.add) : acls.deleteEntry(id, change.remove.direction, change.remove.ruleNumber);
    await this.writeAcls([record], [], `network ACL ${id} changed meanwhile; try again`);
  }

  /** The subnet moves to this ACL: the ACL that had it and the one that takes it are rewritten together. */
  async associateNetworkAcl(id: string, subnetId: string): Promise<void> {
    this.writable();
    const subnetKv = this.need(fleetKeys.subnet(subnetId), `subnet ${subnetId} does not exist`);
    const model = this.current();
    const before = model.subnetAcl(subnetId);
    model.associateNetworkAcl(id, subnetId);
    if (before.id === id) return;
    // A default ACL's record lists no subnets: only the non-default ones change.
    const changed = [id, before.id].map((a) => model.networkAcls.get(a)).filter((a) => !a.isDefault);
    await this.writeAcls(changed, [{ key: subnetKv.key, target: 'Create', revision: subnetKv.createRevision }], `network ACL ${id}, ${before.id} or subnet ${subnetId} changed meanwhile; try again`);
  }

  // ---- internals ----------------------------------------------------------------------------

  /** Create `key` and rewrite its VPC's key under a guard on its mod revision: creations in one VPC are serialised. */
  private createInVpc(vpcKv: StoredKv, key: string, record: object, conflict: string): Promise<void> {
    return this.commit(
      {
        guards: [
          { key: vpcKv.key, target: 'Mod', revision: vpcKv.modRevision },
          { key, target: 'Create', revision: 0 },
        ],
        puts: [
          { key, value: JSON.stringify(record) },
          { key: vpcKv.key, value: vpcKv.value },
        ],
      },
      conflict,
    );
  }

  /** Rewrite ACL records, each guarded on its mod revision (absent: a default ACL's first record) and its VPC still there. */
  private async writeAcls(records: NetworkAclRecord[], extra: Guard[], conflict: string): Promise<void> {
    const guards: Guard[] = [...extra];
    for (const r of records) {
      const kv = this.mirror.get(fleetKeys.acl(r.id));
      const vpcKv = this.need(fleetKeys.vpc(r.vpcId), `VPC ${r.vpcId} does not exist`);
      guards.push(kv ? { key: kv.key, target: 'Mod', revision: kv.modRevision } : { key: fleetKeys.acl(r.id), target: 'Create', revision: 0 });
      if (!guards.some((g) => g.key === vpcKv.key)) guards.push({ key: vpcKv.key, target: 'Create', revision: vpcKv.createRevision });
    }
    await this.commit({ guards, puts: records.map((r) => ({ key: fleetKeys.acl(r.id), value: JSON.stringify(r) })) }, conflict);
  }

  /** The model as this host's mirror has it now, built afresh (a scratch to check a change on). */
  private current(): VpcModel {
    return buildView(this.mirror.under(FLEET_PREFIX), this.store.hostId).model;
  }

  /**
   * Guards and rewrites of the stored groups a record names: a concurrent delete of one of them
   * fails, or makes this fail. A default group goes only with its VPC and needs none (and ENI
   * creations in the default group, the common case, do not contend on one key).
   */
  private groupLocks(ids: string[], vpcId: string): { guards: Guard[]; puts: Array<{ key: string; value: string }> } {
    const kvs = ids.filter((g) => g !== defaultGroupId(vpcId)).flatMap((g) => this.mirror.get(fleetKeys.sg(g)) ?? []);
    return { guards: kvs.map((kv) => ({ key: kv.key, target: 'Mod' as const, revision: kv.modRevision })), puts: kvs.map((kv) => ({ key: kv.key, value: kv.value })) };
  }

  /** Mutations wait for etcd; the data plane does not. */
  private writable(): void {
    const { degradedSince } = this.mirror.state();
    if (degradedSince) throw new RuntimeError(`fleet degraded: etcd unreachable since ${degradedSince.toISOString()}; changes are refused until it answers (forwarding continues)`, 'FLEET_DEGRADED');
  }

  private async commit(ops: Parameters<FleetStore['txn']>[0], conflict: string): Promise<void> {
    const r = await this.txn(ops);
    if (!r.succeeded) throw new ConflictError(conflict);
    await this.mirror.reached(r.revision);
  }

  private txn(ops: Parameters<FleetStore['txn']>[0]): Promise<{ succeeded: boolean; revision: number }> {
    return this.read(() => this.store.txn(ops));
  }

  /** An etcd call; its failure is one line (etcd's own error text, e.g. a permission denied). */
  private async read<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw new RuntimeError(`fleet: etcd refused or did not answer: ${oneLine(err)}`, 'FLEET_ETCD');
    }
  }

  private need(key: string, missing: string) {
    const kv = this.mirror.get(key);
    if (!kv) throw new NotFoundError(missing);
    return kv;
  }

  private subnets(): SubnetRecord[] {
    return this.mirror.under(fleetKeys.subnets).flatMap((kv) => parsed<SubnetRecord>(kv.value));
  }

  /**
   * Stored ENI records, parsed; with `id`, only those whose key names it (a record whose key
   * names another id is refused by every view): one create does not parse 10,000 records.
   */
  private enis(id?: string): Array<{ kv: ReturnType<FleetMirror['under']>[number]; record: FleetEniRecord }> {
    const kvs = this.mirror.under(fleetKeys.enis);
    return (id === undefined ? kvs : kvs.filter((kv) => kv.key.endsWith(`/${id}`))).flatMap((kv) => parsed<FleetEniRecord>(kv.value).map((record) => ({ kv, record })));
  }

  private eni(id: string) {
    const found = this.enis(id).find((e) => e.record.id === id && e.kv.key === fleetKeys.eni(e.record.hostId, id));
    if (!found) throw new NotFoundError(`ENI ${id} does not exist`);
    return found;
  }
}

function scratch(): VpcModel {
  return new VpcModel({ localHostId: LOCAL_HOST_ID });
}

function parsed<T>(text: string): T[] {
  try {
    return [JSON.parse(text) as T];
  } catch {
    return [];
  }
}

/** A free assignable address of the subnet, at random (concurrent creators rarely pick the same one). */
function pickFree(cidr: NonNullable<ReturnType<typeof parseCidr>>, taken: Set<string>, subnetId: string): string | null {
  const free: number[] = [];
  for (let ip = cidrFirst(cidr); ip <= cidrLast(cidr); ip++) {
    if (reservedRole(cidr, ip) === null && !taken.has(fleetKeys.ip(subnetId, intToIpv4(ip)))) free.push(ip);
  }
  return free.length ? intToIpv4(free[randomInt(free.length)]!) : null;
}
