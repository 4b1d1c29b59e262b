/** Validation of the snapshot routes (see snapshots.ts); server side only. */
import { z } from 'zod';
import { resourceId, safeName } from './common.schema.js';
import type { CreateSnapshotRequest } from './snapshots.js';

export const SnapshotId = resourceId('snapshot', 'snapshot id');

export const CreateSnapshotBody: z.ZodType<CreateSnapshotRequest> = z
  .object({ volumeId: resourceId('volume', 'volume id'), name: safeName(128).optional() })
  .strict();
