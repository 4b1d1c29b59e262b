/** Control API routes of the VPC: /v1/vpcs, /v1/subnets, /v1/enis, /v1/peers, /v1/vpc/… */
import { z } from 'zod';
import type { ControlServer } from '../../control/server.js';
import { parseOrThrow } from '../../control/validate.js';
import type { VpcManager } from '../../vpc/manager.js';

const VpcId = z.string().regex(/^vpc-[0-9a-f]{17}$/, 'must be a VPC id (vpc- and 17 hex digits)');
const SubnetId = z.string().regex(/^subnet-[0-9a-f]{17}$/, 'must be a subnet id (subnet- and 17 hex digits)');
const EniId = z.string().regex(/^eni-[0-9a-f]{17}$/, 'must be an ENI id (eni- and 17 hex digits)');
const PeerName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, '1-63 letters, digits, . _ - (starting with a letter or digit)');
const Cidr = z.string().min(9).max(18);
const Name = z.string().min(1).max(128);

const param = <T>(schema: z.ZodType<T>, params: Record<string, string>, what: string): T => parseOrThrow(schema, params.id, what);

export function registerVpcRoutes(control: ControlServer, vpc: VpcManager): void {
  control.register({ method: 'GET', path: '/v1/vpc/key', handle: () => ({ publicKey: vpc.publicKey() }) });
  control.register({ method: 'GET', path: '/v1/vpc/stats', handle: () => vpc.stats() });

  control.register({
    method: 'POST',
    path: '/v1/vpcs',
    audit: 'vpc.create',
    status: 201,
    body: z.object({ cidr: Cidr, id: VpcId.optional(), name: Name.optional() }).strict(),
    handle: async ({ body, audit }) => {
      const r = await vpc.createVpc(body);
      audit.target = r.id;
      audit.details = { cidr: r.cidr };
      return r;
    },
  });
  control.register({ method: 'GET', path: '/v1/vpcs', handle: () => vpc.listVpcs() });
  control.register({
    method: 'DELETE',
    path: '/v1/vpcs/:id',
    audit: 'vpc.delete',
    auditTarget: 'id',
    handle: async ({ params }) => {
      const id = param(VpcId, params, 'VPC id');
      await vpc.deleteVpc(id);
      return { id, deleted: true };
    },
  });

  control.register({
    method: 'POST',
    path: '/v1/subnets',
    audit: 'subnet.create',
    status: 201,
    body: z.object({ vpcId: VpcId, cidr: Cidr, id: SubnetId.optional(), name: Name.optional() }).strict(),
    handle: async ({ body, audit }) => {
      const r = await vpc.createSubnet(body);
      audit.target = r.id;
      audit.details = { vpcId: r.vpcId, cidr: r.cidr };
      return r;
    },
  });
  control.register({
    method: 'GET',
    path: '/v1/subnets',
    query: z.object({ vpcId: VpcId.optional() }).strict(),
    handle: ({ query }) => vpc.listSubnets(query.vpcId),
  });
  control.register({
    method: 'DELETE',
    path: '/v1/subnets/:id',
    audit: 'subnet.delete',
    auditTarget: 'id',
    handle: async ({ params }) => {
      const id = param(SubnetId, params, 'subnet id');
      await vpc.deleteSubnet(id);
      return { id, deleted: true };
    },
  });

  control.register({
    method: 'POST',
    path: '/v1/enis',
    audit: 'eni.create',
    status: 201,
    body: z
      .object({
        subnetId: SubnetId,
        id: EniId.optional(),
        mac: z.string().max(17).optional(),
        privateIp: z.string().max(15).optional(),
        hostId: PeerName.optional(),
        hostInterface: z.string().max(15).optional(),
        kind: z.enum(['tap', 'veth']).optional(),
        sourceDestCheck: z.boolean().optional(),
        description: z.string().max(255).optional(),
      })
      .strict(),
    handle: async ({ body, audit }) => {
      const r = await vpc.createEni(body);
      audit.target = r.id;
      audit.details = { subnetId: r.subnetId, mac: r.mac, ip: r.privateIp, host: r.host, kind: r.kind };
      return r;
    },
  });
  control.register({ method: 'GET', path: '/v1/enis', handle: () => vpc.listEnis() });
  control.register({ method: 'GET', path: '/v1/enis/:id', handle: ({ params }) => vpc.getEni(param(EniId, params, 'ENI id')) });
  control.register({
    method: 'PATCH',
    path: '/v1/enis/:id',
    audit: 'eni.modify',
    auditTarget: 'id',
    body: z.object({ sourceDestCheck: z.boolean().optional(), description: z.string().max(255).optional() }).strict(),
    handle: async ({ params, body, audit }) => {
      audit.details = { ...body };
      return vpc.modifyEni(param(EniId, params, 'ENI id'), body);
    },
  });
  control.register({
    method: 'DELETE',
    path: '/v1/enis/:id',
    audit: 'eni.delete',
    auditTarget: 'id',
    handle: async ({ params }) => {
      const id = param(EniId, params, 'ENI id');
      await vpc.deleteEni(id);
      return { id, deleted: true };
    },
  });

  control.register({
    method: 'POST',
    path: '/v1/peers',
    audit: 'peer.add',
    status: 201,
    body: z.object({ name: PeerName, endpoint: z.string().min(3).max(64), publicKey: z.string().max(64), plaintext: z.boolean().optional() }).strict(),
    handle: async ({ body, audit }) => {
      const r = await vpc.addPeer(body);
      audit.target = r.name;
      audit.details = { endpoint: r.endpoint, publicKey: r.publicKey, plaintext: r.plaintext };
      return r;
    },
  });
  control.register({ method: 'GET', path: '/v1/peers', handle: () => vpc.listPeers() });
  control.register({
    method: 'DELETE',
    path: '/v1/peers/:id',
    audit: 'peer.delete',
    auditTarget: 'id',
    handle: async ({ params }) => {
      const name = param(PeerName, params, 'peer name');
      await vpc.deletePeer(name);
      return { name, deleted: true };
    },
  });
}
