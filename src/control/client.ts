/** Client of the control API, used by the CLI (and by tests and scripts through it). */
import http from 'node:http';
import { NitrideError, RuntimeError, UsageError, NotFoundError, ConflictError, errnoCode, oneLine } from '../common/errors.js';
import type { HttpMethod } from './server.js';

/** An error reply from the daemon, carrying its HTTP status and stable code. */
export class ApiError extends NitrideError {
  constructor(
    readonly status: number,
    code: string,
    message: string,
  ) {
    super(code, message);
  }
}

export interface ControlClientOptions {
  /** Path of the daemon's control socket. */
  socketPath: string;
  /** Per-call timeout in ms (default 60 s; long operations pass a signal instead). */
  timeoutMs?: number;
}

export class ControlClient {
  constructor(private readonly options: ControlClientOptions) {}

  get<T>(path: string, signal?: AbortSignal): Promise<T> {
    return this.call<T>('GET', path, undefined, signal);
  }

  /** Call the API; resolves with the decoded JSON reply, rejects with ApiError or RuntimeError. */
  call<T>(method: HttpMethod, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    const socketPath = this.options.socketPath;
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise<T>((resolve, reject) => {
      const req = http.request(
        {
          socketPath,
          method,
          path,
          headers: payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {},
          timeout: this.options.timeoutMs ?? 60_000,
          ...(signal ? { signal } : {}),
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let json: unknown;
            try {
              json = text ? JSON.parse(text) : null;
            } catch {
              reject(new RuntimeError('BAD_REPLY', `daemon sent a reply that is not JSON (HTTP ${res.statusCode})`));
              return;
            }
            const status = res.statusCode ?? 500;
            if (status >= 400) {
              const e = (json as { error?: { code?: string; message?: string } } | null)?.error;
              reject(new ApiError(status, e?.code ?? 'HTTP_' + status, e?.message ?? `HTTP ${status}`));
            } else {
              resolve(json as T);
            }
          });
        },
      );
      req.on('timeout', () => req.destroy(new RuntimeError('TIMEOUT', `no reply from the daemon at ${socketPath}`)));
      req.on('error', (err) => reject(connectionError(err, socketPath)));
      req.end(payload);
    });
  }
}

function connectionError(err: unknown, socketPath: string): Error {
  if (err instanceof NitrideError) return err;
  switch (errnoCode(err)) {
    case 'ENOENT':
    case 'ECONNREFUSED':
      return new RuntimeError('DAEMON_UNREACHABLE', `cannot reach the nitride daemon at ${socketPath} (is it running?)`);
    case 'EACCES':
    case 'EPERM':
      return new RuntimeError('PERMISSION', `permission denied on ${socketPath} (the control socket is root-only)`);
    case 'ABORT_ERR':
      return new RuntimeError('ABORTED', 'call aborted');
    default:
      return new RuntimeError('DAEMON_UNREACHABLE', `control call to ${socketPath} failed: ${oneLine(err)}`);
  }
}

/** Map an API error back to the local error class, so CLI exit codes follow one rule. */
export function localErrorOf(err: ApiError): NitrideError {
  if (err.status === 400) return new UsageError(err.message, err.code);
  if (err.status === 404) return new NotFoundError(err.message, err.code);
  if (err.status === 409) return new ConflictError(err.message, err.code);
  return err;
}
