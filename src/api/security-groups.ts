/**
 * Security groups (AWS semantics): stateful, allow-only rules per direction, 1–5 groups per ENI.
 *
 *     POST   /v1/security-groups                        CreateSecurityGroupRequest → 201 SecurityGroupRecord
 *     GET    /v1/security-groups?vpcId=…                                           → SecurityGroupRecord[]
 *     GET    /v1/security-groups/:id                                               → SecurityGroupRecord
 *     DELETE /v1/security-groups/:id                                               → Deleted
 *     POST   /v1/security-groups/:id/authorize-ingress  SgRule                     → SecurityGroupRecord
 *     POST   /v1/security-groups/:id/authorize-egress   SgRule                     → SecurityGroupRecord
 *     POST   /v1/security-groups/:id/revoke-ingress     SgRule                     → SecurityGroupRecord
 *     POST   /v1/security-groups/:id/revoke-egress      SgRule                     → SecurityGroupRecord
 *     GET    /v1/conntrack?eniId=…                                                  → ConntrackReply
 *     POST   /v1/conntrack/flush                        FlushConntrackRequest      → FlushConntrackReply
 *
 * An ENI's groups are set with PATCH /v1/enis/:id `{"securityGroups": [...]}` (vpc.ts).
 */

export const SG_API = {
  groups: '/v1/security-groups',
  group: '/v1/security-groups/:id',
  authorizeIngress: '/v1/security-groups/:id/authorize-ingress',
  authorizeEgress: '/v1/security-groups/:id/authorize-egress',
  revokeIngress: '/v1/security-groups/:id/revoke-ingress',
  revokeEgress: '/v1/security-groups/:id/revoke-egress',
  conntrack: '/v1/conntrack',
  flushConntrack: '/v1/conntrack/flush',
} as const;

export type SgProtocol = 'tcp' | 'udp' | 'icmp' | 'all';
export type SgDirection = 'ingress' | 'egress';

/**
 * One rule. Ports as AWS writes them: tcp/udp `fromPort`–`toPort` (0–65535); icmp `fromPort` =
 * type, `toPort` = code (-1 = any); all: no ports. The peer is a CIDR or a security group of
 * the same VPC (its members' current addresses): the source of an ingress rule, the
 * destination of an egress rule.
 */
export interface SgRule {
  protocol: SgProtocol;
  fromPort?: number;
  toPort?: number;
  cidr?: string;
  sourceGroup?: string;
  description?: string;
}

export interface SecurityGroupRecord {
  id: string;
  vpcId: string;
  name: string;
  description: string;
  ingress: SgRule[];
  egress: SgRule[];
}

export interface CreateSecurityGroupRequest {
  vpcId: string;
  name: string;
  description?: string;
  /** Explicit id, to use the same id on every host. */
  id?: string;
}

export interface ListSecurityGroupsQuery {
  vpcId?: string;
}

export interface ConntrackQuery {
  eniId: string;
}

/** One tracked flow of an ENI, as the ENI sees it: `local` is the ENI's side. */
export interface ConntrackFlow {
  protocol: number;
  localIp: string;
  localPort: number;
  remoteIp: string;
  remotePort: number;
  /** Who opened it: the ENI's guest (egress) or the remote side (ingress). */
  direction: SgDirection;
  state: string;
  /** Seconds until it expires without traffic. */
  expiresIn: number;
  packetsOut: number;
  bytesOut: number;
  packetsIn: number;
  bytesIn: number;
}

export interface ConntrackReply {
  eniId: string;
  flows: ConntrackFlow[];
  /** Flows tracked (may exceed flows.length: the listing is capped). */
  count: number;
  max: number;
}

export interface FlushConntrackRequest {
  /** Default: every local ENI. */
  eniId?: string;
}

export interface FlushConntrackReply {
  flushed: number;
}
