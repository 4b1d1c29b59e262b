/** Private (root-only) Unix-socket listeners shared by the control API, the NBD server and the KMS. */
import net from 'node:net';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { RuntimeError, errnoCode, oneLine } from './errors.js';
import { ensureDir } from './durable-fs.js';
import { peerCredentials, type PeerCredentials } from '../native/addon.js';
import { socketFd } from './socket-handle.js';

/** SO_PEERCRED of a connected Unix socket, or undefined if unavailable. */
export function socketPeer(socket: net.Socket): PeerCredentials | undefined {
  const fd = socketFd(socket);
  if (fd === undefined) return undefined;
  try {
    return peerCredentials(fd);
  } catch {
    return undefined;
  }
}

/**
 * Listen on `socketPath` with mode 0600 inside a 0700 directory (created if missing; the
 * umask closes the window between bind and chmod). A socket left by a dead process is
 * replaced; a live one is an error naming its PID (`what` names the service, e.g.
 * "control socket"); anything that is not a socket is never touched.
 */
export async function listenPrivateUnixSocket(server: net.Server, socketPath: string, what: string): Promise<void> {
  await ensureDir(path.dirname(socketPath));
  await clearStaleSocket(socketPath, what);
  const oldMask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(new RuntimeError(`cannot listen on ${socketPath}: ${oneLine(err)}`, 'LISTEN'));
      server.once('error', onError);
      server.listen(socketPath, () => {
        server.off('error', onError);
        resolve();
      });
    });
  } finally {
    process.umask(oldMask);
  }
  await fs.chmod(socketPath, 0o600);
}

/** Serve a socket that is already bound and listening (socket activation, the systemd fd store). */
export async function listenOnFd(server: net.Server, fd: number, what: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(new RuntimeError(`cannot listen on ${what}: ${oneLine(err)}`, 'LISTEN'));
    server.once('error', onError);
    server.listen({ fd }, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

export async function clearStaleSocket(socketPath: string, what: string): Promise<void> {
  let st;
  try {
    st = await fs.lstat(socketPath);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) {
    throw new RuntimeError(`${socketPath} exists and is not a socket; refusing to replace it`, 'SOCKET_IN_USE');
  }
  const holder = await probeSocket(socketPath);
  if (holder !== undefined) {
    const who = holder > 0 ? `pid ${holder}` : 'unknown pid';
    throw new RuntimeError(`${what} ${socketPath} is in use by another process (${who})`, 'ALREADY_RUNNING');
  }
  await fs.rm(socketPath, { force: true });
}

/** PID of the process serving `socketPath` (-1 if unknown), or undefined if nobody answers. */
function probeSocket(socketPath: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const socket = net.connect(socketPath);
    socket.once('connect', () => {
      const pid = socketPeer(socket)?.pid ?? -1;
      socket.destroy();
      resolve(pid);
    });
    socket.once('error', () => resolve(undefined));
  });
}
