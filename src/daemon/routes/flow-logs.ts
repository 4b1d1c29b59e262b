/** Control API routes of flow logs (contract: src/api/flow-logs.ts). */
import type { Deleted } from '../../api/control.js';
import { FLOW_LOG_API } from '../../api/flow-logs.js';
import { CreateFlowLogBody, FlowLogId, FlowLogRecordsParams } from '../../api/flow-logs.schema.js';
import type { ControlServer } from '../../control/server.js';
import { parseOrThrow } from '../../control/validate.js';
import type { VpcManager } from '../../vpc/manager.js';

export function registerFlowLogRoutes(control: ControlServer, vpc: VpcManager): void {
  control.register({
    method: 'POST',
    path: FLOW_LOG_API.flowLogs,
    audit: 'flow-logs.create',
    status: 201,
    body: CreateFlowLogBody,
    handle: async ({ body, audit }) => {
      const r = await vpc.createFlowLog(body);
      audit.target = r.id;
      audit.details = { resourceId: r.resourceId, interval: r.interval };
      return r;
    },
  });
  control.register({ method: 'GET', path: FLOW_LOG_API.flowLogs, handle: () => vpc.listFlowLogs() });
  control.register({
    method: 'DELETE',
    path: FLOW_LOG_API.flowLog,
    audit: 'flow-logs.delete',
    auditTarget: 'id',
    handle: async ({ params }): Promise<Deleted> => {
      const id = parseOrThrow(FlowLogId, params.id, 'flow log id');
      await vpc.deleteFlowLog(id);
      return { id, deleted: true };
    },
  });
  control.register({ method: 'GET', path: FLOW_LOG_API.records, query: FlowLogRecordsParams, handle: ({ query }) => vpc.flowLogRecords(query) });
}
