/** What `nitride kms serve` runs (loaded only then: the key store, libsodium, the addon). */
import type { LogLevel } from '../../api/daemon.js';
import { runUntilSignal } from '../../common/service.js';
import { takeListenFds } from '../../common/systemd.js';
import { KmsServer } from '../../kms/server.js';
import { createLogger } from '../../log/logger.js';
import { setDumpable } from '../../native/addon.js';

export interface KmsServeOptions {
  stateDir: string;
  socket: string;
  logLevel: LogLevel;
  allowImmediateDeletion?: boolean;
  listen?: string;
}

/** Run the KMS in the foreground until SIGTERM/SIGINT. */
export async function serveKms(options: KmsServeOptions): Promise<void> {
  // Master keys live in this process: never in a core dump, never readable by ptrace.
  setDumpable(false);
  const logger = createLogger({ level: options.logLevel });
  // Socket activation (nitride-kms.socket): serve the socket systemd bound for us.
  const activated = takeListenFds();
  const listenFd = (activated.get('kms') ?? activated.get('unknown'))?.[0];
  await runUntilSignal(() =>
    KmsServer.start({
      ...(listenFd !== undefined ? { listenFd } : {}),
      stateDir: options.stateDir,
      socketPath: options.socket,
      logger,
      allowImmediateDeletion: options.allowImmediateDeletion === true,
      ...(options.listen !== undefined ? { listen: options.listen } : {}),
    }),
  );
  logger.flush();
}
