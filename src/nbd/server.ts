/**
 * The NBD server: listeners (Unix socket, TCP, or one already-connected stream such as
 * stdin/stdout) feeding NbdConnections over one export catalog.
 */
import { promises as fs } from 'node:fs';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { RuntimeError, oneLine } from '../common/errors.js';
import { withSuppliedReadBuffers } from '../common/socket-handle.js';
import { formatEndpoint } from '../common/endpoint.js';
import { listenTcpKept, listenUnixKept, type KeptListener } from '../common/fd-store.js';
import { listenPrivateUnixSocket, socketPeer } from '../common/unix-socket.js';
import type { Logger } from '../log/logger.js';
import { NbdConnection } from './connection.js';
import type { ExportCatalog, NbdPeer } from './exports.js';

export interface NbdServerOptions {
  catalog: ExportCatalog;
  logger: Logger;
  /** Most simultaneous connections over all listeners (default 256). */
  maxConnections?: number;
  /** Where requests are served; see ConnectionOptions.dataPlane (default 'native'). */
  dataPlane?: 'native' | 'js';
}

export class NbdServer {
  private readonly listeners: net.Server[] = [];
  private readonly connections = new Set<NbdConnection>();
  private readonly log: Logger;
  private closing = false;

  constructor(private readonly options: NbdServerOptions) {
    this.log = options.logger.child({ component: 'nbd' });
  }

  /** Listen on a private Unix socket (see listenPrivateUnixSocket). */
  async listenUnix(socketPath: string, kept?: KeptListener): Promise<void> {
    const server = this.makeListener((socket) => {
      const cred = socketPeer(socket);
      return { transport: 'unix', ...(cred ? { pid: cred.pid, uid: cred.uid } : {}) };
    });
    await listenUnixKept(server, socketPath, 'NBD socket', kept);
    this.log.info({ socket: socketPath }, 'NBD listening on Unix socket');
  }

  /**
   * Listen on a socket that serves one guest: only `catalog`'s exports, only to `uid` (its
   * QEMU) and root (operators); other peers are dropped and counted. The socket belongs to
   * `uid`, mode 0600; or, with `dirGated` (a daemon without CAP_CHOWN: its guest's run/ directory,
   * which only that uid and group root may enter, is the gate), root's, mode 0666.
   * Returns the function that stops it (and removes the socket).
   */
  async listenGuest(socketPath: string, catalog: ExportCatalog, uid: number | undefined, dirGated = false): Promise<() => Promise<void>> {
    const server = this.makeListener(
      (socket) => {
        const cred = socketPeer(socket);
        return { transport: 'unix', ...(cred ? { pid: cred.pid, uid: cred.uid } : {}) };
      },
      catalog,
      (peer) => peer.uid === 0 || (uid !== undefined && peer.uid === uid),
    );
    await listenPrivateUnixSocket(server, socketPath, 'guest NBD socket');
    if (dirGated) await fs.chmod(socketPath, 0o666);
    else if (uid !== undefined) await fs.chown(socketPath, uid, -1);
    return async () => {
      this.listeners.splice(this.listeners.indexOf(server), 1);
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await fs.rm(socketPath, { force: true });
    };
  }

  /** Peers a guest socket refused (wrong uid). */
  refusedPeers = 0;

  /** Listen on TCP (the kernel nbd-client and remote hosts). Returns the bound port. */
  async listenTcp(host: string, port: number, kept?: KeptListener): Promise<number> {
    const server = this.makeListener((socket) => {
      socket.setNoDelay(true);
      return {
        transport: 'tcp',
        ...(socket.remoteAddress ? { address: socket.remoteAddress } : {}),
        ...(socket.remotePort ? { port: socket.remotePort } : {}),
      };
    });
    await listenTcpKept(server, host, port, () => listen(server, { host, port }), kept);
    const bound = (server.address() as net.AddressInfo).port;
    this.log.info({ host, port: bound }, 'NBD listening on TCP');
    return bound;
  }

  /** Serve one connection over an existing stream (stdin/stdout, socket activation). */
  serveStream(stream: Duplex, peer: NbdPeer = { transport: 'stream' }): NbdConnection {
    return this.track(stream, peer);
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** Stop listening; let every connection finish its in-flight requests; close them. */
  async close(): Promise<void> {
    this.closing = true;
    // A listener's close callback waits for its connections, so shut them down first (long-lived
    // clients such as QEMU would otherwise hold the daemon's stop forever).
    const listening = this.listeners.map((l) => new Promise<void>((resolve) => l.close(() => resolve())));
    const all = [...this.connections];
    for (const c of all) c.shutdown();
    await Promise.all([...listening, ...all.map((c) => c.closed)]);
  }

  private makeListener(peerOf: (socket: net.Socket) => NbdPeer, catalog = this.options.catalog, admit?: (peer: NbdPeer) => boolean): net.Server {
    // Paused so that no read happens before the socket is re-wrapped with our read buffers.
    const server = net.createServer({ noDelay: true, pauseOnConnect: true }, (socket) => {
      if (this.closing || this.connections.size >= (this.options.maxConnections ?? 256)) {
        socket.destroy();
        return;
      }
      const peer = peerOf(socket);
      if (admit && !admit(peer)) {
        this.refusedPeers++;
        this.log.warn({ peer }, 'NBD peer refused: not the uid this socket serves');
        socket.destroy();
        return;
      }
      let connection: NbdConnection | undefined;
      const rewrapped = withSuppliedReadBuffers(server, socket, {
        // Called once before `connection` exists: the first read (the handshake) gets a buffer of
        // its own, large enough that garbage is read whole before the connection drops it.
        buffer: () => connection?.readTarget() ?? Buffer.allocUnsafe(FIRST_READ_SIZE),
        callback: (n, buf) => connection!.received(n, buf as Buffer),
      });
      if (rewrapped) {
        connection = this.track(rewrapped, peer, true, catalog);
      } else {
        this.track(socket, peer, false, catalog);
        socket.resume();
      }
    });
    this.listeners.push(server);
    return server;
  }

  private track(stream: Duplex, peer: NbdPeer, suppliedReadBuffers = false, catalog = this.options.catalog): NbdConnection {
    const connection = new NbdConnection(stream, {
      catalog,
      peer,
      logger: this.log,
      suppliedReadBuffers,
      ...(this.options.dataPlane ? { dataPlane: this.options.dataPlane } : {}),
    });
    this.connections.add(connection);
    void connection.closed.then(() => this.connections.delete(connection));
    return connection;
  }
}

const FIRST_READ_SIZE = 64 * 1024;

function listen(server: net.Server, where: { host: string; port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', (err) => reject(new RuntimeError(`cannot listen on ${formatEndpoint(where)}: ${oneLine(err)}`, 'LISTEN')));
    server.listen(where, () => resolve());
  });
}
