/**
 * Live update: the daemon's listening sockets live in systemd's file descriptor store
 * (`FDSTORE=1`, unit `FileDescriptorStoreMax=`), so across `systemctl restart` they never
 * stop listening. Clients that connect while the old process is gone and the new one starts
 * wait in the kernel's backlog instead of being refused (QEMU's NBD client with
 * `reconnect-delay` retries a refused connect only after a second); the new process gets
 * them back in LISTEN_FDS and serves them.
 *
 * Only under systemd (NOTIFY_SOCKET set); elsewhere listeners bind and unlink as before.
 */
import type net from 'node:net';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ensureDir } from './durable-fs.js';
import { takeListenFds } from './systemd.js';
import { formatEndpoint } from './endpoint.js';
import { socketFd } from './socket-handle.js';
import { clearStaleSocket, listenOnFd, listenPrivateUnixSocket } from './unix-socket.js';
import { closeFd, sdNotify, socketAddress, unixListen, type SocketAddress } from '../native/addon.js';

export class FdStore {
  private readonly inherited: Map<string, number[]>;

  private constructor() {
    this.inherited = new Map(takeListenFds());
  }

  /** The store of this process, or undefined when not run by systemd. */
  static open(env: NodeJS.ProcessEnv = process.env): FdStore | undefined {
    return env.NOTIFY_SOCKET ? new FdStore() : undefined;
  }

  /** Names of the listeners taken over from the previous run. */
  readonly adopted: string[] = [];

  /**
   * The inherited socket called `name` if it is what `matches` wants; one that is not (the
   * configuration changed) is closed and dropped from the store.
   */
  adopt(name: string, matches: (address: SocketAddress) => boolean): number | undefined {
    const fd = this.take(name);
    if (fd === undefined) return undefined;
    let address: SocketAddress | undefined;
    try {
      address = socketAddress(fd!);
    } catch {
      address = undefined;
    }
    if (address && matches(address)) {
      this.adopted.push(name);
      return fd;
    }
    closeFd(fd!);
    this.remove(name);
    return undefined;
  }

  /**
   * The inherited fd called `name`, now the caller's (extra ones under that name are closed);
   * it stays in the store until remove(). Undefined if the previous run stored none.
   */
  take(name: string): number | undefined {
    const fds = this.inherited.get(name);
    if (!fds) return undefined;
    this.inherited.delete(name);
    const [fd, ...extra] = fds;
    for (const e of extra) closeFd(e);
    return fd;
  }

  /** Hand `fd` to systemd under `name` (it keeps its own duplicate). */
  keep(name: string, fd: number): void {
    sdNotify(`FDSTORE=1\nFDNAME=${name}`, [fd]);
  }

  /**
   * Drop what the previous run stored and nobody adopted (a listener no longer configured, the
   * key of a volume no longer known); returns their names.
   */
  dropUnadopted(): string[] {
    const names = [...this.inherited.keys()];
    for (const [name, fds] of this.inherited) {
      for (const fd of fds) closeFd(fd);
      this.remove(name);
    }
    this.inherited.clear();
    return names;
  }

  /** Drop `name` from the store (what it held is no longer needed). */
  remove(name: string): void {
    sdNotify(`FDSTOREREMOVE=1\nFDNAME=${name}`);
  }
}

/** A listener slot in the store: which store, under which name. */
export interface KeptListener {
  store: FdStore;
  name: string;
}

/**
 * Listen on a private Unix socket (0600 in a 0700 directory, see listenPrivateUnixSocket),
 * kept in the fd store when `kept` is given: adopted from the previous run, or bound by the
 * addon (so closing it does not unlink the path) and stored.
 */
export async function listenUnixKept(server: net.Server, socketPath: string, what: string, kept: KeptListener | undefined): Promise<void> {
  if (!kept) return listenPrivateUnixSocket(server, socketPath, what);
  const adopted = kept.store.adopt(kept.name, (a) => a.family === 'unix' && a.stream && a.listening && a.path === socketPath);
  if (adopted !== undefined) return listenOnFd(server, adopted, `${what} ${socketPath} (kept by systemd)`);
  await ensureDir(path.dirname(socketPath));
  await clearStaleSocket(socketPath, what);
  const oldMask = process.umask(0o177);
  let fd: number;
  try {
    fd = unixListen(socketPath);
  } finally {
    process.umask(oldMask);
  }
  await fs.chmod(socketPath, 0o600);
  await listenOnFd(server, fd, `${what} ${socketPath}`);
  kept.store.keep(kept.name, fd);
}

/** Listen on TCP, kept in the fd store when `kept` is given. Resolves when listening. */
export async function listenTcpKept(server: net.Server, host: string, port: number, listen: () => Promise<void>, kept: KeptListener | undefined): Promise<void> {
  const adopted = kept?.store.adopt(kept.name, (a) => a.family !== 'unix' && a.family !== 'other' && a.stream && a.listening && a.address === host && (port === 0 || a.port === port));
  if (adopted !== undefined) return listenOnFd(server, adopted, `${formatEndpoint({ host, port })} (kept by systemd)`);
  await listen();
  const fd = socketFd(server);
  if (kept && fd !== undefined) kept.store.keep(kept.name, fd);
}
