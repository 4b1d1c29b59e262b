/**
 * The control API in general: HTTP/1.1 + JSON on the daemon's root-only Unix socket.
 * Errors are `{ "error": { "code", "message" } }`; each area's paths,
 * request and reply types are in its own module beside this one (volumes, vms, vpc, keys,
 * daemon), its zod schemas in the matching `*.schema.ts` (server side only).
 */
import path from 'node:path';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** Where the daemon listens unless configured (`--control-socket`, $NITRIDE_SOCKET). */
export const DEFAULT_CONTROL_SOCKET = '/run/nitride/control.sock';

/** The daemon's NBD socket lives beside the control socket unless configured. */
export function defaultNbdSocket(env: NodeJS.ProcessEnv = process.env): string {
  return env.NITRIDE_NBD_SOCKET ?? path.join(path.dirname(env.NITRIDE_SOCKET ?? DEFAULT_CONTROL_SOCKET), 'nbd.sock');
}

/** What deleting a resource returns. */
export interface Deleted {
  id: string;
  deleted: true;
}

/** The `:name` segments of a route path, e.g. `'id'` for `/v1/volumes/:id/resize`. */
type PathParams<P extends string> = P extends `${string}:${infer Name}/${infer Rest}`
  ? Name | PathParams<`/${Rest}`>
  : P extends `${string}:${infer Name}`
    ? Name
    : never;

/** A route path with its `:name` segments filled in, URL-encoded: what a client requests. */
export function pathTo<P extends string>(route: P, params: Record<PathParams<P>, string>): string {
  return route.replace(/:([a-zA-Z]+)/g, (_m, name: string) => encodeURIComponent((params as Record<string, string>)[name]!));
}
