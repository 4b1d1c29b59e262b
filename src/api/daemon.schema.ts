/** Validation of the daemon's own routes (see daemon.ts); server side only. */
import { z } from 'zod';
import { LOG_LEVELS, type SetLogLevelRequest } from './daemon.js';

export const SetLogLevelBody: z.ZodType<SetLogLevelRequest> = z.object({ level: z.enum(LOG_LEVELS) }).strict();
