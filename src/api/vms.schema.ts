/** Validation of the image and VM routes (see vms.ts); server side only. */
import { z } from 'zod';
import { AbsolutePath, NAME_PATTERN, safeName } from './common.schema.js';
import { startTimeoutError, type AllowImageRequest, type ConsoleQuery, type RunVmRequest, type StartVmRequest, type StopVmRequest } from './vms.js';

/** A VM id (i-…) or name. */
export const VmRef = z.string().min(1).max(64).regex(NAME_PATTERN, 'must be a VM id or name');
/** An image's hash, hash prefix or name. */
export const ImageRef = z.string().min(1).max(128).regex(/^[A-Za-z0-9][A-Za-z0-9._+-]*$/, 'must be an image hash or name');

const StartTimeout = z.number().refine((s) => startTimeoutError(s) === undefined, { message: startTimeoutError(NaN)! });

export const AllowImageBody: z.ZodType<AllowImageRequest> = z.object({ path: AbsolutePath, name: ImageRef.optional() }).strict();

export const RunVmBody: z.ZodType<RunVmRequest> = z
  .object({
    name: safeName(64),
    kernel: AbsolutePath,
    initrd: AbsolutePath.optional(),
    append: z.string().max(4096).optional(),
    memoryMiB: z.number().int().optional(),
    cpus: z.number().int().optional(),
    accel: z.enum(['tcg', 'kvm']).optional(),
    volumes: z.array(z.string().max(64)).max(16).optional(),
    enis: z.array(z.string().max(64)).max(8).optional(),
    forceAttach: z.boolean().optional(),
    startTimeoutS: StartTimeout.optional(),
  })
  .strict();

export const StopVmBody: z.ZodType<StopVmRequest> = z.object({ force: z.boolean().optional() }).strict();
export const StartVmBody: z.ZodType<StartVmRequest> = z.object({ startTimeoutS: StartTimeout.optional(), forceAttach: z.boolean().optional() }).strict();
export const ConsoleOffsetQuery: z.ZodType<ConsoleQuery> = z.object({ offset: z.coerce.number().int().optional(), previous: z.coerce.number().int().min(1).max(100).optional() }).strict();
