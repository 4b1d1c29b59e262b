/** Validation of the volume routes (see volumes.ts); server side only. */
import { z } from 'zod';
import { AbsolutePath, resourceId, safeName } from './common.schema.js';
import {
  MAX_BURST_CREDITS,
  MAX_IOPS,
  MAX_THROUGHPUT_MIBPS,
  MAX_VOLUME_SIZE,
  type CreateVolumeRequest,
  type DetachVolumeRequest,
  type ModifyVolumeRequest,
  type PerformanceRequest,
  type ResizeVolumeRequest,
  type RewrapVolumeRequest,
  type VolumeCopyRequest,
} from './volumes.js';

export const VolumeId = resourceId('volume', 'volume id');
const Size = z.number().int().positive().max(MAX_VOLUME_SIZE);
const KmsKeyRef = z.string().min(1).max(256);

/** A limit: a positive number up to `max` (null: unlimited); zero is refused, not read as unlimited. */
const limit = (max: number, integer: boolean) => (integer ? z.number().int() : z.number()).positive('must be > 0 (omit it, or null, for unlimited)').max(max).nullable();

export const Performance: z.ZodType<PerformanceRequest> = z
  .object({
    iops: limit(MAX_IOPS, true).optional(),
    throughputMiBps: limit(MAX_THROUGHPUT_MIBPS, false).optional(),
    burstIops: limit(MAX_IOPS, true).optional(),
    burstIoCredits: limit(MAX_BURST_CREDITS, true).optional(),
    burstThroughputMiBps: limit(MAX_THROUGHPUT_MIBPS, false).optional(),
    burstMiB: limit(MAX_BURST_CREDITS, false).optional(),
  })
  .strict();

export const CreateVolumeBody: z.ZodType<CreateVolumeRequest> = z
  .object({
    type: z.enum(['ebs', 'ephemeral']),
    size: Size.optional(),
    name: safeName(128).optional(),
    kmsKeyId: KmsKeyRef.optional(),
    multiAttach: z.boolean().optional(),
    store: z.enum(['rbd', 'local']).optional(),
    fromSnapshot: resourceId('snapshot', 'snapshot id').optional(),
    performance: Performance.optional(),
  })
  .strict()
  .refine((b) => b.size !== undefined || b.fromSnapshot !== undefined, { message: 'size is required (but with fromSnapshot)', path: ['size'] });
export const ModifyVolumeBody: z.ZodType<ModifyVolumeRequest> = z.object({ performance: Performance }).strict();
export const ResizeVolumeBody: z.ZodType<ResizeVolumeRequest> = z.object({ size: Size }).strict();
export const RewrapVolumeBody: z.ZodType<RewrapVolumeRequest> = z.object({ kmsKeyId: KmsKeyRef.optional() }).strict();
export const VolumeCopyBody: z.ZodType<VolumeCopyRequest> = z.object({ path: AbsolutePath }).strict();
export const DetachVolumeBody: z.ZodType<DetachVolumeRequest> = z.object({ force: z.boolean().optional() }).strict();
