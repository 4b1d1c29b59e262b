/** `nitride daemon`: run the host daemon in the foreground (for systemd). */
import { Command, Option } from 'commander';
import { loadDaemonConfig } from '../../daemon/config.js';
import { Daemon } from '../../daemon/daemon.js';
import { LOG_LEVELS, createLogger, type LogLevel } from '../../log/logger.js';

interface DaemonCliOptions {
  stateDir?: string;
  controlSocket?: string;
  config?: string;
  logLevel?: LogLevel;
  kmsSocket?: string;
  nbdSocket?: string;
  nbdListen?: string;
  ephemeralDir?: string;
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
    .option('--ephemeral-dir <dir>', 'where ephemeral volume images live (default <state-dir>/ephemeral)')
    .action(async (options: DaemonCliOptions) => {
      const config = await loadDaemonConfig(options);
      const logger = createLogger({ level: config.logLevel });
      const daemon = await Daemon.start(config, logger);
      await new Promise<void>((resolve) => {
        const onSignal = (signal: NodeJS.Signals) => {
          process.off('SIGTERM', onSignal);
          process.off('SIGINT', onSignal);
          void daemon.stop(signal).then(resolve);
        };
        process.on('SIGTERM', onSignal);
        process.on('SIGINT', onSignal);
      });
      logger.flush();
    });
}
