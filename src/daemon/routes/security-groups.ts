/** Control API routes of security groups and connection tracking (contract: src/api/security-groups.ts). */
import type { Deleted } from '../../api/control.js';
import { SG_API, type SgDirection } from '../../api/security-groups.js';
import { ConntrackQueryParams, CreateSecurityGroupBody, FlushConntrackBody, SecurityGroupId, SecurityGroupsQuery, SgRuleBody } from '../../api/security-groups.schema.js';
import type { ControlServer } from '../../control/server.js';
import { parseOrThrow } from '../../control/validate.js';
import type { VpcManager } from '../../vpc/manager.js';

export function registerSecurityGroupRoutes(control: ControlServer, vpc: VpcManager): void {
  const groupId = (params: Record<string, string>) => parseOrThrow(SecurityGroupId, params.id, 'security group id');
  control.register({
    method: 'POST',
    path: SG_API.groups,
    audit: 'sg.create',
    status: 201,
    body: CreateSecurityGroupBody,
    handle: async ({ body, audit }) => {
      const r = await vpc.createSecurityGroup(body);
      audit.target = r.id;
      audit.details = { vpcId: r.vpcId, name: r.name };
      return r;
    },
  });
  control.register({ method: 'GET', path: SG_API.groups, query: SecurityGroupsQuery, handle: ({ query }) => vpc.listSecurityGroups(query.vpcId) });
  control.register({ method: 'GET', path: SG_API.group, handle: ({ params }) => vpc.getSecurityGroup(groupId(params)) });
  control.register({
    method: 'DELETE',
    path: SG_API.group,
    audit: 'sg.delete',
    auditTarget: 'id',
    handle: async ({ params }): Promise<Deleted> => {
      const id = groupId(params);
      await vpc.deleteSecurityGroup(id);
      return { id, deleted: true };
    },
  });
  const rules: Array<[path: string, action: 'authorize' | 'revoke', direction: SgDirection]> = [
    [SG_API.authorizeIngress, 'authorize', 'ingress'],
    [SG_API.authorizeEgress, 'authorize', 'egress'],
    [SG_API.revokeIngress, 'revoke', 'ingress'],
    [SG_API.revokeEgress, 'revoke', 'egress'],
  ];
  for (const [path, action, direction] of rules) {
    control.register({
      method: 'POST',
      path,
      audit: `sg.${action}-${direction}`,
      auditTarget: 'id',
      body: SgRuleBody,
      handle: async ({ params, body, audit }) => {
        audit.details = { ...body };
        return vpc[action](groupId(params), direction, body);
      },
    });
  }
  control.register({ method: 'GET', path: SG_API.conntrack, query: ConntrackQueryParams, handle: ({ query }) => vpc.conntrack(query.eniId) });
  control.register({
    method: 'POST',
    path: SG_API.flushConntrack,
    audit: 'sg.flush-conntrack',
    body: FlushConntrackBody,
    handle: ({ body, audit }) => {
      if (body.eniId) audit.target = body.eniId;
      return vpc.flushConntrack(body.eniId);
    },
  });
}
