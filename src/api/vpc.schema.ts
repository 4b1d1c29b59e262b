/** Validation of the VPC routes (see vpc.ts); server side only. */
import { z } from 'zod';
import { resourceId } from './common.schema.js';
import { ENI_MAX_BANDWIDTH, ENI_MAX_PPS, ENI_MIN_BANDWIDTH, PEER_NAME_PATTERN, VPC_MAX_MTU, VPC_MIN_MTU, type AddPeerRequest, type CreateEniRequest, type CreateSubnetRequest, type CreateVpcRequest, type ListSubnetsQuery, type ModifyEniRequest } from './vpc.js';

export const VpcId = resourceId('vpc', 'VPC id');
export const SubnetId = resourceId('subnet', 'subnet id');
export const EniId = resourceId('eni', 'ENI id');
export const PeerName = z.string().regex(PEER_NAME_PATTERN, '1-63 letters, digits, . _ - (starting with a letter or digit)');
const Cidr = z.string().min(9).max(18);
const Name = z.string().min(1).max(128);
const Description = z.string().max(255);
/** Ids only; how many (1–5) and whether they exist is the model's to say. */
const SecurityGroups = z.array(resourceId('sg', 'security group id')).max(16);
/** Allowances: whole numbers; zero is refused, not read as unlimited (null removes one on modify). */
const Bandwidth = z.number().int().min(ENI_MIN_BANDWIDTH, `must be at least ${ENI_MIN_BANDWIDTH} bit/s (omit it, or null, for unlimited)`).max(ENI_MAX_BANDWIDTH);
const Pps = z.number().int().positive('must be > 0 (omit it, or null, for unlimited)').max(ENI_MAX_PPS);

const Mtu = z.number().int().min(VPC_MIN_MTU).max(VPC_MAX_MTU);

export const CreateVpcBody: z.ZodType<CreateVpcRequest> = z.object({ cidr: Cidr, id: VpcId.optional(), name: Name.optional(), mtu: Mtu.optional() }).strict();
export const CreateSubnetBody: z.ZodType<CreateSubnetRequest> = z.object({ vpcId: VpcId, cidr: Cidr, id: SubnetId.optional(), name: Name.optional() }).strict();
export const SubnetsQuery: z.ZodType<ListSubnetsQuery> = z.object({ vpcId: VpcId.optional() }).strict();
export const CreateEniBody: z.ZodType<CreateEniRequest> = z
  .object({
    subnetId: SubnetId,
    id: EniId.optional(),
    mac: z.string().max(17).optional(),
    privateIp: z.string().max(15).optional(),
    hostId: PeerName.optional(),
    hostInterface: z.string().max(15).optional(),
    kind: z.enum(['tap', 'veth']).optional(),
    sourceDestCheck: z.boolean().optional(),
    description: Description.optional(),
    securityGroups: SecurityGroups.optional(),
    tcpEstablishedTimeout: z.number().int().optional(),
    bandwidth: Bandwidth.optional(),
    pps: Pps.optional(),
  })
  .strict();
export const ModifyEniBody: z.ZodType<ModifyEniRequest> = z
  .object({ sourceDestCheck: z.boolean().optional(), hostId: PeerName.optional(), description: Description.optional(), securityGroups: SecurityGroups.optional(), tcpEstablishedTimeout: z.number().int().optional(), bandwidth: Bandwidth.nullable().optional(), pps: Pps.nullable().optional() })
  .strict();
export const AddPeerBody: z.ZodType<AddPeerRequest> = z
  .object({ name: PeerName, endpoint: z.string().min(3).max(64), publicKey: z.string().max(64), plaintext: z.boolean().optional() })
  .strict();
