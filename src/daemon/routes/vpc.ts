/** Control API routes of the VPC and this host's key (contract: src/api/vpc.ts, src/api/keys.ts). */
import type { z } from 'zod';
import type { Deleted } from '../../api/control.js';
import { KEYS_API, type HostKey } from '../../api/keys.js';
import { VPC_API, type DeletedPeer } from '../../api/vpc.js';
import { AddPeerBody, CreateEniBody, CreateSubnetBody, CreateVpcBody, EniId, ModifyEniBody, PeerName, SubnetId, SubnetsQuery, VpcId } from '../../api/vpc.schema.js';
import type { ControlServer } from '../../control/server.js';
import { parseOrThrow } from '../../control/validate.js';
import type { VpcManager } from '../../vpc/manager.js';

const param = <T>(schema: z.ZodType<T>, params: Record<string, string>, what: string): T => parseOrThrow(schema, params.id, what);

export function registerVpcRoutes(control: ControlServer, vpc: VpcManager): void {
  control.register({ method: 'GET', path: KEYS_API.hostKey, handle: (): HostKey => ({ publicKey: vpc.publicKey() }) });
  control.register({ method: 'GET', path: VPC_API.stats, handle: () => vpc.stats() });

  control.register({
    method: 'POST',
    path: VPC_API.vpcs,
    audit: 'vpc.create',
    status: 201,
    body: CreateVpcBody,
    handle: async ({ body, audit }) => {
      const r = await vpc.createVpc(body);
      audit.target = r.id;
      audit.details = { cidr: r.cidr };
      return r;
    },
  });
  control.register({ method: 'GET', path: VPC_API.vpcs, handle: () => vpc.listVpcs() });
  control.register({
    method: 'DELETE',
    path: VPC_API.vpc,
    audit: 'vpc.delete',
    auditTarget: 'id',
    handle: async ({ params }): Promise<Deleted> => {
      const id = param(VpcId, params, 'VPC id');
      await vpc.deleteVpc(id);
      return { id, deleted: true };
    },
  });

  control.register({
    method: 'POST',
    path: VPC_API.subnets,
    audit: 'subnet.create',
    status: 201,
    body: CreateSubnetBody,
    handle: async ({ body, audit }) => {
      const r = await vpc.createSubnet(body);
      audit.target = r.id;
      audit.details = { vpcId: r.vpcId, cidr: r.cidr };
      return r;
    },
  });
  control.register({ method: 'GET', path: VPC_API.subnets, query: SubnetsQuery, handle: ({ query }) => vpc.listSubnets(query.vpcId) });
  control.register({
    method: 'DELETE',
    path: VPC_API.subnet,
    audit: 'subnet.delete',
    auditTarget: 'id',
    handle: async ({ params }): Promise<Deleted> => {
      const id = param(SubnetId, params, 'subnet id');
      await vpc.deleteSubnet(id);
      return { id, deleted: true };
    },
  });

  control.register({
    method: 'POST',
    path: VPC_API.enis,
    audit: 'eni.create',
    status: 201,
    body: CreateEniBody,
    handle: async ({ body, audit }) => {
      const r = await vpc.createEni(body);
      audit.target = r.id;
      audit.details = { subnetId: r.subnetId, mac: r.mac, ip: r.privateIp, host: r.hostId, kind: r.kind };
      return r;
    },
  });
  control.register({ method: 'GET', path: VPC_API.enis, handle: () => vpc.listEnis() });
  control.register({ method: 'GET', path: VPC_API.eni, handle: ({ params }) => vpc.getEni(param(EniId, params, 'ENI id')) });
  control.register({
    method: 'PATCH',
    path: VPC_API.eni,
    audit: 'eni.modify',
    auditTarget: 'id',
    body: ModifyEniBody,
    handle: async ({ params, body, audit }) => {
      audit.details = { ...body };
      return vpc.modifyEni(param(EniId, params, 'ENI id'), body);
    },
  });
  control.register({
    method: 'DELETE',
    path: VPC_API.eni,
    audit: 'eni.delete',
    auditTarget: 'id',
    handle: async ({ params }): Promise<Deleted> => {
      const id = param(EniId, params, 'ENI id');
      await vpc.deleteEni(id);
      return { id, deleted: true };
    },
  });

  control.register({
    method: 'POST',
    path: VPC_API.peers,
    audit: 'peer.add',
    status: 201,
    body: AddPeerBody,
    handle: async ({ body, audit }) => {
      const r = await vpc.addPeer(body);
      audit.target = r.name;
      audit.details = { endpoint: r.endpoint, publicKey: r.publicKey, plaintext: r.plaintext };
      return r;
    },
  });
  control.register({ method: 'GET', path: VPC_API.peers, handle: () => vpc.listPeers() });
  control.register({
    method: 'DELETE',
    path: VPC_API.peer,
    audit: 'peer.delete',
    auditTarget: 'id',
    handle: async ({ params }): Promise<DeletedPeer> => {
      const name = param(PeerName, params, 'peer name');
      await vpc.deletePeer(name);
      return { name, deleted: true };
    },
  });
}
