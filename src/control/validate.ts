/** Request validation for the control API: one place that turns zod issues into a one-line 400 message. */
import type { z } from 'zod';
import { UsageError } from '../common/errors.js';

/** "field: problem; other: problem" — short enough for a CLI error line. */
export function formatZodError(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const where = issue.path.length ? issue.path.join('.') : 'body';
      if (issue.code === 'unrecognized_keys') return `${where === 'body' ? '' : where + ': '}unknown field(s) ${issue.keys.map((k) => `'${k}'`).join(', ')}`;
      return `${where}: ${issue.message}`;
    })
    .join('; ');
}

/** Parse `value` with `schema` or throw a UsageError (HTTP 400) naming what is wrong. */
export function parseOrThrow<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const result = schema.safeParse(value);
  if (!result.success) throw new UsageError(`invalid ${what}: ${formatZodError(result.error)}`);
  return result.data;
}
