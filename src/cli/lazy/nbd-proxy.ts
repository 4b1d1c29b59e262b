/** What `nitride nbd-proxy` runs (loaded only then). */
import net from 'node:net';
import { RuntimeError, oneLine } from '../../common/errors.js';
import { takeListenFds } from '../../common/systemd.js';
import { listenOnFd } from '../../common/unix-socket.js';

/** Pipe stdin/stdout, or every connection of a socket-activated listener, to the daemon's NBD socket. */
export async function runNbdProxy(nbdSocket: string): Promise<void> {
  const activated = [...takeListenFds().values()].flat()[0];
  if (activated !== undefined) await serveActivated(nbdSocket, activated);
  else await pipeStdio(nbdSocket);
}

function connectDaemon(socketPath: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const upstream = net.connect(socketPath);
    upstream.once('connect', () => resolve(upstream));
    upstream.once('error', (err) => reject(new RuntimeError(`cannot reach the NBD socket ${socketPath}: ${oneLine(err)}`, 'DAEMON_UNREACHABLE')));
  });
}

async function pipeStdio(socketPath: string): Promise<void> {
  const upstream = await connectDaemon(socketPath);
  await new Promise<void>((resolve) => {
    process.stdin.pipe(upstream);
    upstream.pipe(process.stdout);
    upstream.on('close', () => resolve());
    upstream.on('error', () => resolve());
    process.stdin.on('end', () => upstream.end());
  });
  process.stdin.destroy();
}

/** systemd-style activation: `fd` is a listening socket; proxy every connection. Runs until killed. */
async function serveActivated(socketPath: string, fd: number): Promise<void> {
  const server = net.createServer((client) => {
    void connectDaemon(socketPath).then(
      (upstream) => {
        client.pipe(upstream).pipe(client);
        const close = () => {
          client.destroy();
          upstream.destroy();
        };
        client.on('close', close);
        upstream.on('close', close);
        client.on('error', close);
        upstream.on('error', close);
      },
      () => client.destroy(),
    );
  });
  await listenOnFd(server, fd, `the activation socket (fd ${fd})`);
  await new Promise<void>(() => {});
}
