/**
 * `nitride kms serve`: the KMS as its own process, with its own state directory (0700:
 * keystore.json, audit.log, lock) and its own root-only Unix socket, separate from the
 * daemon (its own systemd unit). It fronts a file-backed {@link LocalKeyProvider} with the
 * control server (HTTP + JSON, SO_PEERCRED gate, strict validation, audit of every call);
 * routes and the binary framing of secret replies are in `protocol.ts`.
 *
 * Start order: state dir lock → audit log → key store → socket → ready; stop reverses it
 * and wipes the master keys from memory.
 */
import { promises as fs } from 'node:fs';
import { z } from 'zod';
import { VERSION } from '../common/package-info.js';
import { AuditLog } from '../control/audit.js';
import { ControlServer } from '../control/server.js';
import type { StateDir } from '../common/state-dir.js';
import { startService, stopService } from '../common/service.js';
import type { Logger } from '../log/logger.js';
import { sdNotify } from '../native/addon.js';
import { LocalKeyProvider } from './local.js';
import { allowLocal, keyResult, registerDataKeyRoutes } from './data-key-routes.js';
import { GrantStore, checkGrantRequest } from './grants.js';
import { KmsNetwork } from './net-server.js';
import { GRANT_OPERATIONS, KMS_API, type KeyAction, type KmsStatus } from './protocol.js';
import type { KeyMetadata } from './provider.js';
import { loadSodium, type Sodium } from './sodium.js';

export interface KmsServerOptions {
  /** State directory (created 0700): keystore.json, audit.log, lock file. */
  stateDir: string;
  /** The KMS socket (mode 0600 in a 0700 directory). */
  socketPath: string;
  /** Root logger; the KMS logs with component `kms`. */
  logger: Logger;
  /** A listening socket passed by systemd (socket activation) to serve instead of binding `socketPath`. */
  listenFd?: number;
  /** Allow deletion waiting periods of 0–6 days (tests). */
  allowImmediateDeletion?: boolean;
  /** Period of the deletion-date check, ms (default 60 000). */
  sweepIntervalMs?: number;
  /** Serve hosts over the network too (HOST:PORT; port 0 picks one), authenticated and granted. */
  listen?: string;
}

export class KmsServer {
  private readonly startedAt = new Date();
  private stopping: Promise<void> | undefined;
  private readonly log: Logger;
  private network: KmsNetwork | undefined;

  private constructor(
    private readonly options: KmsServerOptions,
    private readonly sodium: Sodium,
    private readonly state: StateDir,
    private readonly audit: AuditLog,
    private readonly provider: LocalKeyProvider,
    private readonly grants: GrantStore,
    private readonly control: ControlServer,
  ) {
    this.log = options.logger.child({ component: 'kms' });
  }

  static async start(options: KmsServerOptions): Promise<KmsServer> {
    const log = options.logger.child({ component: 'kms' });
    const sodium = await loadSodium();
    return startService('kms', options.stateDir, async (state, undo) => {
      await fs.chmod(state.root, 0o700);
      const audit = await AuditLog.open(state.file('audit.log'), options.logger);
      undo(() => audit.close());
      const provider = await LocalKeyProvider.open({
        file: state.file('keystore.json'),
        allowImmediateDeletion: options.allowImmediateDeletion ?? false,
        logger: log,
        ...(options.sweepIntervalMs !== undefined ? { sweepIntervalMs: options.sweepIntervalMs } : {}),
      });
      undo(() => provider.close());
      const grants = await GrantStore.open(state.file('grants.json'));
      const control = new ControlServer({
        socketPath: options.socketPath,
        logger: options.logger,
        audit,
        component: 'kms',
        socketLabel: 'KMS socket',
        unroutedAudit: 'kms.UnknownCall',
        ...(options.listenFd !== undefined ? { listenFd: options.listenFd } : {}),
      });
      const server = new KmsServer(options, sodium, state, audit, provider, grants, control);
      server.registerRoutes();
      await control.listen();
      undo(() => control.close());
      if (options.listen !== undefined) {
        const network = await KmsNetwork.start({ listen: options.listen, sodium, provider, grants, audit, state, logger: options.logger });
        server.network = network;
        undo(() => network.close());
      }
      sdNotify('READY=1');
      log.info({ version: VERSION, stateDir: state.root, socket: options.socketPath, allowImmediateDeletion: options.allowImmediateDeletion ?? false }, 'kms started');
      return server;
    });
  }

  /** Graceful stop; idempotent. */
  stop(reason: string): Promise<void> {
    this.stopping ??= stopService('kms', reason, this.log, [
      ['network', async () => this.network?.close()],
      ['socket', () => this.control.close()],
      ['keystore', () => this.provider.close()],
      ['audit', () => this.audit.close()],
      ['state', () => this.state.release()],
    ]);
    return this.stopping;
  }

  private async status(): Promise<KmsStatus> {
    return {
      service: 'nitride-kms',
      version: VERSION,
      pid: process.pid,
      startedAt: this.startedAt.toISOString(),
      stateDir: this.state.root,
      socket: this.options.socketPath,
      keys: (await this.provider.listKeys()).length,
      allowImmediateDeletion: this.options.allowImmediateDeletion ?? false,
      network: this.network?.status() ?? null,
    };
  }

  private registerRoutes(): void {
    const c = this.control;
    const p = this.provider;
    c.register({ method: 'GET', path: KMS_API.status, audit: 'kms.Status', handle: () => this.status() });

    c.register({
      method: 'POST',
      path: KMS_API.keys,
      audit: 'kms.CreateKey',
      status: 201,
      body: z.object({ alias: z.string().min(1).max(300).optional(), description: z.string().max(8192).optional() }).strict(),
      handle: async ({ body, audit, signal }) => {
        audit.details = body.alias ? { alias: body.alias } : {};
        const meta = await p.createKey({ ...body, signal });
        return keyResult(audit, meta);
      },
    });
    c.register({
      method: 'GET',
      path: KMS_API.keys,
      audit: 'kms.ListKeys',
      handle: async ({ signal }) => ({ keys: await p.listKeys({ signal }) }),
    });
    const actions: Array<[KeyAction, string, (ref: string, signal: AbortSignal) => Promise<KeyMetadata>]> = [
      ['enable', 'kms.EnableKey', (ref, signal) => p.enableKey(ref, { signal })],
      ['disable', 'kms.DisableKey', (ref, signal) => p.disableKey(ref, { signal })],
      ['rotate', 'kms.RotateKey', (ref, signal) => p.rotateKey(ref, { signal })],
      ['cancel-deletion', 'kms.CancelKeyDeletion', (ref, signal) => p.cancelKeyDeletion(ref, { signal })],
    ];
    for (const [action, auditName, run] of actions) {
      c.register({
        method: 'POST',
        path: `/v1/keys/:ref/${action}`,
        audit: auditName,
        auditTarget: 'ref',
        handle: async ({ params, audit, signal }) => keyResult(audit, await run(params.ref!, signal)),
      });
    }
    c.register({
      method: 'POST',
      path: '/v1/keys/:ref/schedule-deletion',
      audit: 'kms.ScheduleKeyDeletion',
      auditTarget: 'ref',
      body: z.object({ days: z.number().int().min(0).max(365).optional() }).strict(),
      handle: async ({ params, body, audit, signal }) => {
        audit.details = { days: body.days ?? null };
        return keyResult(audit, await p.scheduleKeyDeletion(params.ref!, body.days, { signal }));
      },
    });

    registerDataKeyRoutes(c, p, this.sodium, allowLocal);
    this.registerGrantRoutes();
  }

  /** Grants: root on the KMS's own socket decides which host may use which key. */
  private registerGrantRoutes(): void {
    const c = this.control;
    c.register({
      method: 'POST',
      path: KMS_API.grants,
      audit: 'kms.CreateGrant',
      status: 201,
      body: z
        .object({
          hostId: z.string().max(63),
          publicKey: z.string().max(64),
          keyId: z.string().min(1).max(300),
          operations: z.array(z.enum(GRANT_OPERATIONS)).min(1).max(GRANT_OPERATIONS.length * 2),
          context: z.record(z.string().max(256), z.string().max(1024)).optional(),
        })
        .strict(),
      handle: async ({ body, audit, signal }) => {
        audit.details = { hostId: body.hostId, keyId: body.keyId, operations: body.operations, context: body.context ?? {} };
        const req = checkGrantRequest(body);
        const keyId = (await this.provider.describeKey(req.keyId, { signal })).keyId;
        const grant = await this.grants.create({ ...req, keyId });
        audit.target = grant.grantId;
        audit.details = { ...audit.details, keyId, publicKey: grant.publicKey };
        return grant;
      },
    });
    c.register({ method: 'GET', path: KMS_API.grants, audit: 'kms.ListGrants', handle: () => ({ grants: this.grants.list() }) });
    c.register({
      method: 'DELETE',
      path: '/v1/grants/:id',
      audit: 'kms.RevokeGrant',
      auditTarget: 'id',
      handle: async ({ params, audit }) => {
        const grant = await this.grants.revoke(params.id!);
        audit.details = { hostId: grant.hostId, keyId: grant.keyId };
        return grant;
      },
    });
  }
}
