/**
 * Security groups as records: create, delete, authorize and revoke rules, with AWS's checks and
 * limits. Pure (no I/O); the VPC model owns one and keeps ENIs' group lists consistent with it.
 *
 * AWS rules kept here: a group belongs to one VPC; a new group has no ingress rules and one
 * egress rule allowing everything; every VPC has a group named `default` that allows ingress
 * from its own members (and all egress), which cannot be deleted. Its id is derived from the
 * VPC id (`sg-` + the VPC id's hex digits), so every host that creates the VPC with the same
 * id has the same default group without being told. A rule is protocol + ports + one peer (a
 * CIDR or a group of the same VPC); adding a rule that exists, or removing one that does not,
 * is an error and changes nothing.
 */
import { ConflictError, NotFoundError, UsageError } from '../common/errors.js';
import { idFormat, isResourceId } from '../api/ids.js';
import type { SecurityGroupRecord, SgDirection, SgProtocol, SgRule } from '../api/security-groups.js';
import { formatCidr, intToIpv4, parseCidr, prefixMask } from './packets.js';

/** Groups an ENI may have (AWS: 5 by default). */
export const MAX_GROUPS_PER_ENI = 5;
/** Rules per group and direction (AWS's quota can be raised to 1,000 in all). */
export const MAX_RULES_PER_DIRECTION = 1000;
export const DEFAULT_GROUP_NAME = 'default';
const MAX_NAME = 255;
const PROTOCOLS: readonly SgProtocol[] = ['tcp', 'udp', 'icmp', 'all'];

/** The id of a VPC's default group: the same on every host that has the VPC. */
export function defaultGroupId(vpcId: string): string {
  return `sg-${vpcId.slice(4)}`;
}

/** The egress rule a new group starts with. */
export const ALLOW_ALL_EGRESS: SgRule = { protocol: 'all', cidr: '0.0.0.0/0' };

/** What makes two rules the same rule (the description does not). */
export function ruleKey(r: SgRule): string {
  return `${r.protocol}|${r.fromPort ?? ''}|${r.toPort ?? ''}|${r.cidr ?? ''}|${r.sourceGroup ?? ''}`;
}

export interface CreateGroupInput {
  vpcId: string;
  name: string;
  description?: string;
  id?: string;
}

export class SecurityGroups {
  private readonly groups = new Map<string, SecurityGroupRecord>();

  constructor(private readonly newId: () => string) {}

  /** A VPC's default group (at VPC creation; idempotent). */
  createDefault(vpcId: string): SecurityGroupRecord {
    const id = defaultGroupId(vpcId);
    const existing = this.groups.get(id);
    if (existing) return copy(existing);
    const g: SecurityGroupRecord = {
      id,
      vpcId,
      name: DEFAULT_GROUP_NAME,
      description: 'default VPC security group',
      ingress: [{ protocol: 'all', sourceGroup: id }],
      egress: [{ ...ALLOW_ALL_EGRESS }],
    };
    this.groups.set(id, g);
    return copy(g);
  }

  create(input: CreateGroupInput): SecurityGroupRecord {
    const name = checkText(input.name, 'group name', 1);
    if (name === DEFAULT_GROUP_NAME) throw new UsageError(`the group name '${DEFAULT_GROUP_NAME}' is reserved for the VPC's default group`);
    const description = checkText(input.description ?? '', 'group description', 0);
    const id = input.id ?? this.newId();
    if (!isResourceId('sg', id)) throw new UsageError(`'${id}' is not a security group id (${idFormat('sg')})`);
    if (this.groups.has(id)) throw new ConflictError(`security group ${id} already exists`);
    for (const g of this.groups.values()) {
      if (g.vpcId === input.vpcId && g.name === name) throw new ConflictError(`${input.vpcId} already has a security group named '${name}' (${g.id})`);
    }
    const g: SecurityGroupRecord = { id, vpcId: input.vpcId, name, description, ingress: [], egress: [{ ...ALLOW_ALL_EGRESS }] };
    this.groups.set(id, g);
    return copy(g);
  }

  has(id: string): boolean {
    return this.groups.has(id);
  }

  get(id: string): SecurityGroupRecord {
    return copy(this.entry(id));
  }

  list(vpcId?: string): SecurityGroupRecord[] {
    return [...this.groups.values()].filter((g) => vpcId === undefined || g.vpcId === vpcId).map(copy);
  }

  /**
   * Delete a group. `users` names the ENIs that have it; a group with users, one another
   * group's rule refers to, or a default group cannot go (AWS: DependencyViolation).
   */
  delete(id: string, users: string[], options: { withDefault?: boolean } = {}): void {
    const g = this.entry(id);
    if (g.id === defaultGroupId(g.vpcId) && !options.withDefault) throw new ConflictError(`${id} is the default group of ${g.vpcId}: it goes with the VPC`);
    if (users.length) throw new ConflictError(`security group ${id} is used by ${users.length} ENI(s) (${users.join(', ')})`);
    for (const other of this.groups.values()) {
      if (other.id === id) continue;
      if ([...other.ingress, ...other.egress].some((r) => r.sourceGroup === id)) throw new ConflictError(`security group ${id} is referenced by a rule of ${other.id}`);
    }
    this.groups.delete(id);
  }

  authorize(id: string, direction: SgDirection, rule: SgRule): SecurityGroupRecord {
    const g = this.entry(id);
    const r = this.checkRule(g, rule);
    const list = g[direction];
    if (list.some((x) => ruleKey(x) === ruleKey(r))) throw new ConflictError(`${id} already has this ${direction} rule`);
    if (list.length >= MAX_RULES_PER_DIRECTION) throw new ConflictError(`${id} has ${list.length} ${direction} rules: the limit is ${MAX_RULES_PER_DIRECTION}`);
    list.push(r);
    return copy(g);
  }

  revoke(id: string, direction: SgDirection, rule: SgRule): SecurityGroupRecord {
    const g = this.entry(id);
    const key = ruleKey(this.checkRule(g, rule));
    const i = g[direction].findIndex((x) => ruleKey(x) === key);
    if (i < 0) throw new NotFoundError(`${id} has no such ${direction} rule`);
    g[direction].splice(i, 1);
    return copy(g);
  }

  /** Restore a group from the state file: rules as stored (checked once every group exists). */
  restore(g: SecurityGroupRecord): void {
    if (!isResourceId('sg', g.id)) throw new UsageError(`'${g.id}' is not a security group id (${idFormat('sg')})`);
    this.groups.set(g.id, { ...g, ingress: [], egress: [] });
  }

  /** The second pass of a restore: every stored rule, checked. */
  restoreRules(g: SecurityGroupRecord): void {
    for (const r of g.ingress) this.authorize(g.id, 'ingress', r);
    for (const r of g.egress) this.authorize(g.id, 'egress', r);
  }

  private entry(id: string): SecurityGroupRecord {
    const g = this.groups.get(id);
    if (!g) throw new NotFoundError(`security group ${id} does not exist`);
    return g;
  }

  /** A rule in canonical form (CIDR normalised, ports as AWS stores them), or a one-line error. */
  private checkRule(g: SecurityGroupRecord, rule: SgRule): SgRule {
    const out = normalizeRule(rule);
    if (out.sourceGroup !== undefined) {
      const peer = this.groups.get(out.sourceGroup);
      if (!peer) throw new NotFoundError(`security group ${out.sourceGroup} does not exist`);
      if (peer.vpcId !== g.vpcId) throw new UsageError(`security group ${out.sourceGroup} is in ${peer.vpcId}, not ${g.vpcId}`);
    }
    return out;
  }
}

/** Check a rule's own fields (not whether its source group exists) and put it in canonical form. */
export function normalizeRule(rule: SgRule): SgRule {
  if (!PROTOCOLS.includes(rule.protocol)) throw new UsageError(`protocol must be one of ${PROTOCOLS.join(', ')}, not '${String(rule.protocol)}'`);
  const out: SgRule = { protocol: rule.protocol };
  const { fromPort, toPort } = rule;
  if (rule.protocol === 'tcp' || rule.protocol === 'udp') {
    if (fromPort === undefined || toPort === undefined) throw new UsageError(`a ${rule.protocol} rule needs a port or port range`);
    checkInt(fromPort, 0, 65535, 'port');
    checkInt(toPort, 0, 65535, 'port');
    if (fromPort > toPort) throw new UsageError(`port range ${fromPort}-${toPort} is reversed`);
    out.fromPort = fromPort;
    out.toPort = toPort;
  } else if (rule.protocol === 'icmp') {
    const type = fromPort ?? -1;
    const code = toPort ?? -1;
    checkInt(type, -1, 255, 'ICMP type');
    checkInt(code, -1, 255, 'ICMP code');
    if (type === -1 && code !== -1) throw new UsageError('an ICMP code needs an ICMP type');
    out.fromPort = type;
    out.toPort = code;
  } else if ((fromPort !== undefined && fromPort !== -1) || (toPort !== undefined && toPort !== -1)) {
    throw new UsageError("a rule for protocol 'all' takes no ports");
  }
  if ((rule.cidr === undefined) === (rule.sourceGroup === undefined)) throw new UsageError('a rule needs exactly one of a CIDR or a source group');
  if (rule.cidr !== undefined) {
    const c = parseCidr(rule.cidr);
    if (!c) throw new UsageError(`'${String(rule.cidr)}' is not an IPv4 CIDR block (example: 10.0.0.0/8)`);
    const network = (c.network & prefixMask(c.prefix)) >>> 0;
    if (network !== c.network) throw new UsageError(`CIDR ${rule.cidr} has host bits set (did you mean ${intToIpv4(network)}/${c.prefix}?)`);
    out.cidr = formatCidr(c);
  } else {
    if (!isResourceId('sg', rule.sourceGroup!)) throw new UsageError(`'${rule.sourceGroup}' is not a security group id (${idFormat('sg')})`);
    out.sourceGroup = rule.sourceGroup!;
  }
  if (rule.description !== undefined) out.description = checkText(rule.description, 'rule description', 0);
  return out;
}

function checkInt(n: number, min: number, max: number, what: string): void {
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${what} ${n} is not in ${min}-${max}`);
}

function checkText(text: string, what: string, min: number): string {
  if (typeof text !== 'string' || text.length < min || text.length > MAX_NAME || /[\x00-\x1f\x7f]/.test(text)) {
    throw new UsageError(`${what} must be ${min}-${MAX_NAME} printable characters`);
  }
  return text;
}

function copy(g: SecurityGroupRecord): SecurityGroupRecord {
  return { ...g, ingress: g.ingress.map((r) => ({ ...r })), egress: g.egress.map((r) => ({ ...r })) };
}
