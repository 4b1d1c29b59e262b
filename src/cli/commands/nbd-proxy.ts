/**
 * `nitride nbd-proxy`: carry one NBD connection between stdin/stdout (libnbd's
 * `connect_command`, `nbdinfo -- [ CMD ]`) or systemd socket activation (LISTEN_FDS, fd 3)
 * and the daemon's NBD socket. The volume's key never leaves the daemon; this is a byte pipe.
 */
import { Command } from 'commander';
import { defaultNbdSocket } from '../../api/control.js';

interface ProxyOptions {
  nbdSocket: string;
}

export function nbdProxyCommand(): Command {
  return new Command('nbd-proxy')
    .description("pipe an NBD client on stdin/stdout (or a socket-activated listener) to the daemon's NBD socket")
    .option('--nbd-socket <path>', 'the daemon NBD socket', defaultNbdSocket())
    .action(async (options: ProxyOptions) => {
      const { runNbdProxy } = await import('../lazy/nbd-proxy.js');
      await runNbdProxy(options.nbdSocket);
    });
}
