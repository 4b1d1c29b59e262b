/**
 * The nitride daemon: one per host, playing the Nitro cards. It owns the state
 * directory, serves the control API, and (in later layers) volumes and NICs.
 *
 * Start order: state dir lock → audit log → control socket → ready.
 * Stop order is the reverse; every step runs even if an earlier one failed.
 */
import { z } from 'zod';
import { VERSION } from '../common/package-info.js';
import { AuditLog } from '../control/audit.js';
import { ControlServer } from '../control/server.js';
import { LOG_LEVELS, type LogLevel, type Logger } from '../log/logger.js';
import { sdNotify } from '../native/addon.js';
import type { DaemonConfig } from './config.js';
import { StateDir } from './state-dir.js';

/** What `GET /v1/status` returns; later components add their sections. */
export interface DaemonStatus {
  version: string;
  pid: number;
  startedAt: string;
  uptimeSeconds: number;
  stateDir: string;
  controlSocket: string;
  configFile: string | null;
  logLevel: string;
  node: string;
  health: 'ok' | 'degraded';
}

export class Daemon {
  private readonly startedAt = new Date();
  private stopping: Promise<void> | undefined;

  private constructor(
    readonly config: DaemonConfig,
    private readonly logger: Logger,
    private readonly state: StateDir,
    private readonly audit: AuditLog,
    private readonly control: ControlServer,
  ) {}

  /** Take the state dir, open the audit log, register routes, listen, and tell systemd we are ready. */
  static async start(config: DaemonConfig, logger: Logger): Promise<Daemon> {
    const state = await StateDir.open(config.stateDir);
    const cleanups: Array<() => Promise<void>> = [() => state.release()];
    try {
      const audit = await AuditLog.open(state.file('audit.log'), logger);
      cleanups.push(() => audit.close());
      const control = new ControlServer({ socketPath: config.controlSocket, logger, audit });
      const daemon = new Daemon(config, logger, state, audit, control);
      daemon.registerRoutes();
      await control.listen();
      sdNotify('READY=1');
      logger.info({ version: VERSION, stateDir: state.root, controlSocket: config.controlSocket }, 'daemon started');
      return daemon;
    } catch (err) {
      for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
      throw err;
    }
  }

  status(): DaemonStatus {
    return {
      version: VERSION,
      pid: process.pid,
      startedAt: this.startedAt.toISOString(),
      uptimeSeconds: Math.round((Date.now() - this.startedAt.getTime()) / 1000),
      stateDir: this.state.root,
      controlSocket: this.config.controlSocket,
      configFile: this.config.configFile ?? null,
      logLevel: this.logger.level,
      node: process.version,
      health: 'ok',
    };
  }

  /** Graceful stop; idempotent. */
  stop(reason: string): Promise<void> {
    this.stopping ??= (async () => {
      this.logger.info({ reason }, 'daemon stopping');
      sdNotify('STOPPING=1');
      const steps: Array<[string, () => Promise<void>]> = [
        ['control', () => this.control.close()],
        ['audit', () => this.audit.close()],
        ['state', () => this.state.release()],
      ];
      for (const [name, step] of steps) {
        await step().catch((err: unknown) => this.logger.error({ err, step: name }, 'stop step failed'));
      }
      this.logger.info('daemon stopped');
    })();
    return this.stopping;
  }

  private registerRoutes(): void {
    this.control.register({ method: 'GET', path: '/v1/status', handle: () => this.status() });
    this.control.register({
      method: 'PUT',
      path: '/v1/log-level',
      audit: 'daemon.set-log-level',
      body: z.object({ level: z.enum(LOG_LEVELS) }).strict(),
      handle: ({ body }) => {
        const previous = this.logger.level;
        this.logger.level = body.level;
        this.logger.info({ previous, level: body.level }, 'log level changed');
        return { level: body.level as LogLevel, previous };
      },
    });
  }
}
