/**
 * Network ACLs as records: create, delete, add and remove numbered entries, associate subnets,
 * with AWS's checks and limits. Pure (no I/O); the VPC model owns one and keeps associations
 * consistent with its subnets.
 *
 * AWS rules kept here: every VPC has a default ACL allowing all traffic both ways (rule 100),
 * whose id is derived from the VPC id (`acl-` + the VPC id's hex digits) so every host has the
 * same one; it cannot be deleted. A new ACL has no entries (denies everything). A subnet is
 * associated with exactly one ACL: the default one unless another names it. Rule numbers are
 * 1-32766, unique per direction; ports and CIDRs are checked as security-group rules are.
 */
import { ConflictError, NotFoundError, UsageError } from '../common/errors.js';
import { idFormat, isResourceId } from '../api/ids.js';
import type { NaclEntry, NetworkAclRecord } from '../api/network-acls.js';
import type { SgDirection } from '../api/security-groups.js';
import { normalizeRule } from './security-groups.js';

export const NACL_MIN_RULE_NUMBER = 1;
export const NACL_MAX_RULE_NUMBER = 32766;
/** Entries per ACL and direction (AWS: 20 by default, at most 40). Every packet is checked against them in order. */
export const MAX_NACL_ENTRIES_PER_DIRECTION = 40;
/** The rule number of the default ACL's allow-all entries. */
export const DEFAULT_ACL_RULE_NUMBER = 100;

/** The id of a VPC's default ACL: the same on every host that has the VPC. */
export function defaultAclId(vpcId: string): string {
  return `acl-${vpcId.slice(4)}`;
}

export class NetworkAcls {
  private readonly acls = new Map<string, NetworkAclRecord>();

  constructor(private readonly newId: () => string) {}

  /** A VPC's default ACL (at VPC creation; idempotent). */
  createDefault(vpcId: string): NetworkAclRecord {
    const id = defaultAclId(vpcId);
    const existing = this.acls.get(id);
    if (existing) return copy(existing);
    const allowAll = (direction: SgDirection): NaclEntry => ({ ruleNumber: DEFAULT_ACL_RULE_NUMBER, direction, protocol: 'all', cidr: '0.0.0.0/0', action: 'allow' });
    const acl: NetworkAclRecord = { id, vpcId, isDefault: true, entries: [allowAll('ingress'), allowAll('egress')], subnets: [] };
    this.acls.set(id, acl);
    return copy(acl);
  }

  create(input: { vpcId: string; id?: string }): NetworkAclRecord {
    const id = input.id ?? this.newId();
    if (!isResourceId('acl', id)) throw new UsageError(`'${id}' is not a network ACL id (${idFormat('acl')})`);
    if (this.acls.has(id)) throw new ConflictError(`network ACL ${id} already exists`);
    const acl: NetworkAclRecord = { id, vpcId: input.vpcId, isDefault: false, entries: [], subnets: [] };
    this.acls.set(id, acl);
    return copy(acl);
  }

  has(id: string): boolean {
    return this.acls.has(id);
  }

  get(id: string): NetworkAclRecord {
    return copy(this.entry(id));
  }

  list(vpcId?: string): NetworkAclRecord[] {
    return [...this.acls.values()].filter((a) => vpcId === undefined || a.vpcId === vpcId).map(copy);
  }

  /** The ACL that applies to a subnet of `vpcId`. */
  forSubnet(vpcId: string, subnetId: string): NetworkAclRecord {
    for (const a of this.acls.values()) if (a.subnets.includes(subnetId)) return a;
    return this.entry(defaultAclId(vpcId));
  }

  /** Delete an ACL with no subnets; the default one only with its VPC. */
  delete(id: string, options: { withDefault?: boolean } = {}): void {
    const acl = this.entry(id);
    if (acl.isDefault && !options.withDefault) throw new ConflictError(`${id} is the default network ACL of ${acl.vpcId}: it goes with the VPC`);
    if (acl.subnets.length) throw new ConflictError(`network ACL ${id} is associated with ${acl.subnets.length} subnet(s) (${acl.subnets.join(', ')})`);
    this.acls.delete(id);
  }

  addEntry(id: string, entry: NaclEntry): NetworkAclRecord {
    const acl = this.entry(id);
    const e = normalizeEntry(entry);
    const same = acl.entries.filter((x) => x.direction === e.direction);
    if (same.some((x) => x.ruleNumber === e.ruleNumber)) throw new ConflictError(`${id} already has ${e.direction} rule ${e.ruleNumber}`);
    if (same.length >= MAX_NACL_ENTRIES_PER_DIRECTION) throw new ConflictError(`${id} has ${same.length} ${e.direction} entries: the limit is ${MAX_NACL_ENTRIES_PER_DIRECTION}`);
    acl.entries.push(e);
    acl.entries.sort((a, b) => (a.direction === b.direction ? a.ruleNumber - b.ruleNumber : a.direction === 'ingress' ? -1 : 1));
    return copy(acl);
  }

  deleteEntry(id: string, direction: SgDirection, ruleNumber: number): NetworkAclRecord {
    const acl = this.entry(id);
    checkRuleNumber(ruleNumber);
    const i = acl.entries.findIndex((x) => x.direction === direction && x.ruleNumber === ruleNumber);
    if (i < 0) throw new NotFoundError(`${id} has no ${direction} rule ${ruleNumber}`);
    acl.entries.splice(i, 1);
    return copy(acl);
  }

  /** Associate a subnet of the ACL's VPC (taking it from the ACL it had). */
  associate(id: string, subnetId: string, subnetVpcId: string): NetworkAclRecord {
    const acl = this.entry(id);
    if (subnetVpcId !== acl.vpcId) throw new UsageError(`subnet ${subnetId} is in ${subnetVpcId}, not ${acl.vpcId}`);
    this.dissociate(subnetId);
    if (!acl.isDefault) acl.subnets.push(subnetId);
    return this.get(id);
  }

  /** The subnet goes back to its VPC's default ACL (when the subnet is deleted). */
  dissociate(subnetId: string): void {
    for (const a of this.acls.values()) a.subnets = a.subnets.filter((s) => s !== subnetId);
  }

  /** Restore an ACL from the state file, entries checked (subnets: {@link associate} them after). */
  restore(acl: NetworkAclRecord): void {
    if (!isResourceId('acl', acl.id)) throw new UsageError(`'${acl.id}' is not a network ACL id (${idFormat('acl')})`);
    this.acls.set(acl.id, { ...acl, entries: [], subnets: [] });
    for (const e of acl.entries) this.addEntry(acl.id, e);
  }

  private entry(id: string): NetworkAclRecord {
    const acl = this.acls.get(id);
    if (!acl) throw new NotFoundError(`network ACL ${id} does not exist`);
    return acl;
  }
}

/** Check an entry and put it in canonical form (ports and CIDR as security-group rules have them). */
export function normalizeEntry(entry: NaclEntry): NaclEntry {
  checkRuleNumber(entry.ruleNumber);
  if (entry.direction !== 'ingress' && entry.direction !== 'egress') throw new UsageError(`direction must be ingress or egress, not '${String(entry.direction)}'`);
  if (entry.action !== 'allow' && entry.action !== 'deny') throw new UsageError(`action must be allow or deny, not '${String(entry.action)}'`);
  if (entry.cidr === undefined) throw new UsageError('a network ACL entry needs a CIDR');
  const r = normalizeRule({ protocol: entry.protocol, fromPort: entry.fromPort, toPort: entry.toPort, cidr: entry.cidr });
  const out: NaclEntry = { ruleNumber: entry.ruleNumber, direction: entry.direction, protocol: r.protocol, cidr: r.cidr!, action: entry.action };
  if (r.fromPort !== undefined) out.fromPort = r.fromPort;
  if (r.toPort !== undefined) out.toPort = r.toPort;
  return out;
}

function checkRuleNumber(n: number): void {
  if (!Number.isInteger(n) || n < NACL_MIN_RULE_NUMBER || n > NACL_MAX_RULE_NUMBER) throw new UsageError(`rule number ${n} is not in ${NACL_MIN_RULE_NUMBER}-${NACL_MAX_RULE_NUMBER}`);
}

function copy(a: NetworkAclRecord): NetworkAclRecord {
  return { ...a, entries: a.entries.map((e) => ({ ...e })), subnets: [...a.subnets] };
}
