/** Client of the control API, used by the CLI (and by tests and scripts through it). */
import http from 'node:http';
import { NitrideError, RuntimeError, UsageError, NotFoundError, ConflictError, ForbiddenError, errnoCode, oneLine } from '../common/errors.js';
import type { HttpMethod } from '../api/control.js';

/** An error reply from the daemon, carrying its HTTP status and stable code. */
export class ApiError extends NitrideError {
  constructor(
    readonly status: number,
    code: string,
    message: string,
  ) {
    super(message, code);
  }
}

export interface ControlClientOptions {
  /** Path of the daemon's control socket (with `agent`: only the name in error messages). */
  socketPath: string;
  /** Connect through this agent instead of the Unix socket (the network KMS's channel). */
  agent?: http.Agent;
  /** Per-call timeout in ms (default 60 s; long operations pass a signal instead). */
  timeoutMs?: number;
  /** Who serves the socket, for error messages (default `nitride daemon`). */
  serviceName?: string;
  /** What the socket is called in error messages (default `control socket`). */
  socketLabel?: string;
}

/** A reply as received: status, headers and the body bytes (see {@link ControlClient.request}). */
export interface RawReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export class ControlClient {
  constructor(private readonly options: ControlClientOptions) {}

  get<T>(path: string, signal?: AbortSignal): Promise<T> {
    return this.call<T>('GET', path, undefined, signal);
  }

  /** Call the API; resolves with the decoded JSON reply, rejects with ApiError or RuntimeError. */
  async call<T>(method: HttpMethod, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    const reply = await this.request(method, path, body, signal);
    const json = this.json(reply);
    if (reply.status >= 400) throw apiErrorOf(reply.status, json);
    return json as T;
  }

  /**
   * Call the API and return the reply undecoded. The body is a private copy (its own
   * ArrayBuffer, never a pooled slab) and the chunks it was assembled from are zeroed, so a
   * caller receiving secret bytes can wipe the only copy it holds.
   */
  request(method: HttpMethod, path: string, body?: unknown, signal?: AbortSignal): Promise<RawReply> {
    const socketPath = this.options.socketPath;
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise<RawReply>((resolve, reject) => {
      const req = http.request(
        {
          ...this.transport(),
          method,
          path,
          headers: payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {},
          timeout: this.options.timeoutMs ?? 60_000,
          ...(signal ? { signal } : {}),
        },
        (res) => {
          const chunks: Buffer[] = [];
          const wipe = () => chunks.forEach((c) => c.fill(0));
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', (err) => {
            wipe();
            reject(this.connectionError(err));
          });
          res.on('end', () => {
            const bodyBytes = Buffer.alloc(chunks.reduce((n, c) => n + c.length, 0));
            let offset = 0;
            for (const c of chunks) offset += c.copy(bodyBytes, offset);
            wipe();
            resolve({ status: res.statusCode ?? 500, headers: res.headers, body: bodyBytes });
          });
        },
      );
      req.on('timeout', () => req.destroy(new RuntimeError(`no reply from the ${this.serviceName} at ${socketPath}`, 'TIMEOUT')));
      req.on('error', (err) => reject(this.connectionError(err)));
      req.end(payload);
    });
  }

  /**
   * Call a streaming route (see StreamedReply on the server): `onProgress` gets each progress
   * event; resolves with the result or rejects with the ApiError of the final error line.
   */
  stream<T>(method: HttpMethod, path: string, body: unknown, onProgress: (event: unknown) => void, signal?: AbortSignal): Promise<T> {
    const socketPath = this.options.socketPath;
    const payload = JSON.stringify(body ?? {});
    return new Promise<T>((resolve, reject) => {
      const req = http.request(
        {
          socketPath,
          method,
          path,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
          timeout: this.options.timeoutMs ?? 300_000,
          ...(signal ? { signal } : {}),
        },
        (res) => {
          const status = res.statusCode ?? 500;
          let text = '';
          let settled = false;
          const handleLine = (line: string) => {
            if (!line.trim()) return;
            let msg: { progress?: unknown; result?: unknown; error?: { status?: number } };
            try {
              msg = JSON.parse(line) as typeof msg;
            } catch {
              settled = true;
              reject(new RuntimeError(`${this.serviceName} sent a line that is not JSON`, 'BAD_REPLY'));
              return;
            }
            if (status >= 400) {
              settled = true;
              reject(apiErrorOf(status, msg));
            } else if ('progress' in msg) onProgress(msg.progress);
            else if ('result' in msg) {
              settled = true;
              resolve(msg.result as T);
            } else if (msg.error) {
              settled = true;
              reject(apiErrorOf(msg.error.status ?? 500, msg));
            }
          };
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            text += chunk;
            for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n')) {
              handleLine(text.slice(0, nl));
              text = text.slice(nl + 1);
            }
          });
          res.on('end', () => {
            handleLine(text);
            if (!settled) reject(new RuntimeError(`${this.serviceName} ended the reply without a result`, 'BAD_REPLY'));
          });
          res.on('error', (err) => reject(this.connectionError(err)));
        },
      );
      req.on('timeout', () => req.destroy(new RuntimeError(`no progress from the ${this.serviceName} at ${socketPath}`, 'TIMEOUT')));
      req.on('error', (err) => reject(this.connectionError(err)));
      req.end(payload);
    });
  }

  /** Decode a JSON reply body (an error reply of a raw call, too). */
  json(reply: RawReply): unknown {
    const text = reply.body.toString('utf8');
    try {
      return text ? JSON.parse(text) : null;
    } catch {
      throw new RuntimeError(`${this.serviceName} sent a reply that is not JSON (HTTP ${reply.status})`, 'BAD_REPLY');
    }
  }

  private transport(): http.RequestOptions {
    return this.options.agent ? { agent: this.options.agent, host: 'nitride' } : { socketPath: this.options.socketPath };
  }

  private get serviceName(): string {
    return this.options.serviceName ?? 'nitride daemon';
  }

  private connectionError(err: unknown): Error {
    return connectionError(err, this.options.socketPath, this.serviceName, this.options.socketLabel ?? 'control socket');
  }
}

/** The ApiError an error reply (`{ "error": { "code", "message" } }`) stands for. */
export function apiErrorOf(status: number, json: unknown): ApiError {
  const e = (json as { error?: { code?: string; message?: string } } | null)?.error;
  return new ApiError(status, e?.code ?? 'HTTP_' + status, e?.message ?? `HTTP ${status}`);
}

function connectionError(err: unknown, socketPath: string, service: string, label: string): Error {
  if (err instanceof NitrideError) return err;
  switch (errnoCode(err)) {
    case 'ENOENT':
    case 'ECONNREFUSED':
      return new RuntimeError(`cannot reach the ${service} at ${socketPath} (is it running?)`, 'DAEMON_UNREACHABLE');
    case 'EACCES':
    case 'EPERM':
      return new RuntimeError(`permission denied on ${socketPath} (the ${label} is root-only)`, 'PERMISSION');
    case 'ABORT_ERR':
      return new RuntimeError('call aborted', 'ABORTED');
    default:
      return new RuntimeError(`call to ${socketPath} failed: ${oneLine(err)}`, 'DAEMON_UNREACHABLE');
  }
}

/** Map an API error back to the local error class, so CLI exit codes follow one rule. */
export function localErrorOf(err: ApiError): NitrideError {
  if (err.status === 400) return new UsageError(err.message, err.code);
  if (err.status === 403) return new ForbiddenError(err.message, err.code);
  if (err.status === 404) return new NotFoundError(err.message, err.code);
  if (err.status === 409) return new ConflictError(err.message, err.code);
  return err;
}
