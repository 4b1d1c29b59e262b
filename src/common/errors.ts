/**
 * Error classes with stable names and codes. The CLI maps them to exit codes,
 * the control API maps them to HTTP statuses; messages are one line, for humans.
 */

/** Base of every error nitride raises on purpose. `code` is stable; messages may change. */
export class NitrideError extends Error {
  readonly code: string;
  constructor(message: string, code: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** The caller asked for something malformed or out of range (CLI exit 2, HTTP 400). */
export class UsageError extends NitrideError {
  constructor(message: string, code = 'USAGE') {
    super(message, code);
  }
}

/** A named thing (volume, ENI, route…) does not exist (HTTP 404). */
export class NotFoundError extends NitrideError {
  constructor(message: string, code = 'NOT_FOUND') {
    super(message, code);
  }
}

/** The request is well formed but conflicts with current state (HTTP 409). */
export class ConflictError extends NitrideError {
  constructor(message: string, code = 'CONFLICT') {
    super(message, code);
  }
}

/** The caller is known but not allowed to do this (HTTP 403). */
export class ForbiddenError extends NitrideError {
  constructor(message: string, code = 'FORBIDDEN') {
    super(message, code);
  }
}

/** Something the daemon depends on is unusable: a file, a socket, the KMS (CLI exit 1). */
export class RuntimeError extends NitrideError {
  constructor(message: string, code: string, options?: { cause?: unknown }) {
    super(message, code, options);
  }
}

/** Message of any thrown value, on one line, for CLI output and API error bodies. */
export function oneLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.replace(/\s*\n\s*/g, ' ').trim();
}

/** `code` of a Node system error (ENOENT, EACCES…), or undefined. */
export function errnoCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}
