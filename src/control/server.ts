/**
 * The control API: HTTP/1.1 + JSON on a root-only Unix socket, inbound only.
 *
 * Every request passes one gate: caller identity (SO_PEERCRED; only root or the
 * daemon's own uid), route lookup, query and body validation (strict schemas:
 * unknown fields are errors), then the handler. Mutating routes are audited
 * whatever their outcome. Errors become `{ "error": { "code", "message" } }`.
 */
import http from 'node:http';
import net from 'node:net';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { ConflictError, NitrideError, NotFoundError, RuntimeError, UsageError, errnoCode, oneLine } from '../common/errors.js';
import type { Logger } from '../log/logger.js';
import { peerCredentials } from '../native/addon.js';
import type { AuditLog, Caller } from './audit.js';
import { parseOrThrow } from './validate.js';
import { ensureDir } from '../common/durable-fs.js';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface RouteContext<B, Q> {
  params: Record<string, string>;
  body: B;
  query: Q;
  caller: Caller | undefined;
  /** Aborted when the client goes away or the daemon shuts down. */
  signal: AbortSignal;
}

export interface Route<B = undefined, Q = Record<string, never>> {
  method: HttpMethod;
  /** Path with `:name` segments, e.g. `/v1/volumes/:id`. */
  path: string;
  /** Audit action name. Every route that changes state must have one. */
  audit?: string;
  /** Which path parameter names the target in the audit record. */
  auditTarget?: string;
  body?: z.ZodType<B>;
  query?: z.ZodType<Q>;
  /** Return value is sent as JSON with `status` (default 200). */
  handle(ctx: RouteContext<B, Q>): Promise<unknown> | unknown;
  status?: number;
}

/** Largest request body accepted; control calls are small. */
const MAX_BODY_BYTES = 1 << 20;

const STATUS_OF: Array<[new (...args: never[]) => NitrideError, number]> = [
  [UsageError, 400],
  [NotFoundError, 404],
  [ConflictError, 409],
];

interface CompiledRoute {
  route: Route<unknown, unknown>;
  pattern: RegExp;
  paramNames: string[];
}

export interface ControlServerOptions {
  socketPath: string;
  logger: Logger;
  audit: AuditLog;
}

export class ControlServer {
  private readonly routes: CompiledRoute[] = [];
  private readonly server: http.Server;
  private readonly callers = new WeakMap<net.Socket, Caller>();
  private readonly logger: Logger;
  private readonly shutdown = new AbortController();

  constructor(private readonly options: ControlServerOptions) {
    this.logger = options.logger.child({ component: 'control' });
    this.server = http.createServer({ requestTimeout: 30_000, headersTimeout: 10_000 }, (req, res) => {
      void this.dispatch(req, res);
    });
    this.server.maxConnections = 64;
    this.server.on('connection', (socket: net.Socket) => this.admit(socket));
    this.server.on('clientError', (_err, socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    });
  }

  register<B, Q>(route: Route<B, Q>): void {
    const paramNames: string[] = [];
    const source = route.path.replace(/:([a-zA-Z]+)/g, (_m, name: string) => {
      paramNames.push(name);
      return '([^/]+)';
    });
    this.routes.push({ route: route as unknown as Route<unknown, unknown>, pattern: new RegExp(`^${source}$`), paramNames });
  }

  /**
   * Listen on the Unix socket. A live daemon on the path is an error naming its PID;
   * a stale socket is replaced; anything that is not a socket is left alone (error).
   */
  async listen(): Promise<void> {
    const socketPath = this.options.socketPath;
    await ensureDir(path.dirname(socketPath));
    await clearStaleSocket(socketPath);
    const oldMask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        this.server.once('error', reject);
        this.server.listen(socketPath, () => {
          this.server.off('error', reject);
          resolve();
        });
      });
    } finally {
      process.umask(oldMask);
    }
    await fs.chmod(socketPath, 0o600);
  }

  async close(): Promise<void> {
    this.shutdown.abort();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  /** Identify the peer; refuse any user other than root or our own. */
  private admit(socket: net.Socket): void {
    const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    if (typeof fd !== 'number' || fd < 0) return;
    try {
      const caller = peerCredentials(fd);
      const self = process.getuid?.() ?? 0;
      if (caller.uid !== 0 && caller.uid !== self) {
        this.logger.warn({ caller }, 'refused control connection from unprivileged user');
        socket.destroy();
        return;
      }
      this.callers.set(socket, caller);
    } catch (err) {
      this.logger.warn({ err: oneLine(err) }, 'cannot read peer credentials; refusing connection');
      socket.destroy();
    }
  }

  private async dispatch(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const caller = this.callers.get(req.socket);
    const url = new URL(req.url ?? '/', 'http://nitride');
    const match = this.match(req.method ?? 'GET', url.pathname);
    let status = 500;
    let payload: unknown;
    try {
      const body = await readBody(req);
      if (match === 'method') throw new MethodError(`method ${req.method} not allowed on ${url.pathname}`);
      if (!match) throw new NotFoundError(`no such API path: ${url.pathname}`, 'NO_ROUTE');
      const { route, params } = match;
      const query = parseOrThrow(route.query ?? z.object({}).strict(), Object.fromEntries(url.searchParams), 'query');
      let parsedBody: unknown;
      if (route.body) {
        parsedBody = parseOrThrow(route.body, parseJson(body), 'request body');
      } else if (body.length > 0) {
        throw new UsageError(`${route.method} ${route.path} takes no request body`);
      }
      const signal = AbortSignal.any([this.shutdown.signal, closedSignal(req)]);
      payload = await route.handle({ params, body: parsedBody, query, caller, signal });
      status = route.status ?? 200;
    } catch (err) {
      status = statusOf(err);
      payload = { error: { code: err instanceof NitrideError ? err.code : 'INTERNAL', message: oneLine(err) } };
      if (status >= 500) this.logger.error({ err, path: url.pathname }, 'control call failed');
    }
    if (match && match !== 'method' && match.route.audit) {
      const auditTarget = match.route.auditTarget ? match.params[match.route.auditTarget] : undefined;
      const errorCode = status >= 400 ? (payload as { error: { code: string } }).error.code : undefined;
      try {
        await this.options.audit.record({
          caller,
          action: match.route.audit,
          ...(auditTarget ? { target: auditTarget } : {}),
          status,
          ...(errorCode ? { error: errorCode } : {}),
        });
      } catch (err) {
        this.logger.error({ err: oneLine(err) }, 'cannot write audit record');
      }
    }
    const text = JSON.stringify(payload ?? null) + '\n';
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  private match(method: string, pathname: string): { route: Route<unknown, unknown>; params: Record<string, string> } | 'method' | undefined {
    let pathMatched = false;
    for (const { route, pattern, paramNames } of this.routes) {
      const m = pattern.exec(pathname);
      if (!m) continue;
      pathMatched = true;
      if (route.method !== method) continue;
      const params: Record<string, string> = {};
      paramNames.forEach((name, i) => (params[name] = decodeURIComponent(m[i + 1] ?? '')));
      return { route, params };
    }
    return pathMatched ? 'method' : undefined;
  }
}

class MethodError extends NitrideError {
  constructor(message: string) {
    super('METHOD_NOT_ALLOWED', message);
  }
}

function statusOf(err: unknown): number {
  if (err instanceof MethodError) return 405;
  if (err instanceof BodyTooLarge) return 413;
  for (const [cls, status] of STATUS_OF) if (err instanceof cls) return status;
  return 500;
}

class BodyTooLarge extends NitrideError {
  constructor() {
    super('BODY_TOO_LARGE', `request body larger than ${MAX_BODY_BYTES} bytes`);
  }
}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new BodyTooLarge());
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function parseJson(body: Buffer): unknown {
  if (body.length === 0) return {};
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new UsageError(`request body is not valid JSON: ${oneLine(err)}`, 'BAD_JSON');
  }
}

function closedSignal(req: http.IncomingMessage): AbortSignal {
  const controller = new AbortController();
  req.socket.once('close', () => controller.abort());
  return controller.signal;
}

/** Remove a dead daemon's socket; refuse if a daemon answers or the path is not a socket. */
async function clearStaleSocket(socketPath: string): Promise<void> {
  let st;
  try {
    st = await fs.lstat(socketPath);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) {
    throw new RuntimeError('SOCKET_IN_USE', `${socketPath} exists and is not a socket; refusing to replace it`);
  }
  const holder = await probeSocket(socketPath);
  if (holder !== undefined) {
    const who = holder > 0 ? `pid ${holder}` : 'unknown pid';
    throw new RuntimeError('ALREADY_RUNNING', `control socket ${socketPath} is in use by another nitride daemon (${who})`);
  }
  await fs.rm(socketPath, { force: true });
}

/** PID of the process serving `socketPath`, or undefined if nobody answers. */
function probeSocket(socketPath: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const socket = net.connect(socketPath);
    socket.once('connect', () => {
      const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
      let pid: number | undefined;
      try {
        pid = typeof fd === 'number' ? peerCredentials(fd).pid : -1;
      } catch {
        pid = -1;
      }
      socket.destroy();
      resolve(pid);
    });
    socket.once('error', () => resolve(undefined));
  });
}
