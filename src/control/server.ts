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
import type { Duplex } from 'node:stream';
import { z } from 'zod';
import { ConflictError, ForbiddenError, NitrideError, NotFoundError, RuntimeError, UsageError, oneLine } from '../common/errors.js';
import type { Logger } from '../log/logger.js';
import { listenOnFd, socketPeer } from '../common/unix-socket.js';
import { listenUnixKept, type KeptListener } from '../common/fd-store.js';
import type { HttpMethod } from '../api/control.js';
import type { AuditLog, Caller } from './audit.js';
import { parseOrThrow } from './validate.js';

export interface RouteContext<B, Q> {
  params: Record<string, string>;
  body: B;
  query: Q;
  caller: Caller | undefined;
  /** Aborted when the client goes away or the daemon shuts down. */
  signal: AbortSignal;
  /** Filled by the handler to enrich the audit record of this call (never with secrets). */
  audit: AuditDetails;
}

/** What a handler may add to its call's audit record. */
export interface AuditDetails {
  /** Overrides the target taken from the path (e.g. an alias resolved to a canonical id). */
  target?: string;
  /** Extra non-secret fields (key id, encryption context…). */
  details?: Record<string, unknown>;
}

/**
 * A reply sent as raw bytes instead of JSON: for secrets (key material) that must never
 * become a JS string on either side. `onSent` runs once the body has been handed to the
 * kernel or the connection died, so the caller can wipe `body`.
 */
export class BinaryReply {
  constructor(
    readonly body: Buffer,
    readonly options: { contentType?: string; headers?: Record<string, string>; onSent?: () => void } = {},
  ) {}
}

/**
 * A long-running call that reports progress: the reply is newline-delimited JSON,
 * `{"progress": …}` lines while `run` works, then one `{"result": …}` or
 * `{"error": {"status", "code", "message"}}` line. The call's signal aborts `run` when the
 * client goes away (Ctrl-C on the CLI cancels the work).
 */
export class StreamedReply {
  constructor(readonly run: (progress: (event: unknown) => void) => Promise<unknown>) {}
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
  /** Return value is sent as JSON (or raw, if a {@link BinaryReply}) with `status` (default 200). */
  handle(ctx: RouteContext<B, Q>): Promise<unknown> | unknown;
  status?: number;
}

/** Largest request body accepted; control calls are small. */
const MAX_BODY_BYTES = 1 << 20;
/**
 * How long the rest of a too-large body is read and dropped after the 413 is sent. Closing
 * while the client still sends would leave unread data, and the kernel then resets the
 * connection: the client sees EPIPE/ECONNRESET instead of the answer (a lingering close).
 */
const LINGER_MS = 5_000;

/**
 * Control calls handled at once. More wait for a slot, in order, up to CALL_SLOT_WAIT_MS, then
 * get 503. Connections themselves are not capped: a connection refused at accept reaches the
 * client as EPIPE/ECONNRESET, not as an answer, and a script's burst of CLI calls should queue.
 */
const MAX_CALLS = 64;
const CALL_SLOT_WAIT_MS = 10_000;

const STATUS_OF: Array<[new (...args: never[]) => NitrideError, number]> = [
  [UsageError, 400],
  [ForbiddenError, 403],
  [NotFoundError, 404],
  [ConflictError, 409],
  // A dependency (KMS, disk) is unusable: the call may succeed later.
  [RuntimeError, 503],
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
  /** Logger component name (default `control`). */
  component?: string;
  /** What the socket is called in error messages (default `control socket`). */
  socketLabel?: string;
  /** Audit action for requests that match no route (404/405); unset = not audited. */
  unroutedAudit?: string;
  /** An already listening socket to serve instead of binding `socketPath` (passed by systemd). */
  listenFd?: number;
  /** Keep the socket in systemd's fd store across restarts (live update). */
  kept?: KeptListener;
}

export class ControlServer {
  private readonly routes: CompiledRoute[] = [];
  private readonly server: http.Server;
  private readonly callers = new WeakMap<object, Caller>();
  private readonly logger: Logger;
  private readonly shutdown = new AbortController();
  private calls = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private readonly options: ControlServerOptions) {
    this.logger = options.logger.child({ component: options.component ?? 'control' });
    this.server = http.createServer({ requestTimeout: 30_000, headersTimeout: 10_000 }, (req, res) => {
      void this.dispatch(req, res);
    });
    this.server.on('connection', (socket: net.Socket) => {
      if (!this.callers.has(socket)) this.admit(socket);
    });
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
    const fd = this.options.listenFd;
    if (fd !== undefined) await listenOnFd(this.server, fd, `${this.options.socketLabel ?? 'control socket'} (fd ${fd} from systemd)`);
    else await listenUnixKept(this.server, this.options.socketPath, this.options.socketLabel ?? 'control socket', this.options.kept);
  }

  /**
   * Serve one connection that was authenticated elsewhere (the network KMS's channel) as
   * `caller`, instead of a Unix socket checked with SO_PEERCRED.
   */
  serve(stream: Duplex, caller: Caller): void {
    this.callers.set(stream, caller);
    this.server.emit('connection', stream);
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
    const caller = socketPeer(socket);
    if (!caller) {
      this.logger.warn('cannot read peer credentials; refusing connection');
      socket.destroy();
      return;
    }
    const self = process.getuid?.() ?? 0;
    if (caller.uid !== 0 && caller.uid !== self) {
      this.logger.warn({ caller }, 'refused control connection from unprivileged user');
      socket.destroy();
      return;
    }
    this.callers.set(socket, caller);
  }

  private async dispatch(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const busy = await this.slot();
    try {
      await this.call(req, res, busy);
    } finally {
      if (!busy) this.release();
    }
  }

  /** A call slot (see MAX_CALLS), or the error to answer with once none came in time. */
  private async slot(): Promise<NitrideError | undefined> {
    if (this.calls < MAX_CALLS) {
      this.calls++;
      return undefined;
    }
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        resolve(undefined);
      };
      const timer = setTimeout(() => {
        this.waiting.splice(this.waiting.indexOf(wake), 1);
        resolve(new RuntimeError(`the daemon is busy: ${MAX_CALLS} control calls in progress for ${CALL_SLOT_WAIT_MS / 1000} s; try again`, 'BUSY'));
      }, CALL_SLOT_WAIT_MS);
      this.waiting.push(wake);
    });
  }

  /** A call ended: its slot goes to the first waiter, if any. */
  private release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.calls--;
  }

  private async call(req: http.IncomingMessage, res: http.ServerResponse, busy: NitrideError | undefined): Promise<void> {
    const caller = this.callers.get(req.socket);
    const url = new URL(req.url ?? '/', 'http://nitride');
    const match = this.match(req.method ?? 'GET', url.pathname);
    let status = 500;
    let payload: unknown;
    const audit: AuditDetails = {};
    let streamed = false;
    try {
      if (busy) throw busy;
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
      payload = await route.handle({ params, body: parsedBody, query, caller, signal, audit });
      status = route.status ?? 200;
      if (payload instanceof StreamedReply) {
        streamed = true;
        res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        const line = (value: unknown) => res.write(JSON.stringify(value) + '\n');
        payload = { result: await payload.run((event) => line({ progress: event })) };
      }
    } catch (err) {
      status = statusOf(err);
      payload = { error: { code: err instanceof NitrideError ? err.code : 'INTERNAL', message: oneLine(err) } };
      if (status >= 500) this.logger.error({ err, path: url.pathname }, 'control call failed');
    }
    const routed = match && match !== 'method' ? match : undefined;
    const auditAction = routed ? routed.route.audit : this.options.unroutedAudit;
    if (auditAction) {
      const auditTarget = audit.target ?? (routed ? (routed.route.auditTarget ? routed.params[routed.route.auditTarget] : undefined) : `${req.method} ${url.pathname}`.slice(0, 200));
      const errorCode = status >= 400 ? (payload as { error: { code: string } }).error.code : undefined;
      try {
        await this.options.audit.record({
          caller,
          action: auditAction,
          ...(auditTarget ? { target: auditTarget } : {}),
          status,
          ...(errorCode ? { error: errorCode } : {}),
          ...(audit.details ? { details: audit.details } : {}),
        });
      } catch (err) {
        this.logger.error({ err: oneLine(err) }, 'cannot write audit record');
      }
    }
    if (streamed) {
      const last = status >= 400 ? { error: { status, ...(payload as { error: object }).error } } : payload;
      res.end(JSON.stringify(last) + '\n');
      return;
    }
    if (payload instanceof BinaryReply) {
      sendBinary(res, status, payload);
      return;
    }
    const text = JSON.stringify(payload ?? null) + '\n';
    const headers = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) };
    if (status !== 413) {
      res.writeHead(status, headers).end(text);
      return;
    }
    // The answer goes out at once; the connection closes once the body is drained.
    res.writeHead(status, { ...headers, connection: 'close' }).write(text);
    await bodyDrained(req, LINGER_MS);
    res.end();
  }

  private match(method: string, pathname: string): { route: Route<unknown, unknown>; params: Record<string, string> } | 'method' | undefined {
    let pathMatched = false;
    for (const { route, pattern, paramNames } of this.routes) {
      const m = pattern.exec(pathname);
      if (!m) continue;
      pathMatched = true;
      if (route.method !== method) continue;
      const params: Record<string, string> = {};
      paramNames.forEach((name, i) => (params[name] = safeDecode(m[i + 1] ?? '')));
      return { route, params };
    }
    return pathMatched ? 'method' : undefined;
  }
}

class MethodError extends NitrideError {
  constructor(message: string) {
    super(message, 'METHOD_NOT_ALLOWED');
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
    super(`request body larger than ${MAX_BODY_BYTES} bytes`, 'BODY_TOO_LARGE');
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

/** Resolves once the request body has been read to its end (readBody drops it), the client left, or after `ms`. */
function bodyDrained(req: http.IncomingMessage, ms: number): Promise<void> {
  if (req.complete || req.socket.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      req.off('end', done).off('close', done);
      resolve();
    }
    req.once('end', done).once('close', done);
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

/** decodeURIComponent that leaves a malformed escape as it is (the route's validation rejects it). */
function safeDecode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** Send a raw reply; call its `onSent` exactly once, when written or when the connection is gone. */
function sendBinary(res: http.ServerResponse, status: number, reply: BinaryReply): void {
  let done = false;
  const sent = (): void => {
    if (done) return;
    done = true;
    reply.options.onSent?.();
  };
  res.once('close', sent);
  res.writeHead(status, {
    ...reply.options.headers,
    'content-type': reply.options.contentType ?? 'application/octet-stream',
    'content-length': reply.body.length,
    'cache-control': 'no-store',
  });
  res.end(reply.body, sent);
}
