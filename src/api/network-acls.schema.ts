/** Validation of the network-ACL routes (see network-acls.ts); server side only. */
import { z } from 'zod';
import { resourceId } from './common.schema.js';
import type { AssociateNaclRequest, CreateNetworkAclRequest, DeleteNaclEntryRequest, ListNetworkAclsQuery, NaclEntry } from './network-acls.js';
import { SubnetId, VpcId } from './vpc.schema.js';

export const NetworkAclId = resourceId('acl', 'network ACL id');
const Direction = z.enum(['ingress', 'egress']);

export const CreateNetworkAclBody: z.ZodType<CreateNetworkAclRequest> = z.object({ vpcId: VpcId, id: NetworkAclId.optional() }).strict();
export const NetworkAclsQuery: z.ZodType<ListNetworkAclsQuery> = z.object({ vpcId: VpcId.optional() }).strict();
/** Shapes only: the model checks the values (rule numbers, ranges, CIDRs) with one-line messages. */
export const NaclEntryBody: z.ZodType<NaclEntry> = z
  .object({
    ruleNumber: z.number().int(),
    direction: Direction,
    protocol: z.enum(['tcp', 'udp', 'icmp', 'all']),
    fromPort: z.number().int().optional(),
    toPort: z.number().int().optional(),
    cidr: z.string().max(18),
    action: z.enum(['allow', 'deny']),
  })
  .strict();
export const DeleteNaclEntryBody: z.ZodType<DeleteNaclEntryRequest> = z.object({ ruleNumber: z.number().int(), direction: Direction }).strict();
export const AssociateNaclBody: z.ZodType<AssociateNaclRequest> = z.object({ subnetId: SubnetId }).strict();
