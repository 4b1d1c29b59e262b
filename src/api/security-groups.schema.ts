/** Validation of the security-group routes (see security-groups.ts); server side only. */
import { z } from 'zod';
import { resourceId } from './common.schema.js';
import type { ConntrackQuery, CreateSecurityGroupRequest, FlushConntrackRequest, ListSecurityGroupsQuery, SgRule } from './security-groups.js';
import { EniId, VpcId } from './vpc.schema.js';

export const SecurityGroupId = resourceId('sg', 'security group id');
const Text = z.string().max(255);

export const CreateSecurityGroupBody: z.ZodType<CreateSecurityGroupRequest> = z
  .object({ vpcId: VpcId, name: Text.min(1), description: Text.optional(), id: SecurityGroupId.optional() })
  .strict();
export const SecurityGroupsQuery: z.ZodType<ListSecurityGroupsQuery> = z.object({ vpcId: VpcId.optional() }).strict();
/** Shapes only: the model checks the values (ranges, CIDRs, which peer) with one-line messages. */
export const SgRuleBody: z.ZodType<SgRule> = z
  .object({
    protocol: z.enum(['tcp', 'udp', 'icmp', 'all']),
    fromPort: z.number().int().optional(),
    toPort: z.number().int().optional(),
    cidr: z.string().max(18).optional(),
    sourceGroup: SecurityGroupId.optional(),
    description: Text.optional(),
  })
  .strict();
export const ConntrackQueryParams: z.ZodType<ConntrackQuery> = z.object({ eniId: EniId }).strict();
export const FlushConntrackBody: z.ZodType<FlushConntrackRequest> = z.object({ eniId: EniId.optional() }).strict();
