/** What `nitride daemon` runs (loaded only then: it brings the whole daemon, the addon and libsodium). */
import { loadDaemonConfig, type DaemonFlags } from '../../daemon/config.js';
import { Daemon } from '../../daemon/daemon.js';
import { runUntilSignal } from '../../common/service.js';
import { createLogger } from '../../log/logger.js';
import { setDumpable } from '../../native/addon.js';

/** The flags commander collects are the config loader's flags, said once there. */
export type DaemonCliOptions = DaemonFlags;

/** Run the daemon in the foreground until SIGTERM/SIGINT. */
export async function runDaemon(options: DaemonCliOptions): Promise<void> {
  // Volume and host keys live in this process: never in a core dump, never readable by ptrace.
  setDumpable(false);
  const config = await loadDaemonConfig(options);
  const logger = createLogger({ level: config.logLevel });
  await runUntilSignal(() => Daemon.start(config, logger));
  logger.flush();
}
