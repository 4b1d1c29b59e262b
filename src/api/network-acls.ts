/**
 * Network ACLs (AWS semantics): stateless, per subnet, numbered rules evaluated lowest number
 * first, the first match decides (allow or deny), no match denies. Every VPC has a default ACL
 * (id derived from the VPC's) allowing everything both ways; a subnet not associated with
 * another ACL uses it. A new ACL denies everything until entries are added. Evaluated before
 * the security groups, both ways. Unlike AWS, traffic between two ENIs of the same subnet is
 * checked too: nitride has no router between subnets yet, so all traffic stays inside one, and
 * an ACL applied only at a subnet's edge would never apply.
 *
 *     POST   /v1/network-acls                           CreateNetworkAclRequest → 201 NetworkAclRecord
 *     GET    /v1/network-acls?vpcId=…                                           → NetworkAclRecord[]
 *     GET    /v1/network-acls/:id                                               → NetworkAclRecord
 *     DELETE /v1/network-acls/:id                                               → Deleted
 *     POST   /v1/network-acls/:id/entries               NaclEntry               → NetworkAclRecord
 *     POST   /v1/network-acls/:id/delete-entry          DeleteNaclEntryRequest  → NetworkAclRecord
 *     POST   /v1/network-acls/:id/associate             AssociateNaclRequest    → NetworkAclRecord
 */
import type { SgDirection } from './security-groups.js';

export const NACL_API = {
  acls: '/v1/network-acls',
  acl: '/v1/network-acls/:id',
  entries: '/v1/network-acls/:id/entries',
  deleteEntry: '/v1/network-acls/:id/delete-entry',
  associate: '/v1/network-acls/:id/associate',
} as const;

export type NaclProtocol = 'tcp' | 'udp' | 'icmp' | 'all';
export type NaclAction = 'allow' | 'deny';

/**
 * One numbered rule. Ports as in security groups: tcp/udp `fromPort`–`toPort` (the destination
 * port, both directions); icmp `fromPort` = type, `toPort` = code (-1 = any); all: none. The
 * CIDR is the source of an ingress rule, the destination of an egress rule.
 */
export interface NaclEntry {
  ruleNumber: number;
  direction: SgDirection;
  protocol: NaclProtocol;
  fromPort?: number;
  toPort?: number;
  cidr: string;
  action: NaclAction;
}

export interface NetworkAclRecord {
  id: string;
  vpcId: string;
  isDefault: boolean;
  /** Sorted by direction, then rule number. */
  entries: NaclEntry[];
  /** Subnets associated with it (the default ACL: those no other ACL has). */
  subnets: string[];
}

export interface CreateNetworkAclRequest {
  vpcId: string;
  /** Explicit id, to use the same id on every host. */
  id?: string;
}

export interface ListNetworkAclsQuery {
  vpcId?: string;
}

export interface DeleteNaclEntryRequest {
  ruleNumber: number;
  direction: SgDirection;
}

export interface AssociateNaclRequest {
  subnetId: string;
}
