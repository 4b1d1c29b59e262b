/** What `nitride daemon` runs (loaded only then: it brings the whole daemon, the addon and libsodium). */
import type { LogLevel } from '../../api/daemon.js';
import { loadDaemonConfig } from '../../daemon/config.js';
import { Daemon } from '../../daemon/daemon.js';
import { runUntilSignal } from '../../common/service.js';
import { createLogger } from '../../log/logger.js';
import { setDumpable } from '../../native/addon.js';

export interface DaemonCliOptions {
  stateDir?: string;
  controlSocket?: string;
  config?: string;
  logLevel?: LogLevel;
  kmsSocket?: string;
  kmsEndpoint?: string;
  kmsPublicKey?: string;
  nbdSocket?: string;
  nbdListen?: string;
  ephemeralDir?: string;
  vpcListen?: string;
  vpcDns?: string[];
  vpcRekeyAfter?: number;
  vpcConntrackMax?: number;
  nbdDataPlane?: 'native' | 'js';
  metricsListen?: string;
  cephConf?: string;
  cephPool?: string;
  cephId?: string;
  cephTimeout?: number;
  hostId?: string;
  ebsStore?: 'rbd' | 'local';
  vmUidRange?: string;
  vmConsoleMax?: string;
  vmConsoleKeep?: number;
  fleetEndpoints?: string[];
  fleetCa?: string;
  fleetCert?: string;
  fleetKey?: string;
}

/** Run the daemon in the foreground until SIGTERM/SIGINT. */
export async function runDaemon(options: DaemonCliOptions): Promise<void> {
  // Volume and host keys live in this process: never in a core dump, never readable by ptrace.
  setDumpable(false);
  const config = await loadDaemonConfig(options);
  const logger = createLogger({ level: config.logLevel });
  await runUntilSignal(() => Daemon.start(config, logger));
  logger.flush();
}
