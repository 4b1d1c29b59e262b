/**
 * The VPC model: VPCs, subnets and ENIs with their validation and address management
 * (IPAM), the ENI directory the data plane looks up (ENI MAC/IP → hosting daemon), and the
 * JSON form of it all for the state file.
 *
 * Rules, as AWS's (reference: nitro.md §1.4–1.5, amazon-vpc-user-guide subnet-sizing.md):
 * - VPC: `vpc-` + 17 hex digits, one IPv4 CIDR block /16–/28 without host bits. Special
 *   ranges (0/8, 127/8, 169.254/16, 224/3) are refused. VPCs may overlap each other: each is
 *   its own address space.
 * - Subnet: `subnet-` + 17 hex, a /16–/28 inside its VPC, not overlapping a sibling. Five
 *   addresses are reserved: network (+0), VPC router (+1), DNS (+2), future use (+3) and
 *   broadcast (last).
 * - ENI: `eni-` + 17 hex, one private IPv4 in its subnet (auto: the lowest free address),
 *   a MAC unique across all VPCs (auto: `02:` + 5 random bytes, locally administered
 *   unicast), sourceDestCheck (default true), the host-side netdev name (≤ 15 characters,
 *   auto `ni` + 8 hex digits of the ENI id) and the id of the daemon that hosts it.
 *
 * Errors are UsageError (malformed or out of range), ConflictError (clashes with what
 * exists, full subnet) and NotFoundError, with one-line messages.
 */
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { ConflictError, NotFoundError, RuntimeError, UsageError, oneLine } from '../common/errors.js';
import { NestedMap } from '../common/nested-map.js';
import { idFormat, isResourceId, newResourceId, type ResourceKind } from '../api/ids.js';
import { ENI_MAX_BANDWIDTH, ENI_MAX_PPS, ENI_MIN_BANDWIDTH, PEER_NAME_PATTERN, VPC_DEFAULT_MTU, VPC_MAX_MTU, VPC_MIN_MTU, type EniInfo, type SubnetRecord, type VpcRecord } from '../api/vpc.js';
import type { SecurityGroupRecord } from '../api/security-groups.js';
import type { NetworkAclRecord } from '../api/network-acls.js';
import { NetworkAcls, defaultAclId } from './network-acls.js';
import type { FlowLogRecord, FlowLogResourceType } from '../api/flow-logs.js';
import { FlowLogs } from './flow-logs.js';
import { CT_TCP_ESTABLISHED_MIN_S, CT_TCP_ESTABLISHED_S } from './sg-table.js';
import { GATEWAY_MAC } from './constants.js';
import { MAX_GROUPS_PER_ENI, SecurityGroups, defaultGroupId } from './security-groups.js';
import {
  cidrContains,
  cidrContainsCidr,
  cidrFirst,
  cidrHasHostBits,
  cidrLast,
  cidrOverlaps,
  cidrSize,
  formatCidr,
  formatMac,
  intToIpv4,
  ipv4ToInt,
  isUnicastMac,
  isZeroMac,
  normalizeMac,
  parseCidr,
  prefixMask,
  type Cidr,
} from './packets.js';

// =============================================================================================
// Records: what the state file stores, in the API's shapes (src/api/vpc.ts)
// =============================================================================================

/** An ENI as stored: what the API shows less what the manager adds (its netdev kind and guest side). */
export type EniRecord = Omit<EniInfo, 'kind' | 'guestInterface'>;

/** The state file's content. */
export interface VpcState {
  version: 1;
  vpcs: VpcRecord[];
  subnets: SubnetRecord[];
  enis: EniRecord[];
  /** Absent in state files from before security groups: every VPC then has its default group only. */
  securityGroups?: SecurityGroupRecord[];
  /** Absent in state files from before network ACLs: every VPC then has its default ACL only. */
  networkAcls?: NetworkAclRecord[];
  flowLogs?: FlowLogRecord[];
}

// =============================================================================================
// Limits and id formats
// =============================================================================================

export const MIN_PREFIX = 16;
export const MAX_PREFIX = 28;
/** Linux IFNAMSIZ (16) minus the terminating NUL. */
export const MAX_INTERFACE_NAME = 15;

const NAME = /^[A-Za-z0-9][A-Za-z0-9 ._:/@-]{0,127}$/;
const INTERFACE_NAME = /^[A-Za-z0-9_.-]{1,15}$/;


/** Address ranges no VPC may use (AWS refuses them too). */
const SPECIAL_RANGES: Array<[Cidr, string]> = [
  [{ network: 0x00000000, prefix: 8 }, '"this network" (0.0.0.0/8)'],
  [{ network: 0x7f000000, prefix: 8 }, 'loopback (127.0.0.0/8)'],
  [{ network: 0xa9fe0000, prefix: 16 }, 'link-local (169.254.0.0/16)'],
  [{ network: 0xe0000000, prefix: 3 }, 'multicast and reserved (224.0.0.0/3)'],
];

// =============================================================================================
// Reserved addresses of a subnet
// =============================================================================================

export type ReservedRole = 'network' | 'router' | 'dns' | 'reserved' | 'broadcast';

/** Which reserved address `ip` is in `subnet`, or null if it is assignable (or outside). */
export function reservedRole(subnet: Cidr, ip: number): ReservedRole | null {
  if (!cidrContains(subnet, ip)) return null;
  const first = cidrFirst(subnet);
  if (ip === first) return 'network';
  if (ip === first + 1) return 'router';
  if (ip === first + 2) return 'dns';
  if (ip === first + 3) return 'reserved';
  if (ip === cidrLast(subnet)) return 'broadcast';
  return null;
}

/** The subnet's VPC router address (+1): default gateway and DHCP server id. */
export function subnetRouter(subnet: Cidr): number {
  return cidrFirst(subnet) + 1;
}

/** The subnet's DNS address (+2). */
export function subnetDns(subnet: Cidr): number {
  return cidrFirst(subnet) + 2;
}

/** The VPC's resolver address (VPC base + 2, the "AmazonProvidedDNS" analogue). */
export function vpcDnsAddress(vpc: Cidr): number {
  return cidrFirst(vpc) + 2;
}

/** Addresses an ENI can get in a subnet (size minus the five reserved). */
export function usableAddresses(subnet: Cidr): number {
  return cidrSize(subnet) - 5;
}

// =============================================================================================
// The ENI directory: what the data plane looks up
// =============================================================================================

/** One ENI as the data plane and the ARP/DHCP responders see it (denormalised, numeric addresses). */
export interface EniEntry {
  eniId: string;
  vpcId: string;
  subnetId: string;
  mac: string;
  ip: number;
  subnet: Cidr;
  vpc: Cidr;
  hostId: string;
  sourceDestCheck: boolean;
  hostInterface: string;
}

/**
 * The mapping ENI (MAC / VPC + IP) → hosting daemon. In-memory here ({@link VpcTables});
 * at scale it belongs in a replicated store (AWS's "mapping service"), so consumers depend on
 * this interface only. A lookup miss means "drop".
 */
export interface EniDirectory {
  /** IPs are per VPC: VPC address spaces may overlap. */
  lookupByIp(vpcId: string, ip: number): EniEntry | undefined;
  /** MACs are unique across all VPCs. */
  lookupByMac(mac: string): EniEntry | undefined;
  lookupById(eniId: string): EniEntry | undefined;
  list(): EniEntry[];
}

/** The in-memory {@link EniDirectory}, indexed by id, MAC and (VPC, IP). */
export class VpcTables implements EniDirectory {
  private readonly byId = new Map<string, EniEntry>();
  private readonly byMac = new Map<string, EniEntry>();
  /** VPC id → address → entry (nested: no `vpc/ip` key string per ENI). */
  private readonly byVpcIp = new NestedMap<string, number, EniEntry>();
  /** Frozen network/prefix pairs, one per distinct subnet and VPC block, shared by their entries. */
  private readonly blocks = new Map<string, Readonly<{ network: number; prefix: number }>>();

  /** `localHostId`: the id of the daemon holding these tables (entries with it are local). */
  constructor(readonly localHostId: string) {}

  lookupByIp(vpcId: string, ip: number): EniEntry | undefined {
    return this.byVpcIp.get(vpcId, ip >>> 0);
  }

  lookupByMac(mac: string): EniEntry | undefined {
    return this.byMac.get(mac);
  }

  lookupById(eniId: string): EniEntry | undefined {
    return this.byId.get(eniId);
  }

  list(): EniEntry[] {
    return [...this.byId.values()];
  }

  /** Entries hosted by `hostId` (default: this daemon). */
  listByHost(hostId = this.localHostId): EniEntry[] {
    return this.list().filter((e) => e.hostId === hostId);
  }

  isLocal(entry: EniEntry): boolean {
    return entry.hostId === this.localHostId;
  }

  /** Insert or replace (by ENI id). The caller (the model) has checked uniqueness. */
  put(entry: EniEntry): void {
    this.remove(entry.eniId);
    // A literal, not a spread: V8 gives every frozen spread copy a hidden class of its own
    // (~600 bytes an entry, 6 MB at 10,000 ENIs); frozen literals share one.
    const frozen: EniEntry = Object.freeze({
      eniId: entry.eniId,
      vpcId: entry.vpcId,
      subnetId: entry.subnetId,
      mac: entry.mac,
      ip: entry.ip,
      subnet: this.block(entry.subnet),
      vpc: this.block(entry.vpc),
      hostId: entry.hostId,
      sourceDestCheck: entry.sourceDestCheck,
      hostInterface: entry.hostInterface,
    });
    this.byId.set(entry.eniId, frozen);
    this.byMac.set(entry.mac, frozen);
    this.byVpcIp.set(entry.vpcId, entry.ip >>> 0, frozen);
  }

  private block(b: { network: number; prefix: number }): Readonly<{ network: number; prefix: number }> {
    const key = `${b.network}/${b.prefix}`;
    let shared = this.blocks.get(key);
    if (!shared) this.blocks.set(key, (shared = Object.freeze({ network: b.network, prefix: b.prefix })));
    return shared;
  }

  remove(eniId: string): boolean {
    const old = this.byId.get(eniId);
    if (!old) return false;
    this.byId.delete(eniId);
    this.byMac.delete(old.mac);
    this.byVpcIp.delete(old.vpcId, old.ip >>> 0);
    return true;
  }

  get size(): number {
    return this.byId.size;
  }
}

// =============================================================================================
// The model
// =============================================================================================

export interface CreateVpcInput {
  cidr: string;
  id?: string;
  name?: string;
  mtu?: number;
}

export interface CreateSubnetInput {
  vpcId: string;
  cidr: string;
  id?: string;
  name?: string;
}

export interface CreateEniInput {
  subnetId: string;
  id?: string;
  mac?: string;
  privateIp?: string;
  sourceDestCheck?: boolean;
  hostInterface?: string;
  /** Default: the local daemon. */
  hostId?: string;
  description?: string;
  /** 1–5 groups of the ENI's VPC; default: the VPC's default group. */
  securityGroups?: string[];
  tcpEstablishedTimeout?: number;
  /** Allowances each way: bits/s, packets/s (absent: unlimited). */
  bandwidth?: number;
  pps?: number;
}

export interface ModifyEniInput {
  sourceDestCheck?: boolean;
  hostId?: string;
  hostInterface?: string;
  description?: string;
  securityGroups?: string[];
  tcpEstablishedTimeout?: number;
  /** null removes the limit. */
  bandwidth?: number | null;
  pps?: number | null;
}

export interface SubnetUsage {
  total: number;
  reserved: number;
  used: number;
  available: number;
}

export interface VpcModelOptions {
  /** This daemon's id (default host of new ENIs; "local" entries of the tables). */
  localHostId: string;
  /** Random bytes for ids and MACs (default node:crypto randomBytes). */
  random?: (bytes: number) => Buffer;
}

interface Subnet {
  record: SubnetRecord;
  cidr: Cidr;
  /** ENI id by address. */
  used: Map<number, string>;
}

/** VPCs, subnets and ENIs, validated; keeps {@link tables} in step with every change. */
export class VpcModel {
  readonly tables: VpcTables;
  private readonly random: (bytes: number) => Buffer;
  private readonly vpcs = new Map<string, { record: VpcRecord; cidr: Cidr }>();
  private readonly subnets = new Map<string, Subnet>();
  private readonly enis = new Map<string, EniRecord>();
  /** Host id → interface → ENI id (nested: no `host/interface` key string per ENI). */
  private readonly interfaces = new NestedMap<string, string, string>();
  /** Every VPC's groups; ENIs' group lists refer to them. */
  readonly securityGroups: SecurityGroups;
  /** Every VPC's network ACLs and their subnet associations. */
  readonly networkAcls: NetworkAcls;
  /** Flow logs of ENIs, subnets and VPCs (each host writes its local ENIs' records). */
  readonly flowLogs: FlowLogs;

  constructor(options: VpcModelOptions) {
    checkHostId(options.localHostId);
    this.tables = new VpcTables(options.localHostId);
    this.random = options.random ?? randomBytes;
    this.securityGroups = new SecurityGroups(() => this.newId('sg', (s) => this.securityGroups.has(s)));
    this.networkAcls = new NetworkAcls(() => this.newId('acl', (s) => this.networkAcls.has(s)));
    this.flowLogs = new FlowLogs(() => this.newId('flowLog', (s) => this.flowLogs.has(s)));
  }

  get localHostId(): string {
    return this.tables.localHostId;
  }

  // ---- VPCs ---------------------------------------------------------------------------------

  createVpc(input: CreateVpcInput): VpcRecord {
    const cidr = checkBlock(input.cidr, 'VPC');
    for (const [range, what] of SPECIAL_RANGES) {
      if (cidrOverlaps(range, cidr)) throw new UsageError(`VPC CIDR ${formatCidr(cidr)} overlaps the ${what} range`);
    }
    const id = input.id ?? this.newId('vpc', (s) => this.vpcs.has(s));
    checkId('vpc', id, 'a VPC id');
    if (this.vpcs.has(id)) throw new ConflictError(`VPC ${id} already exists`);
    const record: VpcRecord = { id, cidr: formatCidr(cidr) };
    if (input.name !== undefined) record.name = checkName(input.name);
    // Stored only when given: records without it stay readable by daemons from before it.
    if (input.mtu !== undefined) record.mtu = checkVpcMtu(input.mtu);
    this.vpcs.set(id, { record, cidr });
    this.securityGroups.createDefault(id);
    this.networkAcls.createDefault(id);
    return { ...record };
  }

  getVpc(id: string): VpcRecord {
    return { ...this.vpcEntry(id).record };
  }

  /** The VPC's guest MTU. */
  vpcMtu(id: string): number {
    return this.vpcEntry(id).record.mtu ?? VPC_DEFAULT_MTU;
  }

  listVpcs(): VpcRecord[] {
    return [...this.vpcs.values()].map((v) => ({ ...v.record }));
  }

  deleteVpc(id: string): void {
    this.vpcEntry(id);
    const subnets = [...this.subnets.values()].filter((s) => s.record.vpcId === id);
    if (subnets.length) throw new ConflictError(`VPC ${id} still has ${subnets.length} subnet(s) (${subnets.map((s) => s.record.id).join(', ')}): delete them first`);
    const groups = this.securityGroups.list(id).filter((g) => g.id !== defaultGroupId(id));
    if (groups.length) throw new ConflictError(`VPC ${id} still has ${groups.length} security group(s) (${groups.map((g) => g.id).join(', ')}): delete them first`);
    const acls = this.networkAcls.list(id).filter((a) => !a.isDefault);
    if (acls.length) throw new ConflictError(`VPC ${id} still has ${acls.length} network ACL(s) (${acls.map((a) => a.id).join(', ')}): delete them first`);
    this.securityGroups.delete(defaultGroupId(id), [], { withDefault: true });
    this.networkAcls.delete(defaultAclId(id), { withDefault: true });
    this.flowLogs.deleteFor(id);
    this.vpcs.delete(id);
  }

  // ---- subnets ------------------------------------------------------------------------------

  createSubnet(input: CreateSubnetInput): SubnetRecord {
    const vpc = this.vpcEntry(input.vpcId);
    const cidr = checkBlock(input.cidr, 'subnet');
    if (!cidrContainsCidr(vpc.cidr, cidr)) {
      throw new UsageError(`subnet CIDR ${formatCidr(cidr)} is not inside ${vpc.record.id} (${vpc.record.cidr})`);
    }
    for (const other of this.subnets.values()) {
      if (other.record.vpcId === vpc.record.id && cidrOverlaps(other.cidr, cidr)) {
        throw new ConflictError(`subnet CIDR ${formatCidr(cidr)} overlaps ${other.record.id} (${other.record.cidr})`);
      }
    }
    const id = input.id ?? this.newId('subnet', (s) => this.subnets.has(s));
    checkId('subnet', id, 'a subnet id');
    if (this.subnets.has(id)) throw new ConflictError(`subnet ${id} already exists`);
    const record: SubnetRecord = { id, vpcId: vpc.record.id, cidr: formatCidr(cidr) };
    if (input.name !== undefined) record.name = checkName(input.name);
    this.subnets.set(id, { record, cidr, used: new Map() });
    return { ...record };
  }

  hasSubnet(id: string): boolean {
    return this.subnets.has(id);
  }

  getSubnet(id: string): SubnetRecord {
    return { ...this.subnetEntry(id).record };
  }

  listSubnets(vpcId?: string): SubnetRecord[] {
    if (vpcId !== undefined) this.vpcEntry(vpcId);
    return [...this.subnets.values()].filter((s) => vpcId === undefined || s.record.vpcId === vpcId).map((s) => ({ ...s.record }));
  }

  deleteSubnet(id: string): void {
    const subnet = this.subnetEntry(id);
    if (subnet.used.size) {
      throw new ConflictError(`subnet ${id} still has ${subnet.used.size} ENI(s) (${[...subnet.used.values()].join(', ')}): delete them first`);
    }
    this.networkAcls.dissociate(id);
    this.flowLogs.deleteFor(id);
    this.subnets.delete(id);
  }

  subnetUsage(id: string): SubnetUsage {
    const subnet = this.subnetEntry(id);
    const total = cidrSize(subnet.cidr);
    return { total, reserved: 5, used: subnet.used.size, available: total - 5 - subnet.used.size };
  }

  // ---- ENIs ---------------------------------------------------------------------------------

  createEni(input: CreateEniInput): EniRecord {
    const subnet = this.subnetEntry(input.subnetId);
    const id = input.id ?? this.newId('eni', (s) => this.enis.has(s));
    checkId('eni', id, 'an ENI id');
    if (this.enis.has(id)) throw new ConflictError(`ENI ${id} already exists`);
    const hostId = input.hostId === undefined ? this.localHostId : checkHostId(input.hostId);

    let mac: string;
    if (input.mac !== undefined) {
      mac = checkMac(input.mac);
      const owner = this.tables.lookupByMac(mac);
      if (owner) throw new ConflictError(`MAC ${mac} is already used by ${owner.eniId}`);
    } else {
      mac = this.newMac();
    }

    let ip: number;
    if (input.privateIp !== undefined) {
      ip = this.checkRequestedIp(subnet, input.privateIp);
    } else {
      const free = this.lowestFree(subnet);
      if (free === null) {
        throw new ConflictError(
          `subnet ${subnet.record.id} (${subnet.record.cidr}) has no free address: all ${usableAddresses(subnet.cidr)} usable addresses are in use`,
          'SUBNET_FULL',
        );
      }
      ip = free;
    }

    let hostInterface: string;
    if (input.hostInterface !== undefined) {
      hostInterface = checkInterfaceName(input.hostInterface);
      this.checkInterfaceFree(hostId, hostInterface, id);
    } else {
      hostInterface = this.newInterfaceName(hostId, id);
    }

    const record: EniRecord = {
      id,
      vpcId: subnet.record.vpcId,
      subnetId: subnet.record.id,
      mac,
      privateIp: intToIpv4(ip),
      sourceDestCheck: input.sourceDestCheck ?? true,
      hostInterface,
      hostId,
      securityGroups: this.checkGroups(subnet.record.vpcId, input.securityGroups ?? [defaultGroupId(subnet.record.vpcId)]),
    };
    if (input.description !== undefined) record.description = checkDescription(input.description);
    if (input.tcpEstablishedTimeout !== undefined && input.tcpEstablishedTimeout !== CT_TCP_ESTABLISHED_S) record.tcpEstablishedTimeout = checkTcpTimeout(input.tcpEstablishedTimeout);
    if (input.bandwidth !== undefined) record.bandwidth = checkBandwidth(input.bandwidth);
    if (input.pps !== undefined) record.pps = checkPps(input.pps);
    if (typeof record.sourceDestCheck !== 'boolean') throw new UsageError('sourceDestCheck must be true or false');
    this.enis.set(id, record);
    subnet.used.set(ip, id);
    this.interfaces.set(hostId, hostInterface, id);
    this.tables.put(this.entryOf(record));
    return { ...record };
  }

  /** How many ENIs there are, and how many are this host's (status, without copying them). */
  eniCount(): { total: number; local: number } {
    let local = 0;
    for (const e of this.enis.values()) if (e.hostId === this.localHostId) local++;
    return { total: this.enis.size, local };
  }

  getEni(id: string): EniRecord {
    return { ...this.eniRecord(id) };
  }

  listEnis(filter: { vpcId?: string; subnetId?: string; hostId?: string } = {}): EniRecord[] {
    return [...this.enis.values()]
      .filter((e) => (filter.vpcId === undefined || e.vpcId === filter.vpcId) && (filter.subnetId === undefined || e.subnetId === filter.subnetId) && (filter.hostId === undefined || e.hostId === filter.hostId))
      .map((e) => ({ ...e }));
  }

  /** Change the mutable attributes (address, MAC, subnet are fixed for an ENI's life, as in AWS). */
  modifyEni(id: string, changes: ModifyEniInput): EniRecord {
    const old = this.eniRecord(id);
    const next: EniRecord = { ...old };
    if (changes.sourceDestCheck !== undefined) {
      if (typeof changes.sourceDestCheck !== 'boolean') throw new UsageError('sourceDestCheck must be true or false');
      next.sourceDestCheck = changes.sourceDestCheck;
    }
    if (changes.hostId !== undefined) next.hostId = checkHostId(changes.hostId);
    if (changes.hostInterface !== undefined) next.hostInterface = checkInterfaceName(changes.hostInterface);
    if (changes.description !== undefined) next.description = checkDescription(changes.description);
    if (changes.securityGroups !== undefined) next.securityGroups = this.checkGroups(old.vpcId, changes.securityGroups);
    if (changes.tcpEstablishedTimeout !== undefined) {
      delete next.tcpEstablishedTimeout;
      if (checkTcpTimeout(changes.tcpEstablishedTimeout) !== CT_TCP_ESTABLISHED_S) next.tcpEstablishedTimeout = changes.tcpEstablishedTimeout;
    }
    if (changes.bandwidth !== undefined) {
      delete next.bandwidth;
      if (changes.bandwidth !== null) next.bandwidth = checkBandwidth(changes.bandwidth);
    }
    if (changes.pps !== undefined) {
      delete next.pps;
      if (changes.pps !== null) next.pps = checkPps(changes.pps);
    }
    if (next.hostId !== old.hostId || next.hostInterface !== old.hostInterface) this.checkInterfaceFree(next.hostId, next.hostInterface, id);
    this.interfaces.delete(old.hostId, old.hostInterface);
    this.interfaces.set(next.hostId, next.hostInterface, id);
    this.enis.set(id, next);
    this.tables.put(this.entryOf(next));
    return { ...next };
  }

  deleteEni(id: string): void {
    const record = this.eniRecord(id);
    this.subnetEntry(record.subnetId).used.delete(ipv4ToInt(record.privateIp)!);
    this.interfaces.delete(record.hostId, record.hostInterface);
    this.enis.delete(id);
    this.tables.remove(id);
    this.flowLogs.deleteFor(id);
  }

  // ---- security groups ----------------------------------------------------------------------

  /** Delete a group no ENI uses and no other group's rule names. */
  deleteSecurityGroup(id: string): void {
    this.securityGroups.delete(id, this.groupUsers(id));
  }

  /** ENIs (of every host) that have the group. */
  groupUsers(groupId: string): string[] {
    return [...this.enis.values()].filter((e) => e.securityGroups.includes(groupId)).map((e) => e.id);
  }

  /** The addresses of the group's members (what a rule naming the group as its peer stands for). */
  groupMembers(groupId: string): number[] {
    const out: number[] = [];
    for (const e of this.enis.values()) if (e.securityGroups.includes(groupId)) out.push(ipv4ToInt(e.privateIp)!);
    return out;
  }

  private checkGroups(vpcId: string, groups: string[]): string[] {
    if (!Array.isArray(groups) || groups.length < 1 || groups.length > MAX_GROUPS_PER_ENI) {
      throw new UsageError(`an ENI has 1-${MAX_GROUPS_PER_ENI} security groups, not ${Array.isArray(groups) ? groups.length : 0}`);
    }
    if (new Set(groups).size !== groups.length) throw new UsageError('a security group is listed twice');
    for (const id of groups) {
      const g = this.securityGroups.get(id);
      if (g.vpcId !== vpcId) throw new UsageError(`security group ${id} is in ${g.vpcId}, not ${vpcId}`);
    }
    // The group's own id string: 10,000 ENIs of a fleet share one, not one each.
    return groups.map((id) => this.securityGroups.get(id).id);
  }

  // ---- network ACLs -------------------------------------------------------------------------

  createNetworkAcl(input: { vpcId: string; id?: string }): NetworkAclRecord {
    this.vpcEntry(input.vpcId);
    return this.networkAcls.create(input);
  }

  associateNetworkAcl(aclId: string, subnetId: string): NetworkAclRecord {
    return this.networkAcls.associate(aclId, subnetId, this.subnetEntry(subnetId).record.vpcId);
  }

  /** The ACL a subnet uses, with the ACL's default-ACL subnets filled in. */
  subnetAcl(subnetId: string): NetworkAclRecord {
    return this.networkAcls.forSubnet(this.subnetEntry(subnetId).record.vpcId, subnetId);
  }

  /** An ACL as the API shows it: a default ACL lists the subnets no other ACL has. */
  describeNetworkAcl(id: string): NetworkAclRecord {
    const acl = this.networkAcls.get(id);
    if (acl.isDefault) acl.subnets = this.listSubnets(acl.vpcId).filter((s) => this.subnetAcl(s.id).id === id).map((s) => s.id);
    return acl;
  }

  // ---- flow logs ----------------------------------------------------------------------------

  createFlowLog(input: { resourceId: string; interval?: number; maxFileBytes?: number; id?: string }): FlowLogRecord {
    const exists = (type: FlowLogResourceType, id: string) => (type === 'eni' ? this.enis.has(id) : type === 'subnet' ? this.subnets.has(id) : this.vpcs.has(id));
    return this.flowLogs.create(input, exists);
  }

  // ---- state file ---------------------------------------------------------------------------

  toJSON(): VpcState {
    return { version: 1, vpcs: this.listVpcs(), subnets: this.listSubnets(), enis: this.listEnis(), securityGroups: this.securityGroups.list(), networkAcls: this.networkAcls.list(), flowLogs: this.flowLogs.list() };
  }

  /**
   * Rebuild a model from its JSON form. Every record is re-validated as if created anew
   * (ids, CIDRs, overlaps, reserved and duplicate addresses, MACs); any problem is a
   * RuntimeError `VPC_STATE` naming it: the daemon cannot run on a state it cannot trust.
   */
  static fromJSON(json: unknown, options: VpcModelOptions): VpcModel {
    const parsed = StateSchema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new RuntimeError(`invalid VPC state: ${issue ? `${issue.path.join('.') || 'state'}: ${issue.message}` : 'unreadable'}`, 'VPC_STATE');
    }
    const model = new VpcModel(options);
    const state = parsed.data;
    try {
      for (const v of state.vpcs) model.createVpc(v);
      // Groups in two passes: a rule may name any group of its VPC.
      const groups = state.securityGroups ?? [];
      for (const g of groups) {
        if (!model.vpcs.has(g.vpcId)) throw new UsageError(`security group ${g.id} names ${g.vpcId}, which does not exist`);
        model.securityGroups.restore(g);
      }
      for (const g of groups) model.securityGroups.restoreRules(g);
      for (const s of state.subnets) model.createSubnet(s);
      for (const acl of state.networkAcls ?? []) {
        if (!model.vpcs.has(acl.vpcId)) throw new UsageError(`network ACL ${acl.id} names ${acl.vpcId}, which does not exist`);
        model.networkAcls.restore(acl);
      }
      for (const acl of state.networkAcls ?? []) for (const s of acl.subnets) model.associateNetworkAcl(acl.id, s);
      for (const e of state.enis) {
        const created = model.createEni({
          id: e.id,
          subnetId: e.subnetId,
          mac: e.mac,
          privateIp: e.privateIp,
          sourceDestCheck: e.sourceDestCheck,
          hostInterface: e.hostInterface,
          hostId: e.hostId,
          description: e.description,
          ...(e.securityGroups ? { securityGroups: e.securityGroups } : {}),
          ...(e.tcpEstablishedTimeout !== undefined ? { tcpEstablishedTimeout: e.tcpEstablishedTimeout } : {}),
          ...(e.bandwidth !== undefined ? { bandwidth: e.bandwidth } : {}),
          ...(e.pps !== undefined ? { pps: e.pps } : {}),
        });
        if (created.vpcId !== e.vpcId) throw new UsageError(`ENI ${e.id} names ${e.vpcId} but its subnet ${e.subnetId} is in ${created.vpcId}`);
      }
      for (const fl of state.flowLogs ?? []) model.createFlowLog(fl);
    } catch (err) {
      throw new RuntimeError(`invalid VPC state: ${oneLine(err)}`, 'VPC_STATE', { cause: err });
    }
    return model;
  }

  // ---- internals ----------------------------------------------------------------------------

  private vpcEntry(id: string): { record: VpcRecord; cidr: Cidr } {
    const vpc = this.vpcs.get(id);
    if (!vpc) throw new NotFoundError(`VPC ${id} does not exist`);
    return vpc;
  }

  private subnetEntry(id: string): Subnet {
    const subnet = this.subnets.get(id);
    if (!subnet) throw new NotFoundError(`subnet ${id} does not exist`);
    return subnet;
  }

  private eniRecord(id: string): EniRecord {
    const eni = this.enis.get(id);
    if (!eni) throw new NotFoundError(`ENI ${id} does not exist`);
    return eni;
  }

  private entryOf(record: EniRecord): EniEntry {
    const subnet = this.subnetEntry(record.subnetId);
    const vpc = this.vpcEntry(record.vpcId);
    return {
      eniId: record.id,
      vpcId: record.vpcId,
      subnetId: record.subnetId,
      mac: record.mac,
      ip: ipv4ToInt(record.privateIp)!,
      subnet: { network: cidrFirst(subnet.cidr), prefix: subnet.cidr.prefix },
      vpc: { network: cidrFirst(vpc.cidr), prefix: vpc.cidr.prefix },
      hostId: record.hostId,
      sourceDestCheck: record.sourceDestCheck,
      hostInterface: record.hostInterface,
    };
  }

  private checkRequestedIp(subnet: Subnet, text: string): number {
    const ip = typeof text === 'string' ? ipv4ToInt(text) : null;
    if (ip === null) throw new UsageError(`'${String(text)}' is not an IPv4 address`);
    if (!cidrContains(subnet.cidr, ip)) throw new UsageError(`${text} is not in subnet ${subnet.record.id} (${subnet.record.cidr})`);
    const role = reservedRole(subnet.cidr, ip);
    if (role) throw new UsageError(`${text} is reserved in subnet ${subnet.record.id} (${ROLE_TEXT[role]})`);
    const owner = subnet.used.get(ip);
    if (owner) throw new ConflictError(`${text} is already assigned to ${owner}`);
    return ip;
  }

  private lowestFree(subnet: Subnet): number | null {
    const first = cidrFirst(subnet.cidr) + 4;
    const last = cidrLast(subnet.cidr) - 1;
    for (let ip = first; ip <= last; ip++) if (!subnet.used.has(ip)) return ip;
    return null;
  }

  private newId(kind: ResourceKind, taken: (id: string) => boolean): string {
    for (;;) {
      const id = newResourceId(kind, this.random);
      if (!taken(id)) return id;
    }
  }

  private newMac(): string {
    for (;;) {
      const bytes = Buffer.concat([Buffer.from([0x02]), this.random(5).subarray(0, 5)]);
      const mac = formatMac(bytes);
      if (mac !== GATEWAY_MAC && !this.tables.lookupByMac(mac)) return mac;
    }
  }

  private newInterfaceName(hostId: string, eniId: string): string {
    const derived = `ni${eniId.slice(4, 12)}`;
    if (this.interfaceOwner(hostId, derived) === undefined) return derived;
    for (;;) {
      const name = `ni${this.random(4).toString('hex').slice(0, 8)}`;
      if (this.interfaceOwner(hostId, name) === undefined) return name;
    }
  }

  /** The ENI whose netdev on `hostId` is named `name`, if any. */
  interfaceOwner(hostId: string, name: string): string | undefined {
    return this.interfaces.get(hostId, name);
  }

  private checkInterfaceFree(hostId: string, name: string, eniId: string): void {
    const owner = this.interfaceOwner(hostId, name);
    if (owner !== undefined && owner !== eniId) throw new ConflictError(`interface ${name} on host ${hostId} is already used by ${owner}`);
  }
}

const ROLE_TEXT: Record<ReservedRole, string> = {
  network: 'network address',
  router: 'VPC router, subnet base + 1',
  dns: 'DNS, subnet base + 2',
  reserved: 'reserved for future use, subnet base + 3',
  broadcast: 'broadcast address',
};

// =============================================================================================
// Field checks
// =============================================================================================

function checkBlock(text: string, what: 'VPC' | 'subnet'): Cidr {
  const cidr = parseCidr(text);
  if (!cidr) throw new UsageError(`'${String(text)}' is not an IPv4 CIDR block (example: 10.0.0.0/16)`);
  if (cidr.prefix < MIN_PREFIX || cidr.prefix > MAX_PREFIX) {
    throw new UsageError(`${what} CIDR ${text} has prefix /${cidr.prefix}: it must be between /${MIN_PREFIX} and /${MAX_PREFIX}`);
  }
  if (cidrHasHostBits(cidr)) {
    throw new UsageError(`${what} CIDR ${text} has host bits set (did you mean ${intToIpv4((cidr.network & prefixMask(cidr.prefix)) >>> 0)}/${cidr.prefix}?)`);
  }
  return cidr;
}

/** An id given for a new resource must have its kind's format. */
function checkId(kind: ResourceKind, id: string, what: string): void {
  if (!isResourceId(kind, id)) throw new UsageError(`'${id}' is not ${what} (${idFormat(kind)})`);
}

/** A MAC given for an ENI: canonical form, unicast, not all zeroes, not the gateway's. */
export function checkMac(text: string): string {
  const mac = typeof text === 'string' ? normalizeMac(text) : null;
  if (!mac) throw new UsageError(`'${String(text)}' is not a MAC address (example: 02:00:00:00:00:01)`);
  if (isZeroMac(mac)) throw new UsageError(`MAC ${mac} is all zeroes`);
  if (!isUnicastMac(mac)) throw new UsageError(`MAC ${mac} is a multicast/broadcast address (low bit of the first octet set)`);
  if (mac === GATEWAY_MAC) throw new UsageError(`MAC ${mac} is the VPC gateway's`);
  return mac;
}

function checkHostId(text: string): string {
  if (typeof text !== 'string' || !PEER_NAME_PATTERN.test(text)) {
    throw new UsageError(`'${String(text)}' is not a host id (1-63 letters, digits, '.', '_', '-', starting with a letter or digit)`);
  }
  return text;
}

function checkInterfaceName(text: string): string {
  if (typeof text !== 'string' || !INTERFACE_NAME.test(text) || text === '.' || text === '..') {
    throw new UsageError(`'${String(text)}' is not an interface name (1-${MAX_INTERFACE_NAME} letters, digits, '_', '.', '-')`);
  }
  return text;
}

function checkName(text: string): string {
  if (typeof text !== 'string' || !NAME.test(text)) throw new UsageError(`'${String(text)}' is not a valid name (1-128 characters: letters, digits, space, . _ : / @ -)`);
  return text;
}

function checkVpcMtu(mtu: number): number {
  if (!Number.isInteger(mtu) || mtu < VPC_MIN_MTU || mtu > VPC_MAX_MTU) throw new UsageError(`MTU ${mtu} is not a whole number in ${VPC_MIN_MTU}-${VPC_MAX_MTU}`);
  return mtu;
}

function checkBandwidth(bps: number): number {
  if (!Number.isInteger(bps) || bps < ENI_MIN_BANDWIDTH || bps > ENI_MAX_BANDWIDTH) throw new UsageError(`bandwidth ${bps} bit/s is not a whole number in ${ENI_MIN_BANDWIDTH}-${ENI_MAX_BANDWIDTH}`);
  return bps;
}

function checkPps(pps: number): number {
  if (!Number.isInteger(pps) || pps < 1 || pps > ENI_MAX_PPS) throw new UsageError(`pps ${pps} is not a whole number in 1-${ENI_MAX_PPS}`);
  return pps;
}

function checkTcpTimeout(s: number): number {
  if (!Number.isInteger(s) || s < CT_TCP_ESTABLISHED_MIN_S || s > CT_TCP_ESTABLISHED_S) {
    throw new UsageError(`TCP established timeout ${s} is not in ${CT_TCP_ESTABLISHED_MIN_S}-${CT_TCP_ESTABLISHED_S} seconds`);
  }
  return s;
}

function checkDescription(text: string): string {
  if (typeof text !== 'string' || text.length > 255 || /[\p{Cc}\p{Cs}]/u.test(text)) {
    throw new UsageError('description must be at most 255 printable characters');
  }
  return text;
}

const SgRuleState = z
  .object({
    protocol: z.enum(['tcp', 'udp', 'icmp', 'all']),
    fromPort: z.number().optional(),
    toPort: z.number().optional(),
    cidr: z.string().optional(),
    sourceGroup: z.string().optional(),
    description: z.string().optional(),
  })
  .strict();

const NaclEntryState = z
  .object({
    ruleNumber: z.number(),
    direction: z.enum(['ingress', 'egress']),
    protocol: z.enum(['tcp', 'udp', 'icmp', 'all']),
    fromPort: z.number().optional(),
    toPort: z.number().optional(),
    cidr: z.string(),
    action: z.enum(['allow', 'deny']),
  })
  .strict();

/** Stored records' shapes (the state file; the fleet's records extend them). */
export const VpcStateRecord = z.object({ id: z.string(), cidr: z.string(), name: z.string().optional(), mtu: z.number().optional() }).strict();
export const SubnetStateRecord = z.object({ id: z.string(), vpcId: z.string(), cidr: z.string(), name: z.string().optional() }).strict();
export const EniStateRecord = z
  .object({
    id: z.string(),
    vpcId: z.string(),
    subnetId: z.string(),
    mac: z.string(),
    privateIp: z.string(),
    sourceDestCheck: z.boolean(),
    hostInterface: z.string(),
    hostId: z.string(),
    description: z.string().optional(),
    securityGroups: z.array(z.string()).optional(),
    tcpEstablishedTimeout: z.number().optional(),
    bandwidth: z.number().optional(),
    pps: z.number().optional(),
  })
  .strict();

export const SecurityGroupStateRecord = z.object({ id: z.string(), vpcId: z.string(), name: z.string(), description: z.string(), ingress: z.array(SgRuleState), egress: z.array(SgRuleState) }).strict();
export const NetworkAclStateRecord = z.object({ id: z.string(), vpcId: z.string(), isDefault: z.boolean(), entries: z.array(NaclEntryState), subnets: z.array(z.string()) }).strict();

const StateSchema = z
  .object({
    version: z.literal(1),
    vpcs: z.array(VpcStateRecord),
    subnets: z.array(SubnetStateRecord),
    enis: z.array(EniStateRecord),
    securityGroups: z.array(SecurityGroupStateRecord).optional(),
    flowLogs: z
      .array(z.object({ id: z.string(), resourceType: z.enum(['eni', 'subnet', 'vpc']), resourceId: z.string(), interval: z.number(), maxFileBytes: z.number() }).strict())
      .optional(),
    networkAcls: z.array(NetworkAclStateRecord).optional(),
  })
  .strict();
