/** Control API routes of network ACLs (contract: src/api/network-acls.ts). */
import type { Deleted } from '../../api/control.js';
import { NACL_API } from '../../api/network-acls.js';
import { AssociateNaclBody, CreateNetworkAclBody, DeleteNaclEntryBody, NaclEntryBody, NetworkAclId, NetworkAclsQuery } from '../../api/network-acls.schema.js';
import type { ControlServer } from '../../control/server.js';
import { parseOrThrow } from '../../control/validate.js';
import type { VpcManager } from '../../vpc/manager.js';

export function registerNetworkAclRoutes(control: ControlServer, vpc: VpcManager): void {
  const aclId = (params: Record<string, string>) => parseOrThrow(NetworkAclId, params.id, 'network ACL id');
  control.register({
    method: 'POST',
    path: NACL_API.acls,
    audit: 'nacl.create',
    status: 201,
    body: CreateNetworkAclBody,
    handle: async ({ body, audit }) => {
      const r = await vpc.createNetworkAcl(body);
      audit.target = r.id;
      audit.details = { vpcId: r.vpcId };
      return r;
    },
  });
  control.register({ method: 'GET', path: NACL_API.acls, query: NetworkAclsQuery, handle: ({ query }) => vpc.listNetworkAcls(query.vpcId) });
  control.register({ method: 'GET', path: NACL_API.acl, handle: ({ params }) => vpc.getNetworkAcl(aclId(params)) });
  control.register({
    method: 'DELETE',
    path: NACL_API.acl,
    audit: 'nacl.delete',
    auditTarget: 'id',
    handle: async ({ params }): Promise<Deleted> => {
      const id = aclId(params);
      await vpc.deleteNetworkAcl(id);
      return { id, deleted: true };
    },
  });
  control.register({
    method: 'POST',
    path: NACL_API.entries,
    audit: 'nacl.create-entry',
    auditTarget: 'id',
    body: NaclEntryBody,
    handle: ({ params, body, audit }) => {
      audit.details = { ...body };
      return vpc.addNaclEntry(aclId(params), body);
    },
  });
  control.register({
    method: 'POST',
    path: NACL_API.deleteEntry,
    audit: 'nacl.delete-entry',
    auditTarget: 'id',
    body: DeleteNaclEntryBody,
    handle: ({ params, body, audit }) => {
      audit.details = { ...body };
      return vpc.deleteNaclEntry(aclId(params), body.direction, body.ruleNumber);
    },
  });
  control.register({
    method: 'POST',
    path: NACL_API.associate,
    audit: 'nacl.associate',
    auditTarget: 'id',
    body: AssociateNaclBody,
    handle: ({ params, body, audit }) => {
      audit.details = { subnetId: body.subnetId };
      return vpc.associateNetworkAcl(aclId(params), body.subnetId);
    },
  });
}
