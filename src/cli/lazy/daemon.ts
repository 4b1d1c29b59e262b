/** What `nitride daemon` runs (loaded only then: it brings the whole daemon, the addon and libsodium). */
import type { LogLevel } from '../../api/daemon.js';
import { loadDaemonConfig } from '../../daemon/config.js';
import { Daemon } from '../../daemon/daemon.js';
import { createLogger } from '../../log/logger.js';
import { setDumpable } from '../../native/addon.js';

export interface DaemonCliOptions {
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

/** Run the daemon in the foreground until SIGTERM/SIGINT. */
export async function runDaemon(options: DaemonCliOptions): Promise<void> {
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
}
