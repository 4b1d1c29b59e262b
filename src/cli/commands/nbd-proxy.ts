/**
 * `nitride nbd-proxy`: carry one NBD connection between stdin/stdout (libnbd's
 * `connect_command`, `nbdinfo -- [ CMD ]`) or systemd socket activation (LISTEN_FDS, fd 3)
 * and the daemon's NBD socket. The volume's key never leaves the daemon; this is a byte pipe.
 */
import net from 'node:net';
import { Command } from 'commander';
import { RuntimeError, oneLine } from '../../common/errors.js';
import { defaultNbdSocket } from '../../api/control.js';
import { takeListenFds } from '../../common/systemd.js';
import { listenOnFd } from '../../common/unix-socket.js';

interface ProxyOptions {
  nbdSocket: string;
}

export function nbdProxyCommand(): Command {
  return new Command('nbd-proxy')
    .description("pipe an NBD client on stdin/stdout (or a socket-activated listener) to the daemon's NBD socket")
    .option('--nbd-socket <path>', 'the daemon NBD socket', defaultNbdSocket())
    .action(async (options: ProxyOptions) => {
      const activated = [...takeListenFds().values()].flat()[0];
      if (activated !== undefined) await serveActivated(options.nbdSocket, activated);
      else await pipeStdio(options.nbdSocket);
    });
}

function connectDaemon(socketPath: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const upstream = net.connect(socketPath);
    upstream.once('connect', () => resolve(upstream));
    upstream.once('error', (err) => reject(new RuntimeError('DAEMON_UNREACHABLE', `cannot reach the NBD socket ${socketPath}: ${oneLine(err)}`)));
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
