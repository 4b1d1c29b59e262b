/**
 * The two places nitride reaches into Node's private socket internals, because Node offers no
 * public API for them: the file descriptor behind a socket or server (for SO_PEERCRED, the
 * systemd fd store and the native NBD lane), and moving an accepted connection's handle into a
 * socket that reads into caller-supplied buffers (net.Server has no `onread` option). Node's own
 * cluster module uses the same `_handle`/`_server` fields. test/common/socket-handle.test.ts
 * fails if a Node upgrade changes them; the callers fall back (no fd: no peer, no lane, not
 * kept; no re-wrap: 'data' events).
 */
import net from 'node:net';

interface Internals {
  _handle?: { fd?: unknown; useUserBuffer?: unknown } | null;
  _server?: net.Server | null;
  server?: net.Server | null;
}

/** The descriptor of a connected socket or a listening server, or undefined (none, or closed). */
export function socketFd(s: net.Socket | net.Server): number | undefined {
  const fd = (s as unknown as Internals)._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/** What `net.Socket`'s `onread` option takes: where the next read goes, and what was read. */
export interface OnRead {
  buffer: () => Uint8Array;
  callback: (n: number, buf: Uint8Array) => boolean | void;
}

/**
 * Moves a paused connection that `server` accepted into a new net.Socket created with `onread`,
 * so every read lands in a buffer the caller chooses rather than in a fresh 64 KiB Buffer. The
 * old socket is left without a handle (drop it). Null where the internals are missing.
 */
export function withSuppliedReadBuffers(server: net.Server, socket: net.Socket, onread: OnRead): net.Socket | null {
  const old = socket as unknown as Internals;
  const handle = old._handle;
  if (!handle || typeof handle.useUserBuffer !== 'function' || old._server !== server) return null;
  old._handle = null;
  old._server = null;
  const fresh = new net.Socket({ handle, readable: true, writable: true, onread } as net.SocketConstructorOpts);
  // Node counts the connection on the server and uncounts it when this socket closes (server.close()
  // waits for that).
  const counted = fresh as unknown as Internals;
  counted._server = server;
  counted.server = server;
  return fresh;
}
