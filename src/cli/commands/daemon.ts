/** `nitride daemon`: run the host daemon in the foreground (for systemd). */
import { Command, Option } from 'commander';
import { loadDaemonConfig } from '../../daemon/config.js';
import { Daemon } from '../../daemon/daemon.js';
import { LOG_LEVELS, type LogLevel } from '../../api/daemon.js';
import { createLogger } from '../../log/logger.js';
import { setDumpable } from '../../native/addon.js';

interface DaemonCliOptions {
  stateDir?: string;
  controlSocket?: string;
  config?: string;
  logLevel?: LogLevel;
  kmsSocket?: string;
  nbdSocket?: string;
  nbdListen?: string;
  ephemeralDir?: string;
  vpcListen?: string;
  vpcDns?: string[];
  vpcRekeyAfter?: number;
  nbdDataPlane?: 'native' | 'js';
  metricsListen?: string;
}

export function daemonCommand(): Command {
  return new Command('daemon')
    .description('run the nitride host daemon in the foreground until SIGTERM/SIGINT')
    .option('--state-dir <dir>', 'state directory (default /var/lib/nitride)')
    .option('--control-socket <path>', 'control API socket (default /run/nitride/control.sock)')
    .option('--config <file>', 'TOML config file (default /etc/nitride/nitride.toml if present)')
    .addOption(new Option('--log-level <level>', 'minimum log level').choices(LOG_LEVELS))
    .option('--kms-socket <path>', 'KMS socket for volume data keys (default /run/nitride-kms/kms.sock)')
    .option('--nbd-socket <path>', 'NBD Unix socket serving all volumes (default: beside the control socket)')
    .option('--nbd-listen <host:port>', 'also serve NBD on TCP (e.g. 127.0.0.1:10809)')
    .addOption(new Option('--nbd-data-plane <where>', 'serve NBD reads/writes on a native thread per connection, or on the event loop (default native)').choices(['native', 'js']))
    .option('--ephemeral-dir <dir>', 'where ephemeral volume images live (default <state-dir>/ephemeral)')
    .option('--vpc-listen <host:port>', 'VPC underlay UDP address, numeric (default 0.0.0.0:4789)')
    .option('--vpc-dns <ip,...>', 'DNS servers that DHCP gives guests (default: none)', (v: string) => v.split(',').map((x) => x.trim()).filter(Boolean))
    .option('--vpc-rekey-after <seconds>', 'rekey peer sessions at this age, 2-120 (default 120)', (v: string) => (/^\d+$/.test(v) ? Number(v) : NaN))
    .option('--metrics-listen <host:port>', 'also serve GET /metrics on this loopback TCP address (e.g. 127.0.0.1:9464)')
    .action(async (options: DaemonCliOptions) => {
      // Volume and host keys live in this process: never in a core dump, never readable by ptrace.
      setDumpable(false);
      const config = await loadDaemonConfig(options);
      const logger = createLogger({ level: config.logLevel });
      // Handlers first: a signal that arrives while the daemon starts (its socket already
      // answers) stops it cleanly once started, instead of killing the process.
      let received: NodeJS.Signals | undefined;
      let wake: (() => void) | undefined;
      const onSignal = (signal: NodeJS.Signals) => {
        received ??= signal;
        if (!wake) return;
        // As before: once stopping, a second signal has its default effect.
        process.off('SIGTERM', onSignal);
        process.off('SIGINT', onSignal);
        wake();
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
      try {
        const daemon = await Daemon.start(config, logger);
        await new Promise<void>((resolve) => {
          wake = resolve;
          if (received) onSignal(received);
        });
        await daemon.stop(received!);
      } finally {
        process.off('SIGTERM', onSignal);
        process.off('SIGINT', onSignal);
      }
      logger.flush();
    });
}
