/** Validation of the flow-log routes (see flow-logs.ts); server side only. */
import { z } from 'zod';
import { resourceId } from './common.schema.js';
import type { CreateFlowLogRequest, FlowLogRecordsQuery } from './flow-logs.js';
import { EniId } from './vpc.schema.js';

export const FlowLogId = resourceId('flowLog', 'flow log id');

/** Shapes only: the model checks the values with one-line messages. */
export const CreateFlowLogBody: z.ZodType<CreateFlowLogRequest> = z
  .object({ resourceId: z.string().max(32), interval: z.number().int().optional(), maxFileBytes: z.number().int().optional(), id: FlowLogId.optional() })
  .strict();
export const FlowLogRecordsParams: z.ZodType<FlowLogRecordsQuery> = z
  .object({ eniId: EniId.optional(), after: z.coerce.number().int().min(0).optional(), limit: z.coerce.number().int().min(1).max(10000).optional() })
  .strict();
