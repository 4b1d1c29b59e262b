/**
 * Logging: pino, JSON lines on stdout (journald collects them), a child logger per
 * component. Writes are synchronous: logs are rare, and a crash must not lose the
 * lines that explain it. Key material must never reach a log, so two guards stand in front of it:
 * field-name redaction, and a formatter that replaces every byte buffer with its
 * length whatever the field is called.
 */
import { pino, type Logger, type DestinationStream } from 'pino';

import type { LogLevel } from '../api/daemon.js';

export type { Logger } from 'pino';

/** Field names that may hold secrets, at the top level or one level down. */
const SECRET_FIELDS = ['key', 'keys', 'dataKey', 'plaintextKey', 'plaintext', 'secret', 'privateKey', 'sessionKey', 'password', 'token'];
const REDACT_PATHS = SECRET_FIELDS.flatMap((f) => [f, `*.${f}`]);

/** Replace byte buffers (anywhere in a log record) by a short description. */
function scrubBytes(value: unknown, depth = 0): unknown {
  if (value instanceof Uint8Array || value instanceof ArrayBuffer) return `[${value.byteLength} bytes]`;
  if (depth > 4 || value === null || typeof value !== 'object') return value;
  if (value instanceof Error) return value;
  if (Array.isArray(value)) return value.map((v) => scrubBytes(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = scrubBytes(v, depth + 1);
  return out;
}

export interface LoggerOptions {
  /** Minimum level written; default `info`. */
  level?: LogLevel;
  /** Where lines go; default stdout. Tests pass a stream to inspect. */
  destination?: DestinationStream;
}

/** Root logger of a process. Components take `logger.child({ component: 'name' })`. */
export function createLogger(options: LoggerOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      base: { pid: process.pid },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      formatters: { log: (record) => scrubBytes(record) as Record<string, unknown> },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    options.destination ?? pino.destination({ fd: 1, sync: true }),
  );
}
